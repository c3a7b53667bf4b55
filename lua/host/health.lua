-- Health checks of a Ready program, opt-in at create (field `health`): every `interval`
-- seconds a GET of `path` on the program's port over loopback; a check passes when a
-- 2xx answers within `timeout` seconds (checker.last_ok: when one last did).
-- `failures` failed checks in a row call on_unhealthy once and end the checks: the
-- supervisor then restarts the program through its restart policy. The checks never
-- block the loop (the loop's HTTP client).
local core = require "hersh.core"
local http = require "hersh.http"
local json = require "hersh.json"

local health = {}

health.DEFAULTS = { path = "/watcher/status", interval = 10, timeout = 2, failures = 3 }
-- Bounds: a tiny interval would turn a program's checks into a flood on the loop.
health.BOUNDS = {
  interval = { min = 0.1, max = 86400, what = "a number of seconds from 0.1 to 86400" },
  timeout = { min = 0.01, max = 3600, what = "a number of seconds from 0.01 to 3600" },
  failures = { min = 1, max = 1000, what = "a whole number from 1 to 1000", whole = true },
}
health.MAX_PATH = 1024
-- What a path may hold: the URL characters of RFC 3986 (no space, no #, nothing to
-- leave the program's port or split the request line).
local PATH = "^/[%w%-%._~!$&'()*+,;=:@/%%?]*$"

local FIELDS = { "failures", "interval", "path", "timeout" }
local KNOWN = {}
for _, k in ipairs(FIELDS) do KNOWN[k] = true end

-- The `health` field of a create request (nil: no checks; an object: its fields over
-- the defaults) -> a complete table, nil, or nil, message naming the field at fault.
function health.normalize(given)
  if given == nil or given == json.null then return nil end
  if type(given) ~= "table" or json.is_array(given) or given[1] ~= nil then
    return nil, "health must be an object {path, interval, timeout, failures}"
  end
  local unknown = {}
  for k in pairs(given) do
    if not KNOWN[k] then unknown[#unknown + 1] = string.format("%q", tostring(k)) end
  end
  if #unknown > 0 then
    table.sort(unknown)
    return nil, "health: unknown field " .. table.concat(unknown, ", ") .. " (known: "
      .. table.concat(FIELDS, ", ") .. ")"
  end
  local h = {}
  for _, k in ipairs(FIELDS) do
    local v = given[k]
    if v == nil or v == json.null then v = health.DEFAULTS[k] end
    h[k] = v
  end
  if type(h.path) ~= "string" or #h.path > health.MAX_PATH or not h.path:match(PATH) then
    return nil, "health.path must start with / and hold only URL characters (at most "
      .. health.MAX_PATH .. ")"
  end
  for k, b in pairs(health.BOUNDS) do
    local v = h[k]
    if type(v) ~= "number" or not (v >= b.min and v <= b.max) or (b.whole and v ~= math.floor(v)) then
      return nil, "health." .. k .. " must be " .. b.what
    end
    h[k] = b.whole and math.tointeger(v) or v
  end
  return h
end

local Checker = {}
Checker.__index = Checker

-- Why a check failed, or nil when it passed (also the default policy's health hook).
function health.failure(res, err)
  if not res then return tostring(err) end
  if res.status >= 200 and res.status < 300 then return nil end
  return "HTTP " .. tostring(res.status)
end

function Checker:result(res, err)
  local why = self.judge(res, err)
  if not why then
    self.failures = 0
    self.last_ok = core.now()
    return
  end
  self.failures = self.failures + 1
  if self.failures < self.check.failures then return end
  self:stop()
  self.on_unhealthy{ failures = self.failures, last_error = why }
end

function Checker:probe()
  if self.done or self.in_flight then return end
  self.in_flight = true
  -- A fresh connection each time: a kept-alive one may lead to an earlier process.
  local ok, err = http.request({ method = "GET", url = self.url, timeout = self.check.timeout,
    headers = { Connection = "close" } }, function(res, http_err)
    self.in_flight = false
    if not self.done then self:result(res, http_err) end
  end)
  if not ok then
    self.in_flight = false
    self:result(nil, err)
  end
end

-- Ends the checks; an answer still in flight is dropped.
function Checker:stop()
  self.done = true
  self.timer:stop()
end

-- health.watch{port, check = normalize's table, on_unhealthy({failures, last_error}),
-- judge(res, err) -> why a check failed or nil (default health.failure: the Host's
-- policy may decide)} -> a checker, whose first check comes one interval after Ready.
function health.watch(opts)
  local self = setmetatable({ check = opts.check, on_unhealthy = opts.on_unhealthy, failures = 0,
    judge = opts.judge or health.failure,
    url = "http://127.0.0.1:" .. opts.port .. opts.check.path, done = false, in_flight = false }, Checker)
  self.timer = core.timer(self.check.interval, function() self:probe() end, self.check.interval)
  return self
end

return health
