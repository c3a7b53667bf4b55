-- `hersh run` and `hersh version` end to end: real processes, their exit status,
-- stderr and signals, and the inherited-socket mode (tests/tools/listen_exec.c).
-- Every process a test starts is stopped in `finally` (defer); every wait is bounded.
local hersh = require "hersh"
local P = require "scripts.process"

local defer = P.defer -- runs fn when the test ends, passed or failed

local API = "spec/scripts/api_main.lua"

local has = P.has

-- Runs `hersh ARGS...` (any options given) to its end; returns exit status, stdout,
-- stderr. opts: env, fds (extra redirections, e.g. "3</dev/null").
local function hersh_cmd(argv, opts)
  opts = opts or {}
  local spec = { env = opts.env, fds = opts.fds, P.hersh }
  for _, a in ipairs(argv) do spec[#spec + 1] = a end
  local proc
  defer(function() P.stop(proc) end)
  proc = P.start(spec)
  local status = P.wait_exit(proc)
  assert.is_number(status, "hersh did not end: " .. P.stderr(proc))
  assert.is_nil(P.sanitizer_report(proc))
  return status, P.stdout(proc), P.stderr(proc)
end

-- Starts api_main with a fresh directory; the process and the directory go away in any case.
local function start_api(opts)
  return P.run_with_dir(API, opts)
end

-- Ends a running `hersh run` with SIGTERM and checks it exits 0 with no sanitizer report;
-- its stderr. With dir, a run holds until dir/h exists: released once the process has
-- taken the signal.
local function end_cleanly(proc, dir)
  assert.is_true(P.signal(proc, "TERM"))
  if dir then
    assert.is_true(P.wait_for(function() return not P.signal_pending(proc, 15) end, 10))
    P.write(dir .. "/h", "")
  end
  assert.equal(0, P.wait_exit(proc), P.stderr(proc))
  assert.is_nil(P.sanitizer_report(proc))
  return P.stderr(proc)
end

describe("hersh version", function()
  it("prints the version and the libraries, exit 0", function()
    for _, word in ipairs { "version", "--version" } do
      local status, out = hersh_cmd { word }
      assert.equal(0, status)
      assert.is_truthy(out:match("^hersh " .. hersh.VERSION:gsub("%p", "%%%0")
        .. " %(Lua 5%.4%.%d+, libuv %S+, libmicrohttpd %S+, libcurl %S+%)\n$"), out)
    end
  end)
end)

describe("hersh usage errors", function()
  it("exit 2 with the usage or a message", function()
    local cases = {
      { {}, "a command is required" },
      { { "frobnicate" }, "unknown command 'frobnicate'" },
      { { "run" }, "usage: hersh run FILE.lua" },
      { { "run", "--port", "70000", API }, "--port wants 0..65535" },
      { { "run", "--port", "http", API }, "--port wants 0..65535" },
      { { "run", "--frob", API }, "unknown option '--frob'" },
      { { "run", "spec/scripts/does_not_exist.lua" }, "does_not_exist.lua" },
    }
    for _, c in ipairs(cases) do
      local status, _, err = hersh_cmd(c[1])
      local what = "hersh " .. table.concat(c[1], " ")
      assert.equal(2, status, what .. ": " .. err)
      assert.is_true(has(err, c[2]), what .. ": " .. err)
    end
  end)

  it("a script with a syntax error exits 2 with the message and where it is", function()
    local status, _, err = hersh_cmd { "run", "--port", "0", "spec/scripts/syntax_error.lua" }
    assert.equal(2, status, err)
    assert.is_truthy(err:match("hersh: [^\n]*syntax_error%.lua:4: unexpected symbol near '='"), err)
  end)

  it("a script that raises while it loads exits 2 with the error", function()
    local status, _, err = hersh_cmd { "run", "--port", "0", "spec/scripts/load_error.lua" }
    assert.equal(2, status, err)
    assert.is_truthy(err:match("hersh: [^\n]*load_error%.lua:5: deliberate load failure"), err)
  end)
end)

describe("hersh run exit status", function()
  it("0 when the script makes no watcher", function()
    local status, out, err = hersh_cmd { "run", "--port", "0", "spec/scripts/no_watcher.lua" }
    assert.equal(0, status, err)
    assert.equal("no watcher here\n0=spec/scripts/no_watcher.lua\n", out)
  end)

  it("gives the script its own arguments; runner options never reach them, except after --", function()
    local status, out, err = hersh_cmd { "run", "spec/scripts/no_watcher.lua", "a", "--port", "0", "b", "--",
      "--port", "c" }
    assert.equal(0, status, err)
    assert.equal("no watcher here\n0=spec/scripts/no_watcher.lua\n1=a\n2=b\n3=--port\n4=c\n", out)
  end)

  -- how spec/scripts/ending.lua ends, the exit status, its output, and what that says
  for _, c in ipairs {
    { "stop", 0, "RUN init\nCLEANUP stop\n", "0 after the watcher stops itself (cleanup runs)" },
    { "kill", 1, "RUN init\n", "1 after the watcher ends Killed (no cleanup)" },
    { "crash", 1, "RUN init\nCLEANUP crash\n",
      "1 after the watcher ends Crashed through its recovery policy (cleanup runs)" },
    { "limit", 1, "RUN init\nCLEANUP limit\n",
      "1 after the watcher ends Crashed by breaking an engine limit (cleanup runs)" },
  } do
    local how, want_status, want_out, title = c[1], c[2], c[3], c[4]
    it(title, function()
      local status, out, err = hersh_cmd { "run", "--port", "0", "spec/scripts/ending.lua", how }
      assert.equal(want_status, status, err)
      assert.equal(want_out, out)
    end)
  end
end)

describe("hersh run signals", function()
  it("SIGTERM stops the watcher: cleanup runs, exit 0", function()
    local proc = start_api()
    local port = P.announced(proc)
    assert.equal(200, P.get(port, "/watcher/status").status)
    local err = end_cleanly(proc)
    assert.is_true(has(err, "hersh: Terminated: stopping"), err)
    assert.is_true(has(err, "CLEANUP-START"), err)
    assert.is_true(has(err, "CLEANUP-END"), err)
  end)

  it("SIGINT does the same", function()
    local proc = start_api()
    P.announced(proc)
    assert.is_true(P.signal(proc, "INT"))
    assert.equal(0, P.wait_exit(proc), P.stderr(proc))
    assert.is_nil(P.sanitizer_report(proc))
    assert.is_true(has(P.stderr(proc), "CLEANUP-END"), P.stderr(proc))
  end)

  it("SIGTERM during a run: the run finishes, then cleanup, exit 0", function()
    local proc, dir = start_api()
    local port = P.announced(proc)
    assert.equal(200, P.send(port, "hold:h").status)
    assert.is_true(P.wait_stderr(proc, "HOLD-START h"))
    local err = end_cleanly(proc, dir)
    assert.is_true(has(err, "HOLD-END h"), err)
    assert.is_true(has(err, "CLEANUP-END"), err)
  end)

  it("SIGTERM during a run of a script that calls hersh.run() itself: the run finishes, cleanup, exit 0", function()
    local proc, dir = P.run_with_dir("spec/scripts/self_run.lua")
    local port = P.announced(proc)
    assert.equal(200, P.send(port, "hold").status)
    assert.is_true(P.wait_stderr(proc, "HOLD-START"))
    local err = end_cleanly(proc, dir)
    assert.is_true(has(err, "HOLD-END"), err)
    assert.is_true(has(err, "CLEANUP-END"), err)
    assert.is_true(has(err, "RUN-RETURNED Stopped"), err)
  end)

  it("a second SIGTERM kills: cleanup does not run, exit 1", function()
    -- Deterministic: both signals arrive while the reducer is busy in a run (the
    -- loop takes them only when the run ends), each one once the process has
    -- taken the previous one (no longer pending in /proc/PID/status).
    local proc, dir = start_api()
    local port = P.announced(proc)
    assert.equal(200, P.send(port, "hold:h").status)
    assert.is_true(P.wait_stderr(proc, "HOLD-START h"))
    for _ = 1, 2 do
      assert.is_true(P.signal(proc, "TERM"))
      assert.is_true(P.wait_for(function() return not P.signal_pending(proc, 15) end, 10),
        "SIGTERM stays pending")
    end
    P.write(dir .. "/h", "")
    local status = P.wait_exit(proc)
    local err = P.stderr(proc)
    assert.is_true(has(err, "hersh: Terminated: stopping"), err)
    assert.is_true(has(err, "hersh: Terminated: killing"), err)
    assert.is_false(has(err, "CLEANUP-START"), "cleanup ran after a second SIGTERM:\n" .. err)
    assert.equal(1, status, err)
  end)
end)

describe("hersh run --bind and --port", function()
  it("a bad --bind address exits non-zero and names it (script that checks hersh.watcher)", function()
    local dir = P.tmpdir()
    defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
    local status, _, err = hersh_cmd { "run", "--bind", "not-an-address", "--port", "0", API, dir }
    assert.equal(2, status, err)
    assert.is_true(has(err, "not-an-address"), err)
  end)

  it("a bad --bind address exits non-zero and names it (script written like the README's)", function()
    local status, _, err = hersh_cmd { "run", "--bind", "not-an-address", "--port", "0",
      "spec/scripts/plain_watcher.lua" }
    assert.is_true(status ~= 0, err)
    assert.is_true(has(err, "not-an-address"), "the message does not name the bad address:\n" .. err)
  end)

  it("a port in use exits non-zero with a message", function()
    local first = start_api()
    local port = P.announced(first)
    local dir = P.tmpdir()
    defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
    local status, _, err = hersh_cmd { "run", "--port", tostring(port), API, dir }
    assert.is_true(status ~= 0, err)
    assert.is_true(has(err, "cannot listen on 127.0.0.1:" .. port), err)
    assert.equal(200, P.get(port, "/watcher/status").status) -- the first one still serves
    end_cleanly(first)
  end)

  it("a port in use: one line naming the address, the reason and --port, exit 2 (README-style script)", function()
    local first = start_api()
    local port = P.announced(first)
    local status, out, err = hersh_cmd { "run", "--port", tostring(port), "spec/scripts/plain_watcher.lua" }
    assert.equal(2, status, err)
    assert.equal("", out)
    assert.equal(string.format(
      "hersh run: cannot listen on 127.0.0.1:%d: Address already in use (use --port)\n", port), err)
    end_cleanly(first)
  end)

  it("--bind ::1 serves on IPv6 loopback and announces a usable URL", function()
    local proc = start_api { options = { "--bind", "::1", "--port", "0" } }
    local found = P.wait_for(function()
      local err = P.stderr(proc)
      return err:match("hersh: WatcherAPI of api%-main on (http://%S+)") or (not P.alive(proc) and "")
    end)
    if found == "" and has(P.stderr(proc), "cannot listen") then
      return -- no IPv6 loopback on this machine: nothing to check
    end
    assert.is_string(found, P.stderr(proc))
    local port = found:match(":(%d+)$")
    assert.is_truthy(port, found)
    assert.equal("http://[::1]:" .. port, found)
    local p = io.popen("env -u LD_PRELOAD curl -s -g --max-time 15 -o /dev/null -w '%{http_code}' 'http://[::1]:"
      .. port .. "/watcher/status'")
    local code = p:read("a")
    p:close()
    assert.equal("200", code)
    end_cleanly(proc)
  end)
end)

describe("hersh run on an inherited socket (LISTEN_FDS=1, fd 3)", function()
  it("serves requests on the socket the parent opened", function()
    local dir = P.tmpdir()
    local portfile = dir .. "/port"
    local proc
    defer(function()
      P.stop(proc)
      os.execute("rm -rf " .. P.quote(dir))
    end)
    proc = P.start { P.listen_exec, portfile, P.hersh, "run", API, dir }
    local port = P.wait_for(function()
      local s = P.read(portfile)
      return s and tonumber(s:match("^(%d+)\n"))
    end, 10)
    assert.is_number(port, "listen_exec wrote no port: " .. P.stderr(proc))
    local announced = P.announced(proc)
    assert.equal(port, announced)
    assert.is_true(has(P.stderr(proc), "http://127.0.0.1:" .. port .. " (the inherited socket)"), P.stderr(proc))

    local s = P.get(port, "/watcher/status")
    assert.equal(200, s.status, s.body)
    assert.equal("api-main", s.json.watcherID)
    assert.equal(port, P.get(port, "/watcher/config").json.config.serverPort)
    assert.equal(200, P.send(port, "over the inherited socket").status)
    local got = P.poll_json(port, "/watcher/context", function(d) return #d.context.received == 1 end)
    assert.is_table(got)
    assert.same({ "over the inherited socket" }, got.context.received)
    -- taken once: the script (and its children) no longer see LISTEN_FDS
    assert.is_true(has(P.stderr(proc), "LISTEN_FDS in script: nil"), P.stderr(proc))

    assert.is_true(P.signal(proc, "TERM"))
    assert.equal(0, P.wait_exit(proc), P.stderr(proc))
    assert.is_nil(P.sanitizer_report(proc))
    assert.is_true(has(P.stderr(proc), "CLEANUP-END"))
  end)

  it("LISTEN_FDS=1 with no listening socket on fd 3 exits 2 with a message", function()
    local status, _, err = hersh_cmd({ "run", API, "/tmp" }, { env = { LISTEN_FDS = "1" }, fds = "3</dev/null" })
    assert.equal(2, status, err)
    assert.is_true(has(err, "fd 3 is not a listening socket"), err)
  end)

  it("LISTEN_FDS meant for another process (LISTEN_PID) is ignored", function()
    local proc = start_api { env = { LISTEN_FDS = "1", LISTEN_PID = "1" }, fds = "3</dev/null" }
    local port = P.announced(proc)
    assert.equal(200, P.get(port, "/watcher/status").status)
    end_cleanly(proc)
  end)
end)
