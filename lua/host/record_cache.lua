-- The JSON of each program's record (what GET /programs/{id} shows), encoded once per
-- change: a listing joins the cached texts instead of encoding every record again.
-- The Host drops a program's text whenever anything its record shows changes
-- (Host:touch); the next read encodes it again.
local json = require "hersh.json"

local record_cache = {}

local Cache = {}
Cache.__index = Cache

-- view(p) -> the table to encode for program p.
function record_cache.new(view)
  -- weak keys: a deleted program's text goes with it
  return setmetatable({ view = view, text = setmetatable({}, { __mode = "k" }) }, Cache)
end

-- The JSON text of p's record.
function Cache:get(p)
  local text = self.text[p]
  if not text then
    text = json.encode(self.view(p))
    self.text[p] = text
  end
  return text
end

function Cache:drop(p)
  self.text[p] = nil
end

-- The body of a listing: the object `fields` (at least one field, each named before
-- "programs": the Host's keys are sorted) with "programs" last, the array of the cached
-- texts of `list`. The one place JSON is joined from encoded parts: each part is
-- json.encode's, so the whole is valid JSON.
function Cache:listing(list, fields)
  local parts = {}
  for i, p in ipairs(list) do parts[i] = self:get(p) end
  for k in pairs(fields) do assert(k < "programs") end
  local rest = json.encode(fields)
  assert(rest:match("^{.+}$"))
  return rest:sub(1, -2) .. ',"programs":[' .. table.concat(parts, ",") .. "]}"
end

return record_cache
