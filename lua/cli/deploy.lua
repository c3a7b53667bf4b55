-- `hersh deploy DIR`: DIR's Dockerfile and files (less what .hershignore names) become a
-- program: created and started when no program has the name, updated in place
-- (PUT /programs/NAME) when one has. It prints the build and start progress and ends
-- with 0 once the program is Ready, else 1 and the reason.
local sys = require "hersh.os"
local client = require "cli.client"
local programs = require "cli.programs"
local EXIT = require("cli.args").EXIT

local deploy = {}

local NAME = "^[a-z0-9][a-z0-9%-]*$"
local IDLE = { Created = true, Stopped = true, Error = true } -- states a deploy starts from

-- Whether a .hershignore glob matches all of a '/'-separated path: `*` and `?` stay
-- within one segment, `**/` stands for any number of folders, `**` for anything.
local function glob_match(glob, path)
  if glob == "" then return path == "" end
  if glob:sub(1, 3) == "**/" then
    if glob_match(glob:sub(4), path) then return true end
    for i in path:gmatch("()/") do
      if glob_match(glob:sub(4), path:sub(i + 1)) then return true end
    end
    return false
  end
  local ch = glob:sub(1, 1)
  if glob:sub(1, 2) == "**" or ch == "*" then
    local rest = glob:sub(1, 2) == "**" and glob:sub(3) or glob:sub(2)
    local limit = ch == "*" and glob:sub(2, 2) ~= "*" and (path:find("/", 1, true) or #path + 1) - 1 or #path
    for i = 0, limit do
      if glob_match(rest, path:sub(i + 1)) then return true end
    end
    return false
  end
  if path == "" then return false end
  local c = path:sub(1, 1)
  if (ch == "?" and c ~= "/") or ch == c then return glob_match(glob:sub(2), path:sub(2)) end
  return false
end

-- The rules of DIR/.hershignore, gitignore-like: one glob a line, `#` comments, `!` takes
-- a path back, a leading `/` (or any `/` inside) anchors at DIR, a trailing `/` matches
-- only folders; the last rule that matches wins.
function deploy.ignore_rules(text)
  local rules = {}
  for line in (text or ""):gmatch("[^\n]+") do
    line = line:gsub("\r$", ""):match("^%s*(.-)%s*$")
    if line ~= "" and not line:match("^#") then
      local rule = { keep = line:match("^!") ~= nil }
      line = line:gsub("^!", "")
      rule.dir_only = line:match("/$") ~= nil
      line = line:gsub("/$", "")
      rule.anchored = line:find("/", 1, true) ~= nil
      rule.glob = line:gsub("^/", "")
      rules[#rules + 1] = rule
    end
  end
  return rules
end

local function rule_matches(r, path)
  if glob_match(r.glob, path) then return true end
  if r.anchored then return false end
  for i in path:gmatch("()/") do -- an unanchored glob matches at any depth
    if glob_match(r.glob, path:sub(i + 1)) then return true end
  end
  return false
end

function deploy.ignored(rules, path, is_dir)
  local ignored = false
  for _, r in ipairs(rules) do
    if (is_dir or not r.dir_only) and rule_matches(r, path) then ignored = not r.keep end
  end
  return ignored
end

-- The files under dir (paths relative, '/'-separated) -> {path = content}; folders that
-- are ignored are not entered. Links and special files are refused: the Host takes
-- regular files only.
function deploy.collect(dir, rules)
  local files, count = {}, 0
  local function walk(rel)
    local names = sys.fs.list(rel == "" and dir or dir .. "/" .. rel)
    table.sort(names)
    for _, n in ipairs(names) do
      local path = rel == "" and n or rel .. "/" .. n
      local full = dir .. "/" .. path
      local st, err = sys.fs.stat(full)
      if not st then client.fail(EXIT.usage, "cannot read " .. full .. ": " .. tostring(err)) end
      local skip = (path == "Dockerfile" or path == ".hershignore")
      if not skip and not deploy.ignored(rules, path, st.type == "dir") then
        if st.type == "dir" then
          walk(path)
        elseif st.type == "file" then
          local content, rerr = sys.fs.read_file(full)
          if not content then client.fail(EXIT.usage, "cannot read " .. full .. ": " .. tostring(rerr)) end
          files[path] = content
          count = count + 1
        else
          client.fail(EXIT.usage, full .. " is a " .. st.type .. ", not a regular file: name it in "
            .. dir .. "/.hershignore to leave it out")
        end
      end
    end
  end
  walk("")
  return files, count
end

-- DIR's Dockerfile and files. DIR may be reached through a link; nothing under it is.
-- `what` starts the messages (default "deploy").
function deploy.read_dir(dir, what)
  what = what or "deploy"
  local real = sys.fs.realpath(dir)
  local st = real and sys.fs.stat(real)
  if not st or st.type ~= "dir" then client.fail(EXIT.usage, what .. ": " .. dir .. " is not a folder") end
  local df = sys.fs.stat(real .. "/Dockerfile")
  if not df or df.type ~= "file" then
    client.fail(EXIT.usage, what .. ": no Dockerfile (a regular file) in " .. dir .. " (docs/dockerfile.md says what it may hold)")
  end
  local dockerfile, err = sys.fs.read_file(real .. "/Dockerfile")
  if not dockerfile then client.fail(EXIT.usage, what .. ": cannot read " .. dir .. "/Dockerfile: " .. tostring(err)) end
  local ignore = sys.fs.stat(real .. "/.hershignore")
  local rules = deploy.ignore_rules(ignore and ignore.type == "file" and sys.fs.read_file(real .. "/.hershignore") or nil)
  local files, count = deploy.collect(real, rules)
  return dockerfile, files, count
end

local function env_of(list)
  local env = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then client.fail(EXIT.usage, "--env wants NAME=VALUE, not '" .. kv .. "'") end
    env[k] = v
  end
  return next(env) and env or nil
end

function deploy.default_user()
  local user = (os.getenv("USER") or ""):lower()
  return user:match("^[a-z0-9][a-z0-9_%-]*$") and #user <= 64 and user or "hersh"
end

-- Creates `name` from body (which then holds name and user_id) when `exists` is false,
-- else updates it in place (PUT); starts it when it is not running, and waits, printing
-- the progress. on_created(doc) sees the create's answer. -> the record and the ending
-- event of client:wait_event.
function deploy.push(c, out, name, body, opts)
  local progress = not out.json_mode and programs.progress(name) or nil
  local rec, ending
  if opts.exists then
    local since = c:each_event(name, 0, function() end)
    local doc = c:call("PUT", "/programs/" .. name, body, { what = opts.what .. " " .. name .. " (update)" })
    out.note(name .. ": updating to revision " .. tostring(doc.revision) .. " (" .. opts.count .. " files)")
    rec, ending = c:wait_event(name, programs.UPDATED, since, opts.timeout, progress)
  else
    local doc = c:call("POST", "/programs", body, { what = opts.what .. " " .. name .. " (create)" })
    out.note(name .. ": created " .. doc.program_id .. " (" .. opts.count .. " files)")
    if opts.on_created then opts.on_created(doc) end
    rec = doc
  end
  if rec and IDLE[rec.state] then -- new, or updated while not running: start it
    local since = c:each_event(name, 0, function() end)
    c:call("POST", "/programs/" .. name .. "/start", nil, { program = name, what = "start " .. name })
    rec, ending = c:wait_event(name, programs.READY, since, opts.timeout, progress)
  end
  return rec, ending
end

-- The exit code of a push (programs.outcome); a failed build adds the build log's end.
function deploy.report(c, out, name, rec, ending)
  local code = programs.outcome(out, name, rec, ending)
  if code ~= EXIT.ok and rec and tostring(ending.message):match("build failed") then
    local log = c:call("GET", "/programs/" .. name .. "/logs?type=build&tail=20", nil, { program = name, text = true })
    io.stderr:write(name, ": the build's last lines:\n", tostring(log))
  end
  return code
end

function deploy.run(a, c, out)
  local dir = a.dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local name = a.name or (sys.fs.realpath(dir) or dir):match("([^/]+)$") or ""
  if not name:match(NAME) or #name > 63 then
    client.fail(EXIT.usage, "deploy: '" .. name .. "' is not a program name (lower-case letters, digits and '-', "
      .. "at most 63): give one with --name")
  end
  local timeout = programs.number_option(a, "timeout", 120, "seconds")
  local dockerfile, files, count = deploy.read_dir(dir)
  -- isolation is sent at update too: the Host refuses one that differs, with its reason.
  local body = { dockerfile = dockerfile, src_files = files, env = env_of(a.env), isolation = a.isolation }
  local exists = c:raw("GET", "/programs/" .. name)
  if exists.status ~= 200 and exists.status ~= 404 then
    client.fail(EXIT.failed, "deploy " .. name .. ": GET /programs/" .. name .. ": HTTP " .. exists.status .. ": "
      .. tostring(type(exists.json) == "table" and exists.json.message or exists.body))
  end
  if exists.status ~= 200 then body.name, body.user_id = name, a.user or deploy.default_user() end
  local rec, ending = deploy.push(c, out, name, body,
    { exists = exists.status == 200, count = count, timeout = timeout, what = "deploy" })
  return deploy.report(c, out, name, rec, ending)
end

return deploy
