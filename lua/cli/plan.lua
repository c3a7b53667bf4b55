-- `hersh plan FILE`: what `hersh apply FILE` would do, per program of the file (and,
-- with --prune, per program an apply of this file created that the file no longer
-- lists), compared with what the Host runs: create, update (which fields: dockerfile,
-- files added/changed/removed, env keys, limits, restart_policy, health, proxy), start
-- (unchanged but not running), unchanged, delete. Exit 0 when nothing would change,
-- args.EXIT.changes when something would.
local json = require "hersh.json"
local client = require "cli.client"
local applyfile = require "cli.applyfile"
local applystate = require "cli.applystate"
local EXIT = require("cli.args").EXIT

local plan = {}

local IDLE = { Created = true, Stopped = true, Error = true }

-- Equality of two JSON-like values; nil and json.null are the same.
local function same(a, b)
  if a == json.null then a = nil end
  if b == json.null then b = nil end
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k, v in pairs(b) do
    if a[k] == nil and not same(v, nil) then return false end
  end
  return true
end

local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- {added, changed, removed} between two tables {key = value}; nil when equal.
local function key_diff(old, new)
  local d = { added = {}, changed = {}, removed = {} }
  for k, v in pairs(new) do
    if old[k] == nil then d.added[#d.added + 1] = k elseif old[k] ~= v then d.changed[#d.changed + 1] = k end
  end
  for k in pairs(old) do
    if new[k] == nil then d.removed[#d.removed + 1] = k end
  end
  if #d.added + #d.changed + #d.removed == 0 then return nil end
  for _, l in pairs(d) do table.sort(l) end
  for k, l in pairs(d) do d[k] = json.array(l) end
  return d
end

-- The running revision as the Host stores it: GET /programs/NAME/revisions.
local function running_revision(c, name)
  local doc = c:call("GET", "/programs/" .. name .. "/revisions", nil, { program = name })
  for _, r in ipairs(doc.revisions or {}) do
    if r.running then return r end
  end
end

-- The changes an update of `rec` to `want` (applyfile's) would make; nil when none.
local function changes(c, st, want, rec)
  local ch, n = {}, 0
  local function add(k, v) ch[k], n = v, n + 1 end
  local run = running_revision(c, want.name) or {}
  if want.build_id ~= rec.build_id then
    local src = c:call("GET", "/programs/" .. want.name .. "/source", nil, { program = want.name })
    if src.dockerfile ~= want.req.dockerfile then add("dockerfile", true) end
    local files = key_diff(src.files or {}, want.req.files)
    if files then add("files", files) end
  end
  local applied = st.programs[rec.program_id]
  if applied and applied.revision == rec.revision then
    local env = key_diff(applied.env or {}, applystate.digests(want.req.env))
    if env then add("env", env) end
  else
    add("env", { unknown = applied and ("revision " .. tostring(rec.revision) .. " was not made by this file's apply")
      or "not applied from this file before: the Host never shows env" })
  end
  for _, k in ipairs { "limits", "restart_policy", "proxy", "health" } do
    local new = k == "health" and want.req.health or want.body[k]
    if not same(run[k], new) then add(k, { from = run[k] == nil and json.null or run[k], to = new or json.null }) end
  end
  return n > 0 and ch or nil
end

-- What cannot be updated in place: the owner, the network and the isolation (when the
-- file names one: else the program keeps the one it has).
local function refusal(want, rec)
  if want.user and want.user ~= rec.user_id then
    return "its user is " .. rec.user_id .. ", the file says " .. want.user .. ": user cannot change "
      .. "(hersh rm " .. want.name .. " first, or drop user from the file)"
  end
  local network = want.req.network
  if network ~= (rec.network or "none") then
    return "its network is " .. tostring(rec.network) .. ", the file says " .. network .. ": network cannot change "
      .. "(hersh rm " .. want.name .. " first)"
  end
  local isolation = want.req.isolation
  if isolation and isolation ~= (rec.isolation or "bwrap") then
    return "its isolation is " .. tostring(rec.isolation or "bwrap") .. ", the file says " .. isolation
      .. ": isolation cannot change in an update (delete and create it again: hersh rm " .. want.name .. " first)"
  end
end

-- plan.compute(c, file, st, prune) -> {steps = {...}, pending = count of changes}.
-- A step: {name, action, changes?, program (applyfile's), record (the Host's), reason?}.
function plan.compute(c, file, st, prune)
  local list = c:call("GET", "/programs")
  local by_name, by_id = {}, {}
  for _, rec in ipairs(list.programs or {}) do
    if rec.name ~= json.null and rec.name then by_name[rec.name] = rec end
    by_id[rec.program_id] = rec
  end
  local steps, pending, listed = {}, 0, {}
  for _, want in ipairs(file.programs) do
    listed[want.name] = true
    local rec = by_name[want.name]
    local step = { name = want.name, program = want, record = rec }
    if not rec then
      step.action = "create"
    else
      local why = refusal(want, rec)
      if why then client.fail(EXIT.failed, file.path .. ": program " .. want.name .. " cannot be applied: " .. why) end
      step.changes = changes(c, st, want, rec)
      step.action = step.changes and "update" or IDLE[rec.state] and "start" or "unchanged"
    end
    if step.action ~= "unchanged" then pending = pending + 1 end
    steps[#steps + 1] = step
  end
  for _, id in ipairs(sorted_keys(st.programs)) do
    local entry, rec = st.programs[id], by_id[id]
    if entry.created and rec and not listed[rec.name] then
      steps[#steps + 1] = { name = rec.name, record = rec, action = prune and "delete" or "kept" }
      if prune then pending = pending + 1 end
    end
  end
  return { steps = steps, pending = pending }
end

local ACTION_COLOUR = { create = "32", update = "33", start = "36", delete = "31", kept = "90", unchanged = "90" }

-- The changes of a step in words: "files +a ~b -c; env +K; limits".
function plan.describe(step)
  if step.action == "create" then
    return step.program.count .. " files from " .. step.program.given_dir
  elseif step.action == "kept" then
    return "no longer in the file (--prune deletes it)"
  elseif step.action == "delete" then
    return "no longer in the file; made by its apply"
  elseif step.action == "start" then
    return "unchanged, " .. step.record.state
  end
  local parts = {}
  for _, k in ipairs { "dockerfile", "files", "env", "limits", "restart_policy", "health", "proxy" } do
    local v = step.changes and step.changes[k]
    if v == true then
      parts[#parts + 1] = k
    elseif v and v.to then
      parts[#parts + 1] = k .. " " .. json.encode(v.to)
    elseif v and v.unknown then
      parts[#parts + 1] = k .. " (" .. v.unknown .. ")"
    elseif v then
      local words = {}
      for _, l in ipairs { { "added", "+" }, { "changed", "~" }, { "removed", "-" } } do
        for _, x in ipairs(v[l[1]]) do words[#words + 1] = l[2] .. x end
      end
      parts[#parts + 1] = k .. " " .. table.concat(words, " ")
    end
  end
  return table.concat(parts, "; ")
end

-- The plan as one JSON document (plan --json): what a script reads.
function plan.document(file, p)
  local list = {}
  for i, s in ipairs(p.steps) do
    list[i] = { name = s.name, action = s.action, changes = s.changes or json.null,
      program_id = s.record and s.record.program_id or json.null, state = s.record and s.record.state or json.null }
  end
  return { file = file.path, pending = p.pending, programs = json.array(list) }
end

function plan.print(out, file, p)
  if out.json_mode then return out:json(plan.document(file, p)) end
  out:table({
    { "NAME", function(s) return s.name end },
    { "ACTION", function(s) return s.action end, function(o, s, t) return o:paint(ACTION_COLOUR[s.action], t) end },
    { "CHANGES", function(s) return s.action ~= "unchanged" and plan.describe(s) or nil end },
  }, p.steps)
  local count = {}
  for _, s in ipairs(p.steps) do count[s.action] = (count[s.action] or 0) + 1 end
  out:line(string.format("%d to create, %d to update, %d to start, %d to delete, %d unchanged",
    count.create or 0, count.update or 0, count.start or 0, count.delete or 0, count.unchanged or 0))
end

function plan.run(a, c, out)
  local file = applyfile.load(a.file)
  local st = applystate.load(file.real, c.url)
  local p = plan.compute(c, file, st, a.prune)
  plan.print(out, file, p)
  return p.pending > 0 and EXIT.changes or EXIT.ok
end

return plan
