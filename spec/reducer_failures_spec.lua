-- Reducer failures are visible: `hersh run` prints every failed run, failed cleanup,
-- watch error and the crash that ends a watcher to stderr (the engine's log callback,
-- hersh_loop_on_report), and a Host program's runtime log shows the same lines.
-- Real processes, real HTTP over loopback; every wait is bounded.
local P = require "scripts.process"
local H = require "scripts.host_harness"

local has = P.has

-- Writes `source` as a script in a fresh directory (removed when the test ends) and
-- runs it with `hersh run`; the process is stopped when the test ends. proc, path.
local function run_script(source)
  local dir = P.tmpdir()
  local path = dir .. "/main.lua"
  local proc
  P.defer(function()
    P.stop(proc)
    os.execute("rm -rf " .. P.quote(dir))
  end)
  P.write(path, source)
  proc = P.run(path)
  return proc, path
end

-- Where each part is found in `text`, in order; fails naming the first one missing or
-- out of order.
local function assert_in_order(text, parts)
  local from = 1
  for _, part in ipairs(parts) do
    local at = text:find(part, from, true)
    assert(at, "missing (or out of order): " .. part .. "\n--- stderr:\n" .. text)
    from = at + #part
  end
end

-- Ends a running script with SIGTERM (its watchers stop) and waits for it; its exit
-- status. Its files stay for reading until the test ends.
local function terminate(proc)
  assert.is_true(P.signal(proc, "TERM"))
  return P.wait_exit(proc)
end

local function assert_no_sanitizer_report(proc)
  assert.is_nil(P.sanitizer_report(proc))
end

local FAST = "{ min_failures = 2, max_failures = 3, base_delay = 0.05, light_delays = { 0.05 } }"

