-- A reproducible tar writer (POSIX ustar, with a pax header for a path ustar cannot
-- hold): entries are written in the order given, with the owners, modes and mtime given
-- and nothing taken from the machine (no user names, no device numbers, no times), so
-- that the same entries always give the same bytes, and the same digest.
local tar = {}

local BLOCK = 512

local function octal(n, width)
  return string.format("%0" .. (width - 1) .. "o", n) .. "\0"
end

local function field(s, width)
  return s .. string.rep("\0", width - #s)
end

-- One ustar header block: name (and prefix) as ustar splits them.
local function header(name, prefix, e, size, typeflag)
  local parts = {
    field(name, 100), octal(e.mode or 420, 8), octal(e.uid or 0, 8), octal(e.gid or 0, 8),
    octal(size, 12), octal(e.mtime or 0, 12), "        ", typeflag, field(e.linkname or "", 100),
    "ustar\0", "00", field("", 32), field("", 32), octal(0, 8), octal(0, 8), field(prefix, 155),
  }
  local block = table.concat(parts)
  block = block .. string.rep("\0", BLOCK - #block)
  local sum = 0
  for i = 1, #block do sum = sum + block:byte(i) end
  return block:sub(1, 148) .. string.format("%06o\0 ", sum) .. block:sub(157)
end

local function padding(size)
  local rest = size % BLOCK
  return rest == 0 and "" or string.rep("\0", BLOCK - rest)
end

-- ustar's split of a path into prefix and name, or nil when it has none.
local function split(path)
  if #path <= 100 then return path, "" end
  for i = math.min(#path - 1, 156), 1, -1 do
    if path:sub(i, i) == "/" and i - 1 <= 155 and #path - i <= 100 then return path:sub(i + 1), path:sub(1, i - 1) end
  end
  return nil
end

-- A pax extended header record: "<len> path=<path>\n", len counting itself.
local function pax_record(key, value)
  local body = " " .. key .. "=" .. value .. "\n"
  local n = #body + 1
  while #tostring(n) + #body ~= n do n = #tostring(n) + #body end
  return tostring(n) .. body
end

local TYPE = { file = "0", link = "2", dir = "5" }

-- Appends entry e {path (relative, no leading /; a directory's without its /), type =
-- "file" | "dir" | "link", mode, uid, gid, mtime, data (a file's bytes), linkname}
-- to out (a list of strings).
function tar.add(out, e)
  local path = e.type == "dir" and e.path .. "/" or e.path
  local data = e.type == "file" and (e.data or "") or ""
  local name, prefix = split(path)
  if not name then -- a pax header holds the whole path
    local record = pax_record("path", path)
    out[#out + 1] = header("PaxHeader", "", { mode = 420 }, #record, "x")
    out[#out + 1] = record .. padding(#record)
    name, prefix = path:sub(-100), ""
  end
  if e.linkname and #e.linkname > 100 then error("tar: link target too long: " .. e.linkname) end
  out[#out + 1] = header(name, prefix, e, #data, TYPE[e.type] or error("tar: bad entry type " .. tostring(e.type)))
  if #data > 0 then
    out[#out + 1] = data
    out[#out + 1] = padding(#data)
  end
end

-- The archive's end: two zero blocks.
function tar.finish(out)
  out[#out + 1] = string.rep("\0", 2 * BLOCK)
  return table.concat(out)
end

-- The archive of a list of entries, sorted by path.
function tar.archive(entries)
  table.sort(entries, function(a, b) return a.path < b.path end)
  local out = {}
  for _, e in ipairs(entries) do tar.add(out, e) end
  return tar.finish(out)
end

return tar
