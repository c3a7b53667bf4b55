-- The examples end to end: each is deployed as its README says, with the client
-- (`hersh deploy examples/X --name X`), to a real `hersh host` (temporary storage,
-- --port 0, the bwrap sandbox) and judged from outside: its logs, its WatcherAPI, its
-- files in /state, and what the Host reports. Every test stops its Host (which stops the programs), checks that no
-- process of it is left and removes its directory; every wait is bounded.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"

local defer = P.defer -- runs fn when the test ends, passed or failed
local has = P.has

local PLAIN = "env -u LD_PRELOAD " -- helpers (curl, lua5.4, bash) run without the sanitizers
local WAIT = 60                    -- bound of a wait for a deploy, a log line, a state

-- ---- a Host ---------------------------------------------------------------------------

-- start_host{policy = FILE}: a Host of this test's own (scripts.host_harness); stopped
-- and its directory removed when the test ends.
local function start_host(opts)
  return H.test_host{ args = opts and opts.policy and { "--policy", opts.policy } or nil }
end

-- Stops the Host: its programs stop with it, it exits 0, no sandbox is left behind.
local stop_host = H.assert_clean_exit

-- `hersh ARGV...` (the client) against the Host, to its end (bounded, no traceback):
-- exit status, stdout, stderr.
local function hersh(h, argv)
  return H.client(argv, { host = h, timeout = 300 })
end

