-- The hersh module: the engine (hersh.core) plus the parts best said in Lua.
local core = require "hersh.core"
local recovery = require "hersh.recovery"
local fetch = require "hersh.fetch"

local hersh = {
  VERSION = core.VERSION,
  SKIP = core.SKIP,
  recovery = recovery,
  run = core.run,
  run_for = core.run_for,
  wait = core.wait,
  sleep = core.sleep,
  timer = core.timer,
  http = fetch,
  flow = core.flow,
  now = core.now,
  stop = core.stop,
  kill = core.kill,
  crash = core.crash,
}

local function copy_table(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- The recovery policy of a config: a table (overrides of the defaults, perhaps with
-- its own decide), a decide function, or nothing.
local function policy_of(option)
  local policy = {}
  for k, v in pairs(recovery) do
    if k ~= "decide" then policy[k] = v end
  end
  policy.light_delays = copy_table(recovery.light_delays)
  local decide = recovery.decide
  if type(option) == "function" then
    decide = option
  elseif type(option) == "table" then
    for k, v in pairs(option) do
      if k == "decide" then decide = v else policy[k] = v end
    end
  elseif option ~= nil then
    error("config.recovery must be a table or a function", 3)
  end
  return policy, decide
end

-- The WatcherAPI options of a config: its own `api` table (or true for the
-- defaults), else, for the first watcher of a program run by `hersh run`, the
-- runner's (its --port, --bind, or the socket it inherited).
local function api_of(option)
  if option == false then return nil end
  if option == true then return {} end
  if option ~= nil then
    assert(type(option) == "table", "config.api must be a table, true or false")
    return option
  end
  return core.runner_api()
end

-- The runner's WatcherAPI could not start: a usage error `hersh run` reports in one line
-- ("cannot listen on 127.0.0.1:8080: Address already in use (use --port)"). The OS's
-- reason comes from the runner trying the address again, as the server's message does
-- not carry it.
local usage_error = { __tostring = function(e) return e.usage end }
local function runner_failure(api, err, code)
  if code == "ESYS" and not api.fd then
    err = (api.listen_failure(api.bind, api.port) or err) .. " (use --port)"
  end
  return setmetatable({ usage = err }, usage_error)
end

-- hersh.watcher(config): a new watcher in state NotRun (see docs/lua-api.md).
function hersh.watcher(config)
  config = config or {}
  assert(type(config) == "table", "hersh.watcher: config must be a table")
  local normalized = copy_table(config)
  normalized.recovery, normalized.decide = policy_of(config.recovery)
  local api = api_of(config.api)
  if api and api.record then -- `hersh run --record FILE`: this watcher's every run, to FILE
    local f, ferr = io.open(api.record, "w") -- written when the watcher ends: refused now, not then
    if not f then error(setmetatable({ usage = "--record: " .. ferr }, usage_error)) end
    f:close()
    normalized.trace, normalized.record = "all", api.record
  end
  local w, err, code = core.watcher(normalized)
  if not w then return nil, err, code end
  if api then
    local port, serve_err, serve_code = w:serve(api)
    if not port then
      -- The runner's own settings failing is not the script's to handle.
      if api.announce then error(runner_failure(api, serve_err, serve_code)) end
      return nil, serve_err, serve_code
    end
    if api.announce then
      local bind = api.bind or "127.0.0.1"
      if bind:find(":", 1, true) then bind = "[" .. bind .. "]" end
      if api.unix then -- HERSH_LISTEN_UNIX: a unix socket, no address or port
        io.stderr:write(string.format("hersh: WatcherAPI of %s on unix:%s\n", w:id(), api.unix))
      else
        io.stderr:write(string.format("hersh: WatcherAPI of %s on http://%s:%d%s\n", w:id(),
          bind, port, api.fd and " (the inherited socket)" or ""))
      end
    end
  end
  return w
end

return hersh
