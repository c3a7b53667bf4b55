-- The swarm driver (lua/host/sandbox/swarm.lua) against a private dockerd with a
-- one-node Swarm on 127.0.0.1 (spec/scripts/dockerd.lua), and `hersh image` archives
-- loaded into it. Where dockerd cannot start, every test here is pending with the reason.
local cjson = require "cjson"
local H = require "scripts.host_harness"
local D = require "scripts.dockerd"

local P = H.P
local call, ok_json, create, wait_state, wait_record = H.call, H.ok_json, H.create, H.wait_state, H.wait_record

-- A hostile program: at start it tries to write outside /state and says who it is; each
-- message is a URL it tries to reach.
local ATTACKER = [==[
local hersh = require "hersh"
io.stdout:setvbuf("line")
for _, path in ipairs { "/app/x", "/etc/passwd", "/opt/hersh/bin/hersh", "/x", "/state/x" } do
  local f = io.open(path, "a")
  print("write " .. path .. ": " .. (f and "ok" or "refused"))
  if f then f:close() end
end
local status = io.open("/proc/self/status"):read("a")
print("uid " .. status:match("Uid:%s*(%d+)") .. " gid " .. status:match("Gid:%s*(%d+)"))
local w = hersh.watcher{ id = "attacker" }
w:manage(function(msg, ctx)
  if not msg then return end
  local res, err = hersh.http.get(msg.content, { timeout = 5, connect_timeout = 2 })
  ctx:print("reach " .. msg.content .. ": " .. (res and ("answered " .. res.status) or ("failed " .. tostring(err))))
end)
assert(w:start())
hersh.run()
]==]

local d, why_not
local function engine()
  if not d and not why_not then
    d, why_not = D.start()
    if not d then io.stderr:write("swarm_spec: skipped: ", why_not, "\n") end
  end
  if not d then pending("dockerd cannot run here: " .. why_not) end
  return d
end

-- The Engine's containers of a service label (the program's tasks).
local function containers_of(program_id)
  local _, list = D.api(d, "GET", "/containers/json?filters="
    .. cjson.encode{ label = { "dev.hersh.program=" .. program_id } }:gsub("[^%w]", function(c)
      return string.format("%%%02X", c:byte())
    end))
  return type(list) == "table" and list or {}
end

