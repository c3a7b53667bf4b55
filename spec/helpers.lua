-- Shared helpers for the Lua specs: watchers made here are killed after each test,
-- so no timer or watch leaks into the next one.
local hersh = require "hersh"

local helpers = {}

local TERMINAL = { Stopped = true, Killed = true, Crashed = true }

-- Generous: only a hung engine should ever reach it. Every bound of these waits grows
-- with the build's pace (scripts.pace: longer under the sanitizers).
helpers.PACE = require("scripts.pace").factor
helpers.TIMEOUT = 5 * helpers.PACE

local live = {}

function helpers.terminal(state)
  return TERMINAL[state] == true
end

function helpers.watcher(config)
  local w = hersh.watcher(config or {})
  live[#live + 1] = w
  return w
end

-- Kills every watcher a test made that is still alive.
function helpers.reap()
  for i = #live, 1, -1 do
    local w = live[i]
    live[i] = nil
    local ok, state = pcall(w.state, w)
    if ok and not TERMINAL[state] then
      pcall(w.kill, w, "spec teardown")
    end
  end
end

local function bound(timeout)
  return timeout and timeout * helpers.PACE or helpers.TIMEOUT
end

function helpers.wait(pred, timeout)
  return hersh.wait(pred, bound(timeout))
end

-- Makes a hersh.http request, waits (bounded) for its callback, and returns what it got.
function helpers.fetch(opts)
  local got
  local ok, err, code = require("hersh.http").request(opts, function(...) got = table.pack(...) end)
  assert(ok, tostring(err) .. " " .. tostring(code))
  assert(helpers.wait(function() return got ~= nil end), "no answer in time")
  return got[1], got[2], got[3]
end

-- hersh.httpd servers a test starts: serve(handler, opts) serves on a free port unless
-- opts.port says otherwise; close_servers() (after_each) closes every one still open.
local servers = {}

function helpers.serve(handler, opts)
  opts = opts or {}
  opts.handler = handler
  local srv = assert(require("hersh.httpd").serve(opts))
  servers[#servers + 1] = srv
  return srv
end

function helpers.close_servers()
  for i = #servers, 1, -1 do
    servers[i]:close()
    servers[i] = nil
  end
end

-- A URL of path on srv.
function helpers.url(srv, path)
  return string.format("http://127.0.0.1:%d%s", srv:port(), path)
end

function helpers.wait_state(w, state, timeout)
  return hersh.wait(function() return w:state() == state end, bound(timeout))
end

function helpers.wait_terminal(w, timeout)
  return hersh.wait(function() return TERMINAL[w:state()] == true end, bound(timeout))
end

function helpers.copy(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

function helpers.sorted(list)
  local out = helpers.copy(list)
  table.sort(out)
  return out
end

helpers.has = require("scripts.process").has

function helpers.filter(list, pred)
  local out = {}
  for _, v in ipairs(list or {}) do
    if pred(v) then out[#out + 1] = v end
  end
  return out
end

function helpers.find(list, pred)
  for _, v in ipairs(list or {}) do
    if pred(v) then return v end
  end
  return nil
end

function helpers.logs(w, kind, limit)
  return w:logs(kind, limit) or {}
end

-- Installs a reducer that records every run, then calls body(msg, ctx, rec, runs)
-- and returns what it returns. Assertions belong outside the reducer: an error
-- raised in it is a run failure, not a test failure.
function helpers.record(w, body)
  local runs = {}
  w:manage(function(msg, ctx)
    local t = ctx:trigger()
    local rec = {
      reason = t.reason,
      watcher = t.watcher,
      user = t.user,
      vars = helpers.sorted(t.vars),
      content = msg and msg.content,
      msg = msg,
      state = w:state(),
    }
    runs[#runs + 1] = rec
    if body then return body(msg, ctx, rec, runs) end
  end)
  return runs
end

-- Counts cleanup calls.
function helpers.count_cleanup(w)
  local n = { count = 0 }
  w:cleanup(function() n.count = n.count + 1 end)
  return n
end

-- A recovery policy that parks the watcher in WaitRecover for `delay` after every
-- failure: meanwhile user and var signals pile up in their queues.
function helpers.hold_policy(delay)
  return { min_failures = 1, max_failures = 1000, base_delay = delay, max_delay = delay }
end

function helpers.reasons(runs)
  local out = {}
  for i, r in ipairs(runs) do out[i] = r.reason end
  return out
end

local function serialize(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" then return string.format("%.17g", v) end
  if t == "boolean" or t == "nil" then return tostring(v) end
  if t ~= "table" then return "nil" end
  local parts = {}
  for k, x in pairs(v) do
    local key = type(k) == "string" and string.format("[%q]", k) or "[" .. serialize(k) .. "]"
    parts[#parts + 1] = key .. "=" .. serialize(x)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
helpers.serialize = serialize

-- Runs `body` (Lua source, with locals hersh and h in scope, returning a table) in a
-- child lua5.4 killed after `timeout` seconds (times the pace), and returns that table. A test that
-- could hang the loop (a deadline that is never enforced) runs this way, so it fails
-- instead of hanging the suite.
function helpers.isolated(body, timeout)
  local build = os.getenv("HERSH_BUILD") or "build"
  if build:sub(1, 1) ~= "/" then build = "./" .. build end
  local script = os.tmpname()
  local errfile = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write("package.path = './lua/?.lua;./lua/?/init.lua;./spec/?.lua;' .. package.path\n",
    "package.cpath = '", build, "/lua/?.so;' .. package.cpath\n",
    "local hersh = require 'hersh'\n",
    "local h = require 'helpers'\n",
    "local result = (function()\n", body, "\nend)()\n",
    "h.reap()\n",
    "io.write('RESULT ', h.serialize(result), '\\n')\n",
    "io.stdout:flush()\n",
    "os.exit(0, false)\n")
  f:close()
  local p = assert(io.popen(string.format("timeout -s KILL %d lua5.4 %s 2>%s",
    math.ceil((timeout or 30) * helpers.PACE), script, errfile)))
  local out = p:read("a")
  local _, _, status = p:close()
  local ef = io.open(errfile)
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(script)
  os.remove(errfile)
  local line = out:match("RESULT ([^\n]*)")
  if not line then
    error(string.format("child failed (exit %s)\nstdout: %s\nstderr: %s",
      tostring(status), out, err), 2)
  end
  return assert(load("return " .. line))()
end

return helpers
