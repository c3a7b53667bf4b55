-- The swarm driver beyond one machine (docs/cluster.md): a registry (docker-registry)
-- the Host pushes each program's image to, a Swarm manager advertising on a veth
-- address, and a second dockerd in a network namespace of its own joined as a worker;
-- the manager drained, so that the program runs on the worker. `hersh host --registry
-- ADDR --publish node`: the service names its image by digest in the registry, the
-- worker pulls it, and the Host reaches the WatcherAPI at the worker's address. Where
-- a network namespace, a registry or a second dockerd cannot start, the test is pending
-- with the reason.
local cjson = require "cjson"
local H = require "scripts.host_harness"
local D = require "scripts.dockerd"

local P = H.P
local call, create = H.call, H.create

local function query(t)
  return (cjson.encode(t):gsub("[^%w]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- The two nodes and the registry (D.cluster), made once; on failure, why (the test is pending).
local nodes, why_not
local function two_nodes()
  if nodes or why_not then return end
  nodes, why_not = D.cluster()
end

-- The forwarders to the worker: "uid args" of each systemd-socket-proxyd naming its address.
local function forwarders()
  local found = {}
  local p = io.popen("env -u LD_PRELOAD ps -eo uid=,args=")
  for line in p:lines() do
    if line:find("systemd-socket-proxyd " .. nodes.netns.there .. ":", 1, true) then found[#found + 1] = line end
  end
  p:close()
  return found
end

describe("the swarm driver across nodes", function()
  teardown(function() D.stop_cluster(nodes) end)

  it("refuses a --registry that is not HOST:PORT and a --publish other than socket or node, naming the flag", function()
    for _, bad in ipairs { { "--registry", "http://r:5000" }, { "--registry", "r" }, { "--publish", "all" } } do
      local dir = H.public_tmpdir()
      P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
      local proc = P.start{ P.hersh, "host", "--port", "0", "--storage", dir .. "/s", bad[1], bad[2] }
      P.defer(function() P.stop(proc) end)
      assert.is_truthy(P.wait_for(function() return not P.alive(proc) end, H.WAIT))
      assert.equal(2, P.status(proc))
      assert.is_truthy(P.stderr(proc):find(bad[1] .. " wants ", 1, true), P.stderr(proc))
    end
  end)

  it("pushes the image to a registry, runs the program on a worker in its own network namespace, reaches it through the Host's port, restarts it after a crash there, and after delete leaves no service, container or forwarder", function()
    two_nodes()
    if why_not then
      io.stderr:write("swarm_nodes_spec: skipped: ", why_not, "\n")
      pending("two Swarm nodes cannot run here: " .. why_not)
    end
    local m, w, r = nodes.manager, nodes.worker, nodes.registry
    local h = H.test_host{ args = { "--driver", "swarm", "--docker-socket", m.socket, "--registry", r.addr,
      "--publish", "node" } }
    local doc = create(h, H.counter_body("swarm", { name = "far" }))
    local id = doc.program_id
    local rec = H.start_ready(h, id)
    -- the service names the image by digest in the registry; its task runs on the worker
    local _, services = D.api(m, "GET", "/services?filters=" .. query{ label = { "dev.hersh.program=" .. id } })
    assert.equal(1, #services)
    local image = services[1].Spec.TaskTemplate.ContainerSpec.Image
    assert.truthy(image:find("^" .. r.addr:gsub("%p", "%%%0") .. "/hersh/[%w%-]+@sha256:%x+$"), image)
    local _, tasks = D.api(m, "GET", "/tasks?filters=" .. query{ service = { services[1].ID } })
    assert.equal(1, #tasks)
    assert.equal(nodes.worker_id, tasks[1].NodeID)
    assert.equal("running", tasks[1].Status.State)
    local _, on_worker = D.api(w, "GET", "/containers/json?filters=" .. query{ label = { "dev.hersh.program=" .. id } })
    assert.equal(1, #on_worker)
    local _, on_manager = D.api(m, "GET", "/containers/json")
    assert.equal(0, #on_manager)
    -- the registry holds the manifest the service names
    local digest = image:match("@(sha256:%x+)$")
    local repo = image:match("^[^/]+/(.-)@")
    local p = io.popen("env -u LD_PRELOAD curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -H "
      .. "'Accept: application/vnd.oci.image.manifest.v1+json' http://" .. r.addr .. "/v2/" .. repo .. "/manifests/" .. digest)
    assert.equal("200", p:read("a"))
    p:close()
    -- a message through the Host's proxy, and one to its port, reach the program on the worker
    local res = call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "one" })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, id, "Counter: 1"))
    res = P.post_json(rec.publish_port, "/watcher/message", { content = "two" })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, id, "Counter: 2"))
    -- the Host's port is forwarded by a process of the sandbox user, not root
    local fwd = forwarders()
    assert.equal(1, #fwd, table.concat(fwd, "; "))
    assert.truthy(fwd[1]:match("^%s*65534 "), fwd[1])
    -- a crash on the worker (its container killed there): seen through the task, restarted
    -- by the Host's policy, with the worker's /state kept
    assert.equal(204, (D.api(w, "POST", "/containers/" .. on_worker[1].Id .. "/kill?signal=KILL")))
    H.wait_record(h, id, function(r) return r.restarts == 1 and r.state == "Ready" and r.exit_signal == 9 end,
      "restarted after a KILL and Ready")
    assert.is_true(H.wait_log(h, id, "Boot: 2"))
    res = call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "three" })
    assert.equal(200, res.status, res.body)
    assert.is_true(H.wait_log(h, id, "Counter: 3"))
    assert.equal(1, #forwarders())
    -- delete: no service on the manager, no container on either node, no forwarder
    H.delete_gone(h, id)
    local left
    assert.is_truthy(P.wait_for(function()
      left = {}
      for _, d in ipairs { m, w } do
        local _, all = D.api(d, "GET", "/containers/json?all=1")
        for _, c in ipairs(type(all) == "table" and all or {}) do left[#left + 1] = "container " .. c.Id end
      end
      local _, svc = D.api(m, "GET", "/services")
      for _, s in ipairs(type(svc) == "table" and svc or {}) do left[#left + 1] = "service " .. s.Spec.Name end
      for _, l in ipairs(D.leftovers(m, id)) do left[#left + 1] = l end
      for _, f in ipairs(forwarders()) do left[#left + 1] = "forwarder " .. f end
      return #left == 0
    end, 30), "left: " .. table.concat(left or {}, ", "))
    H.terminate(h)()
  end)
end)
