-- Attack: a program damages the listening socket of its published port (fd 3, the
-- very socket and file description the Host answers 503 on while no process serves
-- the port), then exits. Nothing it did may reach the Host or the port's future: the
-- Host's loop stays idle (no busy polling of a socket that cannot accept), the port
-- answers 503 from the Host, and the next process serves it normally.
--
-- The attacker is spec/programs/port_breaker: its first run damages fd 3 the way
-- $BREAK says and exits 3 (restart policy "no": the program is then in Error); a
-- start after that serves the counter of spec/programs/host_counter.
--
-- The Host's CPU is bounded, not timed: over a few seconds of idleness it must use a
-- small fraction of them (a spinning loop uses all of them).
local H = require "scripts.host_harness"
local P = H.P

local FIXTURE = "spec/programs/port_breaker"
local DOCKERFILE = assert(P.read(FIXTURE .. "/Dockerfile"))
local BREAKER_C = assert(P.read(FIXTURE .. "/breaker.c"))
local IDLE = 3 -- seconds the Host's CPU is watched for
local CPU_MAX = 0.3 -- seconds of CPU it may use meanwhile (a spinning Host uses 2 to 3)

local function clock_ticks()
  local p = assert(io.popen("getconf CLK_TCK"))
  local n = tonumber(p:read("a"))
  p:close()
  return assert(n, "getconf CLK_TCK")
end
local CLK_TCK = clock_ticks()

-- Seconds of CPU (user + system) the process has used so far.
local function cpu_seconds(pid)
  local stat = assert(P.read("/proc/" .. pid .. "/stat"), "no process " .. pid)
  local fields = {}
  for f in stat:match("^%d+ %(.*%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK -- utime, stime: fields 14, 15
end

-- The ways a program can damage a listening socket it shares with the Host.
local ATTACKS = {
  shut_rd = "shutdown(3, SHUT_RD): the socket no longer listens",
  shut_rdwr = "shutdown(3, SHUT_RDWR): the socket no longer listens",
  no_reuse_shut = "SO_REUSEADDR off, then shutdown: no new socket may bind the port beside it",
  drop_all = "a locked socket filter that drops every packet",
  backlog0 = "listen(3, 0): a backlog of nothing",
  blocking = "O_NONBLOCK cleared on the shared file description",
}
local ORDER = { "shut_rd", "shut_rdwr", "no_reuse_shut", "drop_all", "backlog0", "blocking" }

describe("attack: a program damages its port's socket and exits", function()
  local h

  lazy_setup(function() h = H.start_host{ ports = { H.free_range(8) } } end)
  lazy_teardown(function() H.stop_host(h) end)

  for _, how in ipairs(ORDER) do
    it(ATTACKS[how] .. ": the Host stays idle, answers 503, and the next process serves", function()
      local created = H.create(h, { user_id = "mallory", dockerfile = DOCKERFILE, env = { BREAK = how },
        restart_policy = { mode = "no" },
        src_files = { ["breaker.c"] = BREAKER_C, ["main.lua"] = H.MAIN_LUA } })
      local id, port = created.program_id, created.publish_port
      finally(function() H.call(h, "DELETE", "/programs/" .. id) end) -- passed or not
      H.ok_json(H.act(h, id, "start"), 202, "start")
      local broken = H.wait_state(h, id, "Error")
      assert.equal(3, broken.exit_code, broken.error_msg)
      local log = H.logs(h, id, "?tail=100")
      if not H.has(log, "breaker: " .. how .. ": done") then
        -- The sandbox refused the damage: the checks below still hold, more easily.
        print("attack_port: the sandbox refused " .. how .. ": " .. log)
      end

      local before = cpu_seconds(h.proc.pid)
      P.sleep(IDLE)
      local used = cpu_seconds(h.proc.pid) - before
      assert.is_true(used < CPU_MAX, string.format("the Host used %.2f s of CPU in %d s idle", used, IDLE))

      H.assert_error(P.get(port, "/watcher/status"), 503, "the port after the attack")
      assert.is_nil(P.stderr(h.proc):find("no fresh socket", 1, true), P.stderr(h.proc))

      H.ok_json(H.act(h, id, "start"), 202, "start again")
      H.wait_state(h, id, "Ready")
      local status = P.get(port, "/watcher/status")
      assert.equal(200, status.status, "the next process serves the port: " .. status.body)
      assert.is_table(status.json, status.body)
    end)
  end
end)

-- The Host out of descriptors (its soft RLIMIT_NOFILE lowered to 3 with prlimit): a
-- connection to a port it answers on cannot be accepted. The responder must neither
-- spin on the listener that stays readable nor give up: once descriptors are back,
-- the port answers 503 again.
describe("the Host out of descriptors, a client waiting on a port it answers on", function()
  local h

  lazy_setup(function() h = H.start_host{ ports = { H.free_range(8) } } end)
  lazy_teardown(function() H.stop_host(h) end)

  local function soft_nofile(pid)
    local limits = assert(P.read("/proc/" .. pid .. "/limits"))
    return assert(tonumber(limits:match("Max open files%s+(%d+)")), limits)
  end

  it("costs the Host no CPU, and the port answers 503 once descriptors are back", function()
    local port = H.create(h, H.counter_body("mallory")).publish_port
    H.assert_error(P.get(port, "/watcher/status"), 503, "the port of a Created program")
    local pid, soft = h.proc.pid, soft_nofile(h.proc.pid)
    assert.is_true(H.sh(string.format("prlimit --pid %d --nofile=3:", pid)), "prlimit")
    finally(function() H.sh(string.format("prlimit --pid %d --nofile=%d:", pid, soft)) end)
    assert.equal(3, soft_nofile(pid))

    local client = P.start{ "curl", "-s", "--max-time", tostring(IDLE + 3), "http://127.0.0.1:" .. port .. "/" }
    finally(function() P.stop(client) end)
    local before = cpu_seconds(pid)
    P.sleep(IDLE)
    local used = cpu_seconds(pid) - before
    assert.is_true(used < CPU_MAX, string.format("the Host used %.2f s of CPU in %d s", used, IDLE))

    assert.is_true(H.sh(string.format("prlimit --pid %d --nofile=%d:", pid, soft)), "prlimit")
    H.assert_error(P.get(port, "/watcher/status"), 503, "the port once descriptors are back")
  end)
end)
