-- `hersh plan FILE` and `hersh apply FILE` (docs/cli.md, apply) against a real Host
-- (scripts.host_harness): a file of 10 counters (spec/programs/host_counter, one image
-- shared by all) planned, applied, planned again (unchanged); then one file, one env
-- key and one program changed or gone: plan shows exactly that, apply updates in place
-- (same port, same /state) and --prune deletes only what an apply of this file made.
-- Bad files are refused before any request, naming the file and the line.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"
local EXIT = require("cli.args").EXIT

local has = H.has

-- `hersh ARGV...` against `h` (nil: no Host), through the harness's client runner.
local function hersh(h, argv)
  return H.client(argv, { host = h })
end

-- A folder for a file and its programs' folders (two copies of the counter); removed
-- when the test ends.
local function stack_dir()
  local dir = H.public_tmpdir()
  P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
  assert(H.sh("cp -r spec/programs/host_counter " .. P.quote(dir .. "/counter")))
  assert(H.sh("cp -r spec/programs/host_counter " .. P.quote(dir .. "/counter-b")))
  return dir
end

-- The file of the first apply: c1..c10, c10 from its own folder, c5 with one env key.
local TEN = [[
local list = {}
for i = 1, 10 do
  list[i] = { name = "c" .. i, dir = i == 10 and "counter-b" or "counter", env = { N = "" .. i } }
end
list[5].env.GREETING = "hello"
list[3].restart_policy = { mode = "always", max_restarts = 3 }
list[4].health = { interval = 30 }
list[6].limits = { pids = 64 }
return list
]]

