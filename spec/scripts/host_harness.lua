-- A real `hersh host` for end-to-end specs: started on a free port with its own
-- storage and publish ports, driven over real HTTP with curl (scripts.process), with
-- the counter program of spec/programs/host_counter. Shared by every spec that runs a
-- Host, so each starts, calls and tears one down the same way.
local P = require "scripts.process"
local sys = require "hersh.os"
local cjson = require "cjson"
local assert = require "luassert"

local fs = sys.fs

local H = {}

local FIXTURE = "spec/programs/host_counter"
local DOCKERFILE = assert(P.read(FIXTURE .. "/Dockerfile"))
local MAIN_LUA = assert(P.read(FIXTURE .. "/main.lua"))
local WAIT = 60 -- bound of a wait for a state (the sanitizer build is slow)
local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

local STATUS_TEXT = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [409] = "Conflict", [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout", [507] = "Insufficient Storage",
}

local has = P.has

local function sh(cmd)
  return os.execute(cmd) == true
end

-- ---- ports and processes of the machine -----------------------------------------------

-- Whether another server could listen on 127.0.0.1:port now (for an instant).
local function bindable(port)
  local fd = sys.listen("127.0.0.1", port)
  if not fd then return false end
  sys.close_fd(fd)
  return true
end

-- `n` consecutive ports nobody holds, from a random place in 20000-28999 (or in
-- lo-hi: a long range taken apart from the short ones of the other specs). A taken port
-- moves the search past it, wrapping around once, so one busy port costs one window.
local function free_range(n, lo, hi)
  lo, hi = lo or 20000, hi or 28999
  local f = assert(io.open("/dev/urandom", "rb"))
  local r = f:read(2)
  f:close()
  local span = hi - lo + 1
  local start = (r:byte(1) * 256 + r:byte(2)) % span
  local offset = 0
  while offset < span do
    local first = lo + (start + offset) % span
    local last = first + n - 1
    local taken
    if last > hi then
      taken = hi -- no room before the end: go on from lo
    else
      for p = first, last do
        if not bindable(p) then taken = p break end
      end
      if not taken then return first, last end
    end
    offset = offset + (taken - first) + 1
  end
  error("no " .. n .. " free consecutive ports in " .. lo .. "-" .. hi)
end

