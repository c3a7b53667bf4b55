-- Names, update in place, revisions and rollback, end to end: a real `hersh host`, real
-- programs built from spec/programs/host_counter and run in the bubblewrap sandbox,
-- real HTTP over loopback (scripts.host_harness). Every wait is bounded; no test
-- asserts how long anything took.
--
-- The swap is checked from the outside: the port stays the same, the count kept in
-- /state goes on, the new revision answers and the old process is gone; a revision
-- that does not build, or never answers, leaves the old process serving; and a client
-- hammering the port during 20 updates sees no request refused or lost.
local H = require "scripts.host_harness"
local P = H.P
local store = require "hersh.store"
local registry = require "host.registry"

local has = H.has
local call, create, view, act = H.call, H.create, H.view, H.act
local ok_json, assert_error = H.ok_json, H.assert_error
local counter_body, wait_state, start_ready = H.counter_body, H.wait_state, H.start_ready
local logs, wait_log, program_dir, gone = H.logs, H.wait_log, H.program_dir, H.gone
local test_host, WAIT = H.test_host, H.WAIT

-- The counter, changed so that each revision says which it is at boot.
local function counter_v(n)
  return H.MAIN_LUA:gsub('print%("Boot: " %.%. boots%)', 'print("Boot: " .. boots .. " of version ' .. n .. '")', 1)
end

local function update_body(extra)
  local body = { dockerfile = H.DOCKERFILE, src_files = { ["main.lua"] = H.MAIN_LUA } }
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

local function put(h, ref, body)
  return call(h, "PUT", "/programs/" .. ref, body)
end

-- An update builds a new revision before it serves: twice the usual bound.
local function wait_record(h, ref, pred, what)
  return H.wait_record(h, ref, pred, what, WAIT * 2)
end

local function send(h, ref, content)
  return ok_json(call(h, "POST", "/programs/" .. ref .. "/proxy/watcher/message", { content = content }), 200,
    "send")
end