describe("the swarm driver", function()
  teardown(function() D.stop(d) end)

  it("runs the walkthrough: create, Ready, a message through the proxy, a crash restarted by policy, an update in place, stop, delete, and leaves nothing in the Engine", function()
    engine()
    local h = H.test_host{ args = { "--driver", "swarm", "--docker-socket", d.socket } }
    local doc = create(h, H.counter_body("swarm", { name = "swarmed", limits = { memory = 128 * 1024 * 1024, pids = 64 } }))
    local id = doc.program_id
    local rec = H.start_ready(h, id)
    assert.equal("swarm", rec.isolation)
    -- a Swarm service of one running task, kept to the sandbox contract
    local list = containers_of(id)
    assert.equal(1, #list)
    local _, c = D.api(d, "GET", "/containers/" .. list[1].Id .. "/json")
    assert.is_true(c.HostConfig.ReadonlyRootfs)
    assert.same({ "ALL" }, c.HostConfig.CapDrop)
    assert.equal(128 * 1024 * 1024, c.HostConfig.Memory)
    assert.equal(64, c.HostConfig.PidsLimit)
    assert.equal("65534:65534", c.Config.User)
    -- no_new_privs (the daemon's default here), no capabilities, a seccomp filter
    local status = P.read(string.format("/proc/%d/status", c.State.Pid)) or ""
    assert.equal("1", status:match("NoNewPrivs:%s*(%d)"))
    assert.equal("0000000000000000", status:match("CapEff:%s*(%x+)"))
    assert.equal("2", status:match("Seccomp:%s*(%d)"))
    -- the Host's metrics read the container's cgroup
    local metrics = call(h, "GET", "/metrics").body
    local memory = tonumber(metrics:match('hersh_program_memory_bytes{program_id="' .. id:gsub("%-", "%%-") .. '"} (%d+)'))
    assert.is_true(memory ~= nil and memory > 0, "no memory of the program in /metrics")
    -- a message through the Host's proxy reaches the program in the service
    local res = P.post_json(rec.publish_port, "/watcher/message", { content = "one" })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, id, "Counter: 1"))
    -- a crash (its container killed from outside): the Host's policy restarts it, and
    -- /state (the service's volume) kept the count
    local st = D.api(d, "POST", "/containers/" .. list[1].Id .. "/kill?signal=KILL")
    assert.equal(204, st)
    rec = wait_record(h, id, function(r) return r.restarts == 1 and r.state == "Ready" end, "restarted and Ready")
    assert.equal(9, rec.exit_signal)
    assert.is_true(H.wait_log(h, id, "Boot: 2"))
    res = P.post_json(rec.publish_port, "/watcher/message", { content = "two" })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, id, "Counter: 2"))
    -- an update in place: a new revision (a new image) takes over while Ready
    local v2 = H.MAIN_LUA .. "\n-- revision 2\n"
    local up = call(h, "PUT", "/programs/swarmed", { dockerfile = H.DOCKERFILE, src_files = { ["main.lua"] = v2 },
      limits = { memory = 128 * 1024 * 1024, pids = 64 } })
    assert.equal(202, up.status, up.body)
    rec = wait_record(h, id, function(r) return r.revision == 2 and r.state == "Ready" and r.updating_revision == cjson.null end,
      "at revision 2 and Ready")
    assert.is_true(P.wait_for(function() return #containers_of(id) == 1 end, 30), "the old revision's task is gone")
    -- stop: no task left; delete: nothing of the program left in the Engine
    ok_json(call(h, "POST", "/programs/" .. id .. "/stop"), 202, "stop")
    wait_state(h, id, "Stopped")
    assert.equal(0, #containers_of(id))
    H.delete_gone(h, id)
    local left
    assert.is_truthy(P.wait_for(function()
      left = {}
      for _, part in ipairs { id, doc.build_id, rec.build_id } do
        for _, l in ipairs(D.leftovers(d, part)) do left[#left + 1] = l end
      end
      for _, l in ipairs(D.leftovers(d, "hersh-")) do left[#left + 1] = l end
      return #left == 0
    end, 30), "left in the Engine: " .. table.concat(left or {}, ", "))
    H.terminate(h)()
  end)

  it("keeps an attacker to its container: no write outside /state, no Host loopback, its own user", function()
    engine()
    local h = H.test_host{ args = { "--driver", "swarm", "--docker-socket", d.socket } }
    local doc = create(h, { user_id = "swarm", dockerfile = H.DOCKERFILE, src_files = { ["main.lua"] = ATTACKER } })
    local rec = H.start_ready(h, doc.program_id)
    for _, path in ipairs { "/app/x", "/etc/passwd", "/opt/hersh/bin/hersh", "/x" } do
      assert.is_true(H.wait_log(h, doc.program_id, "write " .. path .. ": refused"), "wrote " .. path)
    end
    assert.is_true(H.wait_log(h, doc.program_id, "write /state/x: ok"))
    assert.is_true(H.wait_log(h, doc.program_id, "uid 65534 gid 65534"))
    -- the Host's REST API listens on the node's 127.0.0.1: not the container's
    local target = "http://127.0.0.1:" .. h.port .. "/health"
    local res = P.post_json(rec.publish_port, "/watcher/message", { content = target })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, doc.program_id, "reach " .. target .. ": failed"),
      H.logs(h, doc.program_id, "?tail=20"))
    H.terminate(h)()
  end)

  it("cleans up after a Host killed with -9: the next Host removes the services it left", function()
    engine()
    local storage = H.public_tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(storage)) end)
    local args = { "--driver", "swarm", "--docker-socket", d.socket }
    local h1 = H.start_host{ storage = storage .. "/s", args = args }
    P.defer(function() H.stop_host(h1) end)
    local doc = create(h1, H.counter_body("swarm"))
    H.start_ready(h1, doc.program_id)
    local first = containers_of(doc.program_id)
    assert.equal(1, #first)
    assert.is_true(P.signal(h1.proc, "KILL"))
    P.wait_exit(h1.proc, 20)
    local h2 = H.start_host{ storage = storage .. "/s", ports = { h1.first, h1.last }, args = args }
    P.defer(function() H.stop_host(h2) end)
    -- the program was meant to run: it runs again, in a new service; the old one is gone
    wait_state(h2, doc.program_id, "Ready")
    assert.is_truthy(P.wait_for(function()
      local now = containers_of(doc.program_id)
      return #now == 1 and now[1].Id ~= first[1].Id
    end, 30), "the killed Host's service is still there")
    H.terminate(h2)()
    assert.is_truthy(P.wait_for(function() return #containers_of(doc.program_id) == 0 end, 30))
  end)

  it("refuses to run a program where the Engine leaves no_new_privs off", function()
    engine()
    local plain, why = D.start{ no_new_privileges = false }
    assert(plain, why)
    P.defer(function() D.stop(plain) end)
    local h = H.test_host{ args = { "--driver", "swarm", "--docker-socket", plain.socket } }
    local doc = create(h, H.counter_body("swarm", { restart_policy = { mode = "no" } }))
    ok_json(call(h, "POST", "/programs/" .. doc.program_id .. "/start"), 202, "start")
    local rec = wait_record(h, doc.program_id, function(r) return r.state == "Error" or r.state == "Stopped" end,
      "ended")
    assert.truthy(tostring(rec.error_msg):find("no-new-privileges", 1, true), tostring(rec.error_msg))
    assert.is_truthy(P.wait_for(function()
      local _, services = D.api(plain, "GET", "/services")
      local _, list = D.api(plain, "GET", "/containers/json?all=1")
      return #services == 0 and #list == 0
    end, 30), "a service or container is left")
    H.terminate(h)()
  end)

  it("hersh image: docker load takes the archive, and it serves /watcher/status read-only as a plain user", function()
    engine()
    local dir = P.tmpdir()
    P.defer(function() os.execute("env -u LD_PRELOAD rm -rf " .. P.quote(dir)) end)
    local out = P.start{ P.hersh, "image", H.FIXTURE, "-o", dir .. "/counter.tar", "--json", dir = dir }
    assert.equal(0, P.wait_exit(out, 120), P.stderr(out))
    local made = cjson.decode(P.stdout(out))
    local load = io.popen("env -u LD_PRELOAD curl -s --max-time 120 --unix-socket " .. P.quote(d.socket)
      .. " -X POST -H 'Content-Type: application/x-tar' --data-binary @" .. P.quote(dir .. "/counter.tar")
      .. " http://docker/v1.41/images/load")
    local said = load:read("a")
    load:close()
    assert.truthy(said:find("Loaded image: " .. made.name, 1, true), said)
    local st, c = D.api(d, "POST", "/containers/create", { Image = made.name, User = "65534:65534",
      HostConfig = { ReadonlyRootfs = true, CapDrop = { "ALL" } } })
    assert.equal(201, st, cjson.encode(c))
    P.defer(function()
      D.api(d, "DELETE", "/containers/" .. c.Id .. "?force=1&v=1")
      D.api(d, "DELETE", "/images/" .. made.name)
    end)
    assert.equal(204, (D.api(d, "POST", "/containers/" .. c.Id .. "/start")))
    local _, info = D.api(d, "GET", "/containers/" .. c.Id .. "/json")
    assert.is_true(info.State.Running and info.State.Pid > 0, cjson.encode(info.State) .. " "
      .. tostring(select(2, D.api(d, "GET", "/containers/" .. c.Id .. "/logs?stdout=1&stderr=1"))))
    -- its WatcherAPI on the declared port, in the container's own network namespace
    local answer = P.wait_for(function()
      local p = io.popen("env -u LD_PRELOAD nsenter -t " .. string.format("%d", info.State.Pid)
        .. " -n curl -s --max-time 2 http://127.0.0.1:8080/watcher/status")
      local body = p:read("a")
      p:close()
      return body:find('"state":"Ready"', 1, true) and body
    end, 30, 0.1)
    assert.truthy(answer, "no answer on port 8080 in the container")
    assert.equal("counter", cjson.decode(answer).watcherID)
    assert.same({ ["8080/tcp"] = {} }, info.Config.ExposedPorts)
    assert.truthy(info.Config.Volumes["/state"])
    -- it wrote /state (its volume) as that user
    local _, logs = D.api(d, "GET", "/containers/" .. c.Id .. "/logs?stdout=1&stderr=1")
    assert.truthy(tostring(logs):find("Boot: 1", 1, true), tostring(logs))
  end)
end)
