-- The development driver: no isolation at all. The program runs as a plain child
-- in the image's directory, with /state pointing nowhere special. It exists for
-- machines without bubblewrap, is used only when asked for by name, and says so.
local dev = { name = "dev", insecure = true }

dev.skeleton = { hersh = { dirs = {}, files = {}, links = {} }, scratch = { dirs = {}, files = {}, links = {} } }

function dev.check()
  io.stderr:write("hersh: WARNING: the 'dev' sandbox driver isolates nothing: programs run unconfined\n")
  return true
end

function dev.command(spec)
  local argv = {}
  for _, a in ipairs(spec.argv) do argv[#argv + 1] = a end
  return argv
end

return dev
