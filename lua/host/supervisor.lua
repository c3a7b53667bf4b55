-- The supervisor of one program: it feeds events to the pure reducer (host.program),
-- performs the effects the reducer asks for (build, spawn in the sandbox, readiness
-- probe, stop, restart timers) and turns their results into events again. Events go
-- through one FIFO, so the order in which results are reduced never depends on how
-- quickly an effect answered.
local core = require "hersh.core"
local http = require "hersh.http"
local json = require "hersh.json"
local sys = require "hersh.os"
local build = require "host.build"
local dockerfile = require "host.dockerfile"
local health = require "host.health"
local program = require "host.program"

local supervisor = {}

supervisor.PROBE_INTERVAL = 0.05 -- seconds between two GET /watcher/status while Starting
supervisor.TMP_SIZE = 64 * 1024 * 1024

local Sup = {}
Sup.__index = Sup

local function now()
  return core.now()
end

-- Events from effects: appended, then reduced in order by drain.
function Sup:post(event)
  event.now = event.now or now()
  self.queue[#self.queue + 1] = event
  if not self.draining then self:drain() end
end

function Sup:drain()
  self.draining = true
  while #self.queue > 0 do
    local event = table.remove(self.queue, 1)
    local record, effects = program.reduce(self.record, event)
    if record and record ~= self.record then self:apply(record, effects, event) end
  end
  self.draining = false
end

-- The lifecycle events (on_event) of an accepted step, in the order they happened:
-- what ended a process or a build, what the effects begin, then the state reached.
function Sup:report(before, event, effects)
  local emit, r = self.on_event, self.record
  if not emit then return end
  if event.type == "exited" then
    emit("exited", { exit_code = event.code, exit_signal = event.signal, oom_killed = event.oom_killed or false,
      memory_limit = event.memory_limit, restarts = r.restarts, error = event.error })
  elseif event.type == "built" or event.type == "build_failed" then
    emit("build_finished", { ok = event.type == "built", duration = event.now - self.build_started_at,
      cached = event.cached or false, error = event.error })
  elseif event.type == "unhealthy" then
    emit("unhealthy", { failures = event.failures, last_error = event.error })
  end
  for _, effect in ipairs(effects) do
    if effect.type == "build" then
      self.build_started_at = event.now
      emit("build_started", { attempt = effect.attempt })
    elseif effect.type == "cancel_build" and self.build_job then
      emit("build_finished", { ok = false, duration = event.now - self.build_started_at, cached = false,
        error = "cancelled" })
    elseif effect.type == "spawn" then
      self.spawned_at = event.now
      emit("starting", { attempt = effect.attempt })
    elseif effect.type == "schedule_restart" then
      emit("restarting", { attempt = r.restarts, delay = effect.delay, reason = r.error_msg })
    end
  end
  if r.state == before.state then return end
  if r.state == "Ready" then
    emit("ready", { time_to_ready = event.now - self.spawned_at })
  elseif r.state == "Error" then
    emit("error", { reason = r.error_msg })
  elseif r.state == "Stopping" then -- said at once: a client sees the stop begin, not only its end
    emit("stopping", { restart = r.restart_intent or false })
  elseif r.state == "Stopped" then
    emit("stopped", {})
  end
end

function Sup:apply(record, effects, event)
  local before = self.record
  self.record = record
  if self.candidate and record.state ~= "Ready" then
    self:end_update(false, "the running revision left Ready (" .. record.state .. ") during the update")
  end
  self:report(before, event, effects)
  for _, effect in ipairs(effects) do
    local perform = self["perform_" .. effect.type]
    if perform then perform(self, effect) else self:perform_unknown(effect) end
  end
  self:follow_health()
  if self.on_change then self.on_change(self.record) end
end

-- Health checks (spec.health) run while the program is Ready, for that attempt alone:
-- leaving Ready (stop, restart, exit, delete, a Host shutdown) ends them.
function Sup:follow_health()
  local r, checker = self.record, self.health_checker
  local wanted = self.spec.health ~= nil and r.state == "Ready"
  if checker and not (wanted and checker.attempt == r.attempt) then
    checker:stop()
    self.health_checker, checker = nil, nil
  end
  if not wanted or checker then return end
  local attempt = r.attempt
  checker = health.watch{ port = self.port, check = self.spec.health, judge = self.health_judge,
    on_unhealthy = function(d)
    self:post{ type = "unhealthy", attempt = attempt, failures = d.failures, error = d.last_error,
      healthy_until = checker.last_ok }
  end }
  checker.attempt = attempt
  self.health_checker = checker
end

-- A user event (start, stop, restart, delete): refused at once with the reason, or
-- applied with the effects it starts.
function Sup:request(type, fields)
  local event = fields or {}
  event.type, event.now = type, now()
  local record, effects, code = program.reduce(self.record, event)
  if not record then return nil, effects, code end
  self:apply(record, effects, event)
  if not self.draining and #self.queue > 0 then self:drain() end
  return true
end

function Sup:start() return self:request("start") end
function Sup:stop() return self:request("stop") end
function Sup:restart() return self:request("restart") end
function Sup:delete(keep_state) return self:request("delete", { keep_state = keep_state }) end

-- ---- effects ------------------------------------------------------------------------

function Sup:perform_unknown(effect)
  error("supervisor: unknown effect " .. tostring(effect.type))
end

function Sup:perform_build(effect)
  local attempt = effect.attempt
  self.build_job = build.start{
    plan = self.plan, build_id = self.build_id, src_dir = self.dirs.src, images_dir = self.images_dir,
    log_path = self.dirs.logs .. "/build.log", driver = self.driver, runtime = self.runtime,
    user = self.user, timeout = self.build_timeout,
    on_done = function(ok, err, cached)
      self:post(ok and { type = "built", attempt = attempt, cached = cached }
        or { type = "build_failed", attempt = attempt, error = err })
    end,
  }
end

function Sup:perform_cancel_build()
  if self.build_job then self.build_job:cancel() end
  self.build_job = nil
end

-- The process of an attempt, in the sandbox, with the published socket as fd 3 (or
-- its unix socket in dirs.api, see sandbox/init.lua). `rev` ({build_id, spec,
-- revision}; nil: the current one) is what it runs; `slot` {key,
-- attempt, candidate} is where it is kept in procs: an update's new process is kept
-- apart (candidate) until it takes over the attempt after the running one.
function Sup:spawn(attempt, rev, slot)
  rev = rev or self
  slot = slot or { key = attempt, attempt = attempt }
  local image, err = build.load_image(self.images_dir, rev.build_id)
  if not image then return nil, "no image: " .. tostring(err) end
  local argv, cmd_err = dockerfile.command(image)
  if not argv then return nil, cmd_err end
  local user = tostring(image.user or "0")
  local uid, gid = user:match("^(%d+):?(%d*)$")
  -- the published port: fd 3, or a unix socket the Host relays to (sandbox/init.lua)
  local unix = self.driver.listen_path
  local fd = not unix and self.listen_fd or nil
  local env = build.env_list(
    build.RUNTIME_ENV, { HOME = "/state" }, image.env, rev.spec.env,
    { HERSH_PROGRAM_ID = self.id, HERSH_STATE_DIR = "/state", LISTEN_FDS = fd and "1" or nil,
      HERSH_LISTEN_UNIX = unix })
  return self.driver.spawn({
    rootfs = build.image_dir(self.images_dir, rev.build_id) .. "/rootfs", base = image.base,
    state_dir = self.dirs.state, network = rev.spec.network or "none", tmp_size = supervisor.TMP_SIZE,
    uid = tonumber(uid), gid = tonumber(gid) or tonumber(uid), workdir = image.workdir or "/",
    runtime = self.runtime, argv = argv, env = env, api_dir = unix and self.dirs.api,
  }, {
    uid = self.user.uid, gid = self.user.gid,
    fds = fd and { [3] = fd } or nil,
    -- a cgroup of each revision: stopping (or killing) the old one spares the new one
    log = self.dirs.logs .. "/runtime.log", limits = rev.spec.limits,
    cgroup = self.id .. ((rev.revision or 1) > 1 and ".r" .. rev.revision or ""),
    on_line = self.on_line,
    on_exit = function(exit) -- the driver's exit report: exit_code, exit_signal, oom_killed, error
      if self.procs[slot.key] then self.procs[slot.key] = nil end
      if self.pending_release then return self:perform_release(self.pending_release) end
      if slot.candidate then return self:candidate_exited(slot, exit) end
      self:post{ type = "exited", attempt = slot.attempt, code = exit.exit_code, signal = exit.exit_signal,
        oom_killed = exit.oom_killed, error = exit.error, memory_limit = (rev.spec.limits or {}).memory }
    end,
  })
end

function Sup:perform_spawn(effect)
  if self.publish then -- the Host hands over its socket for the port, listening now
    local fd, publish_err = self.publish()
    if not fd then return self:post{ type = "spawn_failed", attempt = effect.attempt, error = publish_err } end
    self.listen_fd = fd
  end
  local proc, err = self:spawn(effect.attempt)
  if not proc then
    return self:post{ type = "spawn_failed", attempt = effect.attempt, error = err }
  end
  self.procs[effect.attempt] = proc
  self:post{ type = "spawned", attempt = effect.attempt, pid = proc:pid() }
end

-- Ready means the program's WatcherAPI answers GET /watcher/status.
function Sup:perform_probe(effect)
  self:perform_cancel_probe()
  local attempt, deadline = effect.attempt, effect.deadline
  local url = string.format("http://127.0.0.1:%d/watcher/status", self.port)
  local in_flight = false
  local probe
  probe = core.timer(0, function()
    if probe.done or in_flight then return end
    if deadline and now() > deadline then
      probe.done = true
      probe.timer:stop()
      return self:post{ type = "not_ready", attempt = attempt }
    end
    in_flight = true
    -- A fresh connection each time: a kept-alive one may lead to the previous process.
    http.request({ method = "GET", url = url, timeout = 1, headers = { Connection = "close" } }, function(res)
      in_flight = false
      if probe.done or not res or res.status ~= 200 then return end
      probe.done = true
      probe.timer:stop()
      self:post{ type = "ready", attempt = attempt }
    end)
  end, supervisor.PROBE_INTERVAL)
  probe = { timer = probe, done = false }
  self.probe = probe
end

function Sup:perform_cancel_probe()
  if self.probe then
    self.probe.done = true
    self.probe.timer:stop()
  end
  self.probe = nil
end

local function process_of(self, effect)
  return self.procs[effect.attempt]
end

function Sup:perform_stop_process(effect)
  local proc = process_of(self, effect)
  if proc and proc:running() then self.driver.stop(proc, effect.grace or 10) end
end

function Sup:perform_kill_process(effect)
  local proc = process_of(self, effect)
  if proc and proc:running() then proc:kill("KILL") end
end

function Sup:perform_schedule_restart(effect)
  self:perform_cancel_timer()
  local attempt = effect.attempt
  self.timer = core.timer(effect.delay, function()
    self.timer = nil
    self:post{ type = "backoff_elapsed", attempt = attempt }
  end)
end

function Sup:perform_cancel_timer()
  if self.timer then self.timer:stop() end
  self.timer = nil
end

-- Release (delete) waits until every process of the program is gone: they hold its
-- port and write into its files.
function Sup:perform_release(effect)
  for _, proc in pairs(self.procs) do
    if proc:running() then
      self.pending_release = effect
      return proc:kill("KILL")
    end
  end
  self.pending_release = nil
  if self.on_release then self.on_release(effect.keep_state) end
end

-- ---- update in place ------------------------------------------------------------------
--
-- A running (Ready) program is updated beside itself: the new revision's image builds
-- while the old process serves; its process then starts on the same listening socket
-- (both accept from it: a connection waits in the one queue until either takes it),
-- and is probed on its own; only once it answers does it take over the attempt
-- (program.lua: swapped) and the old process get its SIGTERM, draining what it took.
-- A failed build, a new process that exits or is not Ready in time, or the running one
-- leaving Ready first: the new process is killed and the old one is untouched.

-- Whether a /watcher/status answer came from the candidate and not from the process it
-- replaces, which shares the socket: the WatcherAPI's uptime ("6.501s", "1m5.000s")
-- counts from its own start, so only a process started after the candidate's spawn
-- has an uptime below the time since then. The old one was Ready before the update
-- began; an uptime of a minute or more (not a bare "<s>.<ms>s") is never a candidate's.
function supervisor.answered_by_candidate(body, spawned_at, at)
  local status = type(body) == "string" and json.decode(body)
  local up = type(status) == "table" and type(status.uptime) == "string" and status.uptime:match("^(%d+%.%d+)s$")
  return up and tonumber(up) <= at - spawned_at or false
end

-- update{revision, plan, build_id, spec, src_dir, on_done(ok, reason), on_step(kind, details)}:
-- from Ready, the swap above; in Created, Stopped or Error the next start runs it; in
-- any other state, or with an update under way, refused: nil, why.
function Sup:update(rev)
  if self.candidate then return nil, "an update of this program is under way" end
  local state = self.record.state
  if state == "Created" or state == "Stopped" or state == "Error" then
    self:take(rev)
    rev.on_done(true)
    return true
  end
  if state ~= "Ready" then return nil, "cannot update a program in state " .. state .. " (wait for Ready, or stop it)" end
  local c = { rev = rev, slot = { key = "next", candidate = true } }
  self.candidate = c
  rev.on_step("build_started", { revision = rev.revision })
  local started = now()
  c.build = build.start{
    plan = rev.plan, build_id = rev.build_id, src_dir = rev.src_dir, images_dir = self.images_dir,
    log_path = self.dirs.logs .. "/build.log", driver = self.driver, runtime = self.runtime,
    user = self.user, timeout = self.build_timeout,
    on_done = function(ok, err, cached)
      if self.candidate ~= c then return end
      c.build = nil
      rev.on_step("build_finished", { ok = ok, duration = now() - started, cached = cached or false, error = err,
        revision = rev.revision })
      if not ok then return self:end_update(false, "build failed: " .. tostring(err)) end
      self:start_candidate(c)
    end,
  }
  return true
end

-- The revision the supervisor runs from now on.
function Sup:take(rev)
  self.plan, self.build_id, self.spec, self.revision = rev.plan, rev.build_id, rev.spec, rev.revision
end

function Sup:start_candidate(c)
  c.rev.on_step("starting", { attempt = self.record.attempt + 1, revision = c.rev.revision })
  c.spawned_at = now() -- before: its WatcherAPI cannot have started earlier
  local proc, err = self:spawn(nil, c.rev, c.slot)
  if not proc then return self:end_update(false, "spawn failed: " .. tostring(err)) end
  c.proc = proc
  self.procs[c.slot.key] = proc
  local url = string.format("http://127.0.0.1:%d/watcher/status", self.port)
  local deadline, in_flight = c.spawned_at + program.READY_TIMEOUT, false
  c.probe = core.timer(0, function()
    if self.candidate ~= c or in_flight then return end
    if now() > deadline then
      return self:end_update(false, string.format("not ready within %g s", program.READY_TIMEOUT))
    end
    in_flight = true
    http.request({ method = "GET", url = url, timeout = 1, headers = { Connection = "close" } }, function(res)
      in_flight = false
      if self.candidate ~= c or not res or res.status ~= 200 then return end
      if supervisor.answered_by_candidate(res.body, c.spawned_at, now()) then self:promote(c) end
    end)
  end, supervisor.PROBE_INTERVAL)
end

-- The candidate answered: it becomes the running attempt, the old one is stopped.
function Sup:promote(c)
  local attempt = self.record.attempt + 1
  self.procs[c.slot.key] = nil
  c.slot.key, c.slot.attempt, c.slot.candidate = attempt, attempt, false
  self.procs[attempt] = c.proc
  self:take(c.rev)
  self:post{ type = "swapped", attempt = self.record.attempt, pid = c.proc:pid() }
  self:end_update(true)
end

function Sup:candidate_exited(slot, exit)
  local c = self.candidate
  if not c or c.slot ~= slot then return end
  self:end_update(false, program.describe_exit{ code = exit.exit_code, signal = exit.exit_signal,
    oom_killed = exit.oom_killed, error = exit.error, memory_limit = (c.rev.spec.limits or {}).memory }
    .. " before it was ready")
end

-- Ends the update under way: on failure the new process (if any) is killed and the
-- build cancelled. Then on_done(ok, reason).
function Sup:end_update(ok, reason)
  local c = self.candidate
  if not c then return end
  self.candidate = nil
  if c.probe then c.probe:stop() end
  if c.build then c.build:cancel() end
  if not ok and c.proc and c.proc:running() then c.proc:kill("KILL") end
  c.rev.on_done(ok, reason)
end

-- A line of the Host's in the program's runtime log: through the running process's
-- writer when there is one, so that it lands in order with that process's output.
function Sup:note(text)
  for _, proc in pairs(self.procs) do
    if proc:running() then return proc:note(text) end
  end
  return sys.log_note(self.dirs.logs .. "/runtime.log", text)
end

-- The newest n lines a running (or the last) process printed.
function Sup:tail(n)
  for _, proc in pairs(self.procs) do return proc:tail(n) end
  return {}
end

-- supervisor.new{id, plan, build_id, dirs = {src, state, logs, api}, images_dir, spec =
-- {env, limits, network, restart_policy, health}, driver (its sandbox's, for RUN steps
-- too), runtime = {bin, lua}, user = {uid, gid}, port, listen_fd (or publish() -> a
-- listening fd, asked at each spawn),
-- build_timeout, on_change(record), on_event(kind, details) (see host.events),
-- on_line(stream, text), on_release(keep_state), health_judge(res, err) (see health.watch),
-- record (to resume)} -> supervisor, or nil, err, code for an invalid policy.
function supervisor.new(opts)
  local self = setmetatable({
    id = opts.id, plan = opts.plan, build_id = opts.build_id, dirs = opts.dirs, images_dir = opts.images_dir,
    spec = opts.spec or {}, driver = opts.driver, runtime = opts.runtime,
    user = opts.user or { uid = 65534, gid = 65534 }, port = opts.port, listen_fd = opts.listen_fd,
    build_timeout = opts.build_timeout, on_change = opts.on_change, on_line = opts.on_line,
    on_release = opts.on_release, on_event = opts.on_event, publish = opts.publish, queue = {}, procs = {},
    health_judge = opts.health_judge,
    revision = opts.revision,
    draining = false,
  }, Sup)
  local record, err, code = opts.record, nil, nil
  if not record then record, err, code = program.new{ policy = (opts.spec or {}).restart_policy } end
  if not record then return nil, err, code end
  self.record = record
  return self
end

return supervisor
