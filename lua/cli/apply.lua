-- `hersh apply FILE`: makes the Host run what FILE lists. It checks the whole file and
-- plans (cli.plan) before any change, prints the plan, then goes through it in the
-- file's order: creates and starts, updates in place (cli.deploy's push: PUT, progress,
-- wait), starts what is not running and, with --prune, deletes the programs an apply of
-- this file created that the file no longer lists. It stops at the first failure with
-- its reason; exit 0 only when every program of the file is Ready.
local client = require "cli.client"
local deploy = require "cli.deploy"
local programs = require "cli.programs"
local applyfile = require "cli.applyfile"
local applystate = require "cli.applystate"
local plan = require "cli.plan"
local EXIT = require("cli.args").EXIT

local apply = {}

-- What the state keeps of a program once `rec` runs what `want` asked for.
local function applied(want, rec, created)
  return { name = want.name, created = created or nil, revision = rec.revision,
    env = applystate.digests(want.req.env) }
end

local function run_step(c, out, st, step, timeout)
  local want, name = step.program, step.name
  if step.action == "delete" then
    local id = step.record.program_id
    c:call("DELETE", "/programs/" .. id, nil, { program = name, what = "apply: delete " .. name })
    st:forget(id)
    out.note(name .. ": deleted (no longer in the file)")
    return EXIT.ok
  end
  if step.action == "unchanged" or step.action == "kept" then
    if step.action == "unchanged" and not out.json_mode then out.note(name .. ": unchanged") end
    return EXIT.ok
  end
  local rec, ending
  if step.action == "start" then
    local since = c:each_event(name, 0, function() end)
    c:call("POST", "/programs/" .. name .. "/start", nil, { program = name, what = "apply: start " .. name })
    rec, ending = c:wait_event(name, programs.READY, since, timeout,
      not out.json_mode and programs.progress(name) or nil)
  else
    local body = {}
    for k, v in pairs(want.body) do body[k] = v end
    local exists = step.action == "update"
    if exists then body.user_id = want.user end -- nil: the owner stays (it cannot change)
    rec, ending = deploy.push(c, out, name, body, { exists = exists, count = want.count, timeout = timeout,
      what = "apply", on_created = function(doc) st:record(doc.program_id, applied(want, doc, true)) end })
  end
  local code = deploy.report(c, out, name, rec, ending)
  if code == EXIT.ok then st:record(rec.program_id, applied(want, rec)) end
  return code
end

function apply.run(a, c, out)
  local timeout = programs.number_option(a, "timeout", 120, "seconds")
  local file = applyfile.load(a.file)
  local st = applystate.load(file.real, c.url)
  local p = plan.compute(c, file, st, a.prune)
  if not out.json_mode then plan.print(out, file, p) end
  st:save() -- a state that cannot be written fails here, before any change
  for _, step in ipairs(p.steps) do
    local code = run_step(c, out, st, step, timeout)
    if code ~= EXIT.ok then
      io.stderr:write("hersh apply: stopped at ", step.name, " (", step.action, "); the programs after it are as they were\n")
      return code
    end
  end
  local list = c:call("GET", "/programs")
  local state = {}
  for _, rec in ipairs(list.programs or {}) do state[rec.name] = rec.state end
  local code = EXIT.ok
  for _, want in ipairs(file.programs) do
    if state[want.name] ~= "Ready" then
      io.stderr:write("hersh apply: ", want.name, " is ", tostring(state[want.name] or "gone"), ", not Ready\n")
      code = EXIT.failed
    end
  end
  if code == EXIT.ok and not out.json_mode then
    out:line("apply: " .. #file.programs .. " programs Ready (" .. file.path .. ")")
  end
  return code
end

return apply