local function event_kinds(h, ref)
  local doc = ok_json(call(h, "GET", "/programs/" .. ref .. "/events?follow=false"), 200, "events")
  local kinds = {}
  for _, e in ipairs(doc.events) do kinds[#kinds + 1] = e.kind end
  return kinds, doc.events
end

-- Whether `list` holds the kinds of `want` in that order (others may come between).
local function in_order(list, want)
  local i = 1
  for _, k in ipairs(list) do
    if k == want[i] then i = i + 1 end
  end
  return i > #want
end

-- The Host's --ready-timeout where a test waits it out: far above the counter's time to
-- Ready (a tenth of a second, under the sanitizers too), far below the default 30 s.
local READY_TIMEOUT = 3 * P.PACE

-- A Host with one counter named `name` Ready on it: h, record. `args`: the Host's flags.
local function ready_named(name, args)
  local h = test_host{ args = args }
  local created = create(h, counter_body("alice", { name = name }))
  return h, start_ready(h, created.program_id)
end

describe("the readiness probe of an update", function()
  local supervisor = require "host.supervisor"
  local check = supervisor.answered_by_candidate
  it("takes only an answer of a process started after the new one was spawned", function()
    assert.is_true(check('{"watcherID":"c","uptime":"0.051s"}', 100, 100.2))
    assert.is_true(check('{"uptime":"0.200s"}', 100, 100.2))
    assert.is_false(check('{"uptime":"0.251s"}', 100, 100.2)) -- started before the spawn: the old one
    assert.is_false(check('{"uptime":"1m0.000s"}', 100, 130))
    assert.is_false(check('{"uptime":"1h0m1.000s"}', 100, 130))
  end)
  it("takes no answer without a readable uptime", function()
    for _, body in ipairs{ "", "{", "[]", "{}", '{"uptime":5}', '{"uptime":"-0.1s"}', '{"uptime":"0.1ms"}', "null" } do
      assert.is_false(check(body, 100, 200), body)
    end
    assert.is_false(check(nil, 100, 200))
  end)
end)

describe("names", function()
  it("are given at create, shown in the record, the list and the events", function()
    local h = test_host()
    local created = create(h, counter_body("alice", { name = "web-1" }))
    assert.equal("web-1", created.name)
    assert.equal(1, created.revision)
    local rec = view(h, "web-1")
    assert.equal(created.program_id, rec.program_id)
    assert.equal("web-1", rec.name)
    assert.equal(1, rec.revision)
    local list = ok_json(call(h, "GET", "/programs"), 200, "list").programs
    assert.equal("web-1", list[1].name)
    local _, evs = event_kinds(h, "web-1")
    assert.equal("created", evs[1].kind)
    assert.equal("web-1", evs[1].details.name)
    -- a program without a name has none
    local plain = create(h, counter_body("alice"))
    assert.equal(P.null, view(h, plain.program_id).name)
  end)

  it("are refused with a 400 naming the rule when they break it", function()
    local h = test_host()
    local bad = { "Web", "web_1", "-web", "web-", "", string.rep("a", 64), "a b", "web/1", "ünï", 42, true }
    for _, name in ipairs(bad) do
      local res = call(h, "POST", "/programs", counter_body("alice", { name = name }))
      assert_error(res, 400, "name " .. tostring(name))
      assert.is_true(has(res.json.message, "name must be 1-63 lower-case letters, digits and '-'"), res.body)
    end
    -- 63 is allowed
    assert.equal(string.rep("a", 63), create(h, counter_body("alice", { name = string.rep("a", 63) })).name)
    assert.equal(1, ok_json(call(h, "GET", "/programs"), 200).count)
  end)

  it("are unique on a Host (409), also against ids, and free again after a delete", function()
    local h = test_host()
    local first = create(h, counter_body("alice", { name = "api" }))
    local res = call(h, "POST", "/programs", counter_body("bob", { name = "api" }))
    assert_error(res, 409, "duplicate name")
    assert.is_true(has(res.json.message, first.program_id), res.body)
    assert.is_true(#first.program_id <= 63, first.program_id)
    assert_error(call(h, "POST", "/programs", counter_body("bob", { name = first.program_id })), 409,
      "a name that is an id")
    ok_json(call(h, "DELETE", "/programs/api"), 200, "delete by name")
    assert.equal("api", create(h, counter_body("bob", { name = "api" })).name)
  end)

  it("are kept by a Host restart, and a registry of an older Host gets the columns", function()
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    local path = dir .. "/host.db"
    local old = assert(store.open(path)) -- the schema before names and revisions
    assert(old:exec[[CREATE TABLE programs (program_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
      build_id TEXT NOT NULL, publish_port INTEGER NOT NULL UNIQUE, spec TEXT NOT NULL,
      desired TEXT NOT NULL DEFAULT 'stopped', state TEXT NOT NULL, error_msg TEXT, exit_code INTEGER,
      restarts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
      INSERT INTO programs VALUES ('old', 'u', 'b', 19999, '{}', 'stopped', 'Stopped', NULL, NULL, 0, 't', 't');]])
    old:close()
    local reg = assert(registry.open(path))
    local row = assert(reg:all())[1]
    assert.equal("old", row.program_id)
    assert.is_nil(row.name)
    assert.equal(1, row.revision)
    assert.same({}, assert(reg:revisions("old")))
    assert.is_true(reg:insert{ program_id = "new", name = "web", user_id = "u", build_id = "b2", publish_port = 19998,
      spec = {}, state = "Created", created_at = "t", updated_at = "t", files = { a = "1" } })
    -- the name is unique in the database too
    assert.is_nil(reg:insert{ program_id = "new2", name = "web", user_id = "u", build_id = "b3", publish_port = 19997,
      spec = {}, state = "Created", created_at = "t", updated_at = "t", files = {} })
    assert.equal(1, #assert(reg:revisions("new")))
    reg:close()
    reg = assert(registry.open(path)) -- a second open: nothing to add, nothing lost
    local rows = assert(reg:all())
    reg:close()
    assert.equal(2, #rows)
    local names = {}
    for _, r in ipairs(rows) do names[r.program_id] = r.name or false end
    assert.same({ old = false, new = "web" }, names)

    local h = test_host()
    local id = create(h, counter_body("alice", { name = "kept" })).program_id
    H.terminate(h)()
    local h2 = H.start_host{ storage = h.storage, ports = { h.first, h.last } }
    P.defer(function() H.stop_host(h2) end)
    assert.equal(id, view(h2, "kept").program_id)
    assert_error(call(h2, "POST", "/programs", counter_body("bob", { name = "kept" })), 409, "taken after restart")
  end)

  it("work in every /programs/{id} route", function()
    local h, rec = ready_named("counter")
    local id = rec.program_id
    assert.equal(id, view(h, "counter").program_id)
    send(h, "counter", "tick")
    assert.is_true(wait_log(h, "counter", "Counter: 1"), logs(h, "counter"))
    assert.is_true(has(logs(h, "counter", "?type=build"), "building"), logs(h, "counter", "?type=build"))
    assert.equal(200, call(h, "GET", "/programs/counter/proxy/watcher/status").status)
    assert.equal(id, ok_json(call(h, "GET", "/programs/counter/source"), 200).program_id)
    assert.equal(1, ok_json(call(h, "GET", "/programs/counter/revisions"), 200).revisions[1].revision)
    local kinds = event_kinds(h, "counter")
    assert.is_true(in_order(kinds, { "created", "build_started", "ready" }), table.concat(kinds, ","))
    assert.equal(id, ok_json(act(h, "counter", "restart"), 202).program_id)
    wait_state(h, "counter", "Ready")
    assert.equal(id, ok_json(act(h, "counter", "stop"), 202).program_id)
    wait_state(h, "counter", "Stopped")
    assert.equal(id, ok_json(act(h, "counter", "start"), 202).program_id)
    wait_state(h, "counter", "Ready")
    assert.equal(id, ok_json(call(h, "DELETE", "/programs/counter"), 200).program_id)
    assert_error(call(h, "GET", "/programs/counter"), 404, "gone")
    assert_error(call(h, "GET", "/programs/nosuch/revisions"), 404, "unknown name")
  end)
end)

describe("PUT /programs/{name}: update in place", function()
  it("starts the new revision on the same port with the same /state, then stops the old one", function()
    local h, rec = ready_named("counter")
    local id, port, old_pid = rec.program_id, rec.publish_port, rec.pid
    send(h, "counter", "a")
    send(h, "counter", "b")
    assert.is_true(wait_log(h, "counter", "Counter: 2"), logs(h, "counter"))
    local doc = ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = counter_v(2) } }), 202, "PUT")
    assert.equal(id, doc.program_id)
    assert.equal(2, doc.revision)
    local now = wait_record(h, "counter", function(r) return r.revision == 2 end, "revision 2")
    assert.equal("Ready", now.state)
    assert.equal(port, now.publish_port)
    assert.equal(id, now.program_id)
    assert.are_not.equal(old_pid, now.pid)
    assert.is_true(gone(old_pid), "revision 1's process " .. old_pid .. " is still running")
    assert.is_true(wait_log(h, "counter", "Boot: 2 of version 2"), logs(h, "counter"))
    send(h, "counter", "c")
    assert.is_true(wait_log(h, "counter", "Counter: 3"), logs(h, "counter"))
    assert.equal("3", P.read(program_dir(h, id) .. "/state/count"))
    -- the sources are the new revision's
    assert.equal(counter_v(2), ok_json(call(h, "GET", "/programs/counter/source"), 200).files["main.lua"])
    local kinds = event_kinds(h, "counter")
    assert.is_true(in_order(kinds, { "ready", "updating", "build_started", "build_finished", "starting", "updated" }),
      table.concat(kinds, ","))
    -- the next restart runs revision 2 too
    ok_json(act(h, "counter", "restart"), 202)
    wait_state(h, "counter", "Ready")
    assert.is_true(wait_log(h, "counter", "Boot: 3 of version 2"), logs(h, "counter"))
  end)

  it("refuses a change of user_id, name or network, unknown fields and bad bodies (400)", function()
    local h = test_host()
    create(h, counter_body("alice", { name = "fixed" }))
    for field, value in pairs{ user_id = "bob", name = "other", network = "host" } do
      local res = put(h, "fixed", update_body{ [field] = value })
      assert_error(res, 400, field)
      assert.is_true(has(res.json.message, field .. " cannot change"), res.body)
    end
    assert_error(put(h, "fixed", update_body{ colour = "red" }), 400, "unknown field")
    assert_error(put(h, "fixed", update_body{ dockerfile = "FROM nowhere\n" }), 400, "bad Dockerfile")
    assert_error(call(h, "PUT", "/programs/fixed", "[1,2]"), 400, "array body")
    assert_error(call(h, "PUT", "/programs/fixed", "{"), 400, "malformed")
    assert_error(put(h, "nosuch", update_body()), 404, "unknown program")
    assert.equal(1, view(h, "fixed").revision)
  end)

  it("of a stopped program takes effect at its next start", function()
    local h = test_host()
    local id = create(h, counter_body("alice", { name = "later" })).program_id
    local doc = ok_json(put(h, "later", update_body{ src_files = { ["main.lua"] = counter_v(2) } }), 202)
    assert.equal(2, doc.revision)
    assert.equal(2, view(h, "later").revision)
    start_ready(h, id)
    assert.is_true(wait_log(h, "later", "Boot: 1 of version 2"), logs(h, "later"))
  end)

  it("whose build fails leaves the old revision serving and reports the failed one", function()
    local h, rec = ready_named("counter")
    local df = H.DOCKERFILE:gsub("CMD", "RUN exit 3\nCMD", 1)
    ok_json(put(h, "counter", update_body{ dockerfile = df }), 202, "PUT")
    local now = wait_record(h, "counter", function(r) return r.failed_revision == 2 end, "failed revision 2")
    assert.equal(1, now.revision)
    assert.equal("Ready", now.state)
    assert.equal(rec.pid, now.pid)
    assert.is_true(has(now.failed_reason, "build failed"), now.failed_reason)
    assert.equal(200, P.get(rec.publish_port, "/watcher/status").status)
    send(h, "counter", "x")
    assert.is_true(wait_log(h, "counter", "Counter: 1"), logs(h, "counter"))
    local kinds = event_kinds(h, "counter")
    assert.is_true(in_order(kinds, { "updating", "build_started", "build_finished", "update_failed" }),
      table.concat(kinds, ","))
  end)

  it("whose process exits before it is ready leaves the old revision serving", function()
    local h, rec = ready_named("counter")
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = "os.exit(7)\n" } }), 202, "PUT")
    local now = wait_record(h, "counter", function(r) return r.failed_revision == 2 end, "failed revision 2")
    assert.equal(1, now.revision)
    assert.equal(rec.pid, now.pid)
    assert.is_true(has(now.failed_reason, "exited with code 7"), now.failed_reason)
    assert.equal(200, P.get(rec.publish_port, "/watcher/status").status)
  end)

  -- The new process holds the shared socket but never serves it: a readiness probe
  -- through the port would get the old process's answer and swap to a dead revision.
  it("whose process never becomes Ready is killed after --ready-timeout and the old one stays", function()
    local h, rec = ready_named("counter", { "--ready-timeout", tostring(READY_TIMEOUT) })
    local never = "io.stdout:setvbuf('line')\nprint('never ready')\nwhile true do os.execute('sleep 1') end\n"
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = never } }), 202, "PUT")
    assert.is_true(wait_log(h, "counter", "never ready"), logs(h, "counter"))
    local now = wait_record(h, "counter", function(r) return r.failed_revision == 2 end, "failed revision 2")
    assert.equal(1, now.revision)
    assert.equal("Ready", now.state)
    assert.equal(rec.pid, now.pid)
    assert.is_true(has(now.failed_reason, "not ready within " .. READY_TIMEOUT .. " s"), now.failed_reason)
    assert.equal(200, P.get(rec.publish_port, "/watcher/status").status)
    -- the candidate is gone: the one process left is the old one
    assert.is_true(P.wait_for(function() return #H.program_pids(rec.program_id) <= 3 end, 20) == true)
    -- a later update still works
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = counter_v(3) } }), 202, "PUT 3")
    assert.equal(3, wait_record(h, "counter", function(r) return r.revision == 3 end, "revision 3").revision)
  end)

  it("--ready-timeout refuses a value that is not a positive whole number, naming the flag", function()
    for _, bad in ipairs{ "0", "-1", "soon", "1.5", "1000001" } do
      local dir = H.public_tmpdir()
      P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
      local proc = P.start{ P.hersh, "host", "--port", "0", "--storage", dir .. "/s", "--ready-timeout", bad }
      P.defer(function() P.stop(proc) end)
      assert.is_truthy(P.wait_exit(proc, WAIT), "the Host did not exit on --ready-timeout " .. bad)
      assert.equal(2, P.status(proc))
      assert.is_truthy(has(P.stderr(proc), "--ready-timeout wants a whole number"), P.stderr(proc))
    end
  end)

  it("under way ends with the program: a delete or a Host stop leaves no process behind", function()
    local never = "io.stdout:setvbuf('line')\nprint('never ready')\nwhile true do os.execute('sleep 1') end\n"
    local h, rec = ready_named("counter")
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = never } }), 202, "PUT")
    assert.is_true(wait_log(h, "counter", "never ready"), logs(h, "counter"))
    assert.equal(2, view(h, "counter").updating_revision)
    ok_json(call(h, "DELETE", "/programs/counter"), 200, "delete during the update")
    assert.is_true(H.no_process_of{ rec.program_id }, "a process of the deleted program is left")
    assert.is_falsy(P.exists(program_dir(h, rec.program_id)))

    local h2, rec2 = ready_named("other")
    ok_json(put(h2, "other", update_body{ src_files = { ["main.lua"] = never } }), 202, "PUT")
    assert.is_true(wait_log(h2, "other", "never ready"), logs(h2, "other"))
    H.terminate(h2)() -- exit 0, no program process outlives it
    -- the next Host runs the revision that ran: the update never finished
    local h3 = H.start_host{ storage = h2.storage, ports = { h2.first, h2.last } }
    P.defer(function() H.stop_host(h3) end)
    local again = wait_state(h3, "other", "Ready")
    assert.equal(1, again.revision)
    assert.equal(rec2.program_id, again.program_id)
  end)

  it("refuses a second update while one is under way (409)", function()
    local h = ready_named("counter")
    local df = H.DOCKERFILE:gsub("CMD", "RUN sleep 3\nCMD", 1)
    ok_json(put(h, "counter", update_body{ dockerfile = df }), 202, "PUT")
    assert_error(put(h, "counter", update_body()), 409, "second PUT")
    wait_record(h, "counter", function(r) return r.revision == 2 end, "revision 2")
  end)
