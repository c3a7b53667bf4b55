-- The Host's lifecycle events: each one stored in the registry's SQLite database with
-- an id that only grows (AUTOINCREMENT: never reused, even after the oldest rows are
-- dropped), then handed to the subscribers. The store is bounded: the insert and the
-- removal of the oldest beyond `max` are one transaction. An event's message, one
-- human line, is made from its kind and details by events.message.
local core = require "hersh.core"
local json = require "hersh.json"
local program = require "host.program"

local events = {}

events.DEFAULT_MAX = 10000
events.KINDS = { "created", "build_started", "build_finished", "starting", "ready", "exited", "restarting",
  "error", "stopping", "stopped", "deleted", "unhealthy", "updating", "updated", "update_failed", "rolled_back",
  "policy_error", "policy_loaded" }

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS events (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  at         REAL NOT NULL,     -- unix seconds
  program_id TEXT,
  kind       TEXT NOT NULL,
  details    TEXT NOT NULL      -- JSON object
);
CREATE INDEX IF NOT EXISTS events_by_program ON events (program_id, id);
]]

local MiB = 1024 * 1024

local function seconds(v)
  return string.format("%.3g s", tonumber(v) or 0)
end

local function size(bytes)
  if bytes % MiB == 0 then return string.format("%d MiB", bytes // MiB) end
  return string.format("%d bytes", bytes)
end

-- " of revision N" for the steps of an update (their details name the revision).
local function of_revision(d)
  return d.revision and " of revision " .. tostring(d.revision) or ""
end

-- One formatter per kind: details -> the message.
local FORMAT = {
  created = function() return "created" end,
  build_started = function(d) return "build started" .. of_revision(d) end,
  build_finished = function(d)
    if d.cached then return "build finished: image cached" end
    if d.ok then return "build finished in " .. seconds(d.duration) end
    return "build failed after " .. seconds(d.duration) .. ": " .. tostring(d.error)
  end,
  starting = function(d) return "starting" .. of_revision(d) .. " (attempt " .. tostring(d.attempt) .. ")" end,
  ready = function(d) return "ready in " .. seconds(d.time_to_ready) end,
  exited = function(d)
    if d.error then return "could not start: " .. tostring(d.error) end -- e.g. no such CMD file
    local text = d.exit_signal and ("exited on signal " .. tostring(d.exit_signal))
      or ("exited with code " .. tostring(d.exit_code))
    if d.oom_killed then
      text = text .. " (out of memory" .. (d.memory_limit and (", limit " .. size(d.memory_limit)) or "") .. ")"
    end
    return text
  end,
  restarting = function(d) return "restart " .. tostring(d.attempt) .. " in " .. seconds(d.delay) end,
  error = function(d) return "error: " .. tostring(d.reason) end,
  stopping = function(d) return d.restart and "stopping to restart" or "stopping" end,
  stopped = function() return "stopped" end,
  deleted = function(d) return d.keep_state and "deleted (state kept)" or "deleted" end,
  unhealthy = function(d) return program.describe_unhealthy(d.failures, d.last_error) end,
  updating = function(d)
    return "deploying revision " .. tostring(d.revision) .. " beside revision " .. tostring(d.from_revision)
      .. (d.rollback_of and " (a rollback to revision " .. tostring(d.rollback_of) .. ")" or "")
  end,
  updated = function(d) return "revision " .. tostring(d.revision) .. " is running" end,
  update_failed = function(d)
    return "revision " .. tostring(d.revision) .. " failed: " .. tostring(d.reason) .. "; revision "
      .. tostring(d.running_revision) .. " stays"
  end,
  policy_error = function(d) return "policy " .. tostring(d.hook) .. ": " .. tostring(d.reason) end,
  policy_loaded = function(d) return "policy " .. tostring(d.file) .. " loaded" end,
  rolled_back = function(d)
    return "rolled back to revision " .. tostring(d.rollback_of) .. ": revision " .. tostring(d.revision)
      .. " is running"
  end,
}

-- The one line that says what an event is; control characters (a reason may hold
-- newlines) become spaces, so that it stays one line of a log.
function events.message(kind, details)
  local format = FORMAT[kind]
  local text = format and format(details) or kind
  return (text:gsub("%c", " "))
end

local function to_event(row)
  local details = row.details and json.decode(row.details) or {}
  return { id = row.id, at = row.at, program_id = row.program_id, kind = row.kind, details = details,
    message = events.message(row.kind, details) }
end

local Events = {}
Events.__index = Events

-- events.open(db, {max}) -> store | nil, err, code. db: a hersh.store database.
function events.open(db, opts)
  local max = (opts or {}).max or events.DEFAULT_MAX
  if math.type(max) ~= "integer" or max < 1 then error("events.open: max must be a positive integer", 2) end
  local ok, err, code = db:exec(SCHEMA)
  if not ok then return nil, err, code end
  return setmetatable({ db = db, max = max, subscribers = {} }, Events)
end

-- Stores the event, then tells every subscriber. -> event | nil, err, code (a full
-- disk: the event is lost, the caller goes on).
function Events:record(program_id, kind, details)
  details = details or {}
  local at = core.now()
  local encoded = json.encode(details)
  local id, err, code = self.db:transaction(function()
    local changes, rowid, insert_code = self.db:run(
      "INSERT INTO events (at, program_id, kind, details) VALUES (?, ?, ?, ?)", at, program_id, kind, encoded)
    if not changes then return nil, rowid, insert_code end
    local dropped, drop_err, drop_code = self.db:run("DELETE FROM events WHERE id <= ?", rowid - self.max)
    if not dropped then return nil, drop_err, drop_code end
    return rowid
  end)
  if not id then return nil, err, code end
  local event = { id = id, at = at, program_id = program_id, kind = kind, details = details,
    message = events.message(kind, details) }
  for _, fn in ipairs({ table.unpack(self.subscribers) }) do -- a copy: fn may unsubscribe
    local ok, fn_err = pcall(fn, event)
    if not ok then io.stderr:write("hersh host: an event subscriber failed: ", tostring(fn_err), "\n") end
  end
  return event
end

-- Events with ids above after_id, oldest first; filter = {program_id, kinds = {kind =
-- true}}; at most `limit` (nil: all).
function Events:since(after_id, filter, limit)
  filter = filter or {}
  local sql, args = { "SELECT * FROM events WHERE id > ?" }, { after_id or 0 }
  if filter.program_id then
    sql[#sql + 1] = "AND program_id = ?"
    args[#args + 1] = filter.program_id
  end
  if filter.kinds then
    local marks = {}
    for kind in pairs(filter.kinds) do
      marks[#marks + 1] = "?"
      args[#args + 1] = kind
    end
    if #marks == 0 then return {} end
    sql[#sql + 1] = "AND kind IN (" .. table.concat(marks, ", ") .. ")"
  end
  sql[#sql + 1] = "ORDER BY id LIMIT ?"
  args[#args + 1] = limit or -1
  local rows, err, code = self.db:query(table.concat(sql, " "), table.unpack(args))
  if not rows then return nil, err, code end
  for i, row in ipairs(rows) do rows[i] = to_event(row) end
  return rows
end

-- The newest id ever given (0 before the first event), dropped or not.
function Events:last_id()
  local rows = self.db:query("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
  return rows and rows[1] and rows[1].seq or 0
end

-- fn(event) after each stored event, on the loop; it must not block. -> unsubscribe()
function Events:subscribe(fn)
  self.subscribers[#self.subscribers + 1] = fn
  return function()
    for i, f in ipairs(self.subscribers) do
      if f == fn then return table.remove(self.subscribers, i) end
    end
  end
end

return events
