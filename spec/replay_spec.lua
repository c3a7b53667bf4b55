-- Deterministic replay (issue 17, docs/replay.md): a watcher's runs are recorded with
-- their inputs (messages, watch values, ctx:now, ctx:random, what waits resumed with)
-- and checkpoints; `hersh replay TRACE FILE.lua` runs the same reducer on them with no
-- loop or I/O and names the first run that differs. Real `hersh run` processes, a real
-- Host, real HTTP over loopback.
local hersh = require "hersh"
local json = require "hersh.json"
local P = require "scripts.process"
local H = require "scripts.host_harness"
local h = require "helpers"

local defer, has = P.defer, P.has

-- `hersh replay ARGS...` to its end (bounded): exit status, stdout, stderr.
local function replay(args)
  local spec = { P.hersh, "replay" }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  local proc = P.start(spec)
  defer(function() P.stop(proc) end)
  local status = P.wait_exit(proc, 300)
  assert(not P.sanitizer_report(proc), P.stderr(proc))
  return status, P.stdout(proc), P.stderr(proc)
end

local function tmpdir()
  local dir = P.tmpdir()
  defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
  return dir
end

-- The trace's lines, decoded: header, runs.
local function decode_trace(text)
  local header, runs = nil, {}
  for line in text:gmatch("[^\n]+") do
    local rec = assert(json.decode(line))
    if header then runs[#runs + 1] = rec else header = rec end
  end
  return header, runs
end

-- Sends each message of `list` to the WatcherAPI at `port` with one curl process
-- (one connection), so a thousand messages take no thousand processes.
local function send_all(port, list, dir)
  local cfg = {}
  for i, content in ipairs(list) do
    if i > 1 then cfg[#cfg + 1] = "next" end
    cfg[#cfg + 1] = string.format('url = "http://127.0.0.1:%d/watcher/message"', port)
    cfg[#cfg + 1] = 'header = "Content-Type: application/json"'
    cfg[#cfg + 1] = "data = " .. string.format("%q", json.encode { content = content })
    cfg[#cfg + 1] = 'output = "/dev/null"'
    cfg[#cfg + 1] = 'write-out = "%{http_code}\\n"'
  end
  P.write(dir .. "/curl.cfg", table.concat(cfg, "\n") .. "\n")
  local p = assert(io.popen("env -u LD_PRELOAD curl -s --max-time 120 -K " .. P.quote(dir .. "/curl.cfg")))
  local codes = p:read("a")
  p:close()
  local accepted = select(2, codes:gsub("200", ""))
  assert.equal(#list, accepted, "not every message was accepted: " .. codes:sub(1, 200))
end

-- `hersh run --record TRACE SCRIPT` in the background: proc, port.
local function record(script, trace, env)
  local proc = P.run(script, { options = { "--port", "0", "--record", trace }, env = env })
  defer(function() P.stop(proc) end)
  return proc, P.announced(proc)
end

-- Stops a recording program (SIGTERM: its watcher stops, the trace is written).
local function finish(proc)
  assert.is_true(P.signal(proc, "TERM"))
  assert.is_truthy(P.wait_exit(proc), "the program did not exit")
  assert(not P.sanitizer_report(proc), P.stderr(proc))
end

-- Waits (bounded) until the watcher at `port` has handled `n` messages: its context
-- key `key` reaches n.
local function wait_count(port, key, n)
  assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc)
    return (doc.context[key] or 0) >= n
  end, 120), "the watcher did not handle " .. n .. " messages")
end

describe("hersh run --record and hersh replay", function()
  it("replays 1,000+ runs of trading-sim identically (prices, commands, live quotes)", function()
    local dir = tmpdir()
    local trace = dir .. "/trading.trace"
    local proc, port = record("examples/trading-sim/main.lua", trace,
      { LUA_PATH = "examples/trading-sim/?.lua;;" })
    -- a few quotes first: var runs that read the price watch
    assert.is_truthy(P.poll_json(port, "/watcher/context", function(doc)
      return doc.context.book and doc.context.book.quotes >= 3
    end, 60), "no quotes")
    local cycle = { "status", "portfolio", "trades", "prices", "pause", "status", "resume", "help", "bogus", "p" }
    local list = {}
    for i = 1, 1000 do list[i] = cycle[(i - 1) % #cycle + 1] end
    for i = 100, 1000, 300 do list[i] = "live" end -- the reducer waits on the exchange (hersh.http)
    send_all(port, list, dir)
    -- the trace served live shows when all 1,000 are handled
    local live
    assert.is_truthy(P.wait_for(function()
      live = P.get(port, "/watcher/trace")
      return live.status == 200 and select(2, live.body:gsub('"trigger":"message"', "")) >= 1000
    end, 120, 0.5), "the 1,000 messages were not all handled")
    assert.equal("application/x-ndjson", live.headers["content-type"])
    finish(proc)

    local text = assert(P.read(trace), "no trace written")
    local header, runs = decode_trace(text)
    assert.equal(1, header.hersh_trace)
    assert.equal("trading-sim", header.watcher)
    assert.equal(1, header.from_run)
    assert.is_true(#runs >= 1003, "runs: " .. #runs)
    local messages, resumes, quotes = 0, 0, 0
    for _, r in ipairs(runs) do
      if r.trigger == "message" then messages = messages + 1 end
      for _, input in ipairs(r.inputs) do
        if input.resume then resumes = resumes + 1 end
        if input.watch == "prices" and input.triggered then quotes = quotes + 1 end
      end
    end
    assert.equal(1000, messages)
    assert.is_true(resumes >= 4, "live quotes resumed: " .. resumes)
    assert.is_true(quotes >= 3, "quote runs: " .. quotes)

    local status, out, err = replay { trace, "examples/trading-sim/main.lua" }
    assert.equal(0, status, out .. err)
    assert.equal(string.format("replayed %d runs: identical\n", #runs), out)
  end)

  it("replays a failure, its retries, the recovery and the backoff identically", function()
    local dir = tmpdir()
    local script = dir .. "/flaky.lua"
    P.write(script, [[
local hersh = require "hersh"
local w = hersh.watcher{ id = "flaky",
  recovery = { min_failures = 2, max_failures = 9, base_delay = 0.05, max_delay = 1, light_delays = { 0.02 } } }
w:manage(function(msg, ctx)
  ctx:set("n", (ctx:get("n") or 0) + 1)
  ctx:set("rolls", (ctx:get("rolls") or 0) + ctx:random(1, 100))
  if msg and msg.content == "fail" then ctx:set("left", 4) end
  local left = ctx:get("left") or 0
  if left > 0 then
    ctx:set("left", left - 1)
    error("failing, " .. left .. " to go")
  end
  ctx:set("done", (ctx:get("done") or 0) + (msg and 1 or 0))
end)
assert(w:start())
]])
    local trace = dir .. "/flaky.trace"
    local proc, port = record(script, trace)
    -- the message run fails, its retry fails, then WaitRecover: two recover runs fail with
    -- a growing delay, the third succeeds; the next message is handled
    assert.equal(200, P.send(port, "fail").status)
    -- "after" only once the recovery succeeded (run 5): sent earlier, a failing run could
    -- take it, and it would never count as done
    wait_count(port, "n", 5)
    assert.equal(200, P.send(port, "after").status)
    wait_count(port, "done", 1)
    finish(proc)

    local header, runs = decode_trace(assert(P.read(trace)))
    assert.equal("flaky", header.watcher)
    local outcomes, triggers, delays = {}, {}, {}
    for _, r in ipairs(runs) do
      outcomes[r.outcome] = (outcomes[r.outcome] or 0) + 1
      triggers[r.trigger] = true
      if r.retry_in then delays[#delays + 1] = r.retry_in end
    end
    assert.equal(4, outcomes.failed, json.encode(outcomes))
    assert.is_true(triggers.retry and triggers.recover, json.encode(triggers))
    assert.same({ 0.02, 0.05, 0.1, 0.2 }, delays) -- a light retry, then the recovery's doubling

    local status, out, err = replay { trace, script }
    assert.equal(0, status, out .. err)
    assert.equal(string.format("replayed %d runs: identical\n", #runs), out)
    -- the same trace with a recorded backoff changed: the replay names the run
    local lines = {}
    for line in P.read(trace):gmatch("[^\n]+") do lines[#lines + 1] = line end
    for i = 2, #lines do
      if lines[i]:find('"retry_in":0.05', 1, true) then
        lines[i] = lines[i]:gsub('"retry_in":0.05', '"retry_in":0.07')
        P.write(dir .. "/edited.trace", table.concat(lines, "\n") .. "\n")
        local edited_run = assert(json.decode(lines[i])).run
        local st, o = replay { dir .. "/edited.trace", script }
        assert.equal(1, st, o)
        assert.is_true(has(o, "divergence at run " .. edited_run .. " "), o)
        assert.is_true(has(o, "retry: recorded in 0.07 s, replayed in 0.05 s"), o)
        break
      end
    end
  end)
end)

describe("nondeterminism", function()
  local SCRIPT = [[
local hersh = require "hersh"
local w = hersh.watcher{ id = "clock" }
w:manage(function(msg, ctx)
  if not msg then return end
  ctx:set("count", (ctx:get("count") or 0) + 1)
  ctx:set("seen_at", ctx:now()) -- recorded: replays the same
  if msg.content == "stamp" then ctx:set("stamp", os.time()) end -- not recorded
end)
assert(w:start())
]]

  it("a reducer that reads os.time diverges at that run, on that key; --strict names the call", function()
    local dir = tmpdir()
    local script = dir .. "/clock.lua"
    P.write(script, SCRIPT)
    local trace = dir .. "/clock.trace"
    local proc, port = record(script, trace)
    for _, m in ipairs { "a", "b", "stamp", "c" } do P.send(port, m) end
    wait_count(port, "count", 4)
    finish(proc)
    local _, runs = decode_trace(assert(P.read(trace)))
    local stamp_run
    for _, r in ipairs(runs) do
      if r.message and r.message.content == "stamp" then stamp_run = r end
    end
    assert.is_table(stamp_run)
    local recorded_stamp
    for _, wr in ipairs(stamp_run.writes) do
      if wr[1] == "stamp" then recorded_stamp = wr[2] end
    end
    -- the replay must come in another second than the recording (a bounded wait)
    assert.is_truthy(P.wait_for(function() return os.time() > recorded_stamp end, 5))

    local status, out = replay { trace, script }
    assert.equal(1, status, out)
    assert.is_true(has(out, string.format("divergence at run %d (", stamp_run.run)), out)
    assert.is_true(has(out, 'trigger message "stamp"'), out)
    assert.is_true(has(out, string.format('context key "stamp" (write 3): recorded %d, replayed ', recorded_stamp)), out)

    status, out = replay { trace, script, "--strict" }
    assert.equal(1, status, out)
    assert.is_true(has(out, string.format("divergence at run %d (", stamp_run.run)), out)
    assert.is_true(has(out, "outcome: recorded ok, replayed failed"), out)
    assert.is_true(has(out, "strict replay: os.time inside a run (use ctx:now())"), out)

    -- --until stops early: the runs before the stamp are identical; the store is shown
    status, out = replay { trace, script, "--until", tostring(stamp_run.run - 1) }
    assert.equal(0, status, out)
    assert.is_true(has(out, string.format("replayed %d runs: identical\n", stamp_run.run - 1)), out)
    assert.is_true(has(out, "context:\n  count = " .. (stamp_run.run - 2) .. "\n"), out)
  end)
end)

describe("a ring trace", function()
  after_each(h.reap)

  it("that begins at run 5,001 replays from its context snapshot", function()
    local dir = tmpdir()
    local script = dir .. "/ring.lua"
    P.write(script, [[
local hersh = require "hersh"
local w = hersh.watcher{ id = "ring", trace = 100, api = false }
w:manage(function(msg, ctx)
  local total = ctx:get("total") or { sum = 0, runs = 0 }
  total.runs = total.runs + 1
  if msg then total.sum = total.sum + tonumber(msg.content) * ctx:random(1, 3) end
  total.last = ctx:now()
  ctx:set("total", total)
end)
return w
]])
    local w = dofile(script)
    defer(function() pcall(w.kill, w, "spec teardown") end)
    assert.is_true(w:start())
    for i = 1, 5099 do assert.is_true(w:send(tostring(i))) end
    assert.is_true(h.wait(function() return w:pending().user == 0 and w:state() == "Ready" end, 60))
    local text = assert(w:trace())
    local header, runs = decode_trace(text)
    assert.equal(5001, header.from_run)
    assert.equal(100, header.runs)
    assert.equal(100, #runs)
    assert.equal(5000, header.context.total.runs) -- the store before run 5,001
    P.write(dir .. "/ring.trace", text)
    local status, out, err = replay { dir .. "/ring.trace", script }
    assert.equal(0, status, out .. err)
    assert.equal("replayed 100 runs: identical\n", out)
    -- without the snapshot the same runs diverge at once, on the key they write
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    header.context = {}
    lines[1] = json.encode(header)
    P.write(dir .. "/bare.trace", table.concat(lines, "\n") .. "\n")
    status, out = replay { dir .. "/bare.trace", script }
    assert.equal(1, status, out)
    assert.is_true(has(out, 'divergence at run 5001 (trace line 2)'), out)
    assert.is_true(has(out, 'context key "total" (write 1)'), out)
  end)
end)

describe("a corrupt trace", function()
  after_each(h.reap)

  local dir, script, lines

  before_each(function()
    dir = P.tmpdir()
    script = dir .. "/small.lua"
    P.write(script, [[
local hersh = require "hersh"
local w = hersh.watcher{ id = "small", api = false }
w:manage(function(msg, ctx) if msg then ctx:set("last", msg.content) end end)
return w
]])
    local w = dofile(script)
    defer(function() pcall(w.kill, w, "spec teardown") end)
    assert.is_true(w:start())
    for _, m in ipairs { "a", "b", "c" } do w:send(m) end
    assert.is_true(h.wait(function() return w:pending().user == 0 and w:state() == "Ready" end))
    lines = {}
    for line in assert(w:trace()):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(5, #lines) -- header, init, three messages
  end)

  after_each(function() os.execute("rm -rf " .. P.quote(dir)) end)

  local function check(name, text, expected, more)
    local path = dir .. "/" .. name
    P.write(path, text)
    local status, out, err = replay { path, script }
    assert.equal(2, status, out .. err)
    assert.equal("", out)
    assert.is_true(has(err, "hersh replay: " .. path .. ":" .. expected), err)
    if more then assert.is_true(has(err, more), err) end
  end

  it("names the line: invalid JSON, a truncated last line, a missing run, no header, a newer version", function()
    local ok = table.concat(lines, "\n") .. "\n"
    local status, out = replay { (function() P.write(dir .. "/ok.trace", ok) return dir .. "/ok.trace" end)(), script }
    assert.equal(0, status, out)

    local bad = { table.unpack(lines) }
    bad[3] = '{"run":2,"trigger":'
    check("bad.trace", table.concat(bad, "\n") .. "\n", "3: invalid JSON")
    check("cut.trace", ok:sub(1, #ok - 20), "5: invalid JSON",
      "(the line is truncated: the file ends without a newline)")
    local gap = { lines[1], lines[2], lines[4], lines[5] }
    check("gap.trace", table.concat(gap, "\n") .. "\n", "3: run 3 where run 2 was due (the trace misses runs)")
    check("noheader.trace", table.concat({ lines[2], lines[3] }, "\n") .. "\n",
      "1: not a hersh trace (no 'hersh_trace' header)")
    local newer = lines[1]:gsub('"hersh_trace":1', '"hersh_trace":2')
    check("newer.trace", newer .. "\n", "1: trace format version 2 (this hersh reads 1)")
    local nofield = lines[4]:gsub('"outcome":"ok",', "")
    check("nofield.trace", table.concat({ lines[1], lines[2], lines[3], nofield }, "\n") .. "\n",
      "4: no 'outcome' (string expected)")
    check("empty.trace", "", "1: empty file: not a hersh trace")
  end)
end)

describe("a trace from a program on a real Host", function()
  it("is downloaded through GET /programs/{id}/trace and replays locally", function()
    local hst = H.test_host()
    local main = [[
local hersh = require "hersh"
local w = hersh.watcher{ id = "dice" }
w:manage(function(msg, ctx)
  if not msg then return end
  hersh.sleep(0.001) -- a wait: what it resumes with is an input too
  local rolls = ctx:get("rolls") or {}
  rolls[#rolls + 1] = { msg.content, ctx:random(1, 6), ctx:now() }
  ctx:set("rolls", rolls)
end)
assert(w:start())
]]
    local doc = H.create(hst, { user_id = "replay", dockerfile = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\n" ..
      'CMD ["hersh", "run", "/app/main.lua"]\n', src_files = { ["main.lua"] = main } })
    H.start_ready(hst, doc.program_id)
    local base = "/programs/" .. doc.program_id
    for i = 1, 20 do
      local r = H.call(hst, "POST", base .. "/proxy/watcher/message", { content = "roll " .. i })
      assert.equal(200, r.status, r.body)
    end
    local text
    assert.is_truthy(P.wait_for(function()
      local r = H.call(hst, "GET", base .. "/trace")
      text = r.status == 200 and r.body
      return text and select(2, text:gsub("\n", "")) >= 22 -- header, init, 20 messages
    end, 60), "the trace never held the 20 runs")
    local dir = tmpdir()
    P.write(dir .. "/main.lua", main)
    P.write(dir .. "/dice.trace", text)
    local status, out, err = replay { dir .. "/dice.trace", dir .. "/main.lua" }
    assert.equal(0, status, out .. err)
    assert.equal("replayed 21 runs: identical\n", out)
    H.assert_error(H.call(hst, "POST", base .. "/trace"), 405, "POST trace")
  end)
end)
