-- Programs run under host.supervisor in a real sandbox (bubblewrap, or gVisor: see
-- S.DRIVERS), for specs that attack it from inside: images built from spec/programs/<name>/ (or a Dockerfile and
-- files given), a temporary root for their directories and one images directory per
-- spec file. Every wait is bounded; cleanup() stops the programs of a test, runs what
-- was deferred, and fails if a process of a program outlived its stop.
local assert = require "luassert"
local hersh = require "hersh"
local core = require "hersh.core"
local sys = require "hersh.os"
local build_id = require "host.build_id"
local dockerfile = require "host.dockerfile"
local sandbox = require "host.sandbox"
local supervisor = require "host.supervisor"
local P = require "scripts.process"

local fs = sys.fs

local S = {}

S.WAIT = 20 -- bound of a wait for a state change

S.read = P.read

-- Host tools are not instrumented: the sanitizer runtimes the spec runner preloads
-- would report their leaks and change their exit codes.
local UNPRELOADED = "env -u LD_PRELOAD "

function S.run(cmd)
  return os.execute(UNPRELOADED .. cmd) == true
end

function S.shell(cmd)
  local p = assert(io.popen(UNPRELOADED .. cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

function S.has(text, part)
  return type(text) == "string" and text:find(part, 1, true) ~= nil
end

function S.exists(path)
  return fs.stat(path) ~= nil
end

S.REPO = S.shell("pwd")
S.BUILD = S.REPO .. "/" .. (os.getenv("HERSH_BUILD") or "build")
S.RUNTIME = { bin = S.BUILD .. "/hersh", lua = S.REPO .. "/lua" }
S.FIXTURES = S.REPO .. "/spec/programs"
S.MY_PID = tonumber(S.read("/proc/self/stat"):match("^(%d+)"))

-- hersh.wait looks at its predicate only when the loop had something to do; a
-- condition of the outside world (/proc, a file) also needs a ticking timer.
function S.poll(pred, timeout)
  local deadline = core.now() + timeout
  local tick = core.timer(0.02, function() end, 0.02)
  local ok, result
  repeat -- hersh.wait may come back at once (a stop left on the loop by an earlier spec)
    ok, result = pcall(hersh.wait, pred, math.max(0, deadline - core.now()))
  until not ok or result or core.now() >= deadline
  tick:stop()
  if not ok then error(result, 0) end
  return result
end

-- Processes of one program, wherever they were reparented: everything the sandbox
-- runs inherits HERSH_PROGRAM_ID from the supervisor.
function S.count_program_procs(program_id)
  local needle, n = "\0HERSH_PROGRAM_ID=" .. program_id .. "\0", 0
  for _, name in ipairs(fs.list("/proc") or {}) do
    local env = name:match("^%d+$") and S.read("/proc/" .. name .. "/environ")
    if env and ("\0" .. env):find(needle, 1, true) then n = n + 1 end
  end
  return n
end

-- Runs the loop for `seconds` (a pause that lets timers and exits happen).
function S.pause(seconds)
  hersh.wait(function() return false end, seconds)
end

-- An unsandboxed host process: its exit code (nil if it did not end in time).
function S.host_run(argv, env)
  local code, done
  local proc = assert(sys.spawn{ argv = argv, env = env, on_exit = function(c) code, done = c, true end })
  S.poll(function() return done end, 10)
  if not done then proc:kill("KILL") end
  return code
end

-- ---- the spec file's directories ---------------------------------------------------

local live, cleanups, counter = {}, {}, 0

-- The drivers an attack spec runs its tests against, each in a describe of its own:
-- those a Host runs by itself. The swarm driver needs a Docker Engine: spec/swarm_spec.lua
-- starts one and attacks its programs there.
S.DRIVERS = {}
for _, name in ipairs(sandbox.names) do
  if name ~= "swarm" then S.DRIVERS[#S.DRIVERS + 1] = name end
end

-- Makes the temporary root (traversable by the sandbox user), the images folder and
-- the driver's own folder. -> true, or nil, why the driver cannot run here (its tests
-- are then pending with that reason, never passed).
function S.setup(driver)
  S.ROOT = S.shell("mktemp -d")
  assert(S.ROOT:match("^/.+"), "mktemp -d failed")
  assert(S.run("chmod 755 '" .. S.ROOT .. "'"))
  S.IMAGES = S.ROOT .. "/images"
  assert(fs.mkdir_p(S.IMAGES))
  local why
  S.DRIVER, why = sandbox.get(driver or "bwrap")
  if S.DRIVER and S.DRIVER.prepare then assert(S.DRIVER.prepare(S.ROOT .. "/" .. S.DRIVER.name)) end
  S.UNUSABLE = not S.DRIVER and why or nil
  return S.DRIVER ~= nil, why
end

-- In a test: false (and the test pending, with the reason) when the driver cannot run.
-- pending is the spec file's own (busted gives it to spec files, not to modules).
function S.need_driver(pending)
  if S.UNUSABLE then pending("this driver cannot run here: " .. S.UNUSABLE) end
  return S.UNUSABLE == nil
end

function S.teardown()
  if S.ROOT and #S.ROOT > 1 then assert(fs.remove_tree(S.ROOT)) end
end

function S.defer(fn) cleanups[#cleanups + 1] = fn end

-- ---- programs -------------------------------------------------------------------------

-- The Dockerfile and files of spec/programs/<name>.
function S.fixture(name)
  local dir = S.FIXTURES .. "/" .. name
  local text = assert(S.read(dir .. "/Dockerfile"), "no fixture " .. name)
  local files = {}
  for _, file in ipairs(assert(fs.list(dir))) do
    if file ~= "Dockerfile" then files[file] = assert(S.read(dir .. "/" .. file)) end
  end
  return text, files
end

-- A program made from a fixture (or opts.dockerfile + opts.files), not started.
-- opts: env, limits, policy. Its history records every record the supervisor set;
-- spawns, every process it started.
function S.program(name, opts)
  opts = opts or {}
  counter = counter + 1
  local text, files = opts.dockerfile, opts.files
  if not text then text, files = S.fixture(name) end
  local dir = string.format("%s/%s-%d", S.ROOT, name, counter)
  local dirs = { src = dir .. "/src", state = dir .. "/state", logs = dir .. "/logs", api = dir .. "/api" }
  for k, d in pairs(dirs) do
    if k ~= "api" then assert(fs.mkdir_p(d)) end -- api: the driver's own, when it wants one
  end
  assert(fs.chown(dirs.state, 65534, 65534))
  for file, content in pairs(files or {}) do assert(fs.write_file(dirs.src .. "/" .. file, content)) end
  local plan = assert(dockerfile.parse(text))
  local fd, port = assert(sys.listen("127.0.0.1", 0))
  local p = { name = name, dir = dir, dirs = dirs, fd = fd, port = port, history = {}, spawns = {}, procs = {},
    build_id = build_id.compute(text, files or {}) }
  p.rootfs = S.IMAGES .. "/" .. p.build_id .. "/rootfs"
  live[#live + 1] = p
  p.sup = supervisor.new{
    id = string.format("spec%d-%s-%d", S.MY_PID, name, counter), plan = plan, build_id = p.build_id,
    dirs = dirs, images_dir = S.IMAGES, driver = S.DRIVER, runtime = S.RUNTIME, port = port, listen_fd = fd,
    spec = { env = opts.env, limits = opts.limits, network = "none", restart_policy = opts.policy },
    on_change = function(r)
      local proc = r.pid and p.sup.procs[r.attempt]
      if proc and not p.procs[r.attempt] then
        p.procs[r.attempt] = proc
        p.spawns[#p.spawns + 1] = { attempt = r.attempt, pid = r.pid, restarts = r.restarts, t = core.now() }
      end
      p.history[#p.history + 1] = { state = r.state, attempt = r.attempt, restarts = r.restarts, pid = r.pid,
        next_restart_at = r.next_restart_at, updated_at = r.updated_at, error_msg = r.error_msg, t = core.now() }
    end,
  }
  return p
end

function S.runtime_log(p)
  return S.read(p.dirs.logs .. "/runtime.log") or ""
end

-- What went on, for a failing assertion.
function S.story(p)
  local states = {}
  for _, h in ipairs(p.history) do states[#states + 1] = h.state end
  return string.format("%s: %s (error_msg %s)\nruntime.log:\n%s\nbuild.log:\n%s", p.name,
    table.concat(states, " > "), tostring(p.sup.record.error_msg), S.runtime_log(p):sub(-3000),
    (S.read(p.dirs.logs .. "/build.log") or ""):sub(-2000))
end

function S.wait_state(p, state, timeout)
  return S.poll(function() return p.sup.record.state == state end, timeout or S.WAIT)
end

function S.start_ready(p)
  assert.is_true(p.sup:start())
  assert.is_true(S.wait_state(p, "Ready"), S.story(p))
end

-- Starts the program and waits until it is in one of the states given.
function S.start_until(p, states, timeout)
  local want = {}
  for _, s in ipairs(states) do want[s] = true end
  assert.is_true(p.sup:start())
  assert.is_true(S.poll(function() return want[p.sup.record.state] == true end, timeout or S.WAIT), S.story(p))
end

-- Waits until the program's file state/<name> exists; its content.
function S.state_file(p, name)
  local text
  S.poll(function()
    text = S.read(p.dirs.state .. "/" .. name)
    return text ~= nil
  end, S.WAIT)
  assert(text, "no state/" .. name .. "\n" .. S.story(p))
  return text
end

function S.running_procs(p)
  local n = 0
  for _, proc in pairs(p.procs) do if proc:running() then n = n + 1 end end
  for _, proc in pairs(p.sup.procs) do if proc:running() then n = n + 1 end end
  return n
end

-- Stops the program (bounded), kills what is left, closes its socket. Raises if a
-- process of it outlived all that.
local function shutdown(p)
  local sup = p.sup
  local s = sup.record.state
  if s == "Building" or s == "Starting" or s == "Ready" or s == "Restarting" then sup:stop() end
  S.poll(function() return sup.record.state ~= "Stopping" and S.running_procs(p) == 0 end, 15)
  local left = S.running_procs(p)
  for _, proc in pairs(p.procs) do if proc:running() then proc:kill("KILL") end end
  for _, proc in pairs(sup.procs) do if proc:running() then proc:kill("KILL") end end
  if sup.build_job then sup.build_job:cancel() end
  S.poll(function() return S.running_procs(p) == 0 end, 5)
  sys.close_fd(p.fd)
  assert(left == 0, p.name .. ": " .. left .. " process(es) still ran after the stop")
  -- Nothing it started (children, reparented ones) is left either; nor a runsc of its
  -- containers (gVisor: the program's processes are the Sentry's, not the host's).
  local bundles = S.ROOT .. "/gvisor/bundles/hersh-" .. sup.id .. "-"
  assert(S.poll(function() return S.count_program_procs(sup.id) == 0 end, 5),
    p.name .. ": " .. S.count_program_procs(sup.id) .. " process(es) of the sandbox outlived it")
  assert(S.poll(function() return #P.processes_under(bundles) == 0 end, 5),
    p.name .. ": a runsc outlived it: " .. table.concat(P.processes_under(bundles), "\n"))
end

-- The `finally` of every test: its programs stopped, its deferred undos run.
function S.cleanup()
  local errors = {}
  for i = #live, 1, -1 do
    local ok, err = pcall(shutdown, live[i])
    if not ok then errors[#errors + 1] = tostring(err) end
    live[i] = nil
  end
  for i = #cleanups, 1, -1 do
    local ok, err = pcall(cleanups[i])
    if not ok then errors[#errors + 1] = tostring(err) end
    cleanups[i] = nil
  end
  assert(#errors == 0, table.concat(errors, "\n"))
end

return S
