-- Stopping a program in the bubblewrap sandbox, the way a program that does not want to
-- go would make it hard: children in its process group, a daemon (setsid and double
-- fork, so neither its group nor its parent is the program's), a daemon that ignores
-- SIGTERM, and a main process that ignores it too. Real builds, real bwrap, real
-- cgroups where the machine has them (spec/programs/stopper/).
--
-- What a stop promises: every process of the sandbox gets SIGTERM first (so each can
-- clean up), whatever is left after the grace period is killed, and nothing is left
-- behind. It holds with a cgroup (cgroup.procs, then cgroup.kill) and without one (the
-- driver finds the sandbox's processes in /proc), which the second half checks by
-- spawning through a driver that asks for no cgroup (as on a machine without them).
local sys = require "hersh.os"
local program_mod = require "host.program"
local S = require "scripts.sandbox_harness"

local MiB = 1024 * 1024
local GRACE = 2 -- seconds: the stubborn processes must outlive SIGTERM by this much

local read, exists, poll, pause, story = S.read, S.exists, S.poll, S.pause, S.story
local count_program_procs, program, cleanup = S.count_program_procs, S.program, S.cleanup

local SAVED_GRACE, SAVED_DRIVER, CGROUPS, NO_CGROUPS

-- The driver, asked for no cgroup: what a machine without writable cgroups gets.
local function without_cgroup(driver)
  return setmetatable({
    spawn = function(spec, opts)
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.cgroup, o.limits = nil, nil
      return driver.spawn(spec, o)
    end,
  }, { __index = driver })
end

-- Starts the stopper and waits until all its processes run.
local function started(opts)
  local p = program("stopper", opts)
  S.start_until(p, { "Starting", "Ready" })
  assert.is_true(poll(function() return exists(p.dirs.state .. "/started") end, S.WAIT), story(p))
  -- main, its child, the daemon, the stubborn daemon (and their naps): all counted
  assert.is_true(poll(function() return count_program_procs(p.sup.id) >= 4 end, S.WAIT), story(p))
  return p
end

local function stop_and_wait(p)
  local proc = p.procs[p.sup.record.attempt]
  assert.is_true(p.sup:stop())
  assert.is_true(S.wait_state(p, "Stopped", GRACE + 15), story(p))
  assert.is_false(proc:running())
  -- The stop's record waits for the leader; its children are gone by then or within moments.
  assert.is_true(poll(function() return count_program_procs(p.sup.id) == 0 end, 5),
    count_program_procs(p.sup.id) .. " process(es) of the sandbox outlived the stop\n" .. story(p))
  return proc
end

local function term_reached(p, name)
  return exists(p.dirs.state .. "/" .. name .. "-term")
end

local function specs(variant)
  local function opts(extra)
    local o = { policy = "no" }
    if variant == "cgroup" then o.limits = { pids = 256, memory = 512 * MiB } end
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  local function skip()
    if variant == "cgroup" and not CGROUPS then
      pending("no cgroups here: " .. tostring(NO_CGROUPS))
      return true
    end
    if variant == "none" then S.DRIVER = without_cgroup(SAVED_DRIVER) end
    return false
  end

  it("sends SIGTERM to the child and the daemon too, then the program leaves and nothing is left", function()
    finally(cleanup)
    if skip() then return end
    local p = started(opts())
    local proc = stop_and_wait(p)
    assert.is_true(term_reached(p, "main"), "the main process got no SIGTERM\n" .. story(p))
    assert.is_true(term_reached(p, "child"), "its child got no SIGTERM")
    assert.is_true(term_reached(p, "daemon"), "the daemon (setsid, double fork) got no SIGTERM, only the final kill")
    assert.same({ 0 }, { proc:exit_status() }, "the program did not leave by itself")
    assert.equal(1, #p.spawns)
    assert.equal("Stopped", p.sup.record.state)
  end)

  it("kills a main process that ignores SIGTERM after the grace period, with all it started", function()
    finally(cleanup)
    if skip() then return end
    local p = started(opts{ env = { STOPPER_MAIN = "stubborn" } })
    local proc = stop_and_wait(p)
    assert.same({ nil, 9 }, { proc:exit_status() }, "the sandbox was not killed")
    assert.is_false(term_reached(p, "main"))
    assert.is_true(term_reached(p, "daemon"), "the daemon got no SIGTERM")
    local r = p.sup.record
    assert.equal("Stopped", r.state)
  end)

  it("leaves no cgroup directory behind", function()
    finally(cleanup)
    if skip() then return end
    local p = started(opts())
    local dirs = {}
    for line in (read("/proc/self/cgroup") or ""):gmatch("[^\n]+") do
      local ctrls, path = line:match("^%d+:([^:]*):(.*)$")
      local mount = ctrls == "" and "/sys/fs/cgroup/unified" or ("/sys/fs/cgroup/" .. (ctrls or ""):match("^[^,]*"))
      local dir = mount .. (path == "/" and "" or path) .. "/hersh/" .. p.sup.id
      if exists(dir) then dirs[#dirs + 1] = dir end
    end
    if variant == "cgroup" then assert.is_true(#dirs > 0, "the program runs in no cgroup") end
    if variant == "none" then assert.equal(0, #dirs, "a cgroup was made: " .. table.concat(dirs, " ")) end
    stop_and_wait(p)
    pause(0.1)
    for _, dir in ipairs(dirs) do assert.is_false(exists(dir), dir .. " outlived the program") end
  end)

  it("restarts into a new process that the old one's end does not take down", function()
    finally(cleanup)
    if skip() then return end
    -- The new process gets a cgroup of the same name the moment the old one exits:
    -- what is done about the old one's cgroup must be done by then.
    local p = program("probe", opts())
    S.start_ready(p)
    local attempt = p.sup.record.attempt
    assert.is_true(p.sup:restart())
    assert.is_true(poll(function() return p.sup.record.state == "Ready" and p.sup.record.attempt > attempt end,
      S.WAIT), story(p))
    pause(1)
    assert.equal("Ready", p.sup.record.state, story(p))
    assert.equal(2, #p.spawns, story(p))
    assert.is_true(p.procs[p.sup.record.attempt]:running())
  end)
end

describe("stopping a sandboxed program", function()
  setup(function()
    S.setup()
    SAVED_DRIVER = S.DRIVER
    SAVED_GRACE = program_mod.STOP_GRACE
    program_mod.STOP_GRACE = GRACE
    -- Whether this machine gives a child a cgroup, asked of a probe spawn.
    local done
    local proc = assert(sys.spawn{ argv = { "/bin/true" }, limits = { pids = 64 },
      cgroup = "spec" .. S.MY_PID .. "-stop-probe", on_exit = function() done = true end })
    local lim = proc:limits()
    CGROUPS, NO_CGROUPS = lim.pids, lim.why
    poll(function() return done end, 10)
  end)

  teardown(function()
    program_mod.STOP_GRACE = SAVED_GRACE
    S.DRIVER = SAVED_DRIVER
    S.teardown()
  end)

  after_each(function() S.DRIVER = SAVED_DRIVER end)

  describe("with a cgroup", function() specs("cgroup") end)
  describe("without a cgroup", function() specs("none") end)
end)
