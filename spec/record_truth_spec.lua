-- The record tells the truth (issue 13): what ended a program, read from a real Host
-- running real bwrap sandboxes (and real cgroups where this machine has them): the
-- program's own exit code or signal (not bwrap's 128 + n), a kill for memory with its
-- limit, the file an exec did not find, the build step that failed with its output,
-- ready_at, last_exit_at and restarts; and the registry columns, old databases too.
local H = require "scripts.host_harness"
local P = H.P
local sys = require "hersh.os"
local registry = require "host.registry"
local store = require "hersh.store"

local MiB = 1024 * 1024
local HOG_LUA = assert(P.read("spec/programs/memhog/hog.lua"))

-- A program whose Dockerfile is `lines`, with restart policy "no" unless given.
local function body(lines, extra)
  local b = { user_id = "truth", dockerfile = table.concat(lines, "\n") .. "\n", restart_policy = "no" }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- Creates and starts it; the record once it is in `state`.
local function run_until(h, b, state)
  local id = H.create(h, b).program_id
  H.ok_json(H.act(h, id, "start"), 202, "start")
  return H.wait_state(h, id, state), id
end

local function shows(text, part)
  assert.is_string(text)
  assert.is_truthy(text:find(part, 1, true), "'" .. part .. "' not in: " .. text)
end

-- The memory limit is enforced where the Host (root) can make a memory cgroup.
local function memory_cgroup()
  local id = io.popen("id -u")
  local uid = id:read("l")
  id:close()
  if uid ~= "0" then return nil, "the Host makes cgroups only as root" end
  local v1 = sys.fs.stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
  local v2 = (P.read("/sys/fs/cgroup/cgroup.controllers") or ""):find("memory", 1, true)
  if v1 or v2 then return true end
  return nil, "no memory cgroup controller on this machine"
end