-- `hersh deploy ROOT/NAME --name NAME ARGS...` against the Host (`root`: where the
-- examples are, default examples); returns the program's id and proxy port (raises
-- with its output if it fails). opts.wait = false: `--timeout 0`, for a program that
-- is not meant to stay Ready (the id then comes from `hersh inspect`).
local function deploy(h, name, args, opts)
  opts = opts or {}
  local function client(argv) return hersh(h, argv) end
  local argv = { "deploy", (opts.root or "examples") .. "/" .. name, "--name", name, "--json" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  if opts.wait == false then
    argv[#argv + 1] = "--timeout"
    argv[#argv + 1] = "0"
  end
  local status, out, err = client(argv)
  assert(status == 0 or (opts.wait == false and status == 1),
    string.format("hersh deploy %s: exit %s\n%s%s", name, tostring(status), out, err))
  assert(not has(err, "traceback"), err)
  status, out, err = client { "inspect", name, "--json" }
  assert(status == 0, string.format("hersh inspect %s: exit %s\n%s%s", name, tostring(status), out, err))
  local rec = cjson.decode(out)
  return rec.program_id, tonumber(tostring(rec.proxy_url):match("^http://127%.0%.0%.1:(%d+)$"))
end

local view = H.view

local function logs(h, id)
  return H.logs(h, id, "?tail=100000")
end

-- Waits until the program's runtime log has `text`; the log (raises with it if not).
local function wait_log(h, id, text, timeout)
  local ok = P.wait_for(function() return has(logs(h, id), text) end, timeout or WAIT, 0.1)
  local text_now = logs(h, id)
  assert(ok, string.format("no %q in the logs of %s:\n%s", text, id, text_now))
  return text_now
end

-- Waits until pred(log) holds; returns its value (raises with the log if it never does).
local function wait_log_match(h, id, pred, what)
  local v = P.wait_for(function() return pred(logs(h, id)) end, WAIT, 0.1)
  assert(v, "never " .. what .. " in the logs of " .. id .. ":\n" .. logs(h, id))
  return v
end

local wait_state = H.wait_state

-- The numbers N of every "Counter: N" line, in order.
local function counters(text)
  local list = {}
  for n in text:gmatch("Counter: (%d+)") do list[#list + 1] = tonumber(n) end
  return list
end

local function send(port, content)
  local r = P.send(port, content)
  assert.equal(200, r.status, r.body)
end

-- ---- the examples ------------------------------------------------------------------

describe("examples/simple-counter", function()
  it("counts its own ticks and the ones sent to it, then stops and is deleted", function()
    local h = start_host()
    local id, port = deploy(h, "simple-counter")
    local v = view(h, id)
    assert.equal("Ready", v.state)
    assert.equal("simple-counter", v.name)

    local text = wait_log(h, id, "Counter: 3")
    assert.is_true(has(text, "Simple Counter 1.0.0 started"), text)
    for i, n in ipairs(counters(text)) do assert.equal(i, n, text) end

    -- A tick sent with `hersh send` (through the Host's proxy) counts too.
    local before = P.get(port, "/watcher/context").json.context.count
    local code, out, err = hersh(h, { "send", "simple-counter", "tick" })
    assert.equal(0, code, out .. err)
    local after = P.poll_json(port, "/watcher/context", function(doc) return doc.context.count > before end)
    assert.is_truthy(after, "the count did not go up")
    local status = P.get(h.port, "/programs/" .. id .. "/proxy/watcher/status")
    assert.equal(200, status.status, status.body)
    assert.equal("simple-counter", status.json.watcherID)

    code, out, err = hersh(h, { "logs", "simple-counter", "--tail", "3" })
    assert.equal(0, code, err)
    assert.truthy(out:match("Counter: %d+\n$"), out)
    code, out, err = hersh(h, { "stop", "simple-counter" })
    assert.equal(0, code, out .. err)
    assert.equal("Stopped", view(h, id).state)
    code, out, err = hersh(h, { "rm", "simple-counter" })
    assert.equal(0, code, out .. err)
    assert.equal(404, P.get(h.port, "/programs/" .. id).status)
    assert.is_false(P.exists(h.storage .. "/programs/" .. id))
    stop_host(h)
  end)
end)

describe("examples/watcher-server", function()
  it("writes /state/counter.txt on every tick and counts on from it after a restart", function()
    local h = start_host()
    local id, port = deploy(h, "watcher-server")
    local file = h.storage .. "/programs/" .. id .. "/state/counter.txt"
    local text = wait_log(h, id, "Counter: 2 (state file updated)")
    assert.is_true(has(text, "Starting from 0"), text)
    local saved = tonumber(P.read(file))
    assert.is_true(saved >= 2, tostring(saved))

    send(port, "tick") -- counted like the clock's
    assert.equal(202, P.http(h.port, "POST", "/programs/" .. id .. "/restart").status)
    local from = wait_log_match(h, id, function(log)
      for n in log:gmatch("Starting from (%d+)") do
        if tonumber(n) > 0 then return tonumber(n) end
      end
    end, "a second boot")
    assert.is_true(from >= saved, string.format("restarted from %d, the file held %d", from, saved))
    text = wait_log(h, id, string.format("Counter: %d (state file updated)", from + 1))
    wait_state(h, id, "Ready")
    assert.is_true(tonumber(P.read(file)) >= from + 1)
    -- After the restart the count only goes on: no line counts from 1 again.
    local after = text:sub((text:find("Starting from " .. from, 1, true)))
    for _, n in ipairs(counters(after)) do assert.is_true(n > from, after) end
    stop_host(h)
  end)
end)

describe("examples/trading-sim", function()
  it("trades on simulated prices and answers each command in its logs", function()
    local h = start_host()
    local id, port = deploy(h, "trading-sim")
    wait_log(h, id, "Trading simulator: BTC ETH SOL, $10000 cash, seed 42")
    -- The price watch fetches from the exchange (over loopback HTTP, inside the sandbox)
    -- with the market client (a memo) twice a second.
    assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc)
      return doc.context.book and doc.context.book.quotes >= 2
    end, WAIT), "no quotes")
    local memo = P.get(port, "/watcher/memoCache")
    assert.equal(200, memo.status, memo.body)
    assert.is_true(has(memo.body, "market"), memo.body)

    -- The rebalance comes while trading is paused, so no crossover trades after it.
    local answers = {
      { "status", " Status" }, { "portfolio", " Portfolio" }, { "trades", " Trades (last " },
      { "prices", " Prices (quote " }, { "live", " Live quote (exchange step " }, { "pause", "Trading paused" }, { "rebalance", "(rebalance)" },
      { "resume", "Trading resumed" }, { "help", " Commands" }, { "bogus", "Unknown command: bogus" },
    }
    for _, a in ipairs(answers) do
      send(port, a[1])
      wait_log(h, id, a[2])
      if a[1] == "pause" then
        assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc) return doc.context.paused == true end))
      elseif a[1] == "rebalance" then
        -- Every symbol and the cash got a quarter of the value (at the prices of then).
        local doc = P.poll_json(port, "/watcher/context", function(d)
          local trades = d.context.book.trades
          return #trades > 0 and trades[#trades].reason == "rebalance"
        end)
        assert.is_truthy(doc, "no rebalance in the book")
        local book = doc.context.book
        for _, sym in ipairs { "BTC", "ETH", "SOL" } do assert.is_true(book.positions[sym] > 0, sym) end
        assert.is_true(book.cash > 0)
      elseif a[1] == "resume" then
        assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc) return doc.context.paused == false end))
      end
    end
    stop_host(h)
  end)
