-- Sandbox drivers by name. Each is a table: name, check() -> true | nil, why,
-- spawn(spec, opts) -> process | nil, err, code (sys.spawn(opts) of spec in the
-- sandbox: the driver decides the command, its environment and descriptors; the
-- program's environment is spec.env, set inside), stop(process, grace) (SIGTERM to
-- what runs in the sandbox, SIGKILL of all that is left after grace seconds; the
-- process's on_exit still reports the end) and skeleton (the mount points an image
-- needs).
-- Another driver (an OCI runtime, a remote scheduler) is another module with these
-- fields. There is no unsandboxed driver: programs never run unconfined.
local sandbox = {}

local known = { bwrap = "host.sandbox.bwrap" }

sandbox.default = "bwrap"

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