describe("the record tells the truth", function()
  it("a program killed by SIGKILL inside the sandbox has exit_signal 9 and no exit_code", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh", 'CMD ["bash", "-c", "kill -KILL $$"]' }, "Error")
    assert.equal(9, r.exit_signal, r.error_msg)
    assert.is_not.equal("number", type(r.exit_code), "bwrap's 137 is not the program's")
    shows(r.error_msg, "killed by signal 9 (SIGKILL)")
    assert.is_false(r.oom_killed)
    assert.matches(H.ISO, r.last_exit_at)
    assert.is_not.equal("string", type(r.ready_at), "it was never Ready")
  end)

  it("a crash with SIGSEGV has exit_signal 11, said in error_msg", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh", 'CMD ["bash", "-c", "kill -SEGV $$"]' }, "Error")
    assert.equal(11, r.exit_signal, r.error_msg)
    assert.is_not.equal(139, r.exit_code)
    shows(r.error_msg, "killed by signal 11 (SIGSEGV)")
  end)

  it("exit 3 is exit_code 3 and no signal", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh", 'CMD ["bash", "-c", "exit 3"]' }, "Error")
    assert.equal(3, r.exit_code, r.error_msg)
    assert.is_not.equal("number", type(r.exit_signal))
    shows(r.error_msg, "exited with code 3")
  end)

  it("a program that exits 137 by itself is exit_code 137, not signal 9", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh", 'CMD ["bash", "-c", "exit 137"]' }, "Error")
    assert.equal(137, r.exit_code, r.error_msg)
    assert.is_not.equal("number", type(r.exit_signal))
    shows(r.error_msg, "exited with code 137")
  end)

  it("ATTACK: a program cannot forge its end through hersh-init's status descriptor", function()
    local h = H.test_host()
    -- It looks for the descriptor in its parent (hersh-init) and in itself, writes a
    -- clean exit wherever it can, then crashes.
    local r = run_until(h, body{ "FROM hersh", [[CMD ["bash", "-c", ]]
      .. [["for f in /proc/$PPID/fd/* /proc/self/fd/11 /proc/1/fd/*; do echo 'exited 0' > $f; done 2>/dev/null; ]]
      .. [[kill -SEGV $$"] ]] }, "Error")
    assert.equal(11, r.exit_signal, r.error_msg)
    assert.is_not.equal("number", type(r.exit_code))
  end)

  it("a CMD whose binary is missing names the file in error_msg", function()
    local h = H.test_host()
    local r, id = run_until(h, body{ "FROM hersh", 'CMD ["/opt/nowhere/hersh-missing-binary", "x"]' }, "Error")
    shows(r.error_msg, "/opt/nowhere/hersh-missing-binary")
    shows(r.error_msg, "No such file or directory")
    assert.is_not.equal("number", type(r.exit_code), "bwrap's exit 1 is not the program's")
    assert.is_true(H.wait_log(h, id, "hersh-init: execvp /opt/nowhere/hersh-missing-binary: No such file or directory"),
      "the runtime log does not say it: " .. H.logs(h, id, "?tail=100"))
  end)

  it("a failing RUN names the step and its last output lines", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh",
      'RUN ["bash", "-c", "echo early-line; echo the-real-reason >&2; exit 4"]',
      'CMD ["true"]' }, "Error")
    shows(r.error_msg, "RUN (line 2)")
    shows(r.error_msg, "exit code 4")
    shows(r.error_msg, "the-real-reason")
    shows(r.error_msg, "early-line")
  end)

  it("a chatty failing RUN quotes only its last 5 lines, each cut to 200 bytes", function()
    local h = H.test_host()
    local r = run_until(h, body{ "FROM hersh",
      [[RUN ["bash", "-c", "for i in 1 2 3 4 5 6 7 8 9; do echo chat-$i; done; printf 'x%.0s' {1..5000}; echo; exit 2"] ]],
      'CMD ["true"]' }, "Error")
    shows(r.error_msg, "exit code 2")
    shows(r.error_msg, "chat-9")
    shows(r.error_msg, "chat-6")
    assert.is_nil(r.error_msg:find("chat-5", 1, true), r.error_msg)
    assert.is_nil(r.error_msg:find("\n", 1, true), "error_msg is one line")
    assert.is_truthy(r.error_msg:find(string.rep("x", 200) .. "...", 1, true), r.error_msg)
    assert.is_true(#r.error_msg < 2000, #r.error_msg .. " bytes")
  end)

  it("a memory hog over a 32 MiB limit is oom_killed, and error_msg says so with the limit", function()
    local ok, why = memory_cgroup()
    if not ok then
      print("record_truth_spec: skipping the memory hog: " .. why)
      return pending("no memory cgroup: " .. why)
    end
    local h = H.test_host()
    local r = run_until(h, body({ "FROM hersh", "COPY hog.lua /app/", 'CMD ["hersh", "run", "/app/hog.lua"]' },
      { src_files = { ["hog.lua"] = HOG_LUA }, env = { HOG_MB = "1024" }, limits = { memory = 32 * MiB } }), "Error")
    assert.is_true(r.oom_killed, r.error_msg)
    assert.equal(9, r.exit_signal, r.error_msg)
    shows(r.error_msg, "out of memory")
    shows(r.error_msg, "limit 32 MiB")
    H.assert_clean_exit(h) -- the Host ends well: no program left, exit 0, no sanitizer report
  end)

  it("ready_at, last_exit_at and restarts follow a crash after Ready", function()
    local h = H.test_host()
    local id = H.create(h, H.counter_body("truth", { restart_policy = { mode = "on-failure", base_delay = 0.1,
      max_restarts = 5 } })).program_id
    local r = H.start_ready(h, id)
    assert.matches(H.ISO, r.ready_at)
    assert.equal(0, r.restarts)
    assert.is_not.equal("string", type(r.last_exit_at))
    -- The program's own process in the sandbox (not bwrap): killed from outside.
    local target
    for _, pid in ipairs(H.program_pids(id)) do
      local cmd = P.read("/proc/" .. pid .. "/cmdline") or ""
      if cmd:find("hersh\0run", 1, true) then target = pid end
    end
    assert.is_truthy(target, "no `hersh run` process of " .. id)
    H.sh("kill -KILL " .. target)
    local ok = H.wait_record(h, id, function(v) return v.restarts == 1 and v.state == "Ready" end,
      "Ready again after one restart")
    assert.equal(9, ok.exit_signal)
    assert.matches(H.ISO, ok.last_exit_at)
    assert.is_true(ok.ready_at > ok.last_exit_at, ok.ready_at .. " is not after " .. ok.last_exit_at)
    assert.is_false(ok.oom_killed)
    H.assert_clean_exit(h)
  end)
end)

describe("the reducer's record of an exit", function()
  local program = require "host.program"
  local function ready()
    local r = assert(program.new{ policy = { mode = "on-failure", base_delay = 0.1, max_restarts = 3 } })
    r.state, r.attempt, r.pid, r.ready_since, r.ready_at = "Ready", 1, 42, 100, 100
    return r
  end
  it("a kill for memory: signal 9, oom_killed, last_exit_at, a restart, and why with the limit", function()
    local r = program.reduce(ready(), { type = "exited", attempt = 1, now = 130, signal = 9, oom_killed = true,
      memory_limit = 32 * MiB })
    assert.equal("Restarting", r.state)
    assert.equal("killed by signal 9 (SIGKILL, out of memory, limit 32 MiB)", r.error_msg)
    assert.same({ 9, true, 130, 100, 1 }, { r.exit_signal, r.oom_killed, r.last_exit_at, r.ready_at, r.restarts })
    assert.is_nil(r.exit_code)
  end)
  it("an exec that found no file says so, with no exit code", function()
    local r = program.reduce(ready(), { type = "exited", attempt = 1, now = 130,
      error = "execvp /app/x: No such file or directory" })
    assert.equal("cannot start: execvp /app/x: No such file or directory", r.error_msg)
    assert.is_nil(r.exit_code)
  end)
  it("a start clears what the last run left", function()
    local r = program.reduce(ready(), { type = "exited", attempt = 1, now = 130, code = 2 })
    r = program.reduce(program.reduce(r, { type = "stop", now = 131 }), { type = "start", now = 132 })
    assert.same({}, { r.exit_code, r.exit_signal, r.oom_killed, r.last_exit_at, r.ready_at, r.error_msg })
  end)
end)

describe("bwrap.exit_report", function()
  local bwrap = require "host.sandbox.bwrap"
  it("reads bwrap's 128 + n as signal n, and keeps other codes", function()
    assert.same({ exit_signal = 9, oom_killed = false }, bwrap.exit_report(137, nil, false))
    assert.same({ exit_code = 3, oom_killed = false }, bwrap.exit_report(3, nil, false))
    assert.same({ exit_code = 255, oom_killed = false }, bwrap.exit_report(255, nil, false))
    assert.same({ exit_code = 128, oom_killed = false }, bwrap.exit_report(128, nil, false))
  end)
  it("trusts hersh-init's status over bwrap's exit, and only a well-formed one", function()
    assert.same({ exit_code = 137, oom_killed = false }, bwrap.exit_report(137, nil, false, nil, "exited 137"))
    assert.same({ exit_signal = 11, oom_killed = false }, bwrap.exit_report(139, nil, false, nil, "signaled 11"))
    assert.same({ error = "execvp /x: No such file or directory", oom_killed = false },
      bwrap.exit_report(127, nil, false, nil, "error execvp /x: No such file or directory"))
    assert.same({ exit_signal = 11, oom_killed = false }, bwrap.exit_report(139, nil, false, nil, "exited 0\nsignaled 11"))
    assert.same({ exit_code = 3, oom_killed = false }, bwrap.exit_report(3, nil, false, nil, ""))
  end)
  it("a kill for memory is signal 9 and oom_killed", function()
    assert.same({ exit_signal = 9, oom_killed = true }, bwrap.exit_report(137, nil, true))
    assert.same({ exit_signal = 9, oom_killed = true }, bwrap.exit_report(nil, 9, true))
  end)
  it("bwrap's own failure (exit 1 after its line) is an error, not the program's exit code", function()
    assert.same({ error = "execvp /x: No such file or directory", oom_killed = false },
      bwrap.exit_report(1, nil, false, "execvp /x: No such file or directory"))
  end)
end)

describe("the registry", function()
  it("adds the new columns to a database made before them, and keeps them", function()
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    local path = dir .. "/host.db"
    local old = assert(store.open(path)) -- the schema before issue 13
    assert(old:exec[[CREATE TABLE programs (program_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
      build_id TEXT NOT NULL, publish_port INTEGER NOT NULL UNIQUE, spec TEXT NOT NULL,
      desired TEXT NOT NULL DEFAULT 'stopped', state TEXT NOT NULL, error_msg TEXT, exit_code INTEGER,
      restarts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
      INSERT INTO programs VALUES ('old', 'u', 'b', 19999, '{}', 'stopped', 'Error', 'x', 1, 0, 't', 't');]])
    old:close()
    local reg = assert(registry.open(path))
    local rows = assert(reg:all())
    assert.equal(1, #rows)
    assert.equal("old", rows[1].program_id)
    assert.is_false(rows[1].oom_killed)
    assert.is_true(reg:update_state("old", { state = "Error", error_msg = "killed by signal 9", exit_signal = 9,
      oom_killed = true, last_exit_at = 1700000000.5, ready_at = 1699999999.25, restarts = 2, updated_at = "t2" }))
    reg:close()
    reg = assert(registry.open(path)) -- a second open: nothing to add, nothing lost
    local row = assert(reg:all())[1]
    reg:close()
    assert.equal(9, row.exit_signal)
    assert.is_nil(row.exit_code)
    assert.is_true(row.oom_killed)
    assert.equal(1700000000.5, row.last_exit_at)
    assert.equal(1699999999.25, row.ready_at)
    assert.equal(2, row.restarts)
  end)
end)
