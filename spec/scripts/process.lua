-- Helpers for the end-to-end specs (watcher_api_spec, runner_spec): real `hersh`
-- processes started in the background, and real HTTP with the curl command line.
-- Every wait here is bounded; stop() always ends what start() started.
local cjson = require "cjson"
local socket = require "socket"

local P = {}

local build = os.getenv("HERSH_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = "./" .. build end
P.build = build
P.hersh = build .. "/hersh"
P.listen_exec = build .. "/listen_exec"

-- Generous bounds: only a hung or broken program should ever reach them. Every bound
-- of a wait here grows with the build's pace (scripts.pace: the sanitizer build is
-- several times slower than the normal one).
P.PACE = require("scripts.pace").factor
P.WAIT = 30
P.CURL_TIMEOUT = 15 * P.PACE

function P.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  return ok == true, code
end

-- Helper commands (kill, curl, mktemp, rm) run without the sanitizer runtime
-- that scripts/test preloads into lua5.4: only hersh itself is under test. (Under it,
-- a coreutils tool that leaks at exit waits for LeakSanitizer's report and symbolizer:
-- a third of a second for every mktemp.)
local PLAIN = "env -u LD_PRELOAD "
P.PLAIN = PLAIN

-- A test's cleanups: P.defer(fn), called inside a test, runs fn when that test ends,
-- passed or failed, newest first, each in a pcall. busted's own `finally` keeps only the
-- last function given and exists only in a spec file's environment, so the list is run
-- from busted's "test end" event, which comes after the test and before after_each.
local cleanups = {}

