-- `hersh host`: the Host's command line, start-up and shutdown.
--   hersh host [--bind 127.0.0.1] [--port 9000] [--storage DIR] [--token-file F]
--              [--sandbox bwrap] [--isolation|--driver bwrap|gvisor|swarm] [--docker-socket PATH] [--ports FIRST-LAST] [--policy FILE] [--allow-host NAME]...
--              [--registry HOST:PORT] [--publish socket|node]
--              [--max-connections N] [--max-per-client N] [--idle-timeout S] [--request-timeout S]
--              [--events-heartbeat S] [--events-max N] [--ready-timeout S]
-- --isolation is the sandbox of a program created without "isolation" (default bwrap);
-- --driver swarm is the same as --isolation swarm: programs run as Docker Swarm
-- services of the Engine on --docker-socket (default /var/run/docker.sock); with
-- --registry their images go through that registry, so that any node can pull them,
-- and --publish node lets them run on any node (docs/cluster.md).
-- --policy names a Lua file returning the Host's orchestration policy (host.policy,
-- docs/policies.md); SIGHUP loads it again.
-- --allow-host adds a name (NAME or NAME:PORT) the API answers to, besides the bind
-- address, localhost, 127.0.0.1 and [::1] with its port. The limits of the API's
-- connections (defaults in src/http/server.h: 1024 in all, 256 per client address,
-- 10 s of silence, 30 s for a request to come in) are the next four; --events-heartbeat
-- is the seconds between the keep-alive comments of a GET /events stream (default 15);
-- --events-max the lifecycle events the registry keeps, the oldest dropped (10000);
-- --ready-timeout the seconds a started process has to answer /watcher/status (30).
local core = require "hersh.core"
local sys = require "hersh.os"
local api = require "host.api"
local host = require "host.host"

local main = {}

main.USAGE = "usage: hersh host [--bind ADDR] [--port N] [--storage DIR] [--token-file FILE]"
  .. " [--sandbox bwrap] [--isolation|--driver bwrap|gvisor|swarm] [--docker-socket PATH] [--ports FIRST-LAST] [--policy FILE] [--allow-host NAME]..."
  .. " [--registry HOST:PORT] [--publish socket|node]"
  .. " [--max-connections N] [--max-per-client N] [--idle-timeout S] [--request-timeout S]"
  .. " [--events-heartbeat S] [--events-max N] [--ready-timeout S]"

-- The flags of the API's limits, of the events kept and of the ready timeout: whole
-- numbers, and their fields in the options of api.serve and host.open (and main.start).
local LIMITS = { ["--max-connections"] = "max_connections", ["--max-per-client"] = "max_per_client",
  ["--idle-timeout"] = "idle_timeout", ["--request-timeout"] = "request_timeout",
  ["--events-heartbeat"] = "events_heartbeat", ["--events-max"] = "events_max",
  ["--ready-timeout"] = "ready_timeout" }

