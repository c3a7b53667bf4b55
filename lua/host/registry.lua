-- The Host's registry: every program's record, spec, port and desired state in
-- SQLite (<storage>/host.db, WAL). Statements are always parameterized. A record is
-- written before the client hears about it, so nothing acknowledged is lost: every
-- write returns true or nil, err, code ("EFULL" when the disk is full) for the caller
-- to act on.
local sys = require "hersh.os"
local store = require "hersh.store"
local json = require "hersh.json"

local registry = {}

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS programs (
  program_id   TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL,
  build_id     TEXT NOT NULL,
  publish_port INTEGER NOT NULL UNIQUE,
  spec         TEXT NOT NULL,                    -- JSON: dockerfile, env, limits, network, restart_policy
  desired      TEXT NOT NULL DEFAULT 'stopped',  -- 'running', 'stopped' or 'deleted*': what a restart restores
  state        TEXT NOT NULL,
  error_msg    TEXT,
  exit_code    INTEGER,
  exit_signal  INTEGER,
  oom_killed   INTEGER NOT NULL DEFAULT 0,    -- 1: the kernel killed it for memory
  last_exit_at REAL,                          -- unix seconds
  ready_at     REAL,                          -- unix seconds
  restarts     INTEGER NOT NULL DEFAULT 0,
  created_at   TEXT NOT NULL,
  updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS programs_by_creation ON programs (created_at, program_id);
-- A filtered page reads its rows in listing order from one of these, never the whole table.
CREATE INDEX IF NOT EXISTS programs_by_user ON programs (user_id, created_at, program_id);
CREATE INDEX IF NOT EXISTS programs_by_state ON programs (state, created_at, program_id);
-- The kept revisions of each program (registry.KEEP_REVISIONS, newest): what a rollback
-- deploys again.
CREATE TABLE IF NOT EXISTS revisions (
  program_id TEXT NOT NULL,
  revision   INTEGER NOT NULL,
  build_id   TEXT NOT NULL,
  spec       TEXT NOT NULL,     -- JSON, as programs.spec
  files      TEXT NOT NULL,     -- JSON: {path: content}, the sources
  created_at TEXT NOT NULL,
  PRIMARY KEY (program_id, revision)
);
]]

registry.KEEP_REVISIONS = 5

-- Columns added since the first schema: a database made before gets them (ALTER TABLE).
local ADDED = {
  { "exit_signal", "INTEGER" }, { "oom_killed", "INTEGER NOT NULL DEFAULT 0" },
  { "last_exit_at", "REAL" }, { "ready_at", "REAL" },
  { "name", "TEXT" }, { "revision", "INTEGER NOT NULL DEFAULT 1" }, -- name: NULL or unique (index below)
  { "failed_revision", "INTEGER" }, { "failed_reason", "TEXT" },
  { "isolation", "TEXT NOT NULL DEFAULT 'bwrap'" }, -- the sandbox driver, fixed at create
}

local function migrate(db)
  local cols, err, code = db:query("PRAGMA table_info(programs)")
  if not cols then return nil, err, code end
  local have = {}
  for _, c in ipairs(cols) do have[c.name] = true end
  for _, add in ipairs(ADDED) do
    if not have[add[1]] then
      -- names and types are the constants above, never input
      local ok, add_err, add_code = db:exec("ALTER TABLE programs ADD COLUMN " .. add[1] .. " " .. add[2])
      if not ok then return nil, add_err, add_code end
    end
  end
  return true
end

local Registry = {}
Registry.__index = Registry

-- The database holds every program's env: it is root's alone (0600), and so are its
-- -wal and -shm, which SQLite makes with the database file's mode.
local PRIVATE = tonumber("600", 8)

local function make_private(path)
  if not sys.fs.stat(path) then
    local ok, err, code = sys.fs.write_file(path, "", PRIVATE) -- an empty file is an empty database
    if not ok then return nil, err, code end
  end
  for _, file in ipairs{ path, path .. "-wal", path .. "-shm" } do
    if sys.fs.stat(file) then
      local ok, err, code = sys.fs.chmod(file, PRIVATE)
      if not ok then return nil, err, code end
    end
  end
  return true
end

function registry.open(path)
  local private, private_err, private_code = make_private(path)
  if not private then return nil, private_err, private_code end
  local db, err, code = store.open(path)
  if not db then return nil, err, code end
  local ok, schema_err, schema_code = db:exec(SCHEMA)
  if ok then ok, schema_err, schema_code = migrate(db) end
  if ok then -- after migrate: an older database has the name column only then
    ok, schema_err, schema_code = db:exec("CREATE UNIQUE INDEX IF NOT EXISTS programs_by_name ON programs (name)")
  end
  if not ok then
    db:close()
    return nil, schema_err, schema_code
  end
  return setmetatable({ db = db }, Registry)
end

local function decode(row)
  row.spec = assert(json.decode(row.spec))
  row.oom_killed = row.oom_killed == 1
  return row
end

-- db:run answers changes, rowid: a write's callers want true.
local function written(changes, err, code)
  if not changes then return nil, err, code end
  return true
end