end)

-- A build with the sanitizers hands programs an instrumented libhersh.a, which links
-- only with their runtimes: the examples' C programs then get -fsanitize too. That is
-- the test's business, not the example's: a copy of the examples is adapted.
local SANITIZED = has(P.read(P.build .. "/CMakeCache.txt"), "HERSH_SANITIZE:BOOL=ON")

-- Where to deploy c-counter from: examples, or the adapted copy under the sanitizers.
local function c_counter_root()
  if not SANITIZED then return "examples" end
  local dir = P.tmpdir()
  defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
  assert(os.execute(string.format(PLAIN .. "cp -r examples/c-counter %s", P.quote(dir))))
  local dockerfile = dir .. "/c-counter/Dockerfile"
  local text, n = P.read(dockerfile):gsub("(%-lm)\n", "%1 -fsanitize=address,undefined\n")
  assert(n == 1, "cannot find the end of the cc line in c-counter's Dockerfile")
  P.write(dockerfile, text)
  return dir
end

describe("examples/c-counter", function()
  it("is written as a user would: no sanitizer handling, and what make builds is ignored by git", function()
    local dockerfile = P.read("examples/c-counter/Dockerfile")
    for _, word in ipairs { "asan", "sanitize", "nm " } do
      assert.is_false(has(dockerfile, word), "the Dockerfile mentions " .. word)
    end
    local out = io.popen(PLAIN .. "make -s -n -C examples/c-counter 2>/dev/null"):read("a")
    local target = out:match("%-o (%S+) counter%.c")
    assert.is_string(target, out)
    assert.is_true(os.execute(PLAIN .. "git check-ignore -q " .. P.quote("examples/c-counter/" .. target)),
      "git does not ignore examples/c-counter/" .. target)
  end)

  it("is compiled by its Dockerfile against libhersh and counts ticks, its own and sent ones", function()
    local h = start_host()
    local id, port = deploy(h, "c-counter", nil, { root = c_counter_root() })
    local build_log = P.get(h.port, "/programs/" .. id .. "/logs?type=build").body
    assert.is_true(has(build_log, "cc -O2 -o /app/counter counter.c"), build_log)
    assert.is_true(has(build_log, "build finished"), build_log)
    local text = wait_log(h, id, "Counter: 2")
    assert.is_true(has(text, "counter: WatcherAPI on http://127.0.0.1:" .. port), text)

    local status = P.get(port, "/watcher/status")
    assert.equal("counter", status.json.watcherID)
    local before = P.get(port, "/watcher/context").json.context.count
    send(port, "tick")
    assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc) return doc.context.count > before end))
    for i, n in ipairs(counters(logs(h, id))) do assert.equal(i, n) end

    assert.equal(202, P.http(h.port, "POST", "/programs/" .. id .. "/stop").status)
    wait_state(h, id, "Stopped")
    stop_host(h)
  end)