local function parse(args)
  local o = { bind = "127.0.0.1", port = 9000, storage = "./var", sandbox = "bwrap", allow_hosts = {} }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--bind" and v then o.bind = v
    elseif a == "--port" and v and tonumber(v) then o.port = math.tointeger(tonumber(v))
    elseif a == "--storage" and v then o.storage = v
    elseif a == "--token-file" and v then o.token_file = v
    elseif a == "--sandbox" and v then o.sandbox = v
    elseif (a == "--isolation" or a == "--driver") and v then o.isolation = v
    elseif a == "--docker-socket" and v then o.docker_socket = v
    elseif a == "--registry" and v then
      if not v:match("^[%w%.%-]+:%d+$") then return nil, "--registry wants HOST:PORT, not " .. v end
      o.registry = v
    elseif a == "--publish" and v then
      if v ~= "socket" and v ~= "node" then return nil, "--publish wants socket or node, not " .. v end
      o.publish = v
    elseif a == "--policy" and v then o.policy = v
    elseif a == "--allow-host" and v and v:match("^[%w%.%-%[%]:]+$") then o.allow_hosts[#o.allow_hosts + 1] = v
    elseif LIMITS[a] and v then
      local n = v:match("^%d+$") and math.tointeger(tonumber(v))
      if not n or n < 1 or n > 1000000 then return nil, a .. " wants a whole number from 1 to 1000000, not " .. v end
      o[LIMITS[a]] = n
    elseif a == "--ports" and v and v:match("^%d+%-%d+$") then
      local first, last = tonumber(v:match("^(%d+)%-")), tonumber(v:match("%-(%d+)$"))
      if first < 1 or last > 65535 or first > last then
        return nil, "--ports wants FIRST-LAST with 1 <= FIRST <= LAST <= 65535, not " .. v
      end
      o.ports = { first = first, last = last }
    else
      return nil, "bad argument '" .. tostring(a) .. "'\n" .. main.USAGE
    end
    i = i + 2
  end
  if not o.port or o.port < 0 or o.port > 65535 then return nil, "--port wants 0..65535" end
  return o
end

local function read_token(path)
  local f, err = io.open(path, "r")
  if not f then return nil, "cannot read the token file: " .. err end
  local token = (f:read("a") or ""):match("^%s*(.-)%s*$")
  f:close()
  if token == "" then return nil, "the token file " .. path .. " is empty" end
  return token
end

local function dirname(path)
  return path and path:match("^(.*)/[^/]*$")
end

local function first_holding(file, candidates)
  for _, dir in ipairs(candidates) do
    if dir and sys.fs.stat(dir .. "/" .. file) then return dir end
  end
end

-- The libhersh files in dir (libhersh.a, libhersh.so*): a build folder holds much
-- more, none of it for programs.
local function runtime_libs(dir)
  if not dir then return nil end
  local files = {}
  for _, name in ipairs(sys.fs.list(dir) or {}) do
    if name == "libhersh.a" or name:match("^libhersh%.so[%.%d]*$") then files[#files + 1] = dir .. "/" .. name end
  end
  table.sort(files)
  return files
end

-- Where the hersh runtime is, for FROM hersh sandboxes: this executable, the folder
-- its Lua modules were found in, and hersh.h and the libhersh files for C programs
-- (beside a build tree's executable and in its source tree, or under an installed
-- prefix).
local function runtime(bin)
  local init = package.searchpath("hersh", package.path)
  local lua = init and init:match("^(.*)/hersh/init%.lua$")
  local prefix = lua and lua:match("^(.*)/share/lua/5%.4$")
  return {
    bin = bin, lua = lua,
    include = first_holding("hersh.h", { lua and dirname(lua) .. "/include", prefix and prefix .. "/include" }),
    lib = runtime_libs(first_holding("libhersh.a", { dirname(bin), prefix and prefix .. "/lib" })),
  }
end

main.runtime = runtime -- for hersh image (lua/cli/image.lua)

-- One Host per storage, before anything in it is touched: a second one's start-up
-- clean-up would remove what the first runs. The lock (storage/host.lock, with the
-- holder's pid) is held until the process ends.
local function lock_storage(storage)
  local ok, err = sys.fs.mkdir_p(storage, host.PASSAGE)
  if not ok then return nil, err end
  local fd, lock_err, code = sys.fs.lock(storage .. "/host.lock")
  if fd then return true end
  if code == "EBUSY" then return nil, "the storage " .. storage .. " is in use by another Host: " .. lock_err end
  return nil, "cannot lock the storage: " .. lock_err
end

-- Starts the Host; returns it and its server, or nil, err. `executable` is the hersh
-- executable's path (src/cli/main.c passes it), which FROM hersh sandboxes run.
function main.start(args, executable)
  local o, err = parse(args)
  if not o then return nil, err end
  local token
  if o.token_file then
    token, err = read_token(o.token_file)
    if not token then return nil, err end
  end
  if not token and o.bind ~= "127.0.0.1" and o.bind ~= "::1" and o.bind ~= "localhost" then
    io.stderr:write("hersh host: WARNING: listening on " .. o.bind .. " without --token-file: "
      .. "anyone who can reach it can run programs\n")
  end
  if o.ready_timeout then require("host.program").READY_TIMEOUT = o.ready_timeout end
  local rt = runtime(executable)
  if not rt.bin or not rt.lua then return nil, "cannot find the hersh runtime to hand to programs" end
  local locked, lock_err = lock_storage(o.storage)
  if not locked then return nil, lock_err end
  -- Absolute: the sandbox starts in / and would find a relative image path nowhere.
  local storage, storage_err = sys.fs.realpath(o.storage)
  if not storage then return nil, storage_err end
  if o.docker_socket or o.registry or o.publish then
    require("host.sandbox.swarm").configure{ socket = o.docker_socket, registry = o.registry, publish = o.publish }
  end
  local h, host_err = host.open{ storage = storage, driver = o.sandbox, isolation = o.isolation, runtime = rt, ports = o.ports,
    events_max = o.events_max, policy = o.policy }
  if not h then return nil, host_err end
  local server, serve_err = api.serve(h, { bind = o.bind, port = o.port, token = token, allow_hosts = o.allow_hosts,
    max_connections = o.max_connections, max_per_client = o.max_per_client, idle_timeout = o.idle_timeout,
    request_timeout = o.request_timeout, events_heartbeat = o.events_heartbeat })
  if not server then return nil, serve_err end
  io.stderr:write(string.format("hersh host: serving http://%s:%d (storage %s, %d programs)\n",
    o.bind, server:port(), o.storage, #h.order))
  return h, server
end

-- Stops every program (their cleanups run), then the server; `done` afterwards.
function main.shutdown(h, server, done)
  local waiting = 0
  h:hold_starts() -- those still waiting for their start (host.open) stay stopped
  for _, p in ipairs(h.order) do
    if p.sup:stop() then waiting = waiting + 1 end
  end
  local deadline = core.now() + 15
  local timer
  timer = core.timer(0, function()
    local busy = false
    for _, p in ipairs(h.order) do
      local s = p.sup.record.state
      busy = busy or not (s == "Stopped" or s == "Error" or s == "Created")
    end
    if busy and core.now() < deadline then return end
    timer:stop()
    server:close()
    done()
  end, 0.05)
  return waiting
end

-- The command: start, then serve until SIGTERM or SIGINT (a second one exits at once);
-- SIGHUP reloads the policy file.
function main.run(args, executable)
  local h, server = main.start(args, executable)
  if not h then
    io.stderr:write("hersh host: ", tostring(server), "\n")
    return 2
  end
  local stopping = false
  local function on_signal()
    if stopping then
      io.stderr:write("hersh host: second signal: exiting now\n")
      return sys.stop_serving()
    end
    stopping = true
    io.stderr:write("hersh host: stopping programs\n")
    main.shutdown(h, server, sys.stop_serving)
  end
  sys.on_signal("TERM", on_signal)
  sys.on_signal("INT", on_signal)
  sys.on_signal("HUP", function()
    local ok, why = h.policy:reload()
    io.stderr:write("hersh host: SIGHUP: ", ok and "policy reloaded" or ("policy kept: " .. tostring(why)), "\n")
  end)
  sys.serve()
  h.registry:close()
  return 0
end

return main
