-- The Lua side of fuzz_host_http (host_http.c): a Host on a temporary storage, its REST
-- API (host.api) served on 127.0.0.1, port 0, with a bearer token. No program is ever
-- started: after each input, every program the input created is deleted again, so each
-- input meets the same empty Host and the storage stays small.
local core = require "hersh.core"
local api = require "host.api"
local host = require "host.host"

-- The seed corpus sends both: the port is not known when it is written.
local TOKEN = "fuzz-token"
local HOST = "fuzz:80"
local h, server

local function start(storage)
  local err
  h, err = host.open{ storage = storage, driver = "bwrap", runtime = { bin = "/nonexistent", lua = "/nonexistent" },
    ports = { first = 39000, last = 39099 } }
  if not h then error("cannot open the Host: " .. tostring(err)) end
  server, err = api.serve(h, { bind = "127.0.0.1", port = 0, token = TOKEN, allow_hosts = { HOST } })
  if not server then error("cannot serve the Host API: " .. tostring(err)) end
  return server:port()
end

-- Runs the loop (the handlers, deferred to it) for about ms milliseconds.
local function pump(ms)
  assert(core.run_for(tonumber(ms) / 1000))
end

local function reset()
  local ids = {}
  for _, p in ipairs(h.order) do ids[#ids + 1] = p.id end
  for _, id in ipairs(ids) do assert(h:delete(id, false, function() end)) end
  local deadline = core.now() + 10
  while #h.order > 0 do
    if core.now() > deadline then error("programs still there 10 s after their delete") end
    core.run_for(0.005)
  end
end

return { start = start, pump = pump, reset = reset }
