-- A private Docker Engine for the specs: dockerd with its own data and exec roots and
-- API socket in a temporary folder, no bridge (a container has loopback only) and no
-- iptables rules, no-new-privileges by default, and a one-node Swarm on 127.0.0.1 (two
-- may run at once: the second's gossip port is taken, which one node does not need).
-- D.start() -> d, or nil, why it cannot run here (the spec is then skipped with it);
-- D.stop(d) ends it by its PID, then the containerd-shims of its containers, and
-- removes the folder. Every wait is bounded. D.cluster() makes two nodes (a worker in a
-- network namespace) and a registry, for the swarm driver across nodes.
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
-- dockerd), for the spec that checks the driver refuses it. opts.advertise: the address
-- the Swarm manager listens and advertises on (default 127.0.0.1); opts.swarm = false:
-- no Swarm (a node that joins one, D.join); opts.netns: run in that network namespace;
-- opts.bridge: keep dockerd's default bridge (Swarm publishes a port in host mode only
-- for a container on one); opts.insecure_registry: ADDR:PORT it may pull from over HTTP.
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
  local argv = { "env", "-u", "LD_PRELOAD", dir = d.dir .. "/proc" }
  -- nsenter, not ip netns exec: that one mounts a /sys of its own, without the cgroups
  if opts.netns then table.move({ "nsenter", "--net=/run/netns/" .. opts.netns }, 1, 2, #argv + 1, argv) end
  table.move({ D.DOCKERD, "--data-root", d.dir .. "/data", "--exec-root", d.dir .. "/exec", "-H", "unix://" .. d.socket,
    "--pidfile", d.dir .. "/docker.pid", "--iptables=false", "--ip-masq=false" }, 1, 11, #argv + 1, argv)
  if not opts.bridge then table.move({ "--bridge", "none" }, 1, 2, #argv + 1, argv) end
  if opts.no_new_privileges ~= false then argv[#argv + 1] = "--no-new-privileges" end
  if opts.insecure_registry then table.move({ "--insecure-registry", opts.insecure_registry }, 1, 2, #argv + 1, argv) end
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
  if opts.swarm == false then return d end
  local addr = opts.advertise or "127.0.0.1"
  local ok, status, doc = pcall(function()
    local port = free_port()
    d.swarm_addr = addr .. ":" .. port
    return D.api(d, "POST", "/swarm/init", { ListenAddr = d.swarm_addr,
      AdvertiseAddr = d.swarm_addr, DataPathPort = free_port() })
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

-- The Engine `worker` (D.start{swarm = false}) joins the Swarm of `manager` as a
-- worker, advertising addr. -> true, or nil, why.
function D.join(worker, manager, addr)
  local _, swarm = D.api(manager, "GET", "/swarm")
  local token = type(swarm) == "table" and swarm.JoinTokens and swarm.JoinTokens.Worker
  if not token then return nil, "no join token: " .. cjson.encode(swarm) end
  local port = free_port()
  local status, doc = D.api(worker, "POST", "/swarm/join", { ListenAddr = addr .. ":" .. port,
    AdvertiseAddr = addr .. ":" .. port, RemoteAddrs = { manager.swarm_addr }, JoinToken = token })
  if status ~= 200 then return nil, "docker swarm join fails here: " .. tostring(type(doc) == "table" and doc.message or doc) end
  return true
end

-- A network namespace of its own joined to this one by a veth pair on the /30 of
-- `here` (10.231.7.1: this side) and `there` (.2: the namespace's). -> n {name, link,
-- here, there}, or nil, why. D.remove_netns(n) removes both, by the names made here.
function D.netns(here, there)
  local tag = string.format("%04x", math.random(0, 0xffff))
  local n = { name = "hersh-r" .. tag, link = "hr" .. tag .. "a", peer = "hr" .. tag .. "b", here = here, there = there }
  local steps = {
    "ip netns add " .. n.name,
    "ip link add " .. n.link .. " type veth peer name " .. n.peer,
    "ip link set " .. n.peer .. " netns " .. n.name,
    "ip addr add " .. here .. "/30 dev " .. n.link,
    "ip link set " .. n.link .. " up",
    "ip netns exec " .. n.name .. " ip addr add " .. there .. "/30 dev " .. n.peer,
    "ip netns exec " .. n.name .. " ip link set " .. n.peer .. " up",
    "ip netns exec " .. n.name .. " ip link set lo up",
  }
  for _, step in ipairs(steps) do
    if not sh(step .. " 2>/dev/null") then
      D.remove_netns(n)
      return nil, "cannot make a network namespace here (" .. step .. " fails)"
    end
  end
  return n
end

function D.remove_netns(n)
  if not n then return end
  sh("ip link del " .. n.link .. " 2>/dev/null")
  sh("ip netns del " .. n.name .. " 2>/dev/null")
end

-- A registry v2 (Debian's docker-registry) on addr (HOST:PORT) with its storage in a
-- temporary folder. -> r {addr, proc, dir}, or nil, why. D.stop_registry(r) ends it by
-- its PID and removes the folder.
D.REGISTRY = "/usr/bin/docker-registry"
function D.registry(addr)
  if not P.exists(D.REGISTRY) then return nil, "docker-registry is not installed (" .. D.REGISTRY .. ")" end
  local r = { addr = addr, dir = P.tmpdir() }
  P.write(r.dir .. "/config.yml", table.concat({ "version: 0.1", "storage:", "  filesystem:",
    "    rootdirectory: " .. r.dir .. "/data", "  delete:", "    enabled: true", "http:", "  addr: " .. addr, "" }, "\n"))
  r.proc = P.start{ "env", "-u", "LD_PRELOAD", D.REGISTRY, "serve", r.dir .. "/config.yml", dir = r.dir }
  local up = P.wait_for(function()
    if not P.alive(r.proc) then return "ended" end
    return sh("curl -sf --max-time 2 --noproxy '*' http://" .. addr .. "/v2/ >/dev/null 2>&1") and "up"
  end, 20, 0.1)
  if up ~= "up" then
    local why = P.stderr(r.proc):match("([^\n]+)\n?$") or "no answer"
    D.stop_registry(r)
    return nil, "docker-registry cannot start here: " .. why
  end
  return r
end

function D.stop_registry(r)
  if not r then return end
  P.stop(r.proc)
  sh("rm -rf " .. P.quote(r.dir))
end

-- Two Swarm nodes on this machine: a network namespace joined by a veth pair on a /30
-- of 10.231.N.0 (N random: two runs at once differ), a registry on this side's
-- address, a manager advertising there (drained: it takes no task), and a worker, a
-- dockerd with a bridge in the namespace, joined to it. -> c {netns, registry, manager,
-- worker, worker_id}, or nil, why (what could not start); D.stop_cluster(c) ends all
-- of it, each by its PID or by the names made here.
function D.cluster()
  local subnet = math.random(0, 255)
  local here, there = "10.231." .. subnet .. ".1", "10.231." .. subnet .. ".2"
  local c, why = {}, nil
  local function step(what, v, err)
    if not v then why = what .. ": " .. tostring(err) end
    return v
  end
  c.netns = step("netns", D.netns(here, there))
  local free = require("scripts.host_harness").free_range
  c.registry = not why and step("registry", D.registry(here .. ":" .. (free(1, 32001, 33000)))) or nil
  c.manager = not why and step("manager", D.start{ advertise = here, insecure_registry = c.registry.addr }) or nil
  c.worker = not why and step("worker", D.start{ swarm = false, netns = c.netns.name, bridge = true,
    insecure_registry = c.registry.addr }) or nil
  if not why then step("join", D.join(c.worker, c.manager, there)) end
  if not why then
    local _, info = D.api(c.manager, "GET", "/info")
    local _, node = D.api(c.manager, "GET", "/nodes/" .. info.Swarm.NodeID)
    node.Spec.Availability = "drain"
    local st = D.api(c.manager, "POST", string.format("/nodes/%s/update?version=%d", node.ID,
      math.tointeger(node.Version.Index)), node.Spec)
    if st ~= 200 then why = "cannot drain the manager: " .. tostring(st) end
    local _, winfo = D.api(c.worker, "GET", "/info")
    c.worker_id = winfo.Swarm.NodeID
  end
  if why then
    D.stop_cluster(c)
    return nil, why
  end
  return c
end

function D.stop_cluster(c)
  if not c then return end
  D.stop(c.worker)
  D.stop(c.manager)
  D.stop_registry(c.registry)
  D.remove_netns(c.netns)
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
