-- hersh.http: the HTTP client a poll, a flow producer, a reducer or a cleanup waits on.
-- Each call yields the calling task and the loop resumes it with the answer, so the
-- code reads as synchronous and nothing else on the loop waits (docs/lua-api.md,
-- "Waiting and scheduling"). It rides on hersh.core.fetch (src/lua/lhttp.c); the Host's
-- callback client, require "hersh.http", is a different module only the Host has.
local core = require "hersh.core"
local json = require "hersh.json"

local http = {}

-- The answer: status, headers (lowercased names), body, and res:json().
local Response = {}
Response.__index = Response

-- The body as JSON: the value, or nil, "invalid JSON at byte N: ...", "EINVAL".
function Response:json()
  return json.decode(self.body)
end

local function options(opts, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(who .. ": opts must be a table, not " .. type(opts), 3) end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  return copy
end

-- http.request{method, url, headers, body, timeout, connect_timeout, max_response,
-- redirects}: res, or nil, err, code.
function http.request(opts)
  if type(opts) ~= "table" then error("hersh.http.request: opts must be a table, not " .. type(opts), 2) end
  local res, err, code = core.fetch(opts)
  if not res then return nil, err or "out of memory", code or "ENOMEM" end -- no answer: no memory to build it
  return setmetatable(res, Response)
end

-- http.get(url [, opts])
function http.get(url, opts)
  local o = options(opts, "hersh.http.get")
  o.method, o.url = "GET", url
  return http.request(o)
end

-- http.post(url, body [, opts]): a string body as is; a table as JSON (with its
-- content type, unless opts.headers names one).
function http.post(url, body, opts)
  local o = options(opts, "hersh.http.post")
  o.method, o.url = "POST", url
  if type(body) == "table" then
    local headers, typed = {}, false
    for k, v in pairs(o.headers or {}) do
      headers[k] = v
      local name = type(k) == "string" and k or (type(v) == "string" and v:match("^([^:]*):")) or ""
      typed = typed or name:lower() == "content-type"
    end
    if not typed then headers["Content-Type"] = "application/json" end
    o.headers, o.body = headers, json.encode(body)
  else
    o.body = body
  end
  return http.request(o)
end

return http
