-- A spec file that ends, replaces or forgets what it started without stopping it, the
-- ways real specs do; harness_cleanup_spec runs it in a busted of its own under a
-- TMPDIR of its own and checks that nothing of it is left. LEFT_PIDS names a file for
-- the pids it leaves to the harness.
local H = require "scripts.host_harness"
local P = H.P

local function note(pid)
  local f = assert(io.open(assert(os.getenv("LEFT_PIDS")), "a"))
  assert(f:write(pid, "\n"))
  assert(f:close())
end

describe("a spec file that does not clean up", function()
  lazy_setup(function()
    P.tmpdir() -- made at the file's level, never removed
  end)

  it("ends a Host with SIGTERM and starts another on its storage, stopping neither", function()
    local h = H.start_host()
    note(h.proc.pid)
    H.assert_clean_exit(h)
    local again = H.start_host{ storage = h.storage, ports = { h.first, h.last } }
    note(again.proc.pid)
    H.assert_clean_exit(again)
    -- what they wrote stays readable once they have ended
    assert.is_truthy(P.stderr(h.proc):find("hersh host: serving", 1, true))
    assert.is_truthy(P.stderr(again.proc):find("hersh host: serving", 1, true))
  end)

  it("leaves a process running and a folder behind", function()
    note(P.start{ "sleep", "300" }.pid)
    P.write(P.tmpdir() .. "/data", "left\n")
  end)
end)
