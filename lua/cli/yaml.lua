-- YAML for Kubernetes manifests, written from the same Lua values hersh.json encodes
-- (json.null, json.array, objects with string keys), so one value gives the YAML and the
-- JSON of a manifest. Block style, object keys sorted bytewise as hersh.json sorts them,
-- and every scalar that a YAML 1.1 or 1.2 reader could take for something else (yes,
-- 0x1F, 1e3, ~, a leading '-', ': ' inside) double-quoted with escapes, so what a reader
-- gets back is exactly the value written.
local json = require "hersh.json"

local yaml = {}

-- Plain scalars are kept only for words no reader turns into a bool, null or number.
local RESERVED = {}
for w in ("y n yes no on off true false null ~ nan inf"):gmatch("%S+") do RESERVED[w] = true end

local function plain_ok(s)
  if not s:match("^[%a_/][%w_./%-]*$") then return false end
  return not RESERVED[s:lower()]
end

-- The escape of one code point outside YAML's printable set (YAML 1.2, 5.1), or of a
-- line break of YAML 1.1 (U+2028, U+2029: a key holding one raw breaks PyYAML), or nil.
local function escape_of(cp)
  if cp == 0x0A then return "\\n" end
  if cp == 0x09 then return "\\t" end
  if cp == 0x0D then return "\\r" end
  if cp < 0x20 or cp == 0x7F or (cp >= 0x80 and cp <= 0x9F)
    or (cp >= 0xD800 and cp <= 0xDFFF) or cp == 0x2028 or cp == 0x2029 or cp == 0xFEFF or cp == 0xFFFE
    or cp == 0xFFFF then
    return cp <= 0xFF and string.format("\\x%02X", cp) or string.format("\\u%04X", cp)
  end
end

local function quoted(s)
  if not utf8.len(s) then error("yaml: a string is not valid UTF-8: " .. string.format("%q", s), 0) end
  local out = { '"' }
  for _, cp in utf8.codes(s) do
    local ch = utf8.char(cp)
    out[#out + 1] = (ch == '"' and '\\"') or (ch == "\\" and "\\\\") or escape_of(cp) or ch
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

local function scalar(v)
  local t = type(v)
  if v == nil or v == json.null then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then error("yaml: a number is not finite", 0) end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
    local text = string.format("%.15g", v)
    if tonumber(text) ~= v then text = string.format("%.17g", v) end
    -- YAML 1.1 reads an exponent without a dot ("1e+22") as a string
    return text:find(".", 1, true) and text or text:gsub("e", ".0e", 1)
  end
  if t == "string" then return plain_ok(v) and v or quoted(v) end
  error("yaml: cannot encode a " .. t, 0)
end

-- "array", "object" or nil (a scalar), with the keys of an object sorted.
local function shape(v)
  if type(v) ~= "table" then return nil end
  if json.is_array(v) then return "array" end
  local n, keys = 0, {}
  for k in pairs(v) do
    if type(k) == "string" then keys[#keys + 1] = k else n = n + 1 end
  end
  if n > 0 then
    if #keys > 0 or n ~= #v then error("yaml: a table mixes keys, or has holes: not an array nor an object", 0) end
    return "array"
  end
  table.sort(keys)
  return "object", keys
end

local emit

-- One entry: `lead` ("key:" or "-") then the value, inline when it is a scalar or an
-- empty collection; a non-empty object after "-" starts on the same line ("- key: v",
-- its keys one column past the dash); anything else on the next lines, deeper.
local function entry(out, pad, lead, v, indent)
  local kind, keys = shape(v)
  if not kind then
    out[#out + 1] = pad .. lead .. " " .. scalar(v)
  elseif (kind == "array" and #v == 0) or (kind == "object" and #keys == 0) then
    out[#out + 1] = pad .. lead .. (kind == "array" and " []" or " {}")
  elseif kind == "object" and lead == "-" then
    emit(out, v, indent, pad .. "- ")
  else
    out[#out + 1] = pad .. lead
    emit(out, v, indent)
  end
end

-- Writes a non-empty collection at `indent`; `first` replaces the first line's padding.
function emit(out, v, indent, first)
  local pad = string.rep(" ", indent)
  local kind, keys = shape(v)
  if kind == "object" then
    for i, k in ipairs(keys) do
      entry(out, i == 1 and first or pad, scalar(k) .. ":", v[k], indent + 2)
    end
  else
    for _, x in ipairs(v) do entry(out, pad, "-", x, indent + 2) end
  end
end

-- yaml.encode(v) -> the text of one document (no "---"), ending in a newline.
function yaml.encode(v)
  local out = {}
  local kind, keys = shape(v)
  if not kind then
    out[1] = scalar(v)
  elseif (kind == "array" and #v == 0) or (kind == "object" and #keys == 0) then
    out[1] = kind == "array" and "[]" or "{}"
  else
    emit(out, v, 0)
  end
  return table.concat(out, "\n") .. "\n"
end

-- yaml.documents(list) -> a stream of documents, each opened by "---".
function yaml.documents(list)
  local out = {}
  for _, v in ipairs(list) do out[#out + 1] = "---\n" .. yaml.encode(v) end
  return table.concat(out)
end

return yaml
