-- What `hersh apply FILE` did, kept beside FILE in .FILE.hersh-state (JSON, mode 0600),
-- per Host URL and program id: whether this file's apply created the program (only
-- those may `--prune` delete), the revision it last applied, and a SHA-256 of each env
-- value it sent. The Host never shows env (it may hold secrets), so this is how `plan`
-- tells which env keys changed; the digests sit beside the file that holds the values.
local sys = require "hersh.os"
local json = require "hersh.json"
local client = require "cli.client"
local EXIT = require("cli.args").EXIT

local applystate = {}

-- The state file of the apply file at `real` (its resolved path).
function applystate.path(real)
  local dir, base = real:match("^(.*)/([^/]*)$")
  return (dir == "" and "" or dir) .. "/." .. base .. ".hersh-state"
end

-- applystate.load(real, url) -> state; state.programs: this Host's {id = entry}.
function applystate.load(real, url)
  local path = applystate.path(real)
  local st = { path = path, url = url, doc = { version = 1, hosts = {} } }
  if sys.fs.stat(path) then
    local text, err = sys.fs.read_file(path)
    if not text then client.fail(EXIT.usage, "cannot read the apply state " .. path .. ": " .. tostring(err)) end
    local doc = json.decode(text)
    if type(doc) ~= "table" or type(doc.hosts) ~= "table" then
      client.fail(EXIT.usage, "the apply state " .. path .. " is not what hersh apply writes: remove it "
        .. "(apply then creates nothing anew, and --prune deletes nothing until apply creates again)")
    end
    st.doc = doc
  end
  st.doc.hosts[url] = st.doc.hosts[url] or {}
  st.programs = st.doc.hosts[url]
  return setmetatable(st, { __index = applystate })
end

-- The digests of an env table: {NAME = sha256 hex of the value}.
function applystate.digests(env)
  local out = {}
  for k, v in pairs(env or {}) do out[k] = sys.sha256.hex(v) end
  return out
end

function applystate:save()
  local ok, err = sys.fs.write_file(self.path, json.encode(self.doc), tonumber("600", 8))
  if not ok then client.fail(EXIT.failed, "cannot write the apply state " .. self.path .. ": " .. tostring(err)) end
end

-- Records what was applied to program `id` and saves at once, so that an apply cut
-- short still knows what it created.
function applystate:record(id, entry)
  local old = self.programs[id] or {}
  for k, v in pairs(entry) do old[k] = v end
  self.programs[id] = old
  self:save()
end

function applystate:forget(id)
  self.programs[id] = nil
  self:save()
end

return applystate
