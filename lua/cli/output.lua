-- What the client prints: JSON for scripts (--json), aligned tables for people, with
-- colour only on a terminal (and not under NO_COLOR). Progress and errors go to stderr,
-- so stdout stays parseable.
local json = require "hersh.json"

local output = {}

local STATE_COLOUR = { Ready = "32", Error = "31", Restarting = "33", Building = "36", Starting = "36",
  Stopping = "33", Stopped = "90", Created = "90" }

-- output.new{json = bool, tty = bool}
function output.new(opts)
  local colour = opts.tty and not opts.json and (os.getenv("NO_COLOR") or "") == ""
  return setmetatable({ json_mode = opts.json, colour = colour }, { __index = output })
end

function output:paint(code, text)
  if not self.colour or not code then return text end
  return "\27[" .. code .. "m" .. text .. "\27[0m"
end

function output:state(state)
  return self:paint(STATE_COLOUR[state], state)
end

function output:json(v)
  io.stdout:write(json.encode(v), "\n")
end

function output:line(text)
  io.stdout:write(text, "\n")
end

function output.note(text)
  io.stderr:write(text, "\n")
end

local function cell(v)
  if v == nil or v == json.null then return "-" end
  return tostring(v)
end

-- Display width: escape sequences take none, a UTF-8 character one column.
local function width(s)
  return utf8.len((s:gsub("\27%[[%d;]*m", ""))) or #s
end

-- output:table(columns, rows): columns = {{title, fn(row) -> text [, paint(row, text)]}}.
function output:table(columns, rows)
  local cells, widths = {}, {}
  for i, col in ipairs(columns) do widths[i] = #col[1] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, col in ipairs(columns) do
      local text = cell(col[2](row))
      cells[r][i] = text
      widths[i] = math.max(widths[i], width(text))
    end
  end
  local function emit(texts, paint)
    local parts = {}
    for i, t in ipairs(texts) do
      local shown = paint and paint(i, t) or t
      parts[i] = i < #texts and shown .. string.rep(" ", widths[i] - width(t) + 2) or shown
    end
    io.stdout:write(table.concat(parts), "\n")
  end
  local titles = {}
  for i, col in ipairs(columns) do titles[i] = col[1] end
  emit(titles, function(_, t) return self:paint("1", t) end)
  for r, row in ipairs(rows) do
    emit(cells[r], function(i, t) return columns[i][3] and columns[i][3](self, row, t) or t end)
  end
end

-- output:fields(record, keys): "key  value" lines, keys sorted, nested values as JSON.
function output:fields(record)
  local keys = {}
  for k in pairs(record) do keys[#keys + 1] = k end
  table.sort(keys)
  local w = 0
  for _, k in ipairs(keys) do w = math.max(w, #k) end
  for _, k in ipairs(keys) do
    local v = record[k]
    local text = type(v) == "table" and json.encode(v) or cell(v)
    if k == "state" then text = self:state(text) end
    io.stdout:write(self:paint("1", k), string.rep(" ", w - #k + 2), text, "\n")
  end
end

return output