function P.defer(fn)
  cleanups[#cleanups + 1] = fn
end

local function run_cleanups()
  while #cleanups > 0 do
    local fn = table.remove(cleanups)
    pcall(fn)
  end
end

-- What a spec file made: the processes it started and the folders P.tmpdir gave it.
-- Each process's folder goes once the process has ended (P.status) or been stopped;
-- at the file's end (after its teardown) every process still running is stopped and
-- every folder still there removed, so a spec that ends or replaces a process without
-- stopping it leaves nothing behind. Kept only under busted: a plain script (tests/soak)
-- removes what it makes itself and would only pile up the list.
local started, made = {}, {}
local have_busted, busted = pcall(require, "busted")
local tracking = have_busted and busted.subscribe ~= nil

local function sweep()
  for i = #started, 1, -1 do pcall(P.stop, started[i]) end
  started = {}
  local words = {}
  for _, dir in ipairs(made) do
    if P.exists(dir) then words[#words + 1] = P.quote(dir) end
  end
  made = {}
  -- --one-file-system: never through a mount a spec failed to undo (a dockerd's overlays)
  if #words > 0 then sh(PLAIN .. "rm -rf --one-file-system " .. table.concat(words, " ")) end
end

if tracking then
  busted.subscribe({ "test", "end" }, function()
    run_cleanups()
    return nil, true -- let the other subscribers (the output handler) see it too
  end)
  busted.subscribe({ "file", "end" }, function()
    sweep()
    return nil, true
  end)
end

-- The SHA-256 of `bytes` in hex, from coreutils' sha256sum: a reference that shares
-- no code with the Host's own hashing.
function P.sha256sum(bytes)
  local dir = P.tmpdir()
  P.write(dir .. "/in", bytes)
  local p = assert(io.popen(PLAIN .. "sha256sum " .. P.quote(dir .. "/in")))
  local out = p:read("a")
  p:close()
  sh(PLAIN .. "rm -rf " .. P.quote(dir))
  return assert(out:match("^(%x+) "), "sha256sum: " .. out)
end

-- Whether `text` is a string containing `part` (plain, no pattern).
function P.has(text, part)
  return type(text) == "string" and text:find(part, 1, true) ~= nil
end

function P.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function P.write(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
end

function P.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- LuaSocket's nanosleep (lua-socket, scripts/setup), not a sleep(1) process: starting
-- one costs more than a poll's 20 ms, five times more under the sanitizers.
function P.sleep(seconds)
  socket.sleep(seconds)
end

function P.tmpdir()
  -- -t: under $TMPDIR (scripts/test gives the specs one of their own), else /tmp
  local p = assert(io.popen(PLAIN .. "mktemp -d -t hersh-e2e.XXXXXX"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  if tracking then made[#made + 1] = dir end
  return dir
end

-- Polls pred() until it returns a true value (returned) or `timeout` seconds (times
-- the pace) pass (nil).
function P.wait_for(pred, timeout, interval)
  local deadline = os.time() + (timeout or P.WAIT) * P.PACE + 1
  while true do
    local v = pred()
    if v then return v end
    if os.time() > deadline then return nil end
    P.sleep(interval or 0.02)
  end
end

-- start{argv..., env = {NAME = value}, dir = tmpdir}: runs argv in the background
-- with stdout, stderr, its pid and (once it ends) its exit status in files under
-- `dir` (made if not given, and then removed once the process has ended or been
-- stopped: P.stdout and P.stderr still give what it wrote). argv[1] must exec the
-- process under test (env and listen_exec do), so the recorded pid is that process's.
function P.start(spec)
  local proc = { dir = spec.dir or P.tmpdir(), own_dir = spec.dir == nil }
  proc.out = proc.dir .. "/stdout"
  proc.err = proc.dir .. "/stderr"
  proc.pidfile = proc.dir .. "/pid"
  proc.rcfile = proc.dir .. "/rc"
  local words = {}
  if spec.env then
    words[#words + 1] = "env"
    for k, v in pairs(spec.env) do words[#words + 1] = P.quote(k .. "=" .. v) end
  end
  for _, a in ipairs(spec) do words[#words + 1] = P.quote(a) end
  local cmd = table.concat(words, " ")
  local redirs = string.format(">%s 2>%s <%s", P.quote(proc.out), P.quote(proc.err),
    spec.stdin and P.quote(spec.stdin) or "/dev/null")
  local script = string.format(
    "( %s %s %s & echo $! >%s.tmp; mv %s.tmp %s; wait $!; echo $? >%s.tmp; mv %s.tmp %s ) >/dev/null 2>&1 </dev/null &",
    cmd, redirs, spec.fds or "", P.quote(proc.pidfile), P.quote(proc.pidfile), P.quote(proc.pidfile),
    P.quote(proc.rcfile), P.quote(proc.rcfile), P.quote(proc.rcfile))
  assert(sh(script), "cannot start: " .. cmd)
  local pid = P.wait_for(function()
    local s = P.read(proc.pidfile)
    return s and tonumber(s:match("%d+"))
  end, 10)
  assert(pid, "no pid recorded for: " .. cmd)
  proc.pid = pid
  if tracking then started[#started + 1] = proc end
  return proc
end

-- Keeps what the process wrote (P.stdout and P.stderr read it from here on) and removes
-- the folder start made for it. Once it has ended, or when stop gives up on it.
local function release(proc)
  if proc.released then return end
  proc.released = true
  if not proc.own_dir then return end
  proc.stdout_text, proc.stderr_text = P.read(proc.out) or "", P.read(proc.err) or ""
  sh(PLAIN .. "rm -rf " .. P.quote(proc.dir))
end

-- The exit status once the process has ended, else nil. The status is written after
-- the shell of start reaped the process: its folder is released then.
function P.status(proc)
  if proc.rc then return proc.rc end
  local s = P.read(proc.rcfile)
  local rc = s and tonumber(s:match("%d+"))
  if rc then
    proc.rc = rc
    release(proc)
  end
  return rc
end

function P.alive(proc)
  return P.status(proc) == nil
end

function P.stderr(proc) return proc.stderr_text or P.read(proc.err) or "" end
function P.stdout(proc) return proc.stdout_text or P.read(proc.out) or "" end

-- Waits (bounded) for the process to end; its exit status, or nil if it did not.
function P.wait_exit(proc, timeout)
  return P.wait_for(function() return P.status(proc) end, timeout or P.WAIT)
end

function P.signal(proc, sig)
  if P.status(proc) ~= nil then return false end
  return sh(PLAIN .. "kill -" .. sig .. " " .. proc.pid .. " 2>/dev/null")
end

-- Whether `sig` (a number) is still pending for the process, from /proc: a process
-- signal not yet taken by any thread. False when the process is gone.
function P.signal_pending(proc, sig)
  local text = P.read("/proc/" .. proc.pid .. "/status")
  if not text then return false end
  local bit = 1 << (sig - 1)
  for _, field in ipairs { "ShdPnd", "SigPnd" } do
    local hex = text:match(field .. ":%s*(%x+)")
    if hex and (tonumber(hex, 16) or 0) & bit ~= 0 then return true end
  end
  return false
end

-- A sanitizer report in the process's stderr (the build-san binaries), or nil.
function P.sanitizer_report(proc)
  local err = P.stderr(proc)
  if err:find("Sanitizer", 1, true) or err:find("runtime error:", 1, true) then return err end
  return nil
end

-- Ends the process if it still runs (SIGTERM, a bounded wait, then SIGKILL), and
-- removes its folder (its output stays readable). Safe to call twice and on a process
-- that already ended.
function P.stop(proc)
  if not proc or proc.stopped then return end
  proc.stopped = true
  if proc.pid and P.status(proc) == nil then
    P.signal(proc, "TERM")
    if not P.wait_exit(proc, 10) then
      P.signal(proc, "KILL")
      P.wait_exit(proc, 10)
    end
  end
  release(proc)
end

-- `hersh run [options] SCRIPT [args]` in the background.
function P.run(script, opts)
  opts = opts or {}
  local argv = { env = opts.env, dir = opts.dir, fds = opts.fds }
  for _, a in ipairs(opts.prefix or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = P.hersh
  argv[#argv + 1] = "run"
  for _, a in ipairs(opts.options or { "--port", "0" }) do argv[#argv + 1] = a end
  argv[#argv + 1] = script
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  return P.start(argv)
end

-- P.run(script, opts) with a fresh directory as the script's first argument (before
-- opts.args); the process stops and the directory goes away when the test ends.
-- Returns proc, dir.
function P.run_with_dir(script, opts)
  local dir = P.tmpdir()
  local proc
  P.defer(function()
    P.stop(proc)
    sh(PLAIN .. "rm -rf " .. P.quote(dir))
  end)
  local run_opts, args = {}, { dir }
  for k, v in pairs(opts or {}) do run_opts[k] = v end
  for _, a in ipairs(run_opts.args or {}) do args[#args + 1] = a end
  run_opts.args = args
  proc = P.run(script, run_opts)
  return proc, dir
end

-- Waits for the runner's announcement "hersh: WatcherAPI of <id> on http://127.0.0.1:<port>";
-- returns port, id (raises with the process's stderr if it never comes).
function P.announced(proc, timeout)
  local found = P.wait_for(function()
    local id, port = P.stderr(proc):match("hersh: WatcherAPI of (%S+) on http://127%.0%.0%.1:(%d+)")
    if port then return { tonumber(port), id } end
    if not P.alive(proc) then return { false } end
  end, timeout or P.WAIT)
  if not found or not found[1] then
    error(string.format("no WatcherAPI announcement (exit %s)\nstderr:\n%s",
      tostring(P.status(proc)), P.stderr(proc)), 2)
  end
  return found[1], found[2]
end

-- Waits until the process's stderr contains `text` (plain); true or false.
function P.wait_stderr(proc, text, timeout)
  return P.wait_for(function()
    return P.stderr(proc):find(text, 1, true) ~= nil
  end, timeout or P.WAIT) == true
end

-- One request: P.http(port, method, path [, {body = s, headers = {...}}]) ->
-- {status = n, body = s, headers = {lower-case name = value}, json = decoded or nil}.
-- status 0 means no HTTP answer at all (refused, timed out, broken).
-- Its files are os.tmpname's: made in-process, with no mktemp or rm to run per request.
function P.http(port, method, path, opts)
  opts = opts or {}
  local bodyfile, headfile, reqfile = os.tmpname(), os.tmpname(), os.tmpname()
  local words = { PLAIN .. "curl -s --max-time", tostring(P.CURL_TIMEOUT), "-D", P.quote(headfile) }
  if method == "HEAD" then
    words[#words + 1] = "-I -o /dev/null"
  else
    words[#words + 1] = "-o " .. P.quote(bodyfile) .. " -X " .. P.quote(method)
  end
  if opts.body then
    P.write(reqfile, opts.body)
    words[#words + 1] = "--data-binary @" .. P.quote(reqfile)
    words[#words + 1] = "-H 'Content-Type: application/json'"
  end
  for _, hdr in ipairs(opts.headers or {}) do words[#words + 1] = "-H " .. P.quote(hdr) end
  words[#words + 1] = "-w '%{http_code}'"
  words[#words + 1] = P.quote("http://127.0.0.1:" .. port .. path)
  local p = assert(io.popen(table.concat(words, " ")))
  local code = p:read("a")
  p:close()
  local res = { status = tonumber(code) or 0, body = P.read(bodyfile) or "", headers = {} }
  for line in (P.read(headfile) or ""):gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name then res.headers[name:lower()] = value end
  end
  os.remove(bodyfile)
  os.remove(headfile)
  os.remove(reqfile)
  if res.body ~= "" then
    local ok, doc = pcall(cjson.decode, res.body)
    if ok then res.json = doc end
  end
  return res
end

function P.get(port, path) return P.http(port, "GET", path) end

function P.post_json(port, path, doc)
  return P.http(port, "POST", path, { body = cjson.encode(doc) })
end

-- Sends one message through POST /watcher/message; the response.
function P.send(port, content)
  return P.post_json(port, "/watcher/message", { content = content })
end

-- GET path until pred(json) holds (bounded); the last JSON, or nil.
function P.poll_json(port, path, pred, timeout)
  local last
  local ok = P.wait_for(function()
    local r = P.get(port, path)
    last = r.json
    return r.status == 200 and last ~= nil and pred(last)
  end, timeout)
  return ok and last or nil, last
end

P.null = cjson.null

-- Processes whose command line names `dir` (the sandboxes of a Host's programs), as
-- "pid: command line" strings.
function P.processes_under(dir)
  local found = {}
  local p = assert(io.popen("ls /proc"))
  for name in p:lines() do
    if name:match("^%d+$") then
      local cmdline = (P.read("/proc/" .. name .. "/cmdline") or ""):gsub("%z", " ")
      if cmdline:find(dir, 1, true) then found[#found + 1] = name .. ": " .. cmdline end
    end
  end
  p:close()
  return found
end

return P