end)

describe("revisions and rollback", function()
  it("keeps the last 5 revisions and rolls back to a kept one as a new revision", function()
    local h, rec = ready_named("counter")
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = counter_v(2) }, env = { TOKEN = "s3cret" } }),
      202)
    wait_record(h, "counter", function(r) return r.revision == 2 end, "revision 2")
    local listed = call(h, "GET", "/programs/counter/revisions")
    assert.is_false(has(listed.body, "s3cret"), "the revisions show an env value: " .. listed.body)
    local doc = ok_json(call(h, "POST", "/programs/counter/rollback?revision=1"), 202, "rollback")
    assert.equal(3, doc.revision)
    local now = wait_record(h, "counter", function(r) return r.revision == 3 end, "revision 3")
    assert.equal(rec.publish_port, now.publish_port)
    assert.equal(H.MAIN_LUA, ok_json(call(h, "GET", "/programs/counter/source"), 200).files["main.lua"])
    local kinds = event_kinds(h, "counter")
    assert.is_true(in_order(kinds, { "updated", "updating", "rolled_back" }), table.concat(kinds, ","))
    local revs = ok_json(call(h, "GET", "/programs/counter/revisions"), 200, "revisions")
    assert.equal(3, revs.revision)
    assert.equal(5, revs.keep)
    assert.same({ 3, 2, 1 }, { revs.revisions[1].revision, revs.revisions[2].revision, revs.revisions[3].revision })
    assert.is_true(revs.revisions[1].running)
    assert.same({ "main.lua" }, revs.revisions[1].files)
    assert_error(call(h, "POST", "/programs/counter/rollback?revision=99"), 404, "not kept")
    assert_error(call(h, "POST", "/programs/counter/rollback?revision=abc"), 400, "not a number")
    assert_error(call(h, "POST", "/programs/counter/rollback"), 400, "no revision")
    assert_error(call(h, "GET", "/programs/counter/rollback"), 405, "GET rollback")
    -- stopped, updates are quick: after 4 more, only the newest 5 are kept
    ok_json(act(h, "counter", "stop"), 202)
    wait_state(h, "counter", "Stopped")
    for v = 4, 7 do ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = counter_v(v) } }), 202) end
    revs = ok_json(call(h, "GET", "/programs/counter/revisions"), 200, "revisions")
    assert.equal(5, #revs.revisions)
    assert.equal(7, revs.revisions[1].revision)
    assert.equal(3, revs.revisions[5].revision)
    assert_error(call(h, "POST", "/programs/counter/rollback?revision=2"), 404, "dropped")
    -- the revision counter survives a Host restart
    H.terminate(h)()
    local h2 = H.start_host{ storage = h.storage, ports = { h.first, h.last } }
    P.defer(function() H.stop_host(h2) end)
    assert.equal(7, view(h2, "counter").revision)
    assert.equal(8, ok_json(put(h2, "counter", update_body()), 202).revision)
  end)
