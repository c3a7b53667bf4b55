-- A private Docker Engine for the specs: dockerd with its own data and exec roots and
-- API socket in a temporary folder, no bridge (a container has loopback only) and no
-- iptables rules, no-new-privileges by default, and a one-node Swarm on 127.0.0.1 (two
-- may run at once: the second's gossip port is taken, which one node does not need).
-- D.start() -> d, or nil, why it cannot run here (the spec is then skipped with it);
-- D.stop(d) ends it by its PID, then the containerd-shims of its containers, and
-- removes the folder. Every wait is bounded.
local cjson = require "cjson"
local P = require "scripts.process"

local D = {}

D.DOCKERD = "/usr/sbin/dockerd"

-- Helper commands run without the sanitizer runtime scripts/test preloads into lua5.4
-- (a preloaded curl or ps can hang): only hersh is under test.
local PLAIN = "env -u LD_PRELOAD "

local function sh(cmd)
  return os.execute(PLAIN .. cmd) == true
end

-- A request to the Engine with curl (a reference independent of the Host's client):
-- status, decoded body (or the raw text).
function D.api(d, method, path, body)
  local out = d.dir .. "/api.out"
  local cmd = string.format(PLAIN .. "curl -s -o %s -w '%%{http_code}' --max-time 60 --unix-socket %s -X %s %s%s",
    P.quote(out), P.quote(d.socket), method,
    body and ("-H 'Content-Type: application/json' --data-binary " .. P.quote(cjson.encode(body)) .. " ") or "",
    P.quote("http://docker/v1.41" .. path))
  local p = io.popen(cmd)
  local status = tonumber(p:read("a"))
  p:close()
  local text = P.read(out) or ""
  local ok, doc = pcall(cjson.decode, text)
  return status, ok and doc or text
end

-- The names (services, containers, volumes, images) the Engine still holds whose name
-- or tag contains `part`.
function D.leftovers(d, part)
  local found = {}
  local function scan(kind, list, names)
    for _, item in ipairs(type(list) == "table" and list or {}) do
      for _, n in ipairs(names(item)) do
        if tostring(n):find(part, 1, true) then found[#found + 1] = kind .. " " .. tostring(n) end
      end
    end
  end
  local _, services = D.api(d, "GET", "/services")
  scan("service", services, function(s) return { s.Spec and s.Spec.Name or "" } end)
  local _, containers = D.api(d, "GET", "/containers/json?all=1")
  scan("container", containers, function(c) return c.Names or {} end)
  local _, volumes = D.api(d, "GET", "/volumes")
  scan("volume", type(volumes) == "table" and volumes.Volumes or {}, function(v) return { v.Name } end)
  local _, images = D.api(d, "GET", "/images/json")
  scan("image", images, function(i) return i.RepoTags or {} end)
  return found
end

local function free_port()
  local H = require "scripts.host_harness"
  return (H.free_range(1, 30000, 32000))
end

-- opts.no_new_privileges = false: a daemon without --no-new-privileges (the default of
-- dockerd), for the spec that checks the driver refuses it.
function D.start(opts)
  opts = opts or {}
  if not P.exists(D.DOCKERD) then return nil, "dockerd is not installed (" .. D.DOCKERD .. "; scripts/setup installs docker.io)" end
  local p = io.popen(PLAIN .. "id -u")
  local uid = p:read("l")
  p:close()
  if uid ~= "0" then return nil, "dockerd needs root (running as uid " .. tostring(uid) .. ")" end
  local d = { dir = P.tmpdir() }
  d.socket = d.dir .. "/docker.sock"
  sh("mkdir -p " .. P.quote(d.dir .. "/proc"))
  local argv = { "env", "-u", "LD_PRELOAD", D.DOCKERD, "--data-root", d.dir .. "/data", "--exec-root",
    d.dir .. "/exec", "-H", "unix://" .. d.socket, "--pidfile", d.dir .. "/docker.pid", "--bridge", "none",
    "--iptables=false", "--ip-masq=false", dir = d.dir .. "/proc" }
  if opts.no_new_privileges ~= false then argv[#argv + 1] = "--no-new-privileges" end
  d.proc = P.start(argv)
  local up = P.wait_for(function()
    if not P.alive(d.proc) then return "ended" end
    return sh("curl -s --max-time 2 --unix-socket " .. P.quote(d.socket)
      .. " http://docker/_ping >/dev/null 2>&1") and "up"
  end, 60, 0.2)
  if up ~= "up" then
    local why = P.stderr(d.proc):match("([^\n]+)\n?$") or "no answer on its socket"
    D.stop(d)
    return nil, "dockerd cannot start here: " .. why
  end
  local ok, status, doc = pcall(function()
    local port = free_port()
    return D.api(d, "POST", "/swarm/init", { ListenAddr = "127.0.0.1:" .. port,
      AdvertiseAddr = "127.0.0.1:" .. port, DataPathPort = free_port() })
  end)
  if not ok then
    D.stop(d)
    error(status, 0)
  end
  if status ~= 200 then
    D.stop(d)
    return nil, "docker swarm init fails here: " .. tostring(type(doc) == "table" and doc.message or doc)
  end
  return d
end

-- The PIDs of this Engine's processes (dockerd, its containerd, the containerd-shims of
-- its containers, which outlive it): those whose command line names its folder.
local function processes(d)
  local pids = {}
  local p = io.popen(PLAIN .. "ps -eo pid=,args=")
  for line in p:lines() do
    local pid, args = line:match("^%s*(%d+)%s+(.*)$")
    -- not the shell of P.start around dockerd (it records dockerd's exit), nor ps
    local ours = args:find(d.dir .. "/", 1, true) and not args:match("^sh %-c") and not args:find("ps -eo", 1, true)
    if pid and ours then pids[#pids + 1] = pid end
  end
  p:close()
  return pids
end

-- Ends the Engine: SIGTERM, and what is left after a short wait (a Swarm manager takes
-- seconds to leave) is killed, each by its PID.
function D.stop(d)
  if not d or d.stopped then return end
  d.stopped = true
  P.signal(d.proc, "TERM")
  P.wait_for(function() return not P.alive(d.proc) end, 2, 0.05)
  for _, pid in ipairs(processes(d)) do sh("kill -KILL " .. pid .. " 2>/dev/null") end
  P.stop(d.proc)
  P.wait_for(function() return #processes(d) == 0 end, 10)
  -- what it mounted under its roots (overlays, the netns of its containers)
  sh("sh -c " .. P.quote("grep -o ' " .. d.dir .. "[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null"))
  sh("rm -rf " .. P.quote(d.dir))
end

return D
