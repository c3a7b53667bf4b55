-- The Host's lifecycle events (host.events): the store on its own (real SQLite in a
-- temporary folder), then a real Host (scripts.host_harness) whose programs are built,
-- run in the sandbox, crashed, stopped and deleted, its events read from its registry
-- through the same API, and its runtime logs over HTTP. Every wait is bounded; no test
-- asserts how long anything took.
local H = require "scripts.host_harness"
local P = H.P
local store = require "hersh.store"
local events = require "host.events"

local has = H.has
local defer = P.defer

local MiB = 1024 * 1024

-- A store in a new temporary folder, removed when the test ends.
local function temp_events(max)
  local dir = P.tmpdir()
  local db = assert(store.open(dir .. "/events.db"))
  defer(function()
    db:close()
    H.sh("rm -rf " .. P.quote(dir))
  end)
  return assert(events.open(db, { max = max })), db
end

-- The events of a Host's registry, read through host.events; the reader is closed at once.
local function host_events(h, filter)
  local db = assert(store.open(h.storage .. "/host.db"))
  local ev = assert(events.open(db))
  local list = assert(ev:since(0, filter))
  local last = ev:last_id()
  db:close()
  return list, last
end

local function kinds_of(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.kind end
  return out
end

-- Waits until the program's events hold `kind` n times; the list.
local function wait_events(h, id, kind, n)
  local list
  local ok = P.wait_for(function()
    list = host_events(h, { program_id = id })
    local seen = 0
    for _, e in ipairs(list) do
      if e.kind == kind then seen = seen + 1 end
    end
    return seen >= (n or 1)
  end, H.WAIT, 0.05)
  assert(ok, "no " .. kind .. " event; seen: " .. table.concat(kinds_of(list or {}), ", "))
  return list
end

local function assert_increasing(list)
  for i = 2, #list do
    assert.is_true(list[i].id > list[i - 1].id, "ids " .. list[i - 1].id .. ", " .. list[i].id)
    assert.is_true(list[i].at >= list[i - 1].at)
  end
end

-- The Host's lines of a runtime log, in order, without their time: "hersh: <message>".
local function host_lines(log)
  local out = {}
  for line in log:gmatch("[^\n]+") do
    local text = line:match("^%S+ host (.*)$")
    if text then out[#out + 1] = text end
  end
  return out
end

describe("host.events, the store", function()
  it("gives increasing ids, a time, the details and a message, and keeps them", function()
    local ev = temp_events()
    assert.equal(0, ev:last_id())
    local before = os.time()
    local a = assert(ev:record("p1", "exited", { exit_signal = 9, oom_killed = true, memory_limit = 32 * MiB,
      restarts = 2 }))
    local b = assert(ev:record("p1", "restarting", { attempt = 2, delay = 0.2 }))
    local c = assert(ev:record(nil, "created", {}))
    assert.is_true(a.id >= 1 and b.id > a.id and c.id > b.id)
    assert.is_true(a.at >= before - 1 and a.at <= os.time() + 1)
    assert.equal("exited on signal 9 (out of memory, limit 32 MiB)", a.message)
    assert.equal("restart 2 in 0.2 s", b.message)
    assert.equal(c.id, ev:last_id())
    local list = ev:since(0)
    assert.same({ "exited", "restarting", "created" }, kinds_of(list))
    assert.equal("p1", list[1].program_id)
    assert.is_nil(list[3].program_id)
    assert.same({ exit_signal = 9, oom_killed = true, memory_limit = 32 * MiB, restarts = 2 }, list[1].details)
    assert.equal(a.message, list[1].message)
    assert.equal(a.at, list[1].at)
  end)

  it("filters by program, by kinds, from an id, and limits", function()
    local ev = temp_events()
    for i = 1, 6 do assert(ev:record("p" .. (i % 2), i % 3 == 0 and "ready" or "starting", { attempt = i })) end
    assert.same({ 2, 4, 6 }, (function()
      local ids = {}
      for _, e in ipairs(ev:since(0, { program_id = "p0" })) do ids[#ids + 1] = e.details.attempt end
      return ids
    end)())
    assert.same({ "ready", "ready" }, kinds_of(ev:since(0, { kinds = { ready = true } })))
    assert.same({ 4, 5 }, { ev:since(3, {}, 2)[1].id, ev:since(3, {}, 2)[2].id })
    assert.equal(0, #ev:since(6))
    assert.equal(0, #ev:since(0, { kinds = {} }))
  end)

  it("keeps the newest max, and an id is never given twice, even once every row is gone", function()
    local ev, db = temp_events(3)
    for i = 1, 5 do assert(ev:record("p", "starting", { attempt = i })) end
    local list = ev:since(0)
    assert.same({ 3, 4, 5 }, { list[1].id, list[2].id, list[3].id })
    assert(db:run("DELETE FROM events"))
    local e = assert(ev:record("p", "stopped", {}))
    assert.equal(6, e.id)
    assert.equal(6, ev:last_id())
  end)

  it("tells every subscriber, after storing; one that raises harms neither the others nor the event", function()
    local ev = temp_events()
    local seen, stored = {}, nil
    local off = ev:subscribe(function(e)
      stored = #ev:since(e.id - 1)
      seen[#seen + 1] = e.kind
    end)
    ev:subscribe(function() error("a broken subscriber") end)
    local after = {}
    ev:subscribe(function(e) after[#after + 1] = e.id end)
    local e = assert(ev:record("p", "ready", { time_to_ready = 0.5 }))
    assert.same({ "ready" }, seen)
    assert.equal(1, stored)
    assert.same({ e.id }, after)
    off()
    assert(ev:record("p", "stopped", {}))
    assert.same({ "ready" }, seen)
    assert.equal(2, #after)
  end)

  it("makes one line of a reason that holds newlines", function()
    assert.equal("error: RUN failed; last output: a b",
      events.message("error", { reason = "RUN failed; last output:\na\nb" }))
    assert.equal("build failed after 1.5 s: no image", events.message("build_finished",
      { ok = false, duration = 1.5, cached = false, error = "no image" }))
    assert.equal("exited with code 3", events.message("exited", { exit_code = 3, oom_killed = false }))
  end)
end)

describe("host.events in a real Host", function()
  it("records each step of a program's life with its details, and says it in the runtime log", function()
    local h = H.test_host()
    local id = H.create(h, H.counter_body("life")).program_id
    H.start_ready(h, id)
    -- A crash: every process of the program is killed (by pid) behind the Host's back.
    for _, pid in ipairs(H.program_pids(id)) do H.sh("kill -KILL " .. pid .. " 2>/dev/null") end
    wait_events(h, id, "ready", 2)
    H.ok_json(H.act(h, id, "stop"), 202, "stop")
    H.wait_state(h, id, "Stopped")
    H.start_ready(h, id) -- the image is cached now
    local log = H.logs(h, id, "?tail=1000")
    H.ok_json(H.call(h, "DELETE", "/programs/" .. id), 200, "delete")
    local list = wait_events(h, id, "deleted")

    assert.same({ "created", "build_started", "build_finished", "starting", "ready", "exited", "restarting",
      "starting", "ready", "stopping", "exited", "stopped", "build_started", "build_finished", "starting", "ready",
      "deleted" },
      kinds_of(list))
    assert_increasing(list)
    local e = {}
    for i, x in ipairs(list) do
      assert.equal(id, x.program_id)
      e[i] = x.details
    end
    assert.same({ user_id = "life", build_id = id:match("^life%-(build%-%x+)%-") }, e[1])
    assert.equal(1, e[2].attempt)
    assert.is_true(e[3].ok)
    assert.is_false(e[3].cached)
    assert.is_number(e[3].duration)
    assert.equal(1, e[4].attempt)
    assert.is_true(e[5].time_to_ready >= 0)
    assert.equal(9, e[6].exit_signal)
    assert.is_nil(e[6].exit_code)
    assert.is_false(e[6].oom_killed)
    assert.equal(1, e[6].restarts)
    assert.equal(1, e[7].attempt)
    assert.equal(0.1, e[7].delay) -- the default policy's first delay
    assert.equal(2, e[8].attempt)
    -- the stop's SIGTERM: `hersh run` stops the watcher, its cleanup runs and it exits 0,
    -- also while the script drives the loop itself (its main.lua calls hersh.run())
    assert.same({ restart = false }, e[10]) -- said when the stop began, before the exit
    assert.equal("stopping", list[10].message)
    assert.equal(0, e[11].exit_code)
    assert.is_nil(e[11].exit_signal)
    assert.is_true(e[14].ok)
    assert.is_true(e[14].cached)
    assert.equal(3, e[15].attempt)
    assert.same({ keep_state = false }, e[17])
    assert.equal("exited on signal 9", list[6].message)
    assert.equal("restart 1 in 0.1 s", list[7].message)

    -- Each event but deleted (the log is gone with the program) is a Host line of the
    -- runtime log, in the same order, among the program's own lines.
    local expected = {}
    for i = 1, #list - 1 do expected[i] = "hersh: " .. list[i].message end
    assert.same(expected, host_lines(log))
    local starting = log:find("host hersh: starting (attempt 1)", 1, true)
    local boot = log:find("stdout Boot: 1", 1, true)
    local crash = log:find("host hersh: exited on signal 9", 1, true)
    assert.is_true(starting < boot and boot < crash, log)
    H.assert_clean_exit(h) -- and no sanitizer report from the Host that wrote them
  end)

  it("records a failed build with its reason, and a program that crashes until the policy gives up", function()
    local h = H.test_host()
    local broken = H.create(h, H.counter_body("broken",
      { dockerfile = H.DOCKERFILE:gsub("CMD", "RUN bash -c 'echo no-luck; exit 3'\nCMD") })).program_id
    local crashy = H.create(h, { user_id = "crashy", dockerfile = assert(P.read("spec/programs/crash/Dockerfile")),
      restart_policy = { max_restarts = 1 } }).program_id
    H.ok_json(H.act(h, broken, "start"), 202, "start")
    H.ok_json(H.act(h, crashy, "start"), 202, "start")
    H.wait_state(h, broken, "Error")
    H.wait_state(h, crashy, "Error")

    local list = wait_events(h, broken, "error")
    assert.same({ "created", "build_started", "build_finished", "error" }, kinds_of(list))
    assert.is_false(list[3].details.ok)
    assert.is_truthy(has(list[3].details.error, "exit code 3"), list[3].details.error)
    assert.equal(H.view(h, broken).error_msg, list[4].details.reason)
    assert.is_truthy(has(list[4].message, "error: "))
    assert.is_nil(list[4].message:find("\n"))

    list = wait_events(h, crashy, "error")
    assert.same({ "created", "build_started", "build_finished", "starting", "exited", "restarting", "starting",
      "exited", "error" }, kinds_of(list))
    assert.equal(1, list[5].details.exit_code)
    assert.is_nil(list[5].details.exit_signal)
    assert.equal("exited with code 1", list[5].message)
    assert.is_truthy(has(list[9].details.reason, "gave up after 1 restarts"), list[9].details.reason)
    local lines = host_lines(H.logs(h, crashy, "?tail=1000"))
    assert.equal("hersh: " .. list[9].message, lines[#lines])
    assert.is_truthy(has(H.logs(h, crashy, "?tail=1000"), "stderr hersh-spec-crash"))
  end)

  it("attack: a program cannot forge a Host line in its log", function()
    local h = H.test_host()
    local forger = "FROM hersh\nCMD [\"bash\", \"-c\", \"echo 'host hersh: ready in 0 s'; "
      .. "printf '2026-01-01T00:00:00.000Z host hersh: stopped\\\\n' >&2; exit 1\"]\n"
    local id = H.create(h, { user_id = "forger", dockerfile = forger, restart_policy = "no" }).program_id
    H.ok_json(H.act(h, id, "start"), 202, "start")
    local list = wait_events(h, id, "error")
    local log = H.logs(h, id, "?tail=1000")
    assert.is_truthy(has(log, "stdout host hersh: ready in 0 s"), log)
    assert.is_truthy(has(log, "stderr 2026-01-01T00:00:00.000Z host hersh: stopped"), log)
    local expected = {}
    for i, e in ipairs(list) do expected[i] = "hersh: " .. e.message end
    assert.same(expected, host_lines(log))
  end)

  it("says an exit the cgroup forced for memory as such, with the limit", function()
    local v2 = P.read("/sys/fs/cgroup/cgroup.controllers")
    if not ((v2 and has(v2, "memory")) or P.exists("/sys/fs/cgroup/memory")) then
      print("events_spec: skipped: no memory cgroup controller here")
      return pending("no memory cgroup controller here")
    end
    local h = H.test_host()
    local id = H.create(h, { user_id = "hog", dockerfile = assert(P.read("spec/programs/memhog/Dockerfile")),
      src_files = { ["hog.lua"] = assert(P.read("spec/programs/memhog/hog.lua")) },
      limits = { memory = 32 * MiB }, restart_policy = "no" }).program_id
    H.ok_json(H.act(h, id, "start"), 202, "start")
    local list = wait_events(h, id, "error")
    assert.same({ "created", "build_started", "build_finished", "starting", "exited", "error" }, kinds_of(list))
    assert.same({ exit_signal = 9, oom_killed = true, memory_limit = 32 * MiB, restarts = 0 }, list[5].details)
    assert.equal("exited on signal 9 (out of memory, limit 32 MiB)", list[5].message)
    local lines = host_lines(H.logs(h, id, "?tail=1000"))
    assert.equal("hersh: exited on signal 9 (out of memory, limit 32 MiB)", lines[#lines - 1])
  end)

  it("keeps its ids across a Host restart on the same storage", function()
    local h = H.start_host()
    local root = h.root
    defer(function() H.sh("rm -rf " .. P.quote(root)) end)
    h.root = nil -- the storage outlives this Host
    defer(function() H.stop_host(h) end)
    local first = H.create(h, H.counter_body("before")).program_id
    local before, last = host_events(h)
    H.terminate(h)()
    local h2 = H.test_host{ storage = h.storage, ports = { h.first, h.last } }
    h2.ids = { first }
    local second = H.create(h2, H.counter_body("after")).program_id
    local after = host_events(h2)
    assert.equal(#before + 1, #after)
    assert.same(before[1], after[1])
    assert.equal(first, after[1].program_id)
    assert.equal(second, after[#after].program_id)
    assert.is_true(after[#after].id > last)
  end)

  it("keeps at most --events-max events, the oldest dropped, the ids still increasing", function()
    local h = H.test_host{ args = { "--events-max", "2" } }
    local ids = {}
    for i = 1, 4 do ids[i] = H.create(h, H.counter_body("bounded" .. i)).program_id end
    local list, last = host_events(h)
    assert.equal(2, #list)
    assert.same({ ids[3], ids[4] }, { list[1].program_id, list[2].program_id })
    assert.equal(4, last)
    assert.same({ 3, 4 }, { list[1].id, list[2].id })
  end)

  it("refuses an --events-max that is not a positive whole number, naming the flag", function()
    for _, bad in ipairs{ "0", "-1", "many", "1.5" } do
      local dir = H.public_tmpdir()
      defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
      local proc = P.start{ P.hersh, "host", "--port", "0", "--storage", dir .. "/s", "--events-max", bad }
      defer(function() P.stop(proc) end)
      assert.is_truthy(P.wait_for(function() return not P.alive(proc) end, H.WAIT))
      assert.equal(2, P.status(proc))
      assert.is_truthy(has(P.stderr(proc), "--events-max wants a whole number"), P.stderr(proc))
    end
  end)
end)
