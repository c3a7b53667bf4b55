-- The Host end to end: a real `hersh host` on a free port, with its own storage in a
-- temporary directory and a small range of publish ports, driven over real HTTP with
-- curl (spec/scripts/process.lua). Programs are real: built from
-- spec/programs/host_counter and run in the bubblewrap sandbox (the spec runs as
-- root; programs run as user 65534).
--
-- Every test starts the Hosts it needs (scripts.host_harness's test_host: stopped and
-- its storage removed when the test ends), so each runs alone as well as in the file
-- (busted --filter); the persistence tests start several Hosts on one storage. Every
-- wait is bounded; no test asserts how long anything took.
--
-- While no process serves a program's port (Created, Stopped), the Host holds it and
-- answers 503 there itself; after a delete nothing answers and anyone may take it.
local H = require "scripts.host_harness"
local P = H.P
local sys = require "hersh.os"
local cjson = require "cjson"

local fs = sys.fs
local FIXTURE = H.FIXTURE
local DOCKERFILE = H.DOCKERFILE
local MAIN_LUA = H.MAIN_LUA
local WAIT = H.WAIT
local ISO = H.ISO
local STATUS_TEXT = H.STATUS_TEXT
local defer = P.defer -- runs fn when the test ends, passed or failed
local has = H.has
local sh = H.sh
local bindable = H.bindable
local free_range = H.free_range
local program_pids = H.program_pids
local no_process_of = H.no_process_of
local gone = H.gone
local kill_programs = H.kill_programs
local public_tmpdir = H.public_tmpdir
local start_host = H.start_host
local test_host = H.test_host
local stop_host = H.stop_host
local terminate = H.terminate
local assert_clean_exit = H.assert_clean_exit
local integers = H.integers
local call = H.call
local assert_error = H.assert_error
local ok_json = H.ok_json
local counter_body = H.counter_body
local create = H.create
local view = H.view
local wait_state = H.wait_state
local act = H.act
local start_ready = H.start_ready
local logs = H.logs
local wait_log = H.wait_log
local program_dir = H.program_dir
local list_names = H.list_names

-- ---- 1, 7, 8: the walkthrough, follow, filters and source ---------------------------

-- A Host of the test's own with one counter program of `user_id` Ready on it: h, id, port.
local function ready_counter(user_id)
  local h = test_host()
  local created = create(h, counter_body(user_id))
  start_ready(h, created.program_id)
  return h, created.program_id, created.publish_port
end

