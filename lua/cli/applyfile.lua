-- The file of `hersh plan` and `hersh apply`: a Lua chunk returning a list of programs,
-- each {name, dir, env, limits, restart_policy, health, proxy, user, network, isolation}. It is
-- data, so it is run as such: text only, an empty environment (no io, os, require, and
-- no string methods), bounded in lines run and memory. Every program is then checked
-- with the Host's own rules (host.validate, the restart policy's normalize) before any
-- request is made, so a bad file changes nothing.
local sys = require "hersh.os"
local client = require "cli.client"
local deploy = require "cli.deploy"
local EXIT = require("cli.args").EXIT

local applyfile = {}

applyfile.KEYS = { "dir", "env", "health", "isolation", "limits", "name", "network", "proxy", "restart_policy",
  "user" }
local KNOWN = {}
for _, k in ipairs(applyfile.KEYS) do KNOWN[k] = true end

local MAX_BYTES = 1024 * 1024    -- the file itself
local MAX_LINES = 100000         -- lines run, loop turns and calls included
local MAX_MEMORY_KB = 64 * 1024  -- what running it may allocate
local MAX_DEPTH = 8              -- tables inside tables

local function fail(message) client.fail(EXIT.usage, message) end

-- The first line of text where `pattern` matches, as ":N" (for messages), else "".
local function line_of(text, pattern, nth)
  local seen, n = 0, 1
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:find(pattern) then
      seen = seen + 1
      if seen == (nth or 1) then return ":" .. n end
    end
    n = n + 1
  end
  return ""
end

-- Runs the chunk with nothing in reach; its string methods are taken away meanwhile
-- (("x"):rep(1e10) would allocate before any hook could stop it).
local function run_chunk(path, text)
  local chunk, err = load(text, "@" .. path, "t", {})
  if not chunk then fail(err:sub(1, #path + 1) == path .. ":" and err or path .. ": " .. err) end
  local string_meta = getmetatable("")
  local methods = string_meta.__index
  string_meta.__index = nil
  -- The hook sees each new line and each jump back (every loop turn, every call): it
  -- counts them and looks at the memory. Only the file's own code is stopped: the
  -- hook also sees the lines after pcall.
  local base, lines, source = collectgarbage("count"), 0, "@" .. path
  debug.sethook(function()
    if debug.getinfo(2, "S").source ~= source then return end
    lines = lines + 1
    if lines > MAX_LINES then error("runs for too long (over " .. MAX_LINES .. " lines run)", 2) end
    if collectgarbage("count") - base > MAX_MEMORY_KB then
      collectgarbage("collect") -- garbage is not use
      if collectgarbage("count") - base > MAX_MEMORY_KB then
        error("uses too much memory (over " .. MAX_MEMORY_KB // 1024 .. " MiB)", 2)
      end
    end
  end, "l")
  local ok, result = pcall(chunk)
  debug.sethook()
  string_meta.__index = methods
  if not ok then fail(tostring(result)) end
  return result
end

-- Whether v is plain data (strings, numbers, booleans, tables of them), no deeper than
-- MAX_DEPTH: a function or a cycle in the file is an error, not a crash later.
local function check_data(v, label, where, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return end
  if t ~= "table" then
    fail(label .. ": " .. where .. " is a " .. t .. ": the file holds data only (strings, numbers, booleans, tables)")
  end
  if depth > MAX_DEPTH then fail(label .. ": " .. where .. " nests tables deeper than " .. MAX_DEPTH) end
  for k, x in pairs(v) do
    if type(k) ~= "string" and math.type(k) ~= "integer" then fail(label .. ": " .. where .. " has a " .. type(k) .. " key") end
    check_data(x, label, where == "" and tostring(k) or where .. "." .. tostring(k), depth + 1)
  end
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- One program of the file -> {name, dir, user (given or nil), body (a create's), req
-- (the Host's normalized view of it), build_id, count (files)}.
local function check_program(path, text, base, i, p)
  local label = path .. ": program " .. i
  if type(p) ~= "table" then fail(label .. " is a " .. type(p) .. ", not a table {name = ..., dir = ...}") end
  if type(p.name) == "string" then label = label .. " (" .. p.name .. ")" end
  local unknown = {}
  for k in pairs(p) do
    if not KNOWN[k] then unknown[#unknown + 1] = tostring(k) end
  end
  if #unknown > 0 then
    table.sort(unknown)
    local at = line_of(text, "[^%w_]" .. unknown[1]:gsub("%p", "%%%0") .. "%s*=")
    fail(path .. at .. ": program " .. i .. (type(p.name) == "string" and " (" .. p.name .. ")" or "")
      .. ": unknown key" .. (#unknown > 1 and "s " or " ") .. table.concat(unknown, ", ")
      .. " (known: " .. table.concat(applyfile.KEYS, ", ") .. ")")
  end
  check_data(p, label, "", 1)
  if type(p.name) ~= "string" then fail(label .. ": name is missing: every program needs a name") end
  if type(p.dir) ~= "string" or p.dir == "" then
    fail(label .. ": dir is missing: the folder (relative to " .. path .. ") holding the program's Dockerfile")
  end
  if p.user ~= nil and type(p.user) ~= "string" then fail(label .. ": user must be a string") end
  local dir = p.dir:sub(1, 1) == "/" and p.dir or base .. "/" .. p.dir
  local dockerfile, files, count = deploy.read_dir(dir, label)
  local body = { name = p.name, user_id = p.user or deploy.default_user(), dockerfile = dockerfile, src_files = files,
    env = p.env, limits = p.limits, restart_policy = p.restart_policy, health = p.health, proxy = p.proxy,
    network = p.network, isolation = p.isolation }
  local req, err = require("host.host").validate(copy(body))
  if not req then fail(label .. ": " .. err.message) end
  local policy_ok, policy_err = require("host.program").new { policy = p.restart_policy }
  if not policy_ok then fail(label .. ": restart_policy: " .. tostring(policy_err)) end
  return { name = p.name, dir = dir, given_dir = p.dir, user = p.user, body = body, req = req, count = count,
    build_id = require("host.build_id").compute(req.dockerfile, req.files) }
end

-- applyfile.load(path) -> {path, programs = {...} in file order}; any fault ends the
-- command with exit 2 and a message naming the file (and the line when it can).
function applyfile.load(path)
  local real = sys.fs.realpath(path)
  local st = real and sys.fs.stat(real)
  if not st or st.type ~= "file" then fail(path .. " is not a file") end
  if st.size > MAX_BYTES then fail(path .. " is larger than " .. MAX_BYTES .. " bytes") end
  local text, err = sys.fs.read_file(real)
  if not text then fail("cannot read " .. path .. ": " .. tostring(err)) end
  local list = run_chunk(path, text)
  if type(list) ~= "table" then
    fail(path .. " must return a list of programs: return { { name = \"web\", dir = \"web\" }, ... }")
  end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then
      fail(path .. " must return a list of programs; it has the key " .. tostring(k))
    end
  end
  local base = real:match("^(.*)/[^/]*$") or "."
  if base == "" then base = "/" end
  local out, seen = {}, {}
  for i, p in ipairs(list) do
    local prog = check_program(path, text, base, i, p)
    if seen[prog.name] then
      local quoted = "[\"']" .. prog.name:gsub("%p", "%%%0") .. "[\"']"
      fail(path .. line_of(text, quoted, 2) .. ": program " .. i .. ": the name " .. prog.name
        .. " is taken by program " .. seen[prog.name] .. ": names are unique on a Host")
    end
    seen[prog.name] = i
    out[i] = prog
  end
  return { path = path, real = real, programs = out }
end

return applyfile