-- A new program and its first revision (r.files: its sources), in one transaction.
function Registry:insert(r)
  return written(self.db:transaction(function()
    local ok, err, code = self.db:run([[INSERT INTO programs (program_id, user_id, build_id, publish_port, spec,
      desired, state, created_at, updated_at, name, revision, isolation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)]],
      r.program_id, r.user_id, r.build_id, r.publish_port, json.encode(r.spec), r.desired or "stopped",
      r.state, r.created_at, r.updated_at, r.name, r.isolation or "bwrap")
    if not ok then return nil, err, code end
    return self:add_revision(r.program_id, { revision = 1, build_id = r.build_id, spec = r.spec, files = r.files,
      created_at = r.created_at })
  end))
end

-- Keeps revision rev {revision, build_id, spec, files, created_at} of program id, and
-- drops those older than the newest KEEP_REVISIONS.
function Registry:add_revision(id, rev)
  local ok, err, code = self.db:run([[INSERT INTO revisions (program_id, revision, build_id, spec, files, created_at)
    VALUES (?, ?, ?, ?, ?, ?)]], id, rev.revision, rev.build_id, json.encode(rev.spec), json.encode(rev.files),
    rev.created_at)
  if not ok then return nil, err, code end
  return written(self.db:run("DELETE FROM revisions WHERE program_id = ? AND revision <= ?", id,
    rev.revision - registry.KEEP_REVISIONS))
end

-- The kept revisions of program id, newest first ({revision, build_id, spec, files, created_at}).
function Registry:revisions(id)
  local rows, err, code = self.db:query("SELECT * FROM revisions WHERE program_id = ? ORDER BY revision DESC", id)
  if not rows then return nil, err, code end
  for _, row in ipairs(rows) do
    row.spec, row.files = assert(json.decode(row.spec)), assert(json.decode(row.files))
  end
  return rows
end

-- The running revision: its number, build and spec; or a failed one (failed_revision,
-- failed_reason; nil: none).
function Registry:set_revision(id, r)
  return written(self.db:run([[UPDATE programs SET revision = ?, build_id = ?, spec = ?, failed_revision = ?,
    failed_reason = ? WHERE program_id = ?]], r.revision, r.build_id, json.encode(r.spec), r.failed_revision,
    r.failed_reason, id))
end

function Registry:update_state(id, s)
  return written(self.db:run([[UPDATE programs SET state = ?, error_msg = ?, exit_code = ?, exit_signal = ?,
    oom_killed = ?, last_exit_at = ?, ready_at = ?, restarts = ?, updated_at = ? WHERE program_id = ?]],
    s.state, s.error_msg, s.exit_code, s.exit_signal, s.oom_killed and 1 or 0, s.last_exit_at, s.ready_at,
    s.restarts or 0, s.updated_at, id))
end

-- desired: "running", "stopped", or (a delete under way) "deleted" / "deleted_keep_state".
function Registry:set_desired(id, desired)
  return written(self.db:run("UPDATE programs SET desired = ? WHERE program_id = ?", desired, id))
end

function Registry:delete(id)
  return written(self.db:transaction(function()
    local ok, err, code = self.db:run("DELETE FROM revisions WHERE program_id = ?", id)
    if not ok then return nil, err, code end
    return self.db:run("DELETE FROM programs WHERE program_id = ?", id)
  end))
end

-- Every program, oldest first.
function Registry:all()
  local rows, err, code = self.db:query("SELECT * FROM programs ORDER BY created_at, program_id")
  if not rows then return nil, err, code end
  for _, row in ipairs(rows) do decode(row) end
  return rows
end

-- The newest revision number given to each program, kept or failed: {[id] = n}.
function Registry:latest_revisions()
  local rows, err, code = self.db:query("SELECT program_id, MAX(revision) AS latest FROM revisions GROUP BY program_id")
  if not rows then return nil, err, code end
  local latest = {}
  for _, row in ipairs(rows) do latest[row.program_id] = row.latest end
  return latest
end

-- One page of the listing, oldest first: {program_id, created_at} of at most `limit`
-- programs (nil: all) after the position `after` {created_at, program_id} (nil: from
-- the first), with the given user_id, state and name (nil: any).
local FILTERS = { "user_id", "state", "name" } -- column names, never input
function Registry:page(q)
  local sql, args = { "SELECT program_id, created_at FROM programs WHERE 1" }, {}
  for _, col in ipairs(FILTERS) do
    if q[col] ~= nil then
      sql[#sql + 1] = "AND " .. col .. " = ?"
      args[#args + 1] = q[col]
    end
  end
  if q.after then
    sql[#sql + 1] = "AND (created_at, program_id) > (?, ?)"
    args[#args + 1], args[#args + 2] = q.after.created_at, q.after.program_id
  end
  sql[#sql + 1] = "ORDER BY created_at, program_id"
  if q.limit then
    sql[#sql + 1] = "LIMIT ?"
    args[#args + 1] = q.limit
  end
  return self.db:query(table.concat(sql, " "), table.unpack(args, 1, #args))
end

function Registry:close()
  self.db:close()
end

return registry