end)

describe("examples/custom-policy", function()
  local POLICY = "examples/custom-policy/policy.lua"

  -- ISO 8601 UTC with milliseconds -> seconds (only differences are used).
  local function seconds(iso)
    local y, mo, d, hh, mi, s, ms = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
    assert(y, "not a time: " .. tostring(iso))
    return os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(hh),
      min = tonumber(mi), sec = tonumber(s) } + tonumber(ms) / 1000
  end

  it("the Host's policy file is applied: its normalize shapes every program's policy", function()
    local h = start_host { policy = POLICY }
    local id, port = deploy(h, "custom-policy")
    local v = view(h, id)
    assert.same({ delays = { 1, 2, 3 }, max_restarts = 3, reset_after = 30 }, v.restart_policy)
    -- A restart_policy the module refuses is refused at create time, with its message.
    local body = { user_id = "refused", dockerfile = P.read("examples/custom-policy/Dockerfile"),
      src_files = { ["main.lua"] = P.read("examples/custom-policy/main.lua") }, restart_policy = "always" }
    local r = P.post_json(h.port, "/programs", body)
    assert.equal(400, r.status, r.body)
    assert.is_true(has(r.json.message, "restart_policy must be an object"), r.body)

    -- The watcher's own recovery policy: one failed run is retried in the process,
    -- and the Host never sees it.
    wait_log(h, id, "flaky: boot 1")
    send(port, "fail")
    wait_log(h, id, "recovery: failure 1 (asked to fail once): retry in 0.2 s")
    send(port, "work")
    wait_log(h, id, "work: 1 done")
    v = view(h, id)
    assert.equal("Ready", v.state)
    assert.equal(0, v.restarts)
    stop_host(h)
  end)

  it("a program that crashes at every boot is restarted after the policy's delays, then Error", function()
    local h = start_host { policy = POLICY }
    local id = deploy(h, "custom-policy", { "--env", "BROKEN=1" }, { wait = false })
    -- Each time it is Restarting, the delay the policy chose is next_restart_at - updated_at.
    local delays, last = {}, nil
    local done = P.wait_for(function()
      last = view(h, id)
      if last.state == "Restarting" and not delays[last.restarts] then
        delays[last.restarts] = seconds(last.next_restart_at) - seconds(last.updated_at)
      end
      return last.state == "Error"
    end, WAIT, 0.05)
    assert(done, "never Error: " .. cjson.encode(last))
    assert.equal(3, last.restarts)
    assert.is_true(has(last.error_msg, "the custom policy gave up after 3 restarts"), last.error_msg)
    for n, want in ipairs { 1, 2, 3 } do
      assert.is_number(delays[n], "restart " .. n .. " was not seen")
      assert.is_true(math.abs(delays[n] - want) < 0.002, string.format("restart %d after %g s", n, delays[n]))
    end
    -- Four boots, each ended by the watcher's own recovery policy crashing it.
    assert.equal("4", (P.read(h.storage .. "/programs/" .. id .. "/state/boots") or ""):match("%d+"))
    local text = logs(h, id)
    local crashes = 0
    for _ in text:gmatch("recovery: failure 3 %(broken: every run fails%): crash") do crashes = crashes + 1 end
    assert.equal(4, crashes, text)
    assert.is_true(has(text, "recovery: failure 2 (broken: every run fails): recover in 0.5 s"), text)
    stop_host(h)
  end)

  it("the operator's policy: a quota of 3 per user, a memory ceiling, /x/deploy, a notification on Error, dependents restarted", function()
    local core, httpd = require "hersh.core", require "hersh.httpd"
    -- The Slack-style receiver, in this process: the loop runs while the test waits.
    local notes = {}
    local srv = assert(httpd.serve{ port = 0, handler = function(req, res)
      notes[#notes + 1] = { path = req.path, body = req.body, type = req.headers["content-type"] }
      res:send(200, "ok")
    end })
    defer(function() srv:close() end)
    local h = H.test_host{ args = { "--policy", POLICY },
      env = { HERSH_POLICY_NOTIFY_URL = "http://127.0.0.1:" .. srv:port() .. "/hook" } }
    local call, ok_json = H.call, H.ok_json

    -- admit: 3 programs per user, the 4th refused; a memory limit above 1 GiB refused,
    -- none given: 1 GiB.
    local first = H.create(h, H.counter_body("quota")).program_id
    for _ = 2, 3 do H.create(h, H.counter_body("quota")) end
    local r = call(h, "POST", "/programs", H.counter_body("quota"))
    H.assert_error(r, 403, "the 4th program")
    assert.equal("user quota already has 3 programs, the quota of this Host", r.json.message)
    r = call(h, "POST", "/programs", H.counter_body("mem", { limits = { memory = 2 * 1024 ^ 3 } }))
    H.assert_error(r, 403, "above the ceiling")
    assert.is_true(has(r.json.message, "above the ceiling of 1073741824 bytes"), r.body)
    assert.equal(1024 * 1024 * 1024, view(h, first).limits.memory)

    -- POST /x/deploy: a create, then an update of the program of that name.
    local doc = ok_json(call(h, "POST", "/x/deploy", H.counter_body("web", { name = "web" })), 201, "deploy")
    h.ids[#h.ids + 1] = doc.program_id
    doc = ok_json(call(h, "POST", "/x/deploy", H.counter_body("web", { name = "web", env = { V = "2" } })), 202, "redeploy")
    assert.equal(2, doc.revision)
    H.assert_error(call(h, "POST", "/x/deploy", { user_id = "web" }), 400, "no name")

    -- on_event: a program that enters Error is told to the receiver.
    local broken = H.create(h, { user_id = "ops", name = "broken", env = { BROKEN = "1" },
      dockerfile = P.read("examples/custom-policy/Dockerfile"),
      src_files = { ["main.lua"] = P.read("examples/custom-policy/main.lua") }, restart_policy = { max_restarts = 0 } })
    ok_json(H.act(h, broken.program_id, "start"), 202, "start broken")
    assert(P.wait_for(function()
      core.run_for(0.05)
      return #notes > 0
    end, WAIT), "no notification came")
    assert.equal("/hook", notes[1].path)
    assert.equal("application/json", notes[1].type)
    local text = cjson.decode(notes[1].body).text
    assert.is_true(has(text, "broken entered Error: "), text)
    assert.is_true(has(text, "the custom policy gave up after 0 restarts"), text)

    -- on_event: db restarted, and back Ready: app (depends_on=db) is restarted too.
    local db = H.create(h, H.counter_body("ops", { name = "db" }))
    local app = H.create(h, H.counter_body("ops", { name = "app", labels = { depends_on = "db" } }))
    H.start_ready(h, db.program_id)
    H.start_ready(h, app.program_id)
    local function events_of(id, kind)
      return ok_json(call(h, "GET", "/programs/" .. id .. "/events?follow=false&kind=" .. kind)).events
    end
    local before = #events_of(app.program_id, "stopping")
    ok_json(H.act(h, db.program_id, "restart"), 202, "restart db")
    assert(P.wait_for(function() return #events_of(app.program_id, "stopping") > before end, WAIT, 0.05),
      "app was not restarted after db")
    local stopping = events_of(app.program_id, "stopping")
    assert.is_true(stopping[#stopping].details.restart)
    local db_ready = events_of(db.program_id, "ready")
    assert.is_true(stopping[#stopping].id > db_ready[#db_ready].id, "app restarted before db was back")
    H.wait_state(h, app.program_id, "Ready")
    stop_host(h)
  end)
end)
