-- The lifecycle of one program as a pure reducer: program.reduce(record, event) ->
-- new_record, effects. No I/O and no clock: time arrives as event.now (seconds). The
-- Host performs the effects and feeds their results back as events. The input record
-- is never modified; an accepted event returns a fresh copy.
--
-- Record fields (program.new fills the first group; extra fields are kept as given):
--   state            Created | Building | Starting | Ready | Stopping | Stopped |
--                    Restarting | Error, and Deleted (terminal: the Host drops it)
--   attempt          number of the current attempt; every effect carries it, and every
--                    result event must echo the attempt of the effect it answers
--   restarts         automatic restarts since the last reset (user actions not counted)
--   ready_since      event.now of entering Ready; nil outside Ready
--   next_restart_at  when the pending automatic restart is due; nil outside Restarting
--   error_msg        why the program is in Error, or why it is Restarting: what ended
--                    it (code, signal, out of memory with the limit, the file an exec
--                    did not find), or the build step that failed with its output
--   exit_code        last exit code of the program (nil when a signal ended it)
--   exit_signal      last signal that ended the program (nil when it exited)
--   oom_killed       true when the kernel killed it for memory (its cgroup's count)
--   last_exit_at     event.now of its last exit (since the last user start)
--   ready_at         event.now of its last entry into Ready (kept after it leaves)
--   pid              process id once spawned, until it is gone or abandoned
--   restart_intent   true while Stopping for a user restart: when the process is gone
--                    the program is spawned again from the same image (no build)
--   updated_at       event.now of the last accepted event
--   policy           restart policy data (see host.restart_policy)
--
-- A new attempt begins with a user start (build + spawn), an automatic restart
-- (backoff_elapsed -> spawn) and the respawn of a user restart. So a late result of a
-- killed process, an old probe or a cancelled build or timer can never drive the
-- current attempt.
--
-- Transitions (A = current attempt; "policy" = restart_policy.decide):
--   from                 event            to                       effects
--   Created/Stopped/Err  start            Building (A+1)           build
--   Building             built            Starting                 spawn
--   Building             build_failed     Error                    -
--   Building             stop             Stopped                  cancel_build
--   Starting             spawned          Starting (pid)           probe
--   Starting             ready            Ready                    -
--   Starting             spawn_failed,    Restarting | Error |     cancel_probe if probing,
--                        exited,          Stopped (policy)         kill_process on not_ready,
--                        not_ready                                 schedule_restart if Restarting
--   Starting, Ready      stop             Stopping                 cancel_probe if probing,
--                                                                  stop_process
--   Ready                restart          Stopping (intent)        stop_process
--   Ready                exited           Restarting | Error |     schedule_restart if Restarting
--                                         Stopped (policy)
--   Ready                unhealthy        Restarting | Error       kill_process, schedule_restart
--                                         (policy)                 if Restarting
--   Ready                swapped{pid}     Ready (A+1, pid)         stop_process of attempt A
--   Stopping             spawned          Stopping (pid)           - (stop_process covers it)
--   Stopping             exited,          Stopped, or with the     -, or spawn (A+1)
--                        spawn_failed     intent Starting (A+1)
--   Stopping (intent)    stop             Stopping (no intent)     -
--   Restarting           backoff_elapsed  Starting (A+1)           spawn
--   Restarting           stop             Stopped                  cancel_timer
--   any but Deleted      delete           Deleted                  cancel_build | cancel_probe,
--                                                                  stop_process | cancel_timer
--                                                                  as needed, then release
--
-- User events (start, stop, restart, delete; no attempt) outside that table are REFUSED:
-- reduce returns nil, "cannot <event> a program in state <State>", "ESTATE".
--   event    accepted in                                  refused in
--   start    Created, Stopped, Error                      Building, Starting, Ready,
--                                                         Stopping, Restarting, Deleted
--   stop     Building, Starting, Ready, Restarting,       Created, Stopped, Error, Deleted,
--            Stopping while a restart is under way        Stopping of a plain stop
--   restart  Ready                                        every other state
--   delete   every state but Deleted                      Deleted
--
-- Result events (built, build_failed, spawned, spawn_failed, ready, not_ready, exited,
-- unhealthy, backoff_elapsed) are never refused: they report facts, and races make late
-- ones normal. swapped says that an update's new process, started beside the running
-- one on the same socket, answered its own readiness probe: it becomes the next attempt
-- (already Ready) and the old process is stopped; its exit, of an older attempt, is
-- ignored. One of an older attempt, or one that has no row above for the current
-- state, is IGNORED: reduce returns the very same record table and no effects. Also
-- ignored: a second spawned, and ready/not_ready before spawned. A result of a NEWER
-- attempt than the record's, a missing attempt, an unknown event type or a missing
-- event.now is a bug of the caller and raises.
--
-- Effects, in the order the Host must perform them; each carries `attempt`:
--   build             build the image (a cache hit answers built at once)
--   cancel_build      stop the build of that attempt; it may still answer, ignored
--   spawn             start the process from the built image; answers spawned{pid} or
--                     spawn_failed{error}, then exited{code, signal} when it ends
--   probe{pid, timeout, deadline}  poll GET /watcher/status; answers ready, or
--                     not_ready once event.now would pass deadline
--   cancel_probe      stop that probe
--   (none)            health checks (host.health) run while Ready, if the program has
--                     them; they answer unhealthy{failures, error, healthy_until (the
--                     time of the last passed check, nil if none)} and then stop
--   stop_process{pid, grace}  SIGTERM the process of that attempt, SIGKILL after grace
--                     seconds; the exited of its spawn answers it. pid is nil while the
--                     spawn is in flight: the Host then stops the process as soon as
--                     the spawn returns it (no process leaks from stop-while-starting)
--   kill_process{pid} SIGKILL at once; the process is abandoned (its exit is ignored)
--   schedule_restart{delay, at}  answers backoff_elapsed after delay seconds
--   cancel_timer      cancel that timer
--   release{keep_state}  after every process of the program is gone: free the port
--                     and remove the files (but state/ when keep_state)
local restart_policy = require "host.restart_policy"

local program = {}

-- Replaceable: any table with decide(policy, record, exit), and optionally normalize.
-- A Host sets its policy's (host.policy: the hook `restart`, within its budget).
program.policy_module = restart_policy

program.STOP_GRACE = 10     -- seconds between SIGTERM and SIGKILL
program.READY_TIMEOUT = 30  -- seconds a spawned program has to answer /watcher/status

program.STATES = {
  "Created", "Building", "Starting", "Ready", "Stopping", "Stopped", "Restarting",
  "Error", "Deleted",
}
program.USER_EVENTS = { "start", "stop", "restart", "delete" }
program.RESULT_EVENTS = {
  "built", "build_failed", "spawned", "spawn_failed", "ready", "not_ready", "exited",
  "unhealthy", "backoff_elapsed", "swapped",
}

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local is_state = set_of(program.STATES)
local is_user = set_of(program.USER_EVENTS)
local is_result = set_of(program.RESULT_EVENTS)

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- fields: anything the Host keeps on the record (program_id, ...), and `policy`, a
-- user's restart policy (nil, a mode string or overrides). Returns the record, or
-- nil, message, "EPOLICY" when the policy is invalid (the Host answers 400).
function program.new(fields)
  fields = fields or {}
  local r = copy(fields)
  local policy, err = fields.policy, nil
  local m = program.policy_module
  if m.normalize then
    policy, err = m.normalize(fields.policy)
    if not policy then return nil, err, "EPOLICY" end
  end
  r.policy = policy or {}
  r.state = r.state or "Created"
  r.attempt = r.attempt or 0
  r.restarts = r.restarts or 0
  if not is_state[r.state] then
    error("program.new: unknown state " .. tostring(r.state), 2)
  end
  if math.type(r.attempt) ~= "integer" then
    error("program.new: attempt must be an integer", 2)
  end
  return r
end

local function push(effects, effect)
  effects[#effects + 1] = effect
end

-- Leaving Ready: a run of reset_after seconds forgives the earlier restarts.
local function leave_ready(r, now)
  local reset_after = r.policy.reset_after
  if r.ready_since and type(reset_after) == "number" and now - r.ready_since >= reset_after then
    r.restarts = 0
  end
  r.ready_since = nil
end

local SIGNAL_NAMES = { [1] = "SIGHUP", [2] = "SIGINT", [3] = "SIGQUIT", [4] = "SIGILL", [6] = "SIGABRT",
  [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV", [13] = "SIGPIPE", [15] = "SIGTERM" }

local function mib(bytes)
  return string.format("%g MiB", math.floor(bytes / 1048576 * 10 + 0.5) / 10)
end

-- One line saying what ended the process (an exited event: code, signal, oom_killed,
-- memory_limit, error = the sandbox's own complaint, e.g. the file an exec did not find).
function program.describe_exit(e)
  if e.error ~= nil then return "cannot start: " .. tostring(e.error) end
  local text, notes
  if e.signal ~= nil then
    text, notes = "killed by signal " .. tostring(e.signal), { SIGNAL_NAMES[e.signal] }
  else
    text, notes = e.code ~= nil and "exited with code " .. tostring(e.code) or "exited", {}
  end
  if e.oom_killed then -- the program, or (it exited) one of its processes
    notes[#notes + 1] = (e.signal and "out of memory" or "a process killed for memory")
      .. (e.memory_limit and ", limit " .. mib(e.memory_limit) or "")
  end
  if #notes > 0 then text = text .. " (" .. table.concat(notes, ", ") .. ")" end
  return text
end

-- Why an unhealthy program was ended (its error_msg, and its event's message).
function program.describe_unhealthy(failures, last_error)
  return string.format("unhealthy: %s failed health checks in a row (last: %s)", tostring(failures),
    tostring(last_error))
end

local function stop_effect(r)
  return { type = "stop_process", attempt = r.attempt, pid = r.pid, grace = program.STOP_GRACE }
end

local function spawn(r, effects)
  r.attempt = r.attempt + 1
  r.state = "Starting"
  r.pid = nil
  push(effects, { type = "spawn", attempt = r.attempt })
end

-- A failure while Starting or Ready: the restart policy picks Restarting, Error or
-- Stopped. The process is gone or abandoned either way.
local function failed(r, now, exit, effects)
  local d = program.policy_module.decide(r.policy, r, exit)
  r.pid = nil
  if d.action == "restart" then
    r.state = "Restarting"
    r.restarts = r.restarts + 1
    r.next_restart_at = now + d.delay
    r.error_msg = exit.message
    push(effects, { type = "schedule_restart", attempt = r.attempt, delay = d.delay,
      at = r.next_restart_at })
  elseif d.action == "error" then
    r.state = "Error"
    r.error_msg = d.reason
  elseif d.action == "stop" then
    r.state = "Stopped"
  else
    error("restart policy returned an unknown action " .. tostring(d.action))
  end
end

local function record_exit(r, e)
  r.exit_code = e.code
  r.exit_signal = e.signal
  r.oom_killed = e.oom_killed == true
  r.last_exit_at = e.now
end

-- Handlers change the copy r and push effects. They return nothing when the event is
-- applied, "ignore" or "refuse" otherwise.

local function start(r, e, effects)
  r.attempt = r.attempt + 1
  r.state = "Building"
  r.restarts = 0
  r.error_msg, r.exit_code, r.exit_signal, r.oom_killed, r.pid = nil, nil, nil, nil, nil
  r.restart_intent, r.next_restart_at, r.ready_since = nil, nil, nil
  r.last_exit_at, r.ready_at = nil, nil
  push(effects, { type = "build", attempt = r.attempt })
end

local function delete(r, e, effects)
  local s = r.state
  if s == "Building" then
    push(effects, { type = "cancel_build", attempt = r.attempt })
  elseif s == "Starting" or s == "Ready" then
    if s == "Starting" and r.pid then
      push(effects, { type = "cancel_probe", attempt = r.attempt })
    end
    push(effects, stop_effect(r))
  elseif s == "Restarting" then
    push(effects, { type = "cancel_timer", attempt = r.attempt })
  end
  -- Stopping: the stop under way ends the process; release waits for it.
  push(effects, { type = "release", attempt = r.attempt, keep_state = e.keep_state == true })
  r.state = "Deleted"
  r.pid, r.ready_since, r.next_restart_at, r.restart_intent = nil, nil, nil, nil
end

-- The process of a stop is gone: Stopped, or spawned again for a user restart.
local function stop_done(r, e, effects)
  if e.type == "exited" then record_exit(r, e) end
  if r.restart_intent then
    r.restart_intent = nil
    spawn(r, effects)
  else
    r.state = "Stopped"
    r.pid = nil
  end
end

local on = {}

on.Created = { start = start, delete = delete }
on.Stopped = { start = start, delete = delete }
on.Error = { start = start, delete = delete }

on.Building = {
  delete = delete,
  built = function(r, e, effects)
    r.state = "Starting"
    push(effects, { type = "spawn", attempt = r.attempt })
  end,
  build_failed = function(r, e)
    r.state = "Error"
    r.error_msg = "build failed: " .. tostring(e.error)
  end,
  stop = function(r, e, effects)
    r.state = "Stopped"
    push(effects, { type = "cancel_build", attempt = r.attempt })
  end,
}

-- Starting has two phases: spawning (pid nil) and probing (pid set, probe running).
-- spawn_failed only fits the spawning phase, not_ready only the probing one; exited
-- fits both (a probe, if any, is cancelled).
local function starting_failed(kind)
  return function(r, e, effects)
    local probing = r.pid ~= nil
    local exit = { kind = kind, code = e.code, signal = e.signal, error = e.error }
    if kind == "exited" then
      record_exit(r, e)
      exit.message = program.describe_exit(e)
      if probing then push(effects, { type = "cancel_probe", attempt = r.attempt }) end
    elseif kind == "spawn_failed" then
      if probing then return "ignore" end
      exit.message = "spawn failed: " .. tostring(e.error)
    else
      if not probing then return "ignore" end
      exit.message = string.format("not ready within %g s", program.READY_TIMEOUT)
      -- Still alive but useless: kill it now, its exit will be ignored.
      push(effects, { type = "kill_process", attempt = r.attempt, pid = r.pid })
    end
    failed(r, e.now, exit, effects)
  end
end

on.Starting = {
  delete = delete,
  spawned = function(r, e, effects)
    if r.pid then return "ignore" end
    r.pid = e.pid
    push(effects, { type = "probe", attempt = r.attempt, pid = e.pid,
      timeout = program.READY_TIMEOUT, deadline = e.now + program.READY_TIMEOUT })
  end,
  ready = function(r, e)
    if not r.pid then return "ignore" end
    r.state = "Ready"
    r.ready_since = e.now
    r.ready_at = e.now
    r.error_msg = nil
  end,
  spawn_failed = starting_failed("spawn_failed"),
  exited = starting_failed("exited"),
  not_ready = starting_failed("not_ready"),
  stop = function(r, e, effects)
    if r.pid then push(effects, { type = "cancel_probe", attempt = r.attempt }) end
    r.state = "Stopping"
    push(effects, stop_effect(r))
  end,
}

on.Ready = {
  delete = delete,
  stop = function(r, e, effects)
    leave_ready(r, e.now)
    r.state = "Stopping"
    push(effects, stop_effect(r))
  end,
  restart = function(r, e, effects)
    leave_ready(r, e.now)
    r.state = "Stopping"
    r.restart_intent = true
    push(effects, stop_effect(r))
  end,
  exited = function(r, e, effects)
    leave_ready(r, e.now)
    record_exit(r, e)
    failed(r, e.now, { kind = "exited", code = e.code, signal = e.signal, error = e.error,
      message = program.describe_exit(e) }, effects)
  end,
  -- Alive but failing its health checks: killed now (its exit will be ignored), then
  -- the policy decides as for a crash.
  unhealthy = function(r, e, effects)
    -- Only the run up to its last passed check was a good one (policy reset_after).
    leave_ready(r, e.healthy_until or r.ready_since)
    push(effects, { type = "kill_process", attempt = r.attempt, pid = r.pid })
    failed(r, e.now, { kind = "unhealthy", message = program.describe_unhealthy(e.failures, e.error) }, effects)
  end,
  swapped = function(r, e, effects)
    push(effects, stop_effect(r))
    r.attempt = r.attempt + 1
    r.pid = e.pid
    r.ready_since, r.ready_at = e.now, e.now
    r.restarts = 0
  end,
}

on.Stopping = {
  delete = delete,
  spawned = function(r, e)
    if r.pid then return "ignore" end
    r.pid = e.pid
  end,
  spawn_failed = function(r, e, effects)
    if r.pid then return "ignore" end
    stop_done(r, e, effects)
  end,
  exited = stop_done,
  -- A stop during a restart cancels the respawn; a second plain stop is refused.
  stop = function(r)
    if not r.restart_intent then return "refuse" end
    r.restart_intent = nil
  end,
}

on.Restarting = {
  delete = delete,
  backoff_elapsed = function(r, e, effects)
    r.next_restart_at = nil
    spawn(r, effects)
  end,
  stop = function(r, e, effects)
    r.state = "Stopped"
    r.next_restart_at = nil
    push(effects, { type = "cancel_timer", attempt = r.attempt })
  end,
}

on.Deleted = {}

local function refuse(record, kind)
  return nil, string.format("cannot %s a program in state %s", kind, record.state), "ESTATE"
end

function program.reduce(record, event)
  if type(record) ~= "table" or not is_state[record.state] then
    error("program.reduce: not a program record", 2)
  end
  if type(event) ~= "table" then
    error("program.reduce: event must be a table", 2)
  end
  local kind = event.type
  if not is_user[kind] and not is_result[kind] then
    error("program.reduce: unknown event type " .. tostring(kind), 2)
  end
  if type(event.now) ~= "number" then
    error("program.reduce: event " .. kind .. " has no now", 2)
  end
  if is_result[kind] then
    if math.type(event.attempt) ~= "integer" then
      error("program.reduce: result " .. kind .. " has no attempt", 2)
    end
    if event.attempt > record.attempt then
      error(string.format("program.reduce: %s of attempt %d, but the record is at %d",
        kind, event.attempt, record.attempt), 2)
    end
    if event.attempt < record.attempt then return record, {} end
  end
  local handler = on[record.state][kind]
  if not handler then
    if is_result[kind] then return record, {} end
    return refuse(record, kind)
  end
  local r = copy(record)
  local effects = {}
  local outcome = handler(r, event, effects)
  if outcome == "ignore" then return record, {} end
  if outcome == "refuse" then return refuse(record, kind) end
  r.updated_at = event.now
  return r, effects
end

return program
