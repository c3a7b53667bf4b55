-- bench/programs/run.lua -- the Programs benchmark: how fast the Host brings a
-- sandboxed program to Ready, beside the bare bubblewrap start measured in the same run;
-- (a), (b) and (d) once per driver (bwrap, and gvisor where runsc can start here, or
-- the drivers named in BENCH_PROGRAMS_DRIVERS), (c) with a bare runsc too.
--
--   (a) spawn-to-Ready: a FROM hersh Lua counter with a cached image, under the bwrap
--       driver as the Host runs it (host.supervisor: spawn effect -> bwrap -> `hersh run`
--       serving the handed-over socket -> the supervisor's probe gets 200 for
--       GET /watcher/status -> Ready); stop and start again, START_ROUNDS times.
--   (b) crash-to-Ready: POST /watcher/message {"content":"crash"} makes the counter exit
--       with code 1; the restart policy (a fixed 1 ms delay, see POLICY) brings it back.
--   (c) bare bwrap: the sandbox the driver builds for the program (its command line,
--       seccomp filter and environment, bwrap.spawn), with argv {"/bin/true"}, as the same
--       unprivileged user; spawn to exit. Beside it, for where the time goes: the same sandbox running
--       `hersh run` of an empty script and of a script that only loads `require "hersh"`,
--       and those two outside the sandbox. Under gvisor: the same spec through
--       gvisor.spawn (runsc run of /bin/true: bundle, container, delete).
--   (d) memory of an idle Ready program: the PSS (and RSS) of every host process of
--       its sandbox (bwrap, hersh-init, hersh; runsc, its Gofer, Sentry and stubs).
--
-- Run through bench/programs/run.sh (it passes the build directory and a temporary
-- directory, and removes that directory afterwards):
--   lua5.4 bench/programs/run.lua BUILD_DIR TMP_DIR
local hersh = require "hersh"
local core = require "hersh.core"
local sys = require "hersh.os"
local http = require "hersh.http"
local dockerfile = require "host.dockerfile"
local supervisor = require "host.supervisor"
local sandbox = require "host.sandbox"
local bwrap = require "host.sandbox.bwrap"
local gvisor = require "host.sandbox.gvisor"

local build_dir, tmp = arg[1] or "build-bench", arg[2]
assert(tmp, "usage: run.lua BUILD_DIR TMP_DIR")

local START_ROUNDS = tonumber(os.getenv("BENCH_PROGRAMS_STARTS")) or 20
local CRASH_ROUNDS = tonumber(os.getenv("BENCH_PROGRAMS_CRASHES")) or 10
local BARE_ROUNDS = tonumber(os.getenv("BENCH_PROGRAMS_BARE")) or 30
local TARGET_MS = 50
local NOBODY = { uid = 65534, gid = 65534 }
-- Restarts after a fixed 1 ms, so the backoff (100 ms, doubling, by default) does not
-- hide the cost of the restart itself; enough restarts never to reach Error.
local POLICY = { mode = "on-failure", base_delay = 0.001, max_delay = 0.001, reset_after = 10, max_restarts = 1000 }

local B = require "lib"
local abs_path, write, quantile, median = B.abs_path, B.write, B.quantile, B.median

local function sh(cmd)
  assert(os.execute(cmd), "failed: " .. cmd)
end

local function ms(s) return s * 1000 end

-- ---- the program and its image ---------------------------------------------------------

local runtime = { bin = abs_path(build_dir .. "/hersh"), lua = abs_path("lua") }
local dirs = { src = tmp .. "/src", state = tmp .. "/state", logs = tmp .. "/logs", api = tmp .. "/api" }
local images = tmp .. "/images"
sh("chmod 755 " .. tmp)
sh(string.format("mkdir -p %s %s %s %s", dirs.src, dirs.state, dirs.logs, images))
sh(string.format("chown %d:%d %s", NOBODY.uid, NOBODY.gid, dirs.state))