describe("hersh host: a program's life", function()
  it("answers /health", function()
    local h = test_host()
    local doc = ok_json(call(h, "GET", "/health"))
    assert.equal("ok", doc.status)
  end)

  it("walks through create, start, messages, logs, stop, start again, restart and delete", function()
    local h = test_host()
    -- create: Created, with the fields of the original API
    local created = create(h, counter_body("alice"))
    local id = created.program_id
    assert.equal("Created", created.state)
    -- the build id of docs/dockerfile.md, from sha256sum over the encoding written out
    local encoding = "D" .. #DOCKERFILE .. ":" .. DOCKERFILE .. "F8:main.lua" .. #MAIN_LUA .. ":" .. MAIN_LUA
    assert.equal("build-" .. P.sha256sum(encoding):sub(1, 12), created.build_id)
    assert.equal("alice-" .. created.build_id .. "-", id:sub(1, #created.build_id + 7))
    assert.matches("^%x%x%x%x%x%x%x%x$", id:sub(#created.build_id + 8))
    assert.equal(h.first, created.publish_port)
    assert.equal("http://127.0.0.1:" .. created.publish_port, created.proxy_url)
    assert.matches(ISO, created.created_at)
    local port = created.publish_port
    assert.is_false(bindable(port), "the Host holds the port of a Created program")
    assert_error(P.get(port, "/watcher/status"), 503, "the port before the start")

    -- start: Building at once, then Ready
    local ready = start_ready(h, id)
    assert.equal(port, ready.publish_port)
    assert.is_number(ready.pid)

    -- a message through the proxy route, one straight to proxy_url
    local res = call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "tick" })
    assert.equal(200, res.status, res.body)
    res = P.send(port, "tick")
    assert.equal(200, res.status, res.body)
    assert.is_true(wait_log(h, id, "Counter: 2"), logs(h, id))
    assert.is_true(has(logs(h, id, "?tail=5"), "Counter: 1"))
    local status = call(h, "GET", "/programs/" .. id .. "/proxy/watcher/status")
    assert.equal(200, status.status, status.body)

    -- stop: Stopping, then Stopped; the port refuses, the proxy answers 503
    local stopped = ok_json(act(h, id, "stop"), 202, "stop")
    assert.equal("Stopping", stopped.state)
    wait_state(h, id, "Stopped")
    assert_error(P.get(port, "/watcher/status"), 503, "the port of a Stopped program")
    assert_error(call(h, "GET", "/programs/" .. id .. "/proxy/watcher/status"), 503, "proxy when Stopped")
    assert.equal("2", P.read(program_dir(h, id) .. "/state/count"))

    -- start again: the count in /state goes on
    start_ready(h, id)
    assert.equal(200, P.send(port, "tick").status)
    assert.is_true(wait_log(h, id, "Counter: 3"), logs(h, id))
    assert.equal("3", P.read(program_dir(h, id) .. "/state/count"))

    -- restart: a new process on the same port
    local before = view(h, id)
    local restarted = ok_json(act(h, id, "restart"), 202, "restart")
    assert.equal("Stopping", restarted.state)
    local after = wait_state(h, id, "Ready")
    assert.equal(port, after.publish_port)
    assert.is_number(after.pid)
    assert.not_equal(before.pid, after.pid)
    assert.equal(200, P.send(port, "tick").status)
    assert.is_true(wait_log(h, id, "Counter: 4"), logs(h, id))

    -- delete: gone, its port free, its files removed
    local deleted = ok_json(call(h, "DELETE", "/programs/" .. id), 200, "delete")
    assert.equal(id, deleted.program_id)
    assert_error(call(h, "GET", "/programs/" .. id), 404, "GET after delete")
    assert.is_true(no_process_of({ id }))
    assert.is_true(bindable(port), "port " .. port .. " is free after the delete")
    assert.equal(0, P.get(port, "/watcher/status").status, "nothing answers on it")
    assert.is_nil(fs.stat(program_dir(h, id)))
  end)

  it("restarts a Ready program as a new process on the same port, /state kept", function()
    local h = test_host()
    local id = create(h, counter_body("restarter")).program_id
    local first = start_ready(h, id)
    assert.equal(200, call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "a" }).status)
    assert.is_true(wait_log(h, id, "Counter: 1"))
    assert.equal(202, act(h, id, "restart").status)
    local second = wait_state(h, id, "Ready")
    assert.equal(first.publish_port, second.publish_port)
    assert.not_equal(first.pid, second.pid)
    assert.is_true(wait_log(h, id, "Boot: 2"), logs(h, id))
    assert.equal(200, call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "b" }).status)
    assert.is_true(wait_log(h, id, "Counter: 2"), logs(h, id))
    assert.equal(200, P.send(second.publish_port, "c").status)
    assert.is_true(wait_log(h, id, "Counter: 3"), logs(h, id))
  end)

  it("keeps /state across a stop and a start (messages straight to proxy_url)", function()
    local h, id, port = ready_counter("keeper")
    assert.equal(200, P.send(port, "a").status)
    assert.equal(200, P.send(port, "b").status)
    assert.is_true(wait_log(h, id, "Counter: 2"))
    assert.equal(202, act(h, id, "stop").status)
    wait_state(h, id, "Stopped")
    start_ready(h, id)
    assert.is_true(wait_log(h, id, "Boot: 2"), logs(h, id))
    assert.equal(200, P.send(port, "c").status)
    assert.is_true(wait_log(h, id, "Counter: 3"), logs(h, id))
  end)

  it("deletes a running program: 404 afterwards, processes gone, port free, files gone", function()
    local h, id, port = ready_counter("deleter")
    assert.equal(200, P.send(port, "a").status)
    assert.is_true(wait_log(h, id, "Counter: 1"))
    assert.is_true(#program_pids(id) > 0)
    local doc = ok_json(call(h, "DELETE", "/programs/" .. id), 200, "delete")
    assert.equal(id, doc.program_id)
    assert_error(call(h, "GET", "/programs/" .. id), 404, "GET after delete")
    assert_error(act(h, id, "start"), 404, "start after delete")
    assert_error(call(h, "DELETE", "/programs/" .. id), 404, "second delete")
    assert.is_true(no_process_of({ id }))
    assert.is_true(bindable(port), "port " .. port .. " is free after the delete")
    assert.is_nil(fs.stat(program_dir(h, id)))
    for _, p in ipairs(ok_json(call(h, "GET", "/programs")).programs) do
      assert.not_equal(id, p.program_id)
    end
  end)

  it("deletes with ?keep_state=true: only state/ remains, with the program's files", function()
    local h, id, port = ready_counter("keepstate")
    assert.equal(200, P.send(port, "a").status)
    assert.is_true(wait_log(h, id, "Counter: 1"))
    ok_json(call(h, "DELETE", "/programs/" .. id .. "?keep_state=true"), 200, "delete")
    assert_error(call(h, "GET", "/programs/" .. id), 404, "GET after delete")
    assert.is_true(no_process_of({ id }))
    assert.is_true(bindable(port))
    assert.same({ "state" }, list_names(program_dir(h, id)))
    assert.equal("1", P.read(program_dir(h, id) .. "/state/count"))
  end)

  it("streams the log with follow=true as lines come, across a restart", function()
    local h, id, port = ready_counter("follower")
    local curl
    defer(function() P.stop(curl) end)
    -- -D -: the head comes first on stdout, once the Host follows the log (tail=0: only
    -- lines written after that come, so "one" is sent after it)
    curl = P.start{ "env", "-u", "LD_PRELOAD", "curl", "-sN", "-D", "-", "--max-time", "120",
      "http://127.0.0.1:" .. h.port .. "/programs/" .. id .. "/logs?follow=true&tail=0" }
    local function streamed(text)
      return P.wait_for(function() return has(P.stdout(curl), text) end, WAIT, 0.05) == true
    end
    assert.is_true(streamed("HTTP/1.1 200"), P.stdout(curl))
    assert.equal(200, P.send(port, "one").status)
    assert.is_true(streamed("Counter: 1"), P.stdout(curl))
    assert.is_false(has(P.stdout(curl), "Boot: 1"), "tail=0 sends no old line")
    assert.equal(200, P.send(port, "two").status)
    assert.is_true(streamed("Counter: 2"), P.stdout(curl))
    assert.equal(202, act(h, id, "restart").status)
    wait_state(h, id, "Ready")
    assert.is_true(streamed("Boot: 2"), P.stdout(curl))
    assert.equal(200, P.send(port, "three").status)
    assert.is_true(streamed("Counter: 3"), P.stdout(curl))
    assert.is_true(P.alive(curl), "the follow is still open")
    -- each line once, in order
    local out = P.stdout(curl)
    local _, ones = out:gsub("Counter: 1", "")
    assert.equal(1, ones)
    assert.is_true(out:find("Counter: 2", 1, true) < out:find("Boot: 2", 1, true))
    assert.is_true(out:find("Boot: 2", 1, true) < out:find("Counter: 3", 1, true))
  end)

  it("gives the log's last lines with tail, the build log with type=build, 400 for bad ones", function()
    local h, id, port = ready_counter("tailer")
    for i = 1, 3 do assert.equal(200, P.send(port, "m" .. i).status) end
    assert.is_true(wait_log(h, id, "Counter: 3"))
    local res = call(h, "GET", "/programs/" .. id .. "/logs?tail=2")
    assert.equal(200, res.status)
    assert.matches("^text/plain", res.headers["content-type"])
    local lines = {}
    for line in res.body:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(2, #lines, res.body)
    assert.is_true(has(lines[1], "Counter: 2"), res.body)
    assert.is_true(has(lines[2], "Counter: 3"), res.body)
    assert.equal(200, call(h, "GET", "/programs/" .. id .. "/logs?type=build").status)
    assert_error(call(h, "GET", "/programs/" .. id .. "/logs?type=nope"), 400, "type=nope")
    assert_error(call(h, "GET", "/programs/" .. id .. "/logs?tail=-1"), 400, "tail=-1")
    assert_error(call(h, "GET", "/programs/" .. id .. "/logs?tail=x"), 400, "tail=x")
  end)

  it("filters GET /programs by user_id and state, in creation order", function()
    local h = test_host()
    local a1 = create(h, counter_body("filt-a")).program_id
    local b1 = create(h, counter_body("filt-b")).program_id
    local a2 = create(h, counter_body("filt-a")).program_id
    start_ready(h, a2)
    local function ids(query)
      local doc = ok_json(call(h, "GET", "/programs" .. query), 200, query)
      assert.is_table(doc.programs)
      assert.equal(#doc.programs, doc.count)
      local out = {}
      for i, p in ipairs(doc.programs) do out[i] = p.program_id end
      return out
    end
    assert.same({ a1, a2 }, ids("?user_id=filt-a"))
    assert.same({ b1 }, ids("?user_id=filt-b"))
    assert.same({ a2 }, ids("?user_id=filt-a&state=Ready"))
    assert.same({ a1 }, ids("?user_id=filt-a&state=Created"))
    assert.same({}, ids("?user_id=filt-c"))
    assert.same({}, ids("?user_id=filt-b&state=Ready"))
    local all = ids("")
    assert.is_true(#all >= 3)
    local ready = ids("?state=Ready")
    assert.is_true(#ready >= 1)
    for _, p in ipairs(ok_json(call(h, "GET", "/programs?state=Ready")).programs) do
      assert.equal("Ready", p.state)
    end
    -- creation order, and an empty list is a JSON array
    local pos = {}
    for i, id in ipairs(all) do pos[id] = i end
    assert.is_true(pos[a1] < pos[b1] and pos[b1] < pos[a2])
    assert.matches('"programs":%[%]', call(h, "GET", "/programs?user_id=filt-c").body)
    -- the same payload gives the same build id, whoever sends it
    assert.equal(view(h, a1).build_id, view(h, b1).build_id)
    assert.equal(view(h, a1).build_id, view(h, a2).build_id)
    -- each entry is the record GET /programs/{id} gives
    local listed = ok_json(call(h, "GET", "/programs?user_id=filt-b")).programs[1]
    local single = view(h, b1)
    for _, k in ipairs{ "program_id", "user_id", "build_id", "state", "proxy_url", "publish_port", "created_at" } do
      assert.equal(single[k], listed[k], k)
    end
  end)

  it("returns the uploaded files with GET /programs/{id}/source", function()
    local h = test_host()
    local files = { ["main.lua"] = MAIN_LUA, ["lib/util.lua"] = "return 42\n", ["data/a b.txt"] = "x\n\0y" }
    local id = create(h, counter_body("sourcer", { src_files = files })).program_id
    local doc = ok_json(call(h, "GET", "/programs/" .. id .. "/source"), 200, "source")
    assert.equal(id, doc.program_id)
    assert.same(files, doc.files)
    assert.matches(ISO, doc.retrieved_at)
    assert_error(call(h, "GET", "/programs/nope-build-000000000000-00000000/source"), 404, "unknown id")
  end)

  it("stops cleanly on SIGTERM, its programs with it", function()
    local h = test_host()
    start_ready(h, create(h, counter_body("ender")).program_id)
    create(h, counter_body("ender"))
    assert_clean_exit(h)
  end)
end)

-- ---- 2: bad input --------------------------------------------------------------------------

describe("hersh host: bad requests", function()
  local DF = 'FROM hersh\nCMD ["hersh", "run", "/app/main.lua"]\n'

  -- Nothing was created: no program listed, nothing under storage/programs.
  local function nothing_created(h)
    local doc = ok_json(call(h, "GET", "/programs"))
    assert.equal(0, doc.count)
    assert.same({}, list_names(h.storage .. "/programs"))
  end

  it("refuses malformed bodies with 400 and creates nothing", function()
    local h = test_host()
    local cases = {
      { "malformed JSON", "{bad" },
      { "truncated JSON", '{"user_id": "a"' },
      { "no body", "" },
      { "an array", "[1, 2]" },
      { "an empty array", "[]" },
      { "a string", '"text"' },
      { "a number", "42" },
      { "null", "null" },
    }
    for _, c in ipairs(cases) do
      assert_error(call(h, "POST", "/programs", c[2]), 400, c[1])
    end
    nothing_created(h)
  end)

  it("refuses missing or mistyped fields with 400 and creates nothing", function()
    local h = test_host()
    local cases = {
      { "empty object", {} },
      { "no user_id", { dockerfile = DF } },
      { "no dockerfile", { user_id = "alice" } },
      { "empty dockerfile", { user_id = "alice", dockerfile = "" } },
      { "dockerfile not a string", { user_id = "alice", dockerfile = 7 } },
      { "user_id not a string", { user_id = 12, dockerfile = DF } },
      { "src_files not an object", { user_id = "alice", dockerfile = DF, src_files = "main.lua" } },
      { "src_files content not a string", { user_id = "alice", dockerfile = DF, src_files = { ["a.lua"] = 1 } } },
      { "env not an object", { user_id = "alice", dockerfile = DF, env = "X=1" } },
      { "bad env name", { user_id = "alice", dockerfile = DF, env = { ["1X"] = "v" } } },
      { "bad limits", { user_id = "alice", dockerfile = DF, limits = { memory = -1 } } },
      { "bad network", { user_id = "alice", dockerfile = DF, network = "bridge" } },
    }
    for _, c in ipairs(cases) do
      assert_error(call(h, "POST", "/programs", c[2]), 400, c[1])
    end
    nothing_created(h)
  end)

  it("refuses a bad user_id with 400", function()
    local h = test_host()
    local bad = { "Alice", "ALICE", "-alice", "_alice", "a/b", "../a", "a b", "a.b", "", string.rep("a", 65),
      "é" }
    for _, user_id in ipairs(bad) do
      assert_error(call(h, "POST", "/programs", counter_body(user_id)), 400, "user_id " .. user_id)
    end
    nothing_created(h)
    -- the edges that are fine: 64 characters, digits first, '-' and '_' inside
    for _, user_id in ipairs{ string.rep("a", 64), "0a", "a-b_c" } do
      local doc = create(h, counter_body(user_id))
      assert.equal(200, call(h, "DELETE", "/programs/" .. doc.program_id).status)
    end
    nothing_created(h)
  end)

  it("refuses source paths that escape or are not plain, with 400", function()
    local h = test_host()
    local bad = { "../x", "/etc/passwd", "a/../../b", "a/..", "..", "a\0b", "", "./../x" }
    for _, path in ipairs(bad) do
      local body = counter_body("alice")
      body.src_files[path] = "evil"
      assert_error(call(h, "POST", "/programs", body), 400, ("path %q"):format(path))
    end
    nothing_created(h)
  end)

  it("refuses an unsupported or broken Dockerfile with 400 naming the line", function()
    local h = test_host()
    local cases = {
      { "VOLUME", "FROM hersh\nVOLUME /data\nCMD [\"true\"]\n", "line 2" },
      { "HEALTHCHECK", "FROM hersh\nWORKDIR /app\nHEALTHCHECK CMD true\nCMD [\"true\"]\n", "line 3" },
      { "an unknown base", "FROM ubuntu:22.04\nCMD [\"true\"]\n", "line 1" },
      { "EXPOSE other than 8080", "FROM hersh\nEXPOSE 9090\nCMD [\"true\"]\n", "line 2" },
      { "a non-numeric USER", "FROM hersh\nUSER nobody\nCMD [\"true\"]\n", "line 2" },
      { "COPY of a file not uploaded", "FROM hersh\nCOPY missing.lua /app/\nCMD [\"true\"]\n", nil },
    }
    for _, c in ipairs(cases) do
      local res = call(h, "POST", "/programs", counter_body("alice", { dockerfile = c[2] }))
      assert_error(res, 400, c[1])
      if c[3] then assert.is_true(has(res.json.message:lower(), c[3]), c[1] .. ": " .. res.json.message) end
    end
    nothing_created(h)
  end)

  it("refuses a Dockerfile without CMD or ENTRYPOINT with 400", function()
    local h = test_host()
    local res = call(h, "POST", "/programs",
      counter_body("alice", { dockerfile = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\n" }))
    assert_error(res, 400, "no CMD")
    nothing_created(h)
  end)

  it("refuses a body over 16 MiB with 413 and the error shape", function()
    local h = test_host()
    local big = '{"user_id":"alice","dockerfile":"FROM hersh\\nCMD [\\"true\\"]\\n","src_files":{"big.txt":"'
      .. string.rep("a", 16 * 1024 * 1024) .. '"}}'
    assert_error(call(h, "POST", "/programs", big), 413, "oversize body")
    nothing_created(h)
  end)

  it("answers 404 for an unknown id or route, on every route", function()
    local h = test_host()
    local id = "alice-build-000000000000-00000000"
    local cases = {
      { "GET", "/programs/" .. id }, { "DELETE", "/programs/" .. id },
      { "POST", "/programs/" .. id .. "/start" }, { "POST", "/programs/" .. id .. "/stop" },
      { "POST", "/programs/" .. id .. "/restart" }, { "GET", "/programs/" .. id .. "/logs" },
      { "GET", "/programs/" .. id .. "/source" }, { "GET", "/programs/" .. id .. "/proxy/watcher/status" },
      { "POST", "/programs/" .. id .. "/proxy/watcher/message" },
      { "GET", "/nope" }, { "GET", "/programs/" .. id .. "/nope" },
    }
    for _, c in ipairs(cases) do
      assert_error(call(h, c[1], c[2]), 404, c[1] .. " " .. c[2])
    end
  end)

  it("answers 405 for a wrong method", function()
    local h = test_host()
    local id = create(h, counter_body("methods")).program_id
    defer(function() call(h, "DELETE", "/programs/" .. id) end)
    local cases = {
      { "PUT", "/programs" }, { "DELETE", "/programs" }, { "PATCH", "/programs/" .. id },
      { "POST", "/programs/" .. id }, { "PUT", "/programs/" .. id .. "/start" },
      { "GET", "/programs/" .. id .. "/start" }, { "GET", "/programs/" .. id .. "/stop" },
      { "DELETE", "/programs/" .. id .. "/restart" }, { "POST", "/programs/" .. id .. "/logs" },
      { "POST", "/programs/" .. id .. "/source" }, { "POST", "/health" },
    }
    for _, c in ipairs(cases) do
      assert_error(call(h, c[1], c[2]), 405, c[1] .. " " .. c[2])
    end
    assert.equal("Created", view(h, id).state)
  end)

  it("refuses each transition the state does not allow with 409 and the state; proxy 503 unless Ready", function()
    local h = test_host()
    local created = create(h, counter_body("transitions"))
    local id = created.program_id
    defer(function() call(h, "DELETE", "/programs/" .. id) end)
    local function refused(action, state)
      local res = act(h, id, action)
      assert_error(res, 409, action .. " in " .. state)
      assert.equal(state, res.json.state, action .. " in " .. state)
      assert.equal(state, view(h, id).state)
    end
    local function proxy_refused(state)
      local res = call(h, "GET", "/programs/" .. id .. "/proxy/watcher/status")
      assert_error(res, 503, "proxy in " .. state)
      res = call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "x" })
      assert_error(res, 503, "proxy in " .. state)
    end
    refused("stop", "Created")
    refused("restart", "Created")
    proxy_refused("Created")
    start_ready(h, id)
    refused("start", "Ready")
    assert.equal(200, call(h, "GET", "/programs/" .. id .. "/proxy/watcher/status").status)
    assert.equal(202, act(h, id, "stop").status)
    wait_state(h, id, "Stopped")
    refused("stop", "Stopped")
    refused("restart", "Stopped")
    proxy_refused("Stopped")
  end)

  it("has no auth without a token file", function()
    local h = test_host()
    assert.equal(200, P.http(h.port, "GET", "/programs").status)
    assert.equal(200, P.http(h.port, "GET", "/programs",
      { headers = { "Authorization: Bearer anything" } }).status)
  end)

  it("takes a JSON null as an omitted field; refuses fractional or tiny limits", function()
    local h = test_host()
    local doc = create(h, counter_body("nulls", { network = cjson.null, env = cjson.null, limits = cjson.null,
      restart_policy = cjson.null, src_files = { ["main.lua"] = MAIN_LUA } }))
    local rec = view(h, doc.program_id)
    assert.equal("none", rec.network)
    ok_json(call(h, "DELETE", "/programs/" .. doc.program_id), 200, "delete")
    for _, limits in ipairs{ { memory = 64 * 1024 * 1024 + 0.5 }, { pids = 2.5 }, { memory = 1024 * 1024 } } do
      assert_error(call(h, "POST", "/programs", counter_body("limits", { limits = limits })), 400,
        "limits " .. cjson.encode(limits))
    end
    nothing_created(h)
  end)

  it("does not take /proxyfoo for the proxy", function()
    local h = test_host()
    local doc = create(h, counter_body("proxyfoo"))
    local res = call(h, "GET", "/programs/" .. doc.program_id .. "/proxyfoo")
    assert_error(res, 404, "proxyfoo")
    assert.is_truthy(has(res.json.message, "no route"))
    ok_json(call(h, "DELETE", "/programs/" .. doc.program_id), 200, "delete")
  end)

  it("answers 503 on the port of a Restarting program instead of leaving clients waiting", function()
    local h = test_host()
    local doc = create(h, { user_id = "crashy", dockerfile = assert(P.read("spec/programs/crash/Dockerfile")),
      restart_policy = { base_delay = 30, max_delay = 30 } })
    ok_json(act(h, doc.program_id, "start"), 202, "start")
    wait_state(h, doc.program_id, "Restarting")
    local res = P.http(doc.publish_port, "GET", "/watcher/status")
    assert.equal(503, res.status, res.body)
    assert.is_truthy(has(res.body, "no program is running"))
    ok_json(call(h, "DELETE", "/programs/" .. doc.program_id), 200, "delete")
  end)

  it("builds again an image cached with another layout, instead of failing to start it", function()
    local h = test_host()
    local doc = create(h, counter_body("layout"))
    local image = h.storage .. "/images/" .. doc.build_id
    assert(fs.mkdir_p(image))
    assert(fs.write_file(image .. "/image.json", cjson.encode{ build_id = doc.build_id, base = "hersh",
      cmd = { "hersh", "run", "/app/main.lua" } })) -- an old image: no layout, no rootfs
    start_ready(h, doc.program_id)
    local meta = assert(P.read(image .. "/image.json"))
    assert.equal(2, cjson.decode(meta).layout)
    ok_json(call(h, "DELETE", "/programs/" .. doc.program_id), 200, "delete")
  end)

  it("refuses a --ports range that is not one", function()
    local dir = public_tmpdir()
    defer(function() sh("rm -rf " .. P.quote(dir)) end)
    local proc = P.start{ P.hersh, "host", "--port", "0", "--storage", dir .. "/s", "--ports", "20010-20000" }
    defer(function() P.stop(proc) end)
    assert.is_truthy(P.wait_for(function() return not P.alive(proc) end, WAIT))
    assert.equal(2, P.status(proc))
    assert.is_truthy(has(P.stderr(proc), "--ports"))
  end)

  it("stops cleanly on SIGTERM after refusing bad requests", function()
    local h = test_host()
    assert_error(call(h, "POST", "/programs", "{bad"), 400, "malformed")
    assert_error(call(h, "POST", "/programs", counter_body("alice", { dockerfile = DF .. "VOLUME /x\n" })), 400,
      "Dockerfile")
    assert_error(call(h, "GET", "/nope"), 404, "route")
    assert_clean_exit(h)
  end)
end)

-- ---- 3: ports ------------------------------------------------------------------------------

describe("hersh host: publish ports", function()
  it("gives the lowest free port, skips one busy on the machine, reuses a released one, 503 when none is left; stops cleanly on SIGTERM", function()
    local h = test_host{ ports = { free_range(4) } }
    local a = h.first
    -- a+1 is busy on the machine: held here
    local holder = assert(sys.listen("127.0.0.1", a + 1))
    defer(function() if holder then sys.close_fd(holder) end end)
    local p1 = create(h, counter_body("ports"))
    assert.equal(a, p1.publish_port)
    local p2 = create(h, counter_body("ports"))
    assert.equal(a + 2, p2.publish_port, "the busy port is skipped")
    sys.close_fd(holder)
    holder = nil
    local p3 = create(h, counter_body("ports"))
    assert.equal(a + 1, p3.publish_port, "the lowest free port first")
    local p4 = create(h, counter_body("ports"))
    assert.equal(a + 3, p4.publish_port)
    -- the Host holds every port it gave
    for port = a, a + 3 do assert.is_false(bindable(port), "port " .. port .. " is held") end
    -- exhausted
    local res = call(h, "POST", "/programs", counter_body("ports"))
    assert_error(res, 503, "no port left")
    assert.equal(4, ok_json(call(h, "GET", "/programs")).count)
    assert.equal(4, #list_names(h.storage .. "/programs"))
    -- a delete releases: free on the machine, then the lowest again
    assert.equal(200, call(h, "DELETE", "/programs/" .. p1.program_id).status)
    assert.is_true(bindable(a), "port " .. a .. " is free after the delete")
    local p5 = create(h, counter_body("ports"))
    assert.equal(a, p5.publish_port, "the released port is given again")
    -- and a program on a reused port works
    start_ready(h, p5.program_id)
    assert.equal(200, P.send(a, "x").status)
    assert.is_true(wait_log(h, p5.program_id, "Counter: 1"))
    assert_error(call(h, "POST", "/programs", counter_body("ports")), 503, "still none left")
    assert_clean_exit(h)
  end)

  it("a range of 2 ports: 2 programs, then 503", function()
    local h2 = test_host{ ports = { free_range(2) } }
    assert.equal(h2.first, create(h2, counter_body("two")).publish_port)
    assert.equal(h2.first + 1, create(h2, counter_body("two")).publish_port)
    assert_error(call(h2, "POST", "/programs", counter_body("two")), 503, "exhausted")
    assert.equal(2, ok_json(call(h2, "GET", "/programs")).count)
  end)
end)

-- ---- 4: persistence ------------------------------------------------------------------------

describe("hersh host: persistence", function()
  -- A storage of the test's own holding three programs: `run` Ready (it has counted to
  -- 2), `stopped` Stopped through the API, `created` never started; s.h is the Host
  -- serving it, s.new_host() starts the next one on it. Every Host, program process and
  -- the storage go away when the test ends.
  local function persisted()
    local s = { root = public_tmpdir(), range = { free_range(8) }, ids = {} }
    s.storage = s.root .. "/storage"
    local hosts = {}
    defer(function()
      for _, h in ipairs(hosts) do stop_host(h) end
      kill_programs(s.ids)
      sh("rm -rf " .. P.quote(s.root))
    end)
    function s.new_host()
      s.h = start_host{ storage = s.storage, ports = s.range }
      s.h.ids = s.ids
      hosts[#hosts + 1] = s.h
      return s.h
    end
    local h = s.new_host()
    s.run = view(h, create(h, counter_body("persist-run")).program_id)
    s.stopped = view(h, create(h, counter_body("persist-stopped")).program_id)
    s.created = view(h, create(h, counter_body("persist-created")).program_id)
    start_ready(h, s.run.program_id)
    start_ready(h, s.stopped.program_id)
    assert.equal(202, act(h, s.stopped.program_id, "stop").status)
    wait_state(h, s.stopped.program_id, "Stopped")
    assert.equal(200, P.send(s.run.publish_port, "a").status)
    assert.equal(200, P.send(s.run.publish_port, "b").status)
    assert.is_true(wait_log(h, s.run.program_id, "Counter: 2"))
    return s
  end

  -- Every program is listed again with the same id, user, build and port.
  local function assert_same_programs(s)
    local now = {}
    for _, p in ipairs(ok_json(call(s.h, "GET", "/programs")).programs) do now[p.program_id] = p end
    for _, first in ipairs{ s.run, s.stopped, s.created } do
      local p = now[first.program_id]
      assert.is_table(p, "program " .. first.program_id .. " is listed again")
      for _, k in ipairs{ "user_id", "build_id", "publish_port", "proxy_url", "created_at" } do
        assert.equal(first[k], p[k], k)
      end
    end
    assert.equal(3, ok_json(call(s.h, "GET", "/programs")).count)
  end

  it("comes back after kill -9: same ids and ports, the running program Ready again", function()
    local s = persisted()
    local run, stopped, created = s.run, s.stopped, s.created
    local h = s.h
    local old_pid = view(h, run.program_id).pid

    assert.is_true(P.signal(h.proc, "KILL"))
    assert.is_truthy(P.wait_exit(h.proc))
    assert.is_true(no_process_of(s.ids), "the programs die with their Host")
    assert.is_true(gone(old_pid), "the program's process " .. old_pid .. " is gone")
    P.stop(h.proc)

    h = s.new_host()
    assert.is_true(has(P.stderr(h.proc), "3 programs"), P.stderr(h.proc))
    assert_same_programs(s)
    assert.equal("Created", view(h, created.program_id).state)
    local back = wait_state(h, run.program_id, "Ready")
    assert.not_equal(old_pid, back.pid)
    assert.equal("Stopped", view(h, stopped.program_id).state)
    assert.equal("Created", view(h, created.program_id).state)
    -- /state survived: the count goes on
    assert.equal(200, P.send(run.publish_port, "c").status)
    assert.is_true(wait_log(h, run.program_id, "Counter: 3"), logs(h, run.program_id))
    -- and the stopped one can still be started
    start_ready(h, stopped.program_id)
    assert.equal(202, act(h, stopped.program_id, "stop").status)
    wait_state(h, stopped.program_id, "Stopped")
  end)

  it("comes back after a graceful SIGTERM likewise", function()
    local s = persisted()
    local check_exit = terminate(s.h)
    P.stop(s.h.proc)
    local h = s.new_host()
    assert_same_programs(s)
    wait_state(h, s.run.program_id, "Ready")
    assert.equal("Stopped", view(h, s.stopped.program_id).state)
    assert.equal("Created", view(h, s.created.program_id).state)
    assert.equal(200, P.send(s.run.publish_port, "d").status)
    assert.is_true(wait_log(h, s.run.program_id, "Counter: 3"), logs(h, s.run.program_id))
    check_exit() -- the previous Host ended well
  end)

  it("keeps a program stopped through the API stopped after a restart of the Host", function()
    local s = persisted()
    local run = s.run
    assert.equal(202, act(s.h, run.program_id, "stop").status)
    wait_state(s.h, run.program_id, "Stopped")
    local check_exit = terminate(s.h)
    P.stop(s.h.proc)
    local h = s.new_host()
    assert_same_programs(s)
    assert.equal("Stopped", view(h, run.program_id).state)
    assert.equal("Stopped", view(h, s.stopped.program_id).state)
    assert_error(P.get(run.publish_port, "/watcher/status"), 503, "the port of a Stopped program")
    check_exit()
  end)

  it("brings back a program that served requests through the proxy route; stops cleanly on SIGTERM", function()
    local s = persisted()
    local run = s.run
    local res = call(s.h, "POST", "/programs/" .. run.program_id .. "/proxy/watcher/message", { content = "e" })
    assert.equal(200, res.status, res.body)
    assert.is_true(wait_log(s.h, run.program_id, "Counter: 3"))
    assert.is_true(P.signal(s.h.proc, "KILL"))
    assert.is_truthy(P.wait_exit(s.h.proc))
    assert.is_true(no_process_of(s.ids))
    P.stop(s.h.proc)
    local h = s.new_host()
    assert_same_programs(s)
    wait_state(h, run.program_id, "Ready")
    assert_clean_exit(h)
  end)
end)

-- ---- 5: auth -------------------------------------------------------------------------------

describe("hersh host: bearer token", function()
  local TOKEN = "s3cret-token-for-the-spec"

  -- A temporary directory, removed when the test ends.
  local function scratch()
    local dir = P.tmpdir()
    defer(function() sh("rm -rf " .. P.quote(dir)) end)
    return dir
  end

  it("needs the token on every route but /health: 401 without or wrong, success with it; stops cleanly on SIGTERM", function()
    local dir = scratch()
    P.write(dir .. "/token", TOKEN .. "\n")
    local h = test_host{ token_file = dir .. "/token" }
    local function as(token)
      return { port = h.port, token = token, ids = h.ids, storage = h.storage }
    end
    local good, none = as(TOKEN), as(nil)
    local wrongs = { as("wrong"), as(TOKEN:sub(1, -2) .. "X"), as(TOKEN .. "x") }
    -- /health is open
    assert.equal(200, call(none, "GET", "/health").status)

    local function refused(method, path, body)
      assert_error(call(none, method, path, body), 401, "no token: " .. method .. " " .. path)
      for _, w in ipairs(wrongs) do
        assert_error(call(w, method, path, body), 401, "wrong token: " .. method .. " " .. path)
      end
      assert_error(call(none, method, path, body, { "Authorization: Basic " .. TOKEN }), 401,
        "Basic: " .. method .. " " .. path)
      assert_error(call(none, method, path, body, { "Authorization: " .. TOKEN }), 401,
        "no scheme: " .. method .. " " .. path)
    end

    refused("POST", "/programs", counter_body("auth"))
    assert.equal(0, ok_json(call(good, "GET", "/programs")).count, "nothing created without the token")
    local id = create(good, counter_body("auth")).program_id
    local base = "/programs/" .. id
    refused("GET", "/programs")
    refused("GET", base)
    refused("POST", base .. "/start")
    assert.equal("Created", view(good, id).state, "not started without the token")
    start_ready(good, id)
    refused("GET", base .. "/logs")
    refused("GET", base .. "/source")
    refused("GET", base .. "/proxy/watcher/status")
    refused("POST", base .. "/proxy/watcher/message", { content = "x" })
    refused("POST", base .. "/restart")
    refused("POST", base .. "/stop")
    assert.equal("Ready", view(good, id).state, "not stopped without the token")
    refused("DELETE", base)
    refused("GET", "/programs/unknown-id")

    -- all of them with the token
    assert.equal(200, call(good, "GET", "/programs").status)
    assert.equal(200, call(good, "GET", base .. "/proxy/watcher/status").status)
    assert.equal(200, call(good, "POST", base .. "/proxy/watcher/message", { content = "x" }).status)
    assert.is_true(wait_log(good, id, "Counter: 1"))
    assert.equal(200, call(good, "GET", base .. "/source").status)
    assert.equal(202, act(good, id, "restart").status)
    wait_state(good, id, "Ready")
    assert.equal(202, act(good, id, "stop").status)
    wait_state(good, id, "Stopped")
    assert.equal(200, call(good, "DELETE", base).status)
    assert_error(call(good, "GET", base), 404, "deleted")
    assert_clean_exit(h)
  end)

  it("refuses to start with an empty token file", function()
    local dir = scratch()
    P.write(dir .. "/empty", "\n")
    local root = public_tmpdir()
    local proc = P.start{ P.hersh, "host", "--port", "0", "--storage", root .. "/s", "--token-file", dir .. "/empty" }
    defer(function()
      P.stop(proc)
      sh("rm -rf " .. P.quote(root))
    end)
    local rc = P.wait_exit(proc)
    assert.is_truthy(rc, "the Host exits")
    assert.not_equal(0, rc)
    assert.is_true(has(P.stderr(proc), "empty"), P.stderr(proc))
  end)
end)

-- ---- 6: many programs at once ---------------------------------------------------------------

-- Runs the requests {method, path, body} all at once (one curl each, in the
-- background); their results {status, json, body}, in order.
local function parallel(h, requests)
  local dir = P.tmpdir()
  local parts = {}
  for i, r in ipairs(requests) do
    local words = { "env -u LD_PRELOAD curl -s --max-time", tostring(P.CURL_TIMEOUT), "-o", P.quote(dir .. "/" .. i .. ".body"),
      "-w '%{http_code}'", "-X", r[1] }
    if r[3] then
      P.write(dir .. "/" .. i .. ".req", cjson.encode(r[3]))
      words[#words + 1] = "--data-binary @" .. P.quote(dir .. "/" .. i .. ".req")
      words[#words + 1] = "-H 'Content-Type: application/json'"
    end
    words[#words + 1] = P.quote("http://127.0.0.1:" .. h.port .. r[2])
    parts[#parts + 1] = table.concat(words, " ") .. " >" .. P.quote(dir .. "/" .. i .. ".code") .. " &"
  end
  assert(sh(table.concat(parts, "\n") .. "\nwait"))
  local out = {}
  for i = 1, #requests do
    local body = P.read(dir .. "/" .. i .. ".body") or ""
    local ok, doc = pcall(cjson.decode, body)
    out[i] = { status = tonumber(P.read(dir .. "/" .. i .. ".code") or "") or 0, body = body,
      json = ok and integers(doc) or nil }
  end
  sh("rm -rf " .. P.quote(dir))
  return out
end

describe("hersh host: 20 programs at once", function()
  local N = 20

  it("creates and starts 20 programs at once; all reach Ready, GET /programs answers throughout; all stop with the Host", function()
    local h = test_host{ ports = { free_range(N) } }
    -- 20 payloads, 20 builds, each with a RUN step
    local creates = {}
    for i = 1, N do
      local dockerfile = DOCKERFILE:gsub("CMD", "RUN sleep 1\nCMD")
      local main = MAIN_LUA .. "-- program " .. i .. "\n"
      creates[i] = { "POST", "/programs", counter_body("many", { dockerfile = dockerfile, src_files = { ["main.lua"] = main } }) }
    end
    local ids, ports, builds = {}, {}, {}
    for i, res in ipairs(parallel(h, creates)) do
      assert.equal(201, res.status, res.body)
      ids[i] = res.json.program_id
      h.ids[#h.ids + 1] = ids[i]
      assert.is_nil(ports[res.json.publish_port], "ports are distinct")
      ports[res.json.publish_port] = true
      builds[res.json.build_id] = true
    end
    local n_builds = 0
    for _ in pairs(builds) do n_builds = n_builds + 1 end
    assert.equal(N, n_builds)

    local starts = {}
    for i, id in ipairs(ids) do starts[i] = { "POST", "/programs/" .. id .. "/start" } end
    for _, res in ipairs(parallel(h, starts)) do
      assert.equal(202, res.status, res.body)
    end

    -- poll the list until all are Ready: every poll answers
    local polls, saw_building, last = 0, false, nil
    local all_ready = P.wait_for(function()
      local res = call(h, "GET", "/programs")
      polls = polls + 1
      assert.equal(200, res.status, "poll " .. polls .. ": " .. res.body)
      assert.is_table(res.json)
      assert.equal(N, res.json.count)
      last = res.body
      local ready = 0
      for _, p in ipairs(res.json.programs) do
        if p.state == "Building" then saw_building = true end
        assert.not_equal("Error", p.state, p.program_id .. ": " .. tostring(p.error_msg))
        if p.state == "Ready" then ready = ready + 1 end
      end
      return ready == N
    end, 120, 0.05)
    assert.is_true(all_ready == true, "not all Ready: " .. tostring(last))
    assert.is_true(saw_building, "some poll came while programs were building")
    assert.is_true(polls > 1)

    -- each answers on its own port
    local checks = {}
    for i, id in ipairs(ids) do checks[i] = { "GET", "/programs/" .. id .. "/proxy/watcher/status" } end
    for _, res in ipairs(parallel(h, checks)) do
      assert.equal(200, res.status, res.body)
    end
    for port in pairs(ports) do
      assert.equal(200, P.get(port, "/watcher/status").status)
    end
    assert_clean_exit(h) -- SIGTERM: exit 0, all 20 programs with it
  end)
end)

-- ---- logs followed on file events; a Lua syntax error fails the build -----------------

-- The voluntary context switches of all the threads of a process: each time one of
-- them went to sleep, i.e. about how often it woke up.
local function wakeups(pid)
  local n = 0
  for _, tid in ipairs(fs.list("/proc/" .. pid .. "/task") or {}) do
    local status = P.read("/proc/" .. pid .. "/task/" .. tid .. "/status") or ""
    n = n + (tonumber(status:match("voluntary_ctxt_switches:%s*(%d+)")) or 0)
  end
  return n
end

describe("hersh host: following logs", function()
  -- -D -: the head first on stdout, once the Host follows the log (see "streams the log")
  local function follow(h, id, query)
    return P.start{ "env", "-u", "LD_PRELOAD", "curl", "-sN", "-D", "-", "--max-time", "120",
      "http://127.0.0.1:" .. h.port .. "/programs/" .. id .. "/logs?follow=true" .. (query or "") }
  end

  local function streamed(curl, text)
    return P.wait_for(function() return has(P.stdout(curl), text) end, WAIT, 0.05) == true
  end

  local function append(path, text)
    local f = assert(io.open(path, "ab"))
    assert(f:write(text))
    assert(f:close())
  end

  it("ends the followed stream, lines and all, when the program is deleted", function()
    local h, id, port = ready_counter("deleted-follow")
    local curl = follow(h, id, "&tail=0")
    defer(function() P.stop(curl) end)
    assert.is_true(streamed(curl, "HTTP/1.1 200"), P.stdout(curl))
    assert.equal(200, P.send(port, "one").status)
    assert.is_true(streamed(curl, "Counter: 1"), P.stdout(curl))
    ok_json(call(h, "DELETE", "/programs/" .. id), 200, "delete")
    assert.is_truthy(P.wait_exit(curl, WAIT), "the follow is still open after the delete")
    assert.equal(0, P.status(curl), "curl saw a complete chunked answer: " .. P.stderr(curl))
    assert.is_true(has(P.stdout(curl), "Counter: 1"))
  end)

  it("follows a log that is rotated (renamed away, a new one made) or truncated", function()
    local h = test_host()
    local id = create(h, counter_body("rotated-follow")).program_id
    local log = program_dir(h, id) .. "/logs/runtime.log"
    append(log, "before 1\n")
    local curl = follow(h, id, "&tail=5")
    defer(function() P.stop(curl) end)
    assert.is_true(streamed(curl, "before 1"), P.stdout(curl))
    append(log, "before 2\n")
    assert.is_true(streamed(curl, "before 2"), P.stdout(curl))
    -- as capture rotates: the old file renamed to .1, a new one written
    assert(os.rename(log, log .. ".1"))
    append(log, "after rotation\n")
    assert.is_true(streamed(curl, "after rotation"), P.stdout(curl))
    -- truncated in place, then written again (shorter than what was read)
    local f = assert(io.open(log, "wb"))
    assert(f:write("cut\n"))
    assert(f:close())
    assert.is_true(streamed(curl, "cut\n"), P.stdout(curl))
    local out = P.stdout(curl)
    local _, ones = out:gsub("before 1", "")
    assert.equal(1, ones, out)
    assert.is_true(out:find("before 2", 1, true) < out:find("after rotation", 1, true))
    ok_json(call(h, "DELETE", "/programs/" .. id), 200, "delete")
    assert.is_truthy(P.wait_exit(curl, WAIT), "the follow is still open after the delete")
  end)

  it("resets a follower that never reads while the log grows; others keep following", function()
    local h = test_host()
    local id = create(h, counter_body("stalled-follow")).program_id
    local log = program_dir(h, id) .. "/logs/runtime.log"
    local req = "GET /programs/" .. id .. "/logs?follow=true&tail=0 HTTP/1.1\r\nHost: 127.0.0.1:" .. h.port .. "\r\n\r\n"
    local sleeper = H.never_reading_client(h.port, req)
    assert.is_true(P.wait_for(function() return H.socket_state(sleeper.pid) == "01" end, WAIT) == true)
    local curl = follow(h, id, "&tail=0")
    defer(function() P.stop(curl) end)
    local line = string.rep("y", 1023) .. "\n"
    -- far more than the stream's buffer and both sockets' buffers can hold
    local closed = P.wait_for(function()
      append(log, string.rep(line, 1024))
      return H.socket_state(sleeper.pid) ~= "01"
    end, WAIT, 0.05)
    assert.is_true(closed == true, "the Host kept the stalled follow open: " .. tostring(H.socket_state(sleeper.pid)))
    append(log, "still here\n")
    assert.is_true(streamed(curl, "still here"), "the reading follower stopped")
    ok_json(call(h, "GET", "/health"), 200, "health")
  end)

  it("has no periodic wake-up per follower: 20 idle follows leave the Host asleep", function()
    local h = test_host()
    local id = create(h, counter_body("idle-follow")).program_id
    local log = program_dir(h, id) .. "/logs/runtime.log"
    local curls = {}
    defer(function()
      for _, c in ipairs(curls) do P.stop(c) end
    end)
    for i = 1, 20 do curls[i] = follow(h, id, "&tail=0") end
    -- every follower is connected once each has seen a line written after it came
    local all = P.wait_for(function()
      append(log, "ping\n")
      for _, c in ipairs(curls) do
        if not has(P.stdout(c), "ping") then return false end
      end
      return true
    end, WAIT, 0.2)
    assert.is_true(all == true, "not every follower got the line")
    -- A timer per follower (every 0.2 s) would wake the Host about 100 times a second.
    local before = wakeups(h.proc.pid)
    P.sleep(2)
    local woke = wakeups(h.proc.pid) - before
    assert.is_true(woke < 40, "the Host woke " .. woke .. " times in 2 s with 20 idle follows")
    for _, c in ipairs(curls) do assert.is_true(P.alive(c)) end
    ok_json(call(h, "DELETE", "/programs/" .. id), 200, "delete")
    for _, c in ipairs(curls) do assert.is_truthy(P.wait_exit(c, WAIT)) end
  end)

  it("fails the build of a Lua file with a syntax error, naming the file and line", function()
    local h = test_host()
    local bad = "local x = 1\nlocal y = 2\nlocal z\nz x\n"
    local id = create(h, counter_body("syntax", { src_files = { ["main.lua"] = bad, ["lib/ok.lua"] = "#!/usr/bin/env lua\nreturn 1\n" },
      dockerfile = "FROM hersh\nWORKDIR /app\nCOPY lib/ /app/lib/\nCOPY main.lua /app/\nCMD [\"hersh\", \"run\", \"/app/main.lua\"]\n" })).program_id
    assert.equal(202, act(h, id, "start").status)
    local doc = wait_state(h, id, "Error")
    assert.truthy(has(doc.error_msg, "COPY (line 4): main.lua:4: syntax error near 'x'"), doc.error_msg)
    assert.equal(0, doc.restarts or 0, "it never ran")
    assert.truthy(has(logs(h, id, "?type=build"), "main.lua:4:"))
  end)

  it("stops cleanly on SIGTERM with a follow still open, which then ends", function()
    local h = test_host()
    local id = create(h, counter_body("open-follow")).program_id
    local curl = follow(h, id)
    defer(function() P.stop(curl) end)
    append(program_dir(h, id) .. "/logs/runtime.log", "last words\n")
    assert.is_true(streamed(curl, "last words"), P.stdout(curl))
    assert_clean_exit(h)
    assert.is_truthy(P.wait_exit(curl, WAIT), "the follow outlived its Host")
  end)
end)

-- ---- one Host per storage -----------------------------------------------------------

describe("hersh host: one Host per storage", function()
  it("refuses a second Host on the same storage (exit 2, naming the holder's pid); the first's programs run on, and stop with it", function()
    local h = test_host()
    local id = create(h, counter_body("lock-first")).program_id
    start_ready(h, id)
    local lo, hi = free_range(4)
    local second = P.start{ P.hersh, "host", "--port", "0", "--storage", h.storage, "--ports", lo .. "-" .. hi }
    defer(function() P.stop(second) end)
    assert.is_truthy(P.wait_exit(second, WAIT), "the second Host exits")
    assert.equal(2, P.status(second))
    local err = P.stderr(second)
    local lines = select(2, err:gsub("\n", ""))
    assert.equal(1, lines, err)
    assert.is_true(has(err, "in use by another Host"), err)
    assert.is_true(has(err, "pid " .. h.proc.pid), err)
    -- nothing of the first Host's was touched
    assert.equal("Ready", view(h, id).state)
    assert.is_truthy(fs.stat(program_dir(h, id) .. "/src/main.lua"))
    assert.equal(200, P.send(view(h, id).publish_port, "still here").status)
    assert.is_true(wait_log(h, id, "Counter: 1"))
    assert_clean_exit(h)
  end)
end)

-- ---- create refuses what it does not understand ----------------------------------------

describe("hersh host: unknown create fields", function()
  it("refuses unknown fields with 400 naming all of them, sorted, and creates nothing", function()
    local h = test_host()
    local res = call(h, "POST", "/programs", counter_body("unknown", { ports = { 8080 }, zeta = 1, Alpha = "x" }))
    assert_error(res, 400, "unknown fields")
    assert.is_true(has(res.json.message, "unknown fields Alpha, ports, zeta"), res.json.message)
    res = call(h, "POST", "/programs", counter_body("unknown", { port = 8080 }))
    assert_error(res, 400, "one unknown field")
    assert.is_true(has(res.json.message, "unknown field port "), res.json.message)
    assert.equal(0, ok_json(call(h, "GET", "/programs")).count)
    -- every known field is taken
    create(h, counter_body("known", { env = { A = "b" }, limits = { pids = 64 }, network = "none",
      restart_policy = "no", proxy = { timeout = 5 } }))
    assert_clean_exit(h)
  end)
end)