-- The pids of the processes of one program, wherever they were reparented: all the
-- sandbox runs carries HERSH_PROGRAM_ID.
local function program_pids(id)
  local needle, out = "\0HERSH_PROGRAM_ID=" .. id .. "\0", {}
  for _, name in ipairs(fs.list("/proc") or {}) do
    if name:match("^%d+$") then
      local env = P.read("/proc/" .. name .. "/environ")
      if env and ("\0" .. env):find(needle, 1, true) then out[#out + 1] = tonumber(name) end
    end
  end
  return out
end

local function no_process_of(ids)
  return P.wait_for(function()
    for _, id in ipairs(ids) do
      if #program_pids(id) > 0 then return false end
    end
    return true
  end, 20) == true
end

-- Whether the process has ended (a zombie left to an init that does not reap counts).
local function gone(pid)
  return P.wait_for(function()
    local st = P.read("/proc/" .. pid .. "/stat")
    return st == nil or st:match("^%d+ %(.*%) (%a)") == "Z"
  end, 20) == true
end

-- Last resort of a teardown: any process still running for these programs, by pid.
local function kill_programs(ids)
  for _, id in ipairs(ids) do
    for _, pid in ipairs(program_pids(id)) do sh("kill -KILL " .. pid .. " 2>/dev/null") end
  end
end

-- ---- the Host ---------------------------------------------------------------------------

-- A temporary directory the sandbox user can traverse (mktemp makes it 0700).
local function public_tmpdir()
  local dir = P.tmpdir()
  assert(sh(P.PLAIN .. "chmod 755 " .. P.quote(dir)))
  return dir
end

-- Starts `hersh host` on a free port: {proc, port, storage, ports = {first, last}}.
-- opts: storage (default: a new temporary one, removed by stop_host), ports =
-- {first, last} (default: 8 free ones), token_file, args (more arguments), env
-- ({NAME = value} for the Host's environment).
local function start_host(opts)
  opts = opts or {}
  local h = {}
  if opts.storage then
    h.storage = opts.storage
  else
    h.root = public_tmpdir()
    h.storage = h.root .. "/storage"
  end
  if opts.ports then
    h.first, h.last = opts.ports[1], opts.ports[2]
  else
    h.first, h.last = free_range(8)
  end
  local argv = { P.hersh, "host", "--port", "0", "--storage", h.storage,
    "--ports", h.first .. "-" .. h.last }
  if opts.token_file then
    argv[#argv + 1] = "--token-file"
    argv[#argv + 1] = opts.token_file
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  argv.env = opts.env
  h.proc = P.start(argv)
  local port = P.wait_for(function()
    local p = P.stderr(h.proc):match("hersh host: serving http://127%.0%.0%.1:(%d+)")
    if p then return tonumber(p) end
    if not P.alive(h.proc) then return -1 end
  end, P.WAIT)
  if not port or port < 0 then
    local err = P.stderr(h.proc)
    P.stop(h.proc)
    error("the Host did not start (exit " .. tostring(P.status(h.proc)) .. "):\n" .. err, 2)
  end
  h.port = port
  h.url = "http://127.0.0.1:" .. port
  h.ids = {}
  return h
end

-- Stops the Host (TERM, then KILL), any program process left, and removes its storage
-- when start_host made it. Safe to call twice.
local function stop_host(h)
  if not h then return end
  P.stop(h.proc)
  kill_programs(h.ids or {})
  if h.root then sh(P.PLAIN .. "rm -rf " .. P.quote(h.root)) end
end

-- start_host for one test: stop_host runs when the test ends, passed or failed.
local function test_host(opts)
  local h = start_host(opts)
  P.defer(function() stop_host(h) end)
  return h
end

-- Ends the Host with SIGTERM; returns a function that checks it ended well (no
-- program process left behind, exit 0, no sanitizer report), to call when convenient.
-- Programs created some other way than create() (`hersh deploy`) are found by the
-- storage path on their sandbox's command line.
local function terminate(h)
  assert.is_true(P.signal(h.proc, "TERM"))
  local rc = P.wait_exit(h.proc, 30)
  local clean = no_process_of(h.ids)
    and P.wait_for(function() return #P.processes_under(h.storage) == 0 end, 20) == true
  local left = table.concat(P.processes_under(h.storage), "\n")
  local stderr, report = P.stderr(h.proc), P.sanitizer_report(h.proc)
  return function()
    assert.is_true(clean, "a program process outlived its Host: " .. left)
    assert.equal(0, rc, stderr)
    assert.is_nil(report)
  end
end

local function assert_clean_exit(h)
  terminate(h)()
end

-- ---- HTTP -------------------------------------------------------------------------------

-- cjson decodes every number as a float: whole ones become integers again (a port
-- of 19001.0 would make a URL of "...:19001.0").
local function integers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
  end
  return v
end

-- One request to the Host: call(h, method, path [, body (a table is JSON-encoded)
-- [, headers]]). h.token, when set, is sent as a bearer token.
local function call(h, method, path, body, headers)
  local hdrs = {}
  if h.token then hdrs[#hdrs + 1] = "Authorization: Bearer " .. h.token end
  for _, v in ipairs(headers or {}) do hdrs[#hdrs + 1] = v end
  if type(body) == "table" then body = cjson.encode(body) end
  local res = P.http(h.port, method, path, { body = body, headers = hdrs })
  integers(res.json)
  return res
end

-- An error answer: that status, a JSON body {"error": <status text>, "code": <status>,
-- "message": <non-empty text>}.
local function assert_error(res, status, what)
  what = (what or "") .. ": " .. res.body
  assert.equal(status, res.status, what)
  assert.equal("application/json", res.headers["content-type"], what)
  assert.is_table(res.json, what)
  assert.equal(STATUS_TEXT[status], res.json.error, what)
  assert.equal(status, res.json.code, what)
  assert.is_string(res.json.message, what)
  assert.is_true(#res.json.message > 0, what)
end

local function ok_json(res, status, what)
  assert.equal(status or 200, res.status, (what or "") .. ": " .. res.body)
  assert.equal("application/json", res.headers["content-type"], what)
  assert.is_table(res.json, (what or "") .. ": not JSON: " .. res.body)
  return res.json
end

-- A create request for the counter; `extra` fields are added (or override).
local function counter_body(user_id, extra)
  local body = { user_id = user_id, dockerfile = DOCKERFILE, src_files = { ["main.lua"] = MAIN_LUA } }
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

-- POST /programs; the created record (checked), remembered for the teardown.
local function create(h, body)
  local doc = ok_json(call(h, "POST", "/programs", body), 201, "create")
  h.ids[#h.ids + 1] = doc.program_id
  return doc
end

local function view(h, id)
  return ok_json(call(h, "GET", "/programs/" .. id), 200, "GET " .. id)
end

-- Waits (up to `bound` seconds, WAIT by default) until pred(record) holds for the
-- program; its record. Fails saying it was never `what`, with the last record seen.
local function wait_record(h, id, pred, what, bound)
  local last
  local ok = P.wait_for(function()
    local res = call(h, "GET", "/programs/" .. id)
    last = res.body
    return res.status == 200 and res.json and pred(res.json)
  end, bound or WAIT, 0.05)
  assert(ok, "program " .. id .. " never " .. what .. "; last: " .. tostring(last))
  return view(h, id)
end

-- Waits until the program is in `state`; its record.
local function wait_state(h, id, state)
  return wait_record(h, id, function(r) return r.state == state end, "reached " .. state)
end

-- DELETE /programs/{id}, accepted (200 or 202); then waits until the Host no longer
-- knows the program (404).
local function delete_gone(h, id)
  local del = call(h, "DELETE", "/programs/" .. id)
  assert.is_true(del.status == 200 or del.status == 202, del.body)
  assert(P.wait_for(function() return call(h, "GET", "/programs/" .. id).status == 404 end, WAIT),
    "program " .. id .. " still there after its DELETE")
end

local function act(h, id, action)
  return call(h, "POST", "/programs/" .. id .. "/" .. action)
end

-- POST /programs/{id}/start, then waits for Ready; the record.
local function start_ready(h, id)
  local doc = ok_json(act(h, id, "start"), 202, "start")
  assert.equal(id, doc.program_id)
  assert.equal("Building", doc.state)
  return wait_state(h, id, "Ready")
end

local function logs(h, id, query)
  local res = call(h, "GET", "/programs/" .. id .. "/logs" .. (query or ""))
  assert.equal(200, res.status, res.body)
  return res.body
end

-- Waits until the runtime log holds `text`; true or false.
local function wait_log(h, id, text)
  return P.wait_for(function() return has(logs(h, id, "?tail=1000"), text) end, WAIT, 0.05) == true
end

local function program_dir(h, id)
  return h.storage .. "/programs/" .. id
end

local function list_names(dir)
  local names = fs.list(dir) or {}
  table.sort(names)
  return names
end


-- The TCP state ("01" = ESTABLISHED) of the socket on fd 3 of process `pid`, from
-- /proc/net/tcp; nil when there is none (reset and gone).
local function socket_state(pid)
  local pipe = assert(io.popen("readlink /proc/" .. pid .. "/fd/3 2>/dev/null"))
  local link = pipe:read("l") or ""
  pipe:close()
  local inode = link:match("socket:%[(%d+)%]")
  if not inode then return nil end
  for line in io.lines("/proc/net/tcp") do
    local state, ino = line:match("^%s*%d+: %x+:%x+ %x+:%x+ (%x%x)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
    if ino == inode then return state end
  end
  return nil
end

-- ---- the client ---------------------------------------------------------------------------

-- Runs the client `hersh ARGV...` to its end (bounded): exit code, stdout, stderr;
-- fails on a client that does not end, a Lua traceback or a sanitizer report.
-- opts: host (a Host from start_host: HERSH_HOST is its URL; default a closed port),
-- env ({NAME = value}, added), tty (under script(1): a pseudo-terminal), timeout.
local function client(argv, opts)
  opts = opts or {}
  local env = { HERSH_HOST = opts.host and opts.host.url or "http://127.0.0.1:1", NO_COLOR = "" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local spec = { env = env }
  if opts.tty then
    local words = { P.quote(P.hersh) }
    for _, a in ipairs(argv) do words[#words + 1] = P.quote(a) end
    -- script(1) is a helper: not under the sanitizer runtime lua5.4 may be preloaded with
    for _, a in ipairs { "env", "-u", "LD_PRELOAD", "script", "-qefc", table.concat(words, " "), "/dev/null" } do
      spec[#spec + 1] = a
    end
  else
    spec[1] = P.hersh
    for _, a in ipairs(argv) do spec[#spec + 1] = a end
  end
  local proc = P.start(spec)
  local code = P.wait_exit(proc, opts.timeout or 180)
  local out, err = P.stdout(proc), P.stderr(proc)
  P.stop(proc)
  assert(code, "hersh " .. table.concat(argv, " ") .. " did not end; stderr: " .. err)
  assert.is_nil(err:find("stack traceback", 1, true), "a traceback: " .. err)
  assert.is_nil(err:find("Sanitizer", 1, true) or err:find("runtime error:", 1, true), err)
  return code, out, err
end

-- A client on 127.0.0.1:port that sends `request` and never reads a byte (bash holds
-- the socket on fd 3); stopped when the test ends.
local function never_reading_client(port, request)
  local proc = P.start{ "bash", "-c", 'exec 3<>/dev/tcp/127.0.0.1/"$1" && printf %s "$2" >&3 && exec sleep 300',
    "_", tostring(port), request }
  P.defer(function() P.stop(proc) end)
  return proc
end

H.P = P
H.FIXTURE = FIXTURE
H.DOCKERFILE = DOCKERFILE
H.MAIN_LUA = MAIN_LUA
H.WAIT = WAIT
H.ISO = ISO
H.STATUS_TEXT = STATUS_TEXT
H.has = has
H.sh = sh
H.bindable = bindable
H.free_range = free_range
H.program_pids = program_pids
H.no_process_of = no_process_of
H.gone = gone
H.kill_programs = kill_programs
H.public_tmpdir = public_tmpdir
H.start_host = start_host
H.stop_host = stop_host
H.test_host = test_host
H.terminate = terminate
H.assert_clean_exit = assert_clean_exit
H.integers = integers
H.call = call
H.assert_error = assert_error
H.ok_json = ok_json
H.counter_body = counter_body
H.create = create
H.view = view
H.wait_record = wait_record
H.wait_state = wait_state
H.act = act
H.delete_gone = delete_gone
H.start_ready = start_ready
H.socket_state = socket_state
H.never_reading_client = never_reading_client
H.client = client
H.logs = logs
H.wait_log = wait_log
H.program_dir = program_dir
H.list_names = list_names

return H