end)

-- The counter without its own hersh.run(): `hersh run` drives the loop after the
-- script, with its SIGTERM handler installed, so that a stop drains what it accepted.
local function drained_v(n)
  return (counter_v(n):gsub("\nhersh%.run%(%)\n?$", "\n"))
end

-- 20 updates in place while a client hammers the program's port: not one request fails.
-- main_v(n) is the main.lua of revision n.
local function swap_under_load(main_v)
  local h = test_host()
  local created = create(h, counter_body("alice", { name = "counter", src_files = { ["main.lua"] = main_v(1) } }))
  local rec = start_ready(h, created.program_id)
  local dir = P.tmpdir()
  P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
  local stopfile = dir .. "/stop"
  -- a helper: not under the sanitizer runtime lua5.4 may be preloaded with
  local hammer = P.start{ "env", "-u", "LD_PRELOAD", "python3", "bench/update/hammer.py", tostring(rec.publish_port),
    stopfile, "4" }
  P.defer(function() P.stop(hammer) end)
  for v = 2, 21 do
    ok_json(put(h, "counter", update_body{ src_files = { ["main.lua"] = main_v(v) } }), 202, "PUT " .. v)
    wait_record(h, "counter", function(r) return r.revision == v and r.state == "Ready" end, "revision " .. v)
  end
  P.write(stopfile, "")
  assert.is_true(P.wait_exit(hammer, 30) ~= nil, "the load client did not stop")
  local result = require("cjson").decode(P.stdout(hammer))
  assert.is_true(result.ok > 0, P.stdout(hammer))
  assert.equal(0, result.errors, P.stdout(hammer))
  assert.equal(21, view(h, "counter").revision)
end

describe("update in place under load", function()
  it("loses no request to the port during 20 updates", function() swap_under_load(drained_v) end)

  -- `hersh run` stops a script's watchers on SIGTERM also while the script drives the
  -- loop itself: the old revision drains what it accepted instead of dying.
  it("loses no request either when main.lua calls hersh.run() itself", function() swap_under_load(counter_v) end)
end)
