-- Sandbox drivers by name. Each is a table: name, check() -> true | nil, why,
-- spawn(spec, opts) -> process | nil, err, code (sys.spawn(opts) of spec in the
-- sandbox: the driver decides the command, its environment and descriptors; the
-- program's environment is spec.env, set inside), stop(process, grace) (SIGTERM to
-- what runs in the sandbox, SIGKILL of all that is left after grace seconds; the
-- process's on_exit still reports the end) and skeleton (the mount points an image
-- needs). A driver that cannot hand the program its published socket as fd 3 names
-- listen_path instead: the program listens on a unix socket there (HERSH_LISTEN_UNIX),
-- made in spec.api_dir on the host, and the Host relays the port to it.
-- Another driver (an OCI runtime, a remote scheduler) is another module with these
-- fields (swarm: a Docker Swarm service; it also has release(program_id, keep_state),
-- called when a program is deleted). There is no unsandboxed driver: programs never
-- run unconfined.
local sandbox = {}

local known = { bwrap = "host.sandbox.bwrap", gvisor = "host.sandbox.gvisor", swarm = "host.sandbox.swarm" }

-- The names a program's "isolation" may take, in the order they are listed. A Host
-- whose driver cannot run here refuses such a create, naming why (sandbox.unavailable).
sandbox.names = { "bwrap", "gvisor", "swarm" }

sandbox.default = "bwrap"

function sandbox.known(name)
  return type(name) == "string" and known[name] ~= nil
end

-- The driver of a program whose own cannot run on this Host: every spawn (and build)
-- is refused with why; the program is never run under another driver instead.
function sandbox.unavailable(name, why)
  local refuse = function() return nil, "isolation " .. name .. " is not available: " .. why, "ESTATE" end
  return { name = name, check = refuse, spawn = refuse, stop = function() end,
    skeleton = require("host.sandbox.bwrap").skeleton }
end

function sandbox.get(name)
  name = name or sandbox.default
  local module = known[name]
  if not module then return nil, "unknown sandbox driver '" .. tostring(name) .. "'" end
  local driver = require(module)
  local ok, why = driver.check()
  if not ok then return nil, why end
  return driver
end

return sandbox