local DRIVERS = {}
for name in (os.getenv("BENCH_PROGRAMS_DRIVERS") or "bwrap gvisor"):gmatch("%S+") do
  local d, why = sandbox.get(name)
  if d and d.prepare then assert(d.prepare(tmp .. "/" .. name)) end
  if d then DRIVERS[#DRIVERS + 1] = d else print("bench/programs: no " .. name .. ": " .. why) end
end

write(dirs.src .. "/main.lua", [[
-- The counter: counts "tick" messages; the message "crash" ends the process with code 1.
local hersh = require "hersh"
local w = assert(hersh.watcher{ id = "counter" })
w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then ctx:set("n", 0) return end
  if msg and msg.content == "crash" then os.exit(1) end
  if msg and msg.content == "tick" then ctx:update("n", function(n) return n + 1 end) end
end)
assert(w:start())
]])
write(dirs.src .. "/empty.lua", "-- nothing: `hersh run` has no watcher to drive and exits 0\n")
write(dirs.src .. "/load.lua", "require \"hersh\" -- the runtime's Lua module, then exit\n")

local plan = assert(dockerfile.parse(
  'FROM hersh\nWORKDIR /app\nCOPY main.lua empty.lua load.lua /app/\nCMD ["hersh", "run", "/app/main.lua"]\n'))
local listen_fd, port = assert(sys.listen("127.0.0.1", 0))
local api = string.format("http://127.0.0.1:%d", port)

-- Times of the supervisor's steps, by hooking its spawn effect and state changes.
local t = {}
local sup
-- The supervisor of the program under `driver`; gvisor's port is relayed to the
-- program's socket, as the Host does (host.ports).
local relay
local function new_sup(driver)
  if relay then relay:stop() end
  relay = driver.listen_path and assert(sys.relay(listen_fd, dirs.api .. "/api.sock", "{}")) or nil
  sup = supervisor.new{
    id = "bench-programs", plan = plan, build_id = "build-bench-programs", dirs = dirs, images_dir = images,
    driver = driver, runtime = runtime, user = NOBODY, port = port, listen_fd = listen_fd,
    spec = { restart_policy = POLICY },
    on_change = function(record)
      if record.state ~= t.last_state then
        t[record.state] = core.now()
        t.last_state = record.state
      end
    end,
  }
  local perform_spawn = sup.perform_spawn
  function sup:perform_spawn(effect)
    t.spawn = core.now()
    perform_spawn(self, effect)
    t.spawned = core.now()
  end
end