local function plan_json(h, file, extra)
  local argv = { "plan", file, "--json" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local code, out, err = hersh(h, argv)
  local doc = cjson.decode(out)
  local by = {}
  for _, p in ipairs(doc.programs) do by[p.name] = p end
  return code, doc, by, err
end

-- The programs on the Host by name (their ids remembered for the harness's clean-up).
local function host_programs(h)
  local list = H.ok_json(H.call(h, "GET", "/programs"), 200, "GET /programs")
  local by = {}
  for _, p in ipairs(list.programs) do
    by[p.name] = p
    h.ids[#h.ids + 1] = p.program_id
  end
  return by, list.count
end

local function send(h, name, text)
  local res = H.call(h, "POST", "/programs/" .. name .. "/proxy/watcher/message", { content = text })
  assert.equal(200, res.status, res.body)
end

describe("hersh plan and apply on a file of 10 programs", function()
  it("create, unchanged, then exactly one file, one env key and one program changed; --prune deletes only that one", function()
    local h = H.test_host { ports = { H.free_range(16) } }
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    P.write(file, TEN)
    -- a program made by hand, and one the file names but a person made: neither is
    -- this file's apply's to delete
    H.create(h, H.counter_body("alice", { name = "by-hand" }))
    H.create(h, H.counter_body("alice", { name = "adopted" }))

    local code, doc, by = plan_json(h, file)
    assert.equal(EXIT.changes, code)
    assert.equal(10, doc.pending)
    assert.equal(10, #doc.programs)
    for i = 1, 10 do assert.equal("create", by["c" .. i].action) end

    local out, err
    code, out, err = hersh(h, { "apply", file })
    assert.equal(EXIT.ok, code, err)
    assert.truthy(has(out, "apply: 10 programs Ready"), out)
    assert.truthy(has(err, "c7: ready in "), err) -- the progress of each
    local before, count = host_programs(h)
    assert.equal(12, count)
    for i = 1, 10 do assert.equal("Ready", before["c" .. i].state) end
    assert.same({ failures = 3, interval = 30, path = "/watcher/status", timeout = 2 }, before.c4.health)
    assert.same({ pids = 64 }, before.c6.limits)
    assert.equal("always", before.c3.restart_policy.mode)
    assert.equal(3, before.c3.restart_policy.max_restarts)
    assert.equal(before.c1.build_id, before.c10.build_id) -- one image for all

    code, doc = plan_json(h, file)
    assert.equal(EXIT.ok, code)
    assert.equal(0, doc.pending)
    for _, p in ipairs(doc.programs) do assert.equal("unchanged", p.action, p.name) end
    code, out = hersh(h, { "plan", file })
    assert.equal(EXIT.ok, code)
    assert.truthy(has(out, "0 to create, 0 to update, 0 to start, 0 to delete, 10 unchanged"), out)

    -- c10 gets a message, counted in its /state, before its update
    send(h, "c10", "tick")
    assert.truthy(H.wait_log(h, "c10", "Counter: 1"))
    -- one file of c10 changed, one file added; c5's GREETING changed; c9 gone
    local main = P.read(dir .. "/counter-b/main.lua")
    P.write(dir .. "/counter-b/main.lua", main .. "-- revision 2\n")
    P.write(file, (TEN:gsub('"hello"', '"bonjour"'):gsub("return list", "list[9], list[10] = list[10], nil\nreturn list")))

    code, doc, by = plan_json(h, file)
    assert.equal(EXIT.changes, code)
    assert.equal(2, doc.pending) -- without --prune, c9 stays
    assert.equal("kept", by.c9.action)
    assert.same({ files = { added = {}, changed = { "main.lua" }, removed = {} } }, by.c10.changes)
    assert.same({ env = { added = {}, changed = { "GREETING" }, removed = {} } }, by.c5.changes)
    for _, n in ipairs { "c1", "c2", "c3", "c4", "c6", "c7", "c8" } do assert.equal("unchanged", by[n].action, n) end
    assert.is_nil(by["by-hand"])
    code, doc, by = plan_json(h, file, { "--prune" })
    assert.equal(EXIT.changes, code)
    assert.equal(3, doc.pending)
    assert.equal("delete", by.c9.action)
    assert.equal(before.c9.program_id, by.c9.program_id)
    code, out = hersh(h, { "plan", file, "--prune" })
    assert.truthy(out:match("c10%s+update%s+files ~main%.lua\n"), out)
    assert.truthy(out:match("c5%s+update%s+env ~GREETING\n"), out)
    assert.truthy(out:match("c9%s+delete%s"), out)

    code, out, err = hersh(h, { "apply", file, "--prune" })
    assert.equal(EXIT.ok, code, err)
    assert.truthy(has(out, "apply: 9 programs Ready"), out)
    local after
    after, count = host_programs(h)
    assert.equal(11, count)
    assert.is_nil(after.c9)
    assert.truthy(after["by-hand"]) -- made by hand: never the file's to delete
    assert.truthy(after.adopted)
    assert.equal(2, after.c10.revision)
    assert.equal(before.c10.publish_port, after.c10.publish_port) -- the same port
    assert.equal(before.c10.program_id, after.c10.program_id)
    assert.are_not.equal(before.c10.build_id, after.c10.build_id)
    assert.equal(2, after.c5.revision)
    assert.equal(1, after.c1.revision)
    -- the same /state: the counter goes on from 1, and it is the second boot
    assert.truthy(H.wait_log(h, "c10", "Boot: 2"))
    send(h, "c10", "tick")
    assert.truthy(H.wait_log(h, "c10", "Counter: 2"))

    code, doc = plan_json(h, file, { "--prune" })
    assert.equal(EXIT.ok, code)
    assert.equal(0, doc.pending)

    -- the file adopts the hand-made `adopted` (its env is unknown: an update); dropped
    -- from the file again, --prune leaves it alone
    P.write(file, "return { { name = 'adopted', dir = 'counter' } }")
    code, doc, by = plan_json(h, file, { "--prune" })
    assert.equal(EXIT.changes, code)
    assert.equal("update", by.adopted.action)
    assert.truthy(by.adopted.changes.env.unknown)
    code, _, err = hersh(h, { "apply", file, "--prune" })
    assert.equal(EXIT.ok, code, err)
    P.write(file, "return {}")
    code, out, err = hersh(h, { "apply", file, "--prune" })
    assert.equal(EXIT.ok, code, err)
    after, count = host_programs(h)
    assert.truthy(after.adopted, out)
    assert.truthy(after["by-hand"])
    -- every cN the file made is gone; nothing else
    assert.equal(2, count)
  end)

  it("starts a program of the file that is stopped, and stops at the first failure with its reason", function()
    local h = H.test_host()
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    P.write(file, "return { { name = 'one', dir = 'counter' }, { name = 'two', dir = 'counter' } }")
    local code, _, err = hersh(h, { "apply", file })
    assert.equal(EXIT.ok, code, err)
    host_programs(h)
    H.ok_json(H.act(h, "one", "stop"), 202, "stop")
    H.wait_state(h, "one", "Stopped")
    local _, _, by = plan_json(h, file)
    assert.equal("start", by.one.action)
    code, _, err = hersh(h, { "apply", file })
    assert.equal(EXIT.ok, code, err)
    assert.equal("Ready", H.view(h, "one").state)

    -- a build that fails: apply says why, exit 1, and goes no further
    assert(H.sh("mkdir -p " .. P.quote(dir .. "/broken")))
    P.write(dir .. "/broken/Dockerfile", 'FROM hersh\nRUN bash -c "echo compiling; exit 3"\nCMD ["hersh", "run", "/x.lua"]\n')
    P.write(file, "return { { name = 'broken', dir = 'broken' }, { name = 'three', dir = 'counter' } }")
    local out
    code, out, err = hersh(h, { "apply", file })
    assert.equal(EXIT.failed, code, out .. err)
    assert.truthy(has(err, "build failed"), err)
    assert.truthy(has(err, "stopped at broken (create)"), err)
    local after = host_programs(h)
    assert.is_nil(after.three)
    assert.equal("Error", after.broken.state)
  end)
end)

describe("hersh plan and apply with an isolation per program", function()
  it("creates with the file's isolation, and refuses to change it: plan and apply name both, nothing changes", function()
    local h = H.test_host()
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    P.write(file, "return { { name = 'boxed', dir = 'counter', isolation = 'bwrap' } }")
    local code, out, err = hersh(h, { "apply", file })
    assert.equal(EXIT.ok, code, out .. err)
    host_programs(h)
    local rec = H.view(h, "boxed")
    assert.equal("bwrap", rec.isolation)
    P.write(file, "return { { name = 'boxed', dir = 'counter', isolation = 'gvisor' } }")
    local want = "program boxed cannot be applied: its isolation is bwrap, the file says gvisor: isolation cannot "
      .. "change in an update (delete and create it again: hersh rm boxed first)"
    for _, command in ipairs { "plan", "apply" } do
      code, out, err = hersh(h, { command, file })
      assert.equal(EXIT.failed, code, command .. ": " .. out .. err)
      assert.truthy(has(err, want), command .. ": " .. err)
    end
    local after = H.view(h, "boxed")
    assert.equal(rec.revision, after.revision)
    assert.equal("bwrap", after.isolation)
    assert.equal("Ready", after.state)
    -- no isolation in the file: the program keeps its own, nothing to change
    P.write(file, "return { { name = 'boxed', dir = 'counter' } }")
    local _, _, by = plan_json(h, file)
    assert.equal("unchanged", by.boxed.action)
  end)

  it("creates a program under gVisor when the file says so", function()
    local usable, why_not = require("host.sandbox.gvisor").check()
    if not usable then
      print("apply_spec: gvisor create pending: " .. why_not)
      return pending("gVisor cannot run here: " .. why_not)
    end
    local h = H.test_host()
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    P.write(file, "return { { name = 'sentried', dir = 'counter', isolation = 'gvisor' } }")
    local code, out, err = hersh(h, { "apply", file, "--timeout", "120" })
    assert.equal(EXIT.ok, code, out .. err)
    host_programs(h)
    local rec = H.view(h, "sentried")
    assert.equal("gvisor", rec.isolation)
    assert.equal("Ready", rec.state)
    local _, _, by = plan_json(h, file)
    assert.equal("unchanged", by.sentried.action)
  end)
end)

describe("hersh plan and apply refuse a bad file before any request", function()
  -- Each case: the file's text, what the message must hold. The Host is one that is
  -- not there: a request would be exit 3, not the exit 2 of a refused file.
  local CASES = {
    { "return {\n  { name = 'a', dir = 'counter' }\n  { name = 'b', dir = 'counter' },\n}\n", "stack.lua:3: '}' expected" },
    { "return {\n  { name = 'a', dir = 'counter',\n    evn = { X = '1' } },\n}\n",
      "stack.lua:3: program 1 (a): unknown key evn (known: dir, env, health, isolation, limits, name, network, proxy, restart_policy, user)" },
    { "return {\n  { name = 'a', dir = 'counter' },\n  { name = 'b', dir = 'counter' },\n  { name = 'a', dir = 'counter' },\n}\n",
      "stack.lua:4: program 3: the name a is taken by program 1" },
    { "return { { name = 'a', dir = 'missing' } }", "program 1 (a): " },
    { "return { { name = 'a', dir = '.' } }", "program 1 (a): no Dockerfile (a regular file) in " },
    { "return { { name = 'Web_1', dir = 'counter' } }", "program 1 (Web_1): name must be 1-63 lower-case letters" },
    { "return { { name = 'a', dir = 'counter', env = { PORT = 8080 } } }", "program 1 (a): env must map names" },
    { "return { { name = 'a', dir = 'counter', restart_policy = { mode = 'sometimes' } } }",
      "program 1 (a): restart_policy: restart policy mode must be on-failure, always or no, not sometimes" },
    { "return { { name = 'a', dir = 'counter', health = { interval = 0 } } }", "health.interval must be a number" },
    { "return { { name = 'a', dir = 'counter', env = { X = function() end } } }", "env.X is a function" },
    { "return { { dir = 'counter' } }", "program 1: name is missing" },
    { "return { { name = 'a', dir = 'counter', isolation = 'kvm' } }",
      'program 1 (a): isolation must be "bwrap" or "gvisor" or "swarm", not "kvm"' },
    -- a file is data: no io, os or require, no string methods, bounded work and memory
    { "io.open('/tmp/x', 'w')\nreturn {}", "stack.lua:1: attempt to index a nil value (global 'io')" },
    { "local x = os.execute('true')\nreturn {}", "stack.lua:1: attempt to index a nil value (global 'os')" },
    { "return { { name = ('x'):rep(1e10), dir = 'counter' } }", "stack.lua:1: attempt to index a string value" },
    { "\n\nwhile true do end", "stack.lua:3: runs for too long" },
    { "local s = 'x'\nfor i = 1, 40 do s = s .. s end\nreturn {}", "stack.lua:2: uses too much memory" },
    { "\27Lua", "stack.lua: attempt to load a binary chunk" },
    { "return 5", "stack.lua must return a list of programs" },
    { "return { { name = 'a', dir = 'ubuntu' } }",
      "program 1 (a): Dockerfile line 1: unknown base \"ubuntu\": the bases are hersh and scratch" },
  }

  it("names the file, the line when it can, and what is wrong: exit 2", function()
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    assert(H.sh("mkdir " .. P.quote(dir .. "/ubuntu")))
    P.write(dir .. "/ubuntu/Dockerfile", 'FROM ubuntu\nCMD ["x"]\n')
    for _, c in ipairs(CASES) do
      P.write(file, c[1])
      for _, cmd in ipairs { "plan", "apply" } do
        local code, out, err = hersh(nil, { cmd, file })
        local what = cmd .. " of " .. c[1] .. ": " .. err
        assert.equal(EXIT.usage, code, what)
        assert.truthy(has(err, "hersh " .. cmd .. ": " .. file), what)
        assert.truthy(has(err, c[2]), what)
        assert.equal("", out, what)
      end
    end
    assert.is_false(P.exists(dir .. "/.stack.lua.hersh-state")) -- nothing was applied
    local code, _, err = hersh(nil, { "plan", dir .. "/nope.lua" })
    assert.equal(EXIT.usage, code)
    assert.truthy(has(err, dir .. "/nope.lua is not a file"), err)
  end)

  it("says the Host is unreachable at its URL: exit 3", function()
    local dir = stack_dir()
    local file = dir .. "/stack.lua"
    P.write(file, "return { { name = 'a', dir = 'counter' } }")
    local url = "http://127.0.0.1:" .. H.free_range(1)
    for _, cmd in ipairs { "plan", "apply" } do
      local code, _, err = hersh({ url = url }, { cmd, file })
      assert.equal(EXIT.unreachable, code, err)
      assert.truthy(has(err, "cannot reach the Host at " .. url), err)
    end
  end)
end)
