-- hersh replay TRACE FILE.lua [--until N] [--step] [--strict] (docs/replay.md): runs a
-- watcher's reducer against the inputs its trace recorded, in the recorded order, with
-- no loop, timers, I/O or network (every input comes from the trace), and compares each
-- run's checkpoint. Exit 0: identical; 1: the first divergence, named; 2: usage, or a
-- trace or script that cannot be read (the line named).
local json = require "hersh.json"

local replay = {}

local EXIT = { identical = 0, diverged = 1, usage = 2 }
replay.EXIT = EXIT

-- A failure that ends the command: exit code and message.
local Stop = {}
Stop.__index = Stop
local function stop(code, message) error(setmetatable({ code = code, message = message }, Stop), 0) end

-- ---- reading the trace -------------------------------------------------------------------

-- null (json.null) as nil, everywhere in a decoded value.
local function denull(v)
  if v == json.null then return nil end
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do v[k] = denull(x) end
  return v
end

local function field(rec, name, want, where)
  local v = rec[name]
  if type(v) ~= want then
    stop(EXIT.usage, string.format("%s: %s '%s' (%s expected)", where, v == nil and "no" or "a bad", name, want))
  end
  return v
end

-- The trace at `path`: its header and its runs, checked line by line.
function replay.read_trace(path)
  local f, err = io.open(path, "rb")
  if not f then stop(EXIT.usage, "cannot read the trace: " .. err) end
  local text = f:read("a")
  f:close()
  if text == "" then stop(EXIT.usage, path .. ":1: empty file: not a hersh trace") end
  local lines, n = {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    lines[n] = line
  end
  if lines[n] == "" then lines[n], n = nil, n - 1 end -- the final newline
  local truncated = text:sub(-1) ~= "\n"
  local header, runs = nil, {}
  for i = 1, n do
    local where = path .. ":" .. i
    local rec, bad = json.decode(lines[i])
    if rec == nil then
      local cut = truncated and i == n and " (the line is truncated: the file ends without a newline)" or ""
      stop(EXIT.usage, where .. ": " .. tostring(bad) .. cut)
    end
    if type(rec) ~= "table" then stop(EXIT.usage, where .. ": a JSON object expected") end
    if i == 1 then
      if rec.hersh_trace == nil then stop(EXIT.usage, where .. ": not a hersh trace (no 'hersh_trace' header)") end
      if rec.hersh_trace ~= 1 then
        stop(EXIT.usage, where .. ": trace format version " .. tostring(rec.hersh_trace) .. " (this hersh reads 1)")
      end
      field(rec, "from_run", "number", where)
      field(rec, "context", "table", where)
      header = rec
    else
      field(rec, "run", "number", where)
      field(rec, "trigger", "string", where)
      field(rec, "inputs", "table", where)
      field(rec, "outcome", "string", where)
      field(rec, "state", "table", where)
      field(rec, "writes", "table", where)
      field(rec, "failures", "number", where)
      local expected = i == 2 and header.from_run or runs[#runs].run + 1
      if rec.run ~= expected then
        stop(EXIT.usage, string.format("%s: run %s where run %d was due (the trace misses runs)", where,
          tostring(rec.run), expected))
      end
      rec.line = i
      runs[#runs + 1] = rec
    end
  end
  if header.incomplete then
    stop(EXIT.usage, path .. ":1: the trace is incomplete (the recording ran out of memory)")
  end
  return header, runs
end

-- ---- values ---------------------------------------------------------------------------------

-- A copy through JSON, as the engine's store hands a value back: plain data only.
local function plain(v)
  if type(v) ~= "table" then return v end
  local ok, text = pcall(json.encode, v)
  if not ok then return tostring(v) end
  return denull(json.decode(text))
end

-- A copy as ctx:update makes one: shared and cyclic tables stay so, metatables kept.
local function deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, x in pairs(v) do copy[deep_copy(k, seen)] = deep_copy(x, seen) end
  return setmetatable(copy, getmetatable(v))
end

local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Where a and b first differ: a path (".book.trades[3].time") and both values there.
local function first_diff(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then return path, a, b end
  local keys = {}
  for k in pairs(a) do keys[#keys + 1] = k end
  for k in pairs(b) do if a[k] == nil then keys[#keys + 1] = k end end
  table.sort(keys, function(x, y)
    if type(x) == type(y) and (type(x) == "number" or type(x) == "string") then return x < y end
    return type(x) < type(y)
  end)
  for _, k in ipairs(keys) do
    if not same(a[k], b[k]) then
      local step = type(k) == "number" and ("[" .. k .. "]") or ("." .. tostring(k))
      return first_diff(a[k], b[k], path .. step)
    end
  end
  return path, a, b
end

local function show(v, limit)
  local ok, text = pcall(json.encode, v)
  text = ok and text or tostring(v)
  limit = limit or 400
  if #text > limit then text = text:sub(1, limit) .. "..." end
  return text
end

-- ---- the fake engine: what FILE.lua's `require "hersh"` gets ---------------------------------

-- The run being replayed: its inputs are served in order; a mismatch diverges.
local Diverged = {}
Diverged.__index = Diverged
local function diverge(what) error(setmetatable({ what = what }, Diverged), 0) end

local function input_kind(input)
  for _, k in ipairs { "now", "random", "watch", "resume" } do
    if input[k] ~= nil then return k end
  end
  return "unknown"
end

local function take_input(run, kind, name)
  local i = run.next_input
  local input = run.record.inputs[i]
  local wanted = kind .. (name and (" '" .. name .. "'") or "")
  if not input then
    diverge(string.format("input %d: the reducer reads %s; the recording has no more inputs", i, wanted))
  end
  local got = input_kind(input)
  if got ~= kind or (name and input.watch ~= name) then
    diverge(string.format("input %d: the reducer reads %s; the recording has %s", i, wanted, show(input, 200)))
  end
  run.next_input = i + 1
  return input
end

local Outcome = {}
local function make_outcome(kind, reason, cause)
  return setmetatable({ kind = kind, reason = reason, cause = cause }, Outcome)
end

local WatchValue = { __index = { triggered = function(self) return self._triggered end } }

local function new_ctx(state, run)
  local ctx = {}
  local function active(what)
    if not run.active then error("ctx:" .. what .. " used outside a run or the cleanup", 3) end
  end
  -- as the engine's store: get hands out the stored value itself, update a deep copy;
  -- a write is compared as it was when written
  function ctx.get(_, key) return state.context[key] end
  function ctx.set(_, key, value)
    active("set")
    state.context[key] = value
    run.writes[#run.writes + 1] = { key, plain(value) }
    return value
  end
  function ctx.update(self, key, fn)
    if type(key) ~= "string" then error("bad argument #1 to 'update' (ctx:update: key must be a string)", 2) end
    if type(fn) ~= "function" then error("bad argument #2 to 'update' (ctx:update: fn must be a function)", 2) end
    return self:set(key, fn(deep_copy(state.context[key], {})))
  end
  function ctx.memo(_, name, fn)
    active("memo")
    if state.memo[name] == nil then state.memo[name] = fn() end
    return state.memo[name]
  end
  function ctx.clear_memo(_, name) state.memo[name] = nil end
  function ctx.env(_, key) return state.env[key] end
  function ctx.id() return state.id end
  function ctx.trigger() return run.trigger end
  function ctx.message() return run.msg end
  function ctx.log() end
  function ctx.print(_, text) run.printed[#run.printed + 1] = tostring(text) end
  local function watch(kind)
    return function(_, name)
      local input = take_input(run, "watch", name)
      local v = setmetatable({ value = denull(input.value), err = input.error, name = name,
        updated = input.updated, _triggered = input.triggered }, WatchValue)
      state.watches[name] = v
      return v
    end
  end
  ctx.watch_call, ctx.watch_flow, ctx.watch_tick = watch "call", watch "flow", watch "tick"
  function ctx.now()
    if run.now == nil then run.now = take_input(run, "now").now end
    return run.now
  end
  function ctx.random(_, m, n)
    if m ~= nil and not math.tointeger(m) then error("bad argument #1 to 'random' (number has no integer representation)", 2) end
    if n ~= nil and not math.tointeger(n) then error("bad argument #2 to 'random' (number has no integer representation)", 2) end
    if n ~= nil and m > n then error("bad argument #2 to 'random' (interval is empty)", 2) end
    return take_input(run, "random").random
  end
  return setmetatable(ctx, { __tostring = function() return "hersh.Context of " .. state.id end })
end

-- hersh.core for a replay: watchers only remember their functions; what would wait
-- yields to the replay, which resumes with the recorded answer.
local function fake_core(state)
  local core = { VERSION = "replay", SKIP = setmetatable({}, { __tostring = function() return "hersh.SKIP" end }) }
  local Watcher = {}
  Watcher.__index = Watcher
  function Watcher:manage(fn) self.reduce = fn return true end
  function Watcher:cleanup(fn) self.cleanup_fn = fn return true end
  function Watcher:start() return true end
  function Watcher:serve() return 0 end
  function Watcher:api_port() return 0 end
  function Watcher:id() return self.config.id or "replayed" end
  function Watcher:state() return "NotRun" end
  function Watcher:send() return true end
  function Watcher:stop() return true end
  function Watcher:kill() return true end
  function Watcher:failures() return 0 end
  function Watcher:pending() return { watcher = 0, user = 0, var = 0 } end
  function core.watcher(config)
    local w = setmetatable({ config = config }, Watcher)
    state.watchers[#state.watchers + 1] = w
    return w
  end
  function core.runner_api() return nil end
  function core.run() return true end
  function core.run_for() return true end
  function core.wait() return true end
  function core.now() return state.run and state.run.now or 0 end
  function core.stop(reason) return make_outcome("stop", reason) end
  function core.kill(reason) return make_outcome("kill", reason) end
  function core.crash(reason, cause) return make_outcome("crash", reason, cause) end
  function core.sleep() return coroutine.yield() end
  function core.fetch() return coroutine.yield() end
  function core.timer() return nil, "no timers in a replay", "ESTATE" end
  function core.flow() return nil, "no flows in a replay", "ESTATE" end
  return core
end

-- Loads FILE.lua under the fake engine; returns the watcher the trace is of.
local function load_script(file, header, state)
  local dir = file:match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
  package.loaded["hersh.core"] = fake_core(state)
  package.loaded["hersh"], package.loaded["hersh.fetch"] = nil, nil
  local chunk, err = loadfile(file)
  if not chunk then stop(EXIT.usage, "cannot load " .. err) end
  local ok, why = pcall(chunk)
  if not ok then stop(EXIT.usage, file .. " failed as it loaded: " .. tostring(why)) end
  local first
  for _, w in ipairs(state.watchers) do
    if w.reduce and w.config.id == header.watcher then return w end
    first = first or (w.reduce and w)
  end
  if not first then stop(EXIT.usage, file .. " makes no watcher with a reducer") end
  return first
end

-- ---- running ------------------------------------------------------------------------------------

local STRICT = {
  { os, "time", "os.time", "ctx:now()" }, { os, "clock", "os.clock", "ctx:now()" },
  { os, "date", "os.date", "os.date(fmt, ctx:now())", function(_, t) return t ~= nil end },
  { os, "execute", "os.execute" }, { os, "getenv", "os.getenv", "ctx:env(key)" },
  { math, "random", "math.random", "ctx:random()" }, { math, "randomseed", "math.randomseed" },
}
for _, name in ipairs { "open", "read", "write", "lines", "popen", "input", "output", "close", "tmpfile" } do
  STRICT[#STRICT + 1] = { io, name, "io." .. name }
end

-- Strict mode: the functions that read the world outside the engine raise in a run.
local function strict_on()
  local saved = {}
  for i, s in ipairs(STRICT) do
    local lib, key, name, instead, allowed = s[1], s[2], s[3], s[4], s[5]
    local real = lib[key]
    saved[i] = real
    lib[key] = function(...)
      if allowed and allowed(...) then return real(...) end
      error(string.format("strict replay: %s inside a run%s", name, instead and (" (use " .. instead .. ")") or ""), 2)
    end
  end
  return function()
    for i, s in ipairs(STRICT) do s[1][s[2]] = saved[i] end
  end
end

-- Runs the reducer for one record: returns the run's result.
local function run_once(state, reduce, ctx, rec, strict)
  local run = state.run
  local co = coroutine.create(function() return reduce(run.msg, ctx) end)
  local args, nargs = {}, 0
  local restore = strict and strict_on()
  local result
  while true do
    local packed = table.pack(coroutine.resume(co, table.unpack(args, 1, nargs)))
    if not packed[1] then
      local err = packed[2]
      if getmetatable(err) == Diverged then
        if restore then restore() end
        error(err, 0)
      end
      result = { outcome = "failed", error = type(err) == "string" and err or tostring(err) }
      break
    end
    if coroutine.status(co) == "dead" then
      local r = packed[2]
      if getmetatable(r) == Outcome then
        local names = { stop = "stopped", kill = "killed", crash = "crashed" }
        result = { outcome = names[r.kind] or "crashed", error = r.reason }
      else
        result = { outcome = "ok" }
      end
      break
    end
    -- it waits: the recording says what it resumed with; none means it never did
    local input = rec.inputs[run.next_input]
    if not input or input.resume == nil then
      if rec.outcome == "timeout" or rec.outcome == "killed" then
        result = { outcome = rec.outcome, waiting = true }
        break
      end
      if restore then restore() end
      diverge(string.format("input %d: the reducer waits; the recording has %s", run.next_input,
        input and show(input, 200) or "no more inputs"))
    end
    run.next_input = run.next_input + 1
    args, nargs = input.resume, #input.resume
    for i = 1, nargs do args[i] = denull(args[i]) end
  end
  if restore then restore() end
  return result
end

-- What follows a run: the state, the failure count and the retry, as the engine decides.
local function settle(state, w, result)
  local o = result.outcome
  if o == "ok" then
    state.failures = 0
    return "Ready"
  elseif o == "stopped" then
    return "Stopped"
  elseif o == "killed" then
    return "Killed"
  elseif o == "limit" then
    return "Crashed"
  end
  state.failures = state.failures + 1
  local decide = w.config.decide or require("hersh.recovery").decide
  local d = decide(state.failures, result.error or "failed", w.config.recovery)
  if d.action == "crash" then return "Crashed" end
  result.retry_in = d.delay
  return d.action == "recover" and "WaitRecover" or "Ready"
end

local function describe_run(rec)
  local trig = rec.trigger
  if rec.message then trig = trig .. " " .. show(rec.message.content, 120) end
  if rec.vars then trig = trig .. " " .. table.concat(rec.vars, ",") end
  return trig
end

-- The first difference between the record's checkpoint and the replayed run, or nil.
local function compare(rec, result, writes, next_state, is_last)
  local recorded_outcome = rec.outcome
  if recorded_outcome ~= result.outcome then
    return string.format("outcome: recorded %s%s, replayed %s%s", recorded_outcome,
      rec.error and (" (" .. rec.error:match("^[^\n]*") .. ")") or "", result.outcome,
      result.error and (" (" .. tostring(result.error):match("^[^\n]*") .. ")") or "")
  end
  for i = 1, math.max(#rec.writes, #writes) do
    local r, p = rec.writes[i], writes[i]
    if not r then
      return string.format("context key %s: written in the replay only (write %d): %s", show(p[1]), i, show(p[2]))
    elseif not p then
      return string.format("context key %s: written in the recording only (write %d): %s", show(r[1]), i,
        show(denull(r[2])))
    end
    local rv = denull(r[2])
    if r[1] ~= p[1] or not same(rv, p[2]) then
      if r[1] ~= p[1] then
        return string.format("write %d: recorded context key %s, replayed context key %s", i, show(r[1]), show(p[1]))
      end
      local path, ra, pa = first_diff(rv, p[2], "")
      return string.format("context key %s (write %d)%s: recorded %s, replayed %s", show(r[1]), i,
        path ~= "" and (", at " .. path) or "", show(ra), show(pa))
    end
  end
  local recorded_next = rec.state[2]
  local settled = { Ready = true, WaitRecover = true, Crashed = true }
  if settled[recorded_next] and recorded_next ~= next_state and not result.waiting then
    return string.format("state after the run: recorded %s, replayed %s", recorded_next, next_state)
  end
  if (rec.retry_in or not is_last) and (rec.retry_in or 0) ~= (result.retry_in or 0) and not result.waiting then
    return string.format("retry: recorded in %s s, replayed in %s s", tostring(rec.retry_in or "none"),
      tostring(result.retry_in or "none"))
  end
end

local function print_run(rec, result, run, next_state)
  io.stdout:write(string.format("run %d  %s  %s -> %s  %s\n", rec.run, describe_run(rec), rec.state[1], next_state,
    result.outcome .. (result.retry_in and string.format(" (retry in %s s)", result.retry_in) or "")))
  for i, input in ipairs(rec.inputs) do io.stdout:write(string.format("  input %d  %s\n", i, show(input, 200))) end
  for _, wr in ipairs(run.writes) do io.stdout:write(string.format("  write  %s = %s\n", wr[1], show(wr[2], 200))) end
  for _, line in ipairs(run.printed) do io.stdout:write("  print  ", line, "\n") end
end

local function print_store(state)
  io.stdout:write("context:\n")
  local keys = {}
  for k in pairs(state.context) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do io.stdout:write(string.format("  %s = %s\n", k, show(state.context[k], 2000))) end
  io.stdout:write("watches:\n")
  local names = {}
  for k in pairs(state.watches) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = state.watches[k]
    io.stdout:write(string.format("  %s = %s%s\n", k, show(v.value, 2000), v.err and (" (error: " .. v.err .. ")") or ""))
  end
end

-- Replays every run; returns the exit code.
function replay.replay(header, runs, file, opts)
  local state = { context = {}, memo = {}, env = {}, watches = {}, watchers = {}, failures = 0,
    id = header.watcher or "replayed" }
  for k, v in pairs(header.context) do state.context[k] = denull(v) end
  local w = load_script(file, header, state)
  for _, e in ipairs(w.config.env or {}) do
    local k, v = tostring(e):match("^([^=]*)=(.*)$")
    if k then state.env[k] = v end
  end
  if runs[1] then state.failures = runs[1].failures end
  local done = 0
  for i, rec in ipairs(runs) do
    if opts["until"] and rec.run > opts["until"] then break end
    local run = { record = rec, next_input = 1, writes = {}, printed = {}, active = true,
      msg = rec.message and { content = rec.message.content, received_at = rec.message.received_at } or nil,
      trigger = { watcher = rec.trigger == "init" or rec.trigger == "retry" or rec.trigger == "recover",
        user = rec.trigger == "message", vars = rec.vars or {}, reason = rec.trigger } }
    state.run = run
    local failures_before = state.failures
    local function report(what)
      io.stdout:write(string.format("divergence at run %d (trace line %d), trigger %s\n", rec.run, rec.line,
        describe_run(rec)))
      io.stdout:write(string.format("  inputs: %s\n", show(rec.inputs, 1000)))
      io.stdout:write("  ", what, "\n")
      return EXIT.diverged
    end
    if rec.failures ~= failures_before then
      return report(string.format("failures before the run: recorded %d, replayed %d", rec.failures, failures_before))
    end
    local ok, result = pcall(run_once, state, w.reduce, new_ctx(state, run), rec, opts.strict)
    if not ok then
      if getmetatable(result) == Diverged then return report(result.what) end
      error(result, 0)
    end
    run.active = false
    local next_state = settle(state, w, result)
    local diff = compare(rec, result, run.writes, next_state, i == #runs)
    if not diff and not result.waiting and run.next_input <= #rec.inputs then
      diff = string.format("inputs: the reducer read %d, the recording has %d (the next: %s)", run.next_input - 1,
        #rec.inputs, show(rec.inputs[run.next_input], 200))
    end
    if opts.step then print_run(rec, result, run, next_state) end
    if diff then return report(diff) end
    done = done + 1
  end
  io.stdout:write(string.format("replayed %d runs: identical\n", done))
  if opts["until"] then print_store(state) end
  return EXIT.identical
end

-- main.run hands over `hersh replay ...`, parsed by cli.args: the exit code.
function replay.run(a)
  local ok, code = pcall(function()
    if a["until"] then
      a["until"] = math.tointeger(tonumber(a["until"]))
      if not a["until"] or a["until"] < 1 then stop(EXIT.usage, "--until wants a run number (1 or more)") end
    end
    local header, runs = replay.read_trace(a.trace)
    return replay.replay(header, runs, a.file, a)
  end)
  if ok then return code end
  if getmetatable(code) == Stop then
    io.stderr:write("hersh replay: ", code.message, "\n")
    return code.code
  end
  io.stderr:write("hersh replay: internal error: ", tostring(code), "\n")
  return EXIT.usage
end

return replay