-- (d): the processes under pid (itself included), by their parent links in /proc.
local function tree(pid)
  local children = {}
  for name in assert(io.popen("ls /proc")):lines() do
    local stat = name:match("^%d+$") and io.open("/proc/" .. name .. "/stat")
    if stat then
      local ppid = stat:read("a"):match("^%d+ %(.*%) %a (%d+)")
      stat:close()
      if ppid then
        children[ppid] = children[ppid] or {}
        table.insert(children[ppid], name)
      end
    end
  end
  local out, todo = {}, { tostring(pid) }
  while #todo > 0 do
    local p = table.remove(todo)
    out[#out + 1] = p
    for _, c in ipairs(children[p] or {}) do todo[#todo + 1] = c end
  end
  return out
end

-- Sum of PSS and of RSS (kB) of the processes of the running program's sandbox.
local function memory()
  local proc = select(2, next(sup.procs))
  local pss, rss, n = 0, 0, 0
  for _, p in ipairs(tree(proc:pid())) do
    local f = io.open("/proc/" .. p .. "/smaps_rollup")
    if f then
      local text = f:read("a")
      f:close()
      pss = pss + (tonumber(text:match("\nPss:%s+(%d+)")) or 0)
      rss = rss + (tonumber(text:match("\nRss:%s+(%d+)")) or 0)
      n = n + 1
    end
  end
  return pss, rss, n
end

-- Counts the readiness probes that failed (observation only: the supervisor's own probe
-- runs unchanged). A failed probe is retried PROBE_INTERVAL (50 ms) later.
local probe_failures = 0
local http_request = http.request
http.request = function(opts, callback)
  return http_request(opts, function(res, ...)
    if opts.url:find("/watcher/status", 1, true) and not (res and res.status == 200) then
      probe_failures = probe_failures + 1
      t.probe_error = tostring((...))
    end
    return callback(res, ...)
  end)
end

local function wait_state(state, timeout)
  if not hersh.wait(function() return sup.record.state == state end, timeout or 20) then
    error(string.format("the program did not reach %s (it is %s: %s); see %s/runtime.log",
      state, sup.record.state, tostring(sup.record.error_msg), dirs.logs))
  end
end

local function start_ready()
  t = {}
  local t0 = core.now()
  assert(sup:start())
  wait_state("Ready")
  return t0
end

local function stop()
  assert(sup:stop())
  wait_state("Stopped")
end

local function post_message(content)
  local answered
  http.request({ method = "POST", url = api .. "/watcher/message", body = '{"content":"' .. content .. '"}',
    timeout = 5 }, function(res) answered = res or {} end)
  return function() return answered end
end

-- ---- (c) the bare sandbox, and what `hersh run` adds ----------------------------------

local RUN_ENV = { "PATH=/opt/hersh/bin:/usr/local/bin:/usr/bin:/bin", "HERSH_LUA_DIR=/opt/hersh/lua" }

-- Spawn to exit of one command as the unprivileged user: kind.sandbox (a driver spec,
-- started as the driver starts programs: bwrap.spawn) or kind.argv (plain sys.spawn).
local function run_once(kind)
  local done, code, signal
  local opts = { uid = NOBODY.uid, gid = NOBODY.gid,
    on_exit = function(c, s)
      if type(c) == "table" then c, s = c.exit_code, c.exit_signal end -- a driver's exit report
      done, code, signal = core.now(), c, s
    end }
  local t0 = core.now()
  local proc, err
  if kind.sandbox then
    proc, err = (kind.driver or bwrap).spawn(kind.sandbox, opts)
  else
    opts.argv, opts.env = kind.argv, RUN_ENV
    proc, err = sys.spawn(opts)
  end
  assert(proc, err)
  assert(hersh.wait(function() return done ~= nil end, 20), "a bare run did not end")
  if code ~= 0 then error(string.format("%s ended with code %s, signal %s", kind.name, code, signal)) end
  return done - t0
end

local function sandboxed(argv)
  local image = assert(require("host.build").load_image(images, sup.build_id))
  return {
    rootfs = images .. "/" .. sup.build_id .. "/rootfs", base = image.base, state_dir = dirs.state,
    network = "none", tmp_size = supervisor.TMP_SIZE, uid = 0, gid = 0, workdir = image.workdir,
    runtime = runtime, argv = argv, env = RUN_ENV,
  }
end

-- ---- the runs --------------------------------------------------------------------------

local results, by_driver = {}, {}
local ok, err = pcall(function()
 for _, driver in ipairs(DRIVERS) do
  new_sup(driver)
  results = { driver = driver.name }
  by_driver[#by_driver + 1] = results
  -- The first start builds the image; every later one is a cache hit.
  start_ready()
  stop()
  start_ready() -- warm-up of the cached path
  stop()

  local to_ready, start_to_ready, fork_exec = {}, {}, {}
  probe_failures = 0
  for _ = 1, START_ROUNDS do
    local t0 = start_ready()
    if t.probe_error then results.probe_error = t.probe_error end
    to_ready[#to_ready + 1] = t.Ready - t.spawn
    start_to_ready[#start_to_ready + 1] = t.Ready - t0
    fork_exec[#fork_exec + 1] = t.spawned - t.spawn
    stop()
  end
  results.to_ready, results.start_to_ready, results.fork_exec = to_ready, start_to_ready, fork_exec
  results.probe_failures = probe_failures

  -- Crashes: from the moment the Host learns of the exit (Restarting) to Ready again,
  -- and from sending the message.
  start_ready()
  local exit_to_ready, msg_to_ready = {}, {}
  for i = 1, CRASH_ROUNDS do
    t = {}
    local t0 = core.now()
    local answered = post_message("crash")
    assert(hersh.wait(function() return t.Restarting ~= nil end, 10), "the program did not crash")
    wait_state("Ready")
    hersh.wait(answered, 5)
    assert(sup.record.restarts == i, "unexpected restart count " .. tostring(sup.record.restarts))
    exit_to_ready[#exit_to_ready + 1] = t.Ready - t.Restarting
    msg_to_ready[#msg_to_ready + 1] = t.Ready - t0
  end
  results.exit_to_ready, results.msg_to_ready = exit_to_ready, msg_to_ready
  results.exit_code = sup.record.exit_code
  -- (d) idle: Ready, a second after the last restart
  hersh.wait(function() return false end, 1)
  results.pss, results.rss, results.nprocs = memory()
  stop()
 end

  -- Bare runs, alternating so that load on the machine falls on all of them alike.
  local kinds = {
    { name = "bare", sandbox = sandboxed{ "/bin/true" } },
    { name = "empty", sandbox = sandboxed{ "hersh", "run", "/app/empty.lua" } },
    { name = "load", sandbox = sandboxed{ "hersh", "run", "/app/load.lua" } },
    { name = "plain_empty", argv = { runtime.bin, "run", dirs.src .. "/empty.lua" } },
    { name = "plain_load", argv = { runtime.bin, "run", dirs.src .. "/load.lua" } },
  }
  for _, d in ipairs(DRIVERS) do
    if d.name == "gvisor" then kinds[#kinds + 1] = { name = "runsc", sandbox = sandboxed{ "/bin/true" }, driver = d } end
  end
  for _, k in ipairs(kinds) do run_once(k); results[k.name] = {} end -- warm-up
  for _ = 1, BARE_ROUNDS do
    for _, k in ipairs(kinds) do table.insert(results[k.name], run_once(k)) end
  end
end)

-- Clean-up: whatever happened, nothing of ours keeps running.
if sup.record.state ~= "Stopped" and sup.record.state ~= "Created" and sup.record.state ~= "Error" then
  pcall(sup.stop, sup)
  hersh.wait(function() return sup.record.state == "Stopped" end, 15)
end
for _, proc in pairs(sup.procs) do
  if proc:running() then proc:kill("KILL") end
end
hersh.wait(function() return next(sup.procs) == nil end, 5)
if relay then relay:stop() end
sys.close_fd(listen_fd)
if not ok then
  io.stderr:write("bench/programs: ", tostring(err), "\n")
  os.exit(1)
end

-- ---- the table -------------------------------------------------------------------------

local function row(name, list)
  print(string.format("  %-48s %8.1f %8.1f %8.1f %8.1f   (n=%d)", name, ms(median(list)), ms(quantile(list, 0.9)),
    ms(math.min(table.unpack(list))), ms(math.max(table.unpack(list))), #list))
end

local bare = results
for _, r in ipairs(by_driver) do
  print(string.format("bench/programs: %s driver, FROM hersh counter, cached image (ms)", r.driver))
  print(string.format("  %-48s %8s %8s %8s %8s", "", "median", "p90", "min", "max"))
  row("(a) spawn effect -> Ready", r.to_ready)
  row("    of which fork+exec of " .. (r.driver == "gvisor" and "runsc" or "bwrap") .. " (spawn returns)", r.fork_exec)
  row("    sup:start() -> Ready (cache hit)", r.start_to_ready)
  row("(b) crash: exit seen -> Ready again", r.exit_to_ready)
  row("    crash: POST \"crash\" -> Ready again", r.msg_to_ready)
  print(string.format("  (d) idle Ready program: PSS %.1f MiB, RSS %.1f MiB in %d host processes", r.pss / 1024,
    r.rss / 1024, r.nprocs))
  print(string.format("  (a) first probes that failed: %d of %d starts%s", r.probe_failures, START_ROUNDS,
    r.probe_error and (" (\"" .. r.probe_error .. "\"; retried 50 ms later)") or ""))
  print(string.format("  restart policy for (b): mode %s, base_delay %g s, max_delay %g s, max_restarts %d;"
    .. " exit code seen %s", POLICY.mode, POLICY.base_delay, POLICY.max_delay, POLICY.max_restarts,
    tostring(r.exit_code)))
end
print("bench/programs: bare runs, spawn -> exit (ms)")
print(string.format("  %-48s %8s %8s %8s %8s", "", "median", "p90", "min", "max"))
row("(c) bare bwrap /bin/true, spawn -> exit", bare.bare)
row("    bwrap + hersh run empty.lua, spawn -> exit", bare.empty)
row("    bwrap + hersh run load.lua (require hersh)", bare.load)
row("    hersh run empty.lua, no sandbox", bare.plain_empty)
row("    hersh run load.lua, no sandbox", bare.plain_load)
if bare.runsc then row("    bare runsc run /bin/true (gvisor.spawn)", bare.runsc) end
local diff = median(by_driver[1].to_ready) - median(bare.bare)
print(string.format("  spawn-to-Ready (bwrap) - bare bwrap (medians)     %8.1f ms   target <= %d ms: %s",
  ms(diff), TARGET_MS, ms(diff) <= TARGET_MS and "met" or "MISSED"))
