-- The gVisor driver (lua/host/sandbox/gvisor.lua) end to end, with a real Host, real
-- runsc and real HTTP: "isolation" at create (and its refusals), the program's own
-- kernel (gVisor's), its WatcherAPI reached through the port as under bwrap, its
-- sandbox (read-only root, /state, private /tmp, no network, no capabilities, the
-- environment inside only; RUN steps in gVisor too), stop through runsc kill, exit seen at once, and nothing
-- left behind after stop, delete or a Host killed with -9.
-- Where gVisor cannot start, every test here is pending with the reason.
local H = require "scripts.host_harness"
local gvisor = require "host.sandbox.gvisor"
local fs = require("hersh.os").fs

local P, call, create, wait_state, start_ready, assert_error, ok_json, counter_body, has, logs, wait_log =
  H.P, H.call, H.create, H.wait_state, H.start_ready, H.assert_error, H.ok_json, H.counter_body, H.has, H.logs,
  H.wait_log

local usable, why_not = gvisor.check()
if not usable then io.stderr:write("gvisor_spec: skipped: ", why_not, "\n") end

local function need_gvisor()
  if not usable then pending("gVisor cannot run here: " .. why_not) end
  return usable
end

-- The output of a host tool, run without the sanitizer runtimes the spec runner may
-- preload (they would hang or fail it).
local function shell(cmd)
  local out = io.popen("env -u LD_PRELOAD " .. cmd)
  local text = out:read("a")
  out:close()
  return text
end

local function act(h, id, action) return call(h, "POST", "/programs/" .. id .. "/" .. action) end

-- runsc's containers under the Host's --root, and the bundles left.
local function containers(h)
  local ids = {}
  for id in shell("runsc --root " .. P.quote(h.storage .. "/gvisor/root") .. " list -quiet 2>/dev/null"):gmatch("[^\n]+") do
    ids[#ids + 1] = id
  end
  return ids
end

local function leftovers(h)
  return #containers(h) + #(H.list_names(h.storage .. "/gvisor/bundles"))
end

-- A program that prints what its sandbox looks like from inside, then serves.
local PROBE_LUA = [[
local hersh = require "hersh"
io.stdout:setvbuf("line")
local function read(path)
  local f = io.open(path, "r")
  if not f then return "none" end
  local s = f:read("a")
  f:close()
  return s
end
print("kernel: " .. (read("/proc/version"):match("^(%S+ %S+ %S+)") or "?"))
print("built under: " .. read("/app/built"))
print("caps: " .. (read("/proc/self/status"):match("CapEff:%s*(%x+)") or "?"))
print("uid: " .. (read("/proc/self/status"):match("Uid:%s*(%d+)") or "?"))
local ok = io.open("/app/x", "w")
print("root writable: " .. tostring(ok ~= nil))
local st = io.open("/state/mark", "w")
print("state writable: " .. tostring(st ~= nil))
if st then st:write("inside") st:close() end
print("secret: " .. tostring(os.getenv("SECRET")))
print("net: " .. read("/proc/net/dev"):gsub("\n", "|"))
local w = hersh.watcher{ id = "probe" }
w:manage(function() end)
w:start()
]]
-- Its RUN step notes the kernel it ran under: RUN steps of a gvisor program run in gVisor too.
local PROBE_DOCKERFILE = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\nRUN cut -d' ' -f1-3 /proc/version > /app/built\n"
  .. 'CMD ["hersh", "run", "/app/main.lua"]\n'

describe("the gvisor driver", function()
  local h
  before_each(function()
    if usable then h = H.test_host() end
  end)

  it("refuses a bad isolation with a 400 naming it, and keeps bwrap the default", function()
    if not need_gvisor() then return end
    local res = call(h, "POST", "/programs", counter_body("u1", { isolation = "kvm" }))
    assert_error(res, 400, "bad isolation")
    assert.is_true(has(res.json.message, "isolation"), res.body)
    assert.is_true(has(res.json.message, "kvm"), res.body)
    assert_error(call(h, "POST", "/programs", counter_body("u1", { isolation = 7 })), 400, "isolation a number")
    local doc = create(h, counter_body("u1"))
    assert.equal("bwrap", ok_json(call(h, "GET", "/programs/" .. doc.program_id)).isolation)
    local g = create(h, counter_body("u1", { isolation = "gvisor" }))
    assert.equal("gvisor", ok_json(call(h, "GET", "/programs/" .. g.program_id)).isolation)
    -- the isolation is fixed: an update cannot weaken it
    local put = call(h, "PUT", "/programs/" .. g.program_id, counter_body("u1", { isolation = "bwrap" }))
    assert_error(put, 400, "isolation changed by PUT")
    assert.is_true(has(put.json.message, "isolation"), put.body)
  end)

  it("runs the counter under gVisor's kernel, its WatcherAPI on the port, state kept across restarts", function()
    if not need_gvisor() then return end
    local doc = create(h, counter_body("u1", { isolation = "gvisor" }))
    local id, port = doc.program_id, doc.publish_port
    assert_error(P.get(port, "/watcher/status"), 503, "the port before the start")
    start_ready(h, id)
    local status = P.get(port, "/watcher/status")
    assert.equal(200, status.status, status.body)
    assert.equal("counter", status.json.watcherID)
    assert.equal(200, call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "tick" }).status)
    assert.is_true(wait_log(h, id, "Counter: 1"), logs(h, id))
    -- the program's processes are no host processes: runsc is, under the Host's --root
    assert.equal(1, #containers(h))
    assert.equal(0, #H.program_pids(id))
    ok_json(act(h, id, "stop"), 202, "stop")
    wait_state(h, id, "Stopped")
    assert_error(P.get(port, "/watcher/status"), 503, "the port of a Stopped program")
    assert.equal(0, leftovers(h), "a container or bundle outlived the stop")
    start_ready(h, id)
    assert.equal(200, call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "tick" }).status)
    assert.is_true(wait_log(h, id, "Counter: 2"), logs(h, id))
    assert.is_true(has(logs(h, id, "?tail=1000"), "Boot: 2"), logs(h, id))
    H.assert_clean_exit(h)
    assert.equal(0, leftovers(h), "a container or bundle outlived the Host")
  end)

  it("confines the program: gVisor's kernel, read-only root, no capabilities, loopback only, env inside only", function()
    if not need_gvisor() then return end
    local doc = create(h, { user_id = "u1", dockerfile = PROBE_DOCKERFILE, src_files = { ["main.lua"] = PROBE_LUA },
      isolation = "gvisor", env = { SECRET = "s3cr3t-gv" } })
    local id = doc.program_id
    start_ready(h, id)
    local text = logs(h, id, "?tail=100")
    local host_kernel = P.read("/proc/version"):match("^(%S+ %S+ %S+)")
    local kernel = text:match("kernel: ([^\n]+)")
    assert.is_string(kernel, text)
    assert.are_not.equal(host_kernel, kernel, "the program saw the host's kernel")
    assert.equal(kernel, text:match("built under: ([^\n]+)"), "the RUN step ran under another kernel")
    assert.is_true(has(text, "caps: 0000000000000000"), text)
    assert.is_true(has(text, "root writable: false"), text)
    assert.is_true(has(text, "state writable: true"), text)
    assert.is_true(has(text, "secret: s3cr3t-gv"), text)
    local net = text:match("net: ([^\n]+)")
    assert.is_string(net, text)
    for iface in net:gmatch("|%s*([%w]+):") do assert.equal("lo", iface, net) end
    -- what it wrote in /state is on the host, the sandbox user's, as under bwrap
    local mark = H.program_dir(h, id) .. "/state/mark"
    assert.equal("inside", P.read(mark))
    assert.equal("65534\n", shell("stat -c %u " .. P.quote(mark)))
    -- the secret is in no command line and no environment of a host process
    for _, pid in ipairs(P.processes_under(h.storage)) do
      local env = P.read("/proc/" .. pid .. "/environ") or ""
      local cmd = P.read("/proc/" .. pid .. "/cmdline") or ""
      assert.is_nil(env:find("s3cr3t-gv", 1, true), "the secret in the environment of " .. pid)
      assert.is_nil(cmd:find("s3cr3t-gv", 1, true), "the secret on the command line of " .. pid)
    end
  end)

  it("sees an exit at once and a crash restarts; delete leaves nothing", function()
    if not need_gvisor() then return end
    local doc = create(h, counter_body("u1", { isolation = "gvisor", restart_policy = { mode = "always",
      base_delay = 0.1, max_delay = 0.1 } }))
    local id = doc.program_id
    local ready = start_ready(h, id)
    -- the program is killed inside the sandbox: runsc kill, as an OOM or a crash would
    local c = containers(h)[1]
    assert.is_string(c)
    assert.is_true(os.execute("env -u LD_PRELOAD runsc --root " .. P.quote(h.storage .. "/gvisor/root")
      .. " kill --all " .. c .. " KILL >/dev/null 2>&1") == true)
    local r = H.wait_record(h, id, function(rec) return (rec.restarts or 0) >= 1 and rec.state == "Ready" end,
      "restarted and Ready")
    assert.are_not.equal(ready.pid, r.pid)
    assert.equal(9, r.exit_signal)
    assert.equal(200, call(h, "DELETE", "/programs/" .. id).status)
    assert.is_true(P.wait_for(function() return call(h, "GET", "/programs/" .. id).status == 404 end, H.WAIT) == true)
    assert.is_true(P.wait_for(function() return leftovers(h) == 0 end, 20) == true, "left: " .. leftovers(h))
    assert.is_nil(P.read(H.program_dir(h, id) .. "/state/count"))
  end)

  it("stops with SIGTERM through runsc kill: the program's cleanup runs", function()
    if not need_gvisor() then return end
    local doc = create(h, counter_body("u1", { isolation = "gvisor" }))
    local id = doc.program_id
    start_ready(h, id)
    ok_json(act(h, id, "stop"), 202, "stop")
    local r = wait_state(h, id, "Stopped")
    -- hersh run stops its watchers on SIGTERM and exits 0: no SIGKILL was needed
    assert.equal(0, r.exit_code, call(h, "GET", "/programs/" .. id).body)
    assert.equal(H.P.null, r.exit_signal)
    assert.equal(0, leftovers(h))
  end)

  it("relays the port to the program's socket only: a link put in its place leads nowhere", function()
    if not need_gvisor() then return end
    -- the victim: a WatcherAPI on a unix socket of the host, which the Host must never reach
    local dir = H.public_tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/victim.lua", 'local w = require("hersh").watcher{ id = "victim" }\nw:manage(function() end)\nw:start()\n')
    local victim = P.start{ P.hersh, "run", dir .. "/victim.lua", env = { HERSH_LISTEN_UNIX = dir .. "/victim.sock" } }
    P.defer(function() P.stop(victim) end)
    assert.is_true(P.wait_for(function() return fs.stat(dir .. "/victim.sock") ~= nil end, 20) == true, P.stderr(victim))
    local doc = create(h, { user_id = "u1", dockerfile = PROBE_DOCKERFILE, isolation = "gvisor",
      env = { VICTIM = dir .. "/victim.sock" }, src_files = { ["main.lua"] = [[
local hersh = require "hersh"
io.stdout:setvbuf("line")
local w = hersh.watcher{ id = "swapper" }
w:manage(function()
  os.remove("/dev/hersh/api.sock")
  print("swapped: " .. tostring(os.execute("ln -s " .. os.getenv("VICTIM") .. " /dev/hersh/api.sock")))
end)
w:start()
]] } })
    local id, port = doc.program_id, doc.publish_port
    start_ready(h, id)
    assert.equal("swapper", P.get(port, "/watcher/status").json.watcherID)
    -- from inside, the link cannot even be made (gVisor's Gofer refuses it)...
    assert.equal(200, P.send(port, "swap").status)
    assert.is_true(wait_log(h, id, "swapped: "), logs(h, id))
    -- ...and were it made, the Host would not follow it: put there from outside
    local sock = H.program_dir(h, id) .. "/api/api.sock"
    if not has(logs(h, id, "?tail=1000"), "swapped: true") then
      assert.is_true(os.remove(sock))
      assert(fs.symlink(dir .. "/victim.sock", sock))
    end
    assert.equal(dir .. "/victim.sock\n", shell("readlink " .. P.quote(sock)), "no link in place: the attack proves nothing")
    -- the control: the link leads to the victim for whoever follows it
    local control = shell("curl -s --max-time 5 --unix-socket " .. P.quote(sock) .. " http://x/watcher/status")
    assert.is_true(has(control, '"watcherID":"victim"'), "the victim does not answer: the attack proves nothing")
    local res = P.get(port, "/watcher/status")
    assert_error(res, 503, "the port after the swap")
    -- the program is untouched otherwise, and a restart serves again
    assert.equal("Ready", ok_json(call(h, "GET", "/programs/" .. id)).state)
    ok_json(act(h, id, "restart"), 202, "restart")
    assert.is_true(P.wait_for(function() return P.get(port, "/watcher/status").status == 200 end, H.WAIT) == true)
    assert.equal("swapper", P.get(port, "/watcher/status").json.watcherID)
  end)

  it("cleans up after a Host killed with -9: the next Host finds no container nor bundle", function()
    if not need_gvisor() then return end
    local storage = H.public_tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(storage)) end)
    local h1 = H.start_host{ storage = storage .. "/s" }
    P.defer(function() H.stop_host(h1) end)
    local doc = create(h1, counter_body("u1", { isolation = "gvisor" }))
    start_ready(h1, doc.program_id)
    assert.equal(1, #containers(h1))
    assert.is_true(P.signal(h1.proc, "KILL"))
    P.wait_exit(h1.proc, 20)
    local h2 = H.start_host{ storage = storage .. "/s", ports = { h1.first, h1.last } }
    P.defer(function() H.stop_host(h2) end)
    -- the program was meant to run: it starts again, in a new container, the old one gone
    wait_state(h2, doc.program_id, "Ready")
    assert.equal(1, #containers(h2))
    assert.equal(1, #H.list_names(h2.storage .. "/gvisor/bundles"))
    H.assert_clean_exit(h2)
    assert.equal(0, leftovers(h2))
  end)
end)

describe("hersh run told to listen on a unix socket (HERSH_LISTEN_UNIX)", function()
  it("serves its WatcherAPI there, and takes the variable once", function()
    local dir = H.public_tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/main.lua", 'local w = require("hersh").watcher{ id = "u" }\nw:manage(function() end)\n'
      .. 'print("seen: " .. tostring(os.getenv("HERSH_LISTEN_UNIX")))\nio.stdout:flush()\nw:start()\n')
    P.write(dir .. "/api.sock", "a stale file where the socket goes\n")
    local proc = P.start{ P.hersh, "run", dir .. "/main.lua", env = { HERSH_LISTEN_UNIX = dir .. "/api.sock" } }
    P.defer(function() P.stop(proc) end)
    local answer
    assert.is_true(P.wait_for(function()
      answer = shell("curl -s --max-time 2 --unix-socket " .. P.quote(dir .. "/api.sock")
        .. " http://x/watcher/status 2>/dev/null")
      return has(answer, '"watcherID":"u"')
    end, 20) == true, tostring(answer) .. P.stderr(proc))
    assert.is_true(has(P.stdout(proc), "seen: nil"), P.stdout(proc))
    -- it names the socket it serves, not an address it does not listen on
    assert.is_true(P.wait_stderr(proc, "hersh: WatcherAPI of u on unix:" .. dir .. "/api.sock\n", 20), P.stderr(proc))
    assert.is_nil(P.stderr(proc):find("http://", 1, true), P.stderr(proc))
  end)

  it("exits 2 naming the path when it cannot listen there", function()
    local proc = P.start{ P.hersh, "run", "/nonexistent.lua", env = { HERSH_LISTEN_UNIX = "/nonexistent-dir/api.sock" } }
    P.defer(function() P.stop(proc) end)
    assert.equal(2, P.wait_exit(proc, 20))
    assert.is_true(has(P.stderr(proc), "cannot listen on /nonexistent-dir/api.sock"), P.stderr(proc))
    local long = P.start{ P.hersh, "run", "/nonexistent.lua", env = { HERSH_LISTEN_UNIX = "/" .. string.rep("a", 200) } }
    P.defer(function() P.stop(long) end)
    assert.equal(2, P.wait_exit(long, 20))
    assert.is_true(has(P.stderr(long), "HERSH_LISTEN_UNIX wants a path"), P.stderr(long))
  end)
end)