describe("hersh run prints reducer failures", function()
  it("each failed run with its trigger, error, traceback, failure count and decision, then the crash", function()
    local proc, path = run_script([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "boomer", recovery = ]] .. FAST .. [[ }
local function explode(why) error("boom on " .. why) end
w:manage(function(msg, ctx) explode(ctx:trigger().reason) end)
w:cleanup(function(ctx) error("cannot flush") end)
assert(w:start())
]])
    assert.equal(1, P.wait_exit(proc), P.stderr(proc)) -- ended Crashed
    local err = P.stderr(proc)
    assert_in_order(err, {
      'hersh: watcher "boomer" run failed (init): ' .. path .. ':3: boom on init; failure 1, retry in 0.05 s\n',
      "  stack traceback:\n",
      "explode",
      path .. ":4: in function",
      'hersh: watcher "boomer" run failed (retry): ' .. path .. ':3: boom on retry; failure 2, recover in 0.05 s (WaitRecover)\n',
      "  stack traceback:\n",
      'hersh: watcher "boomer" run failed (recover): ' .. path .. ':3: boom on recover; failure 3, the recovery policy gives up: crash\n',
      'hersh: watcher "boomer" cleanup failed: ' .. path .. ':5: cannot flush\n',
      "  stack traceback:\n",
      'hersh: watcher "boomer" crashed after 3 failures: ' .. path .. ':3: boom on recover\n',
    })
    -- one report a failure: three runs, no more
    local _, runs = err:gsub("run failed", "")
    assert.equal(3, runs)
    assert_no_sanitizer_report(proc)
  end)

  it("a failed user run quotes its message on one line, and a failing poll is a watch error; the watcher goes on", function()
    local proc, path = run_script([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "orders", recovery = ]] .. FAST .. [[ }
w:manage(function(msg, ctx)
  ctx:watch_call("feed", 0.05, function() error("feed unreachable") end)
  if msg then error("rejected " .. msg.content) end
end)
assert(w:start())
assert(w:send('buy "ACME"\n10'))
]])
    assert.is_true(P.wait_stderr(proc, 'watch "feed" poll failed'), P.stderr(proc))
    assert.is_true(P.wait_stderr(proc, "run failed (message"), P.stderr(proc))
    local err = P.stderr(proc)
    assert.is_true(has(err, 'hersh: watcher "orders" run failed (message "buy \\"ACME\\"\\n10"): '
      .. path .. ':5: rejected buy "ACME"; failure 1, retry in 0.05 s\n  10\n  stack traceback:\n'), err)
    assert.is_true(has(err, 'hersh: watcher "orders" watch "feed" poll failed: ' .. path .. ":4: feed unreachable\n"), err)
    assert.is_true(P.alive(proc), "a failure in one run does not end the watcher")
    assert.is_falsy(has(err, "crashed"), err)
    assert.equal(0, terminate(proc), P.stderr(proc))
    assert_no_sanitizer_report(proc)
  end)

  it("an error text cannot forge a report line or send control bytes to the terminal", function()
    local proc, path = run_script([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "forger" }
w:manage(function(msg, ctx)
  if msg then error("bad input\nhersh: watcher \"forger\" crashed: forged\r\27[2J", 0) end
end)
assert(w:start())
assert(w:send("go\r\27[31m"))
]])
    assert.is_true(P.wait_stderr(proc, "run failed"), P.stderr(proc))
    assert.equal(0, terminate(proc), P.stderr(proc))
    local err = P.stderr(proc)
    assert.is_true(has(err, 'hersh: watcher "forger" run failed (message "go\\x0d\\x1b[31m"): bad input; failure 1, retry in 15 s\n'
      .. '  hersh: watcher "forger" crashed: forged\\x0d\\x1b[2J\n'), err)
    for line in err:gmatch("[^\n]+") do
      assert.is_falsy(line:find("^hersh: watcher \"forger\" crashed"), "a forged report line: " .. line)
    end
    assert.is_falsy(err:find("[\r\27]"), "control bytes reached stderr")
    assert_no_sanitizer_report(proc)
  end)

  it("an engine limit crashes the watcher with the reason", function()
    local proc = run_script([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "greedy", max_watches = 1 }
w:manage(function(msg, ctx)
  ctx:watch_tick("first", 10)
  ctx:watch_tick("second", 10)
end)
assert(w:start())
]])
    assert.equal(1, P.wait_exit(proc), P.stderr(proc))
    local err = P.stderr(proc)
    assert.is_true(has(err, 'hersh: watcher "greedy" crashed: watch registry limit reached: 1/1 (cannot register \'second\')\n'), err)
    assert_no_sanitizer_report(proc)
  end)

  it("a cleanup past its deadline is reported as a timeout", function()
    local proc = run_script([[
local hersh = require "hersh"
local w = hersh.watcher{ id = "slow", cleanup_timeout = 0.2 }
w:manage(function(msg, ctx) if msg then return hersh.stop("done") end end)
w:cleanup(function(ctx) while true do end end)
assert(w:start())
assert(w:send("quit"))
]])
    assert.equal(0, P.wait_exit(proc), P.stderr(proc)) -- a stop, even with a bad cleanup
    local err = P.stderr(proc)
    assert.is_true(has(err, 'hersh: watcher "slow" cleanup failed: timeout\n'), err)
    assert_no_sanitizer_report(proc)
  end)
end)

describe("a Host program's runtime log", function()
  it("shows the failed run with its traceback (GET /programs/{id}/logs)", function()
    local h = H.test_host()
    -- the counter, whose init run raises from a function of its own
    local main = H.MAIN_LUA:gsub("w:manage%(function%(msg, ctx%)\n",
      'local function explode() error("reducer exploded") end\n'
      .. "w:manage(function(msg, ctx)\n"
      .. '  if ctx:trigger().reason == "init" then explode() end\n', 1)
    assert.is_true(main ~= H.MAIN_LUA, "the fixture changed: update this spec")
    local doc = H.create(h, H.counter_body("u-failures", { src_files = { ["main.lua"] = main } }))
    local id = doc.program_id
    H.start_ready(h, id)
    assert.is_true(H.wait_log(h, id, 'hersh: watcher "counter" run failed (init): /app/main.lua:'),
      H.logs(h, id, "?tail=1000"))
    local log = H.logs(h, id, "?tail=1000")
    assert.is_true(has(log, ": reducer exploded; failure 1, retry in 15 s"), log)
    assert.is_true(has(log, "  stack traceback:"), log)
    assert.is_true(has(log, "in upvalue 'explode'") or has(log, "in local 'explode'"), log)
    H.assert_clean_exit(h)
  end)
end)
