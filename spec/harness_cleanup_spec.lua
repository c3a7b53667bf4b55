-- The spec harness leaves nothing behind: a process's folder goes once the process has
-- ended (its output stays readable), and at a spec file's end every process it left
-- running is stopped and every folder it made removed. Real processes, a real Host and
-- a real busted run of spec/scripts/leaves_behind.lua, under a TMPDIR of its own.
local H = require "scripts.host_harness"
local P = H.P

local function names(dir)
  local p = assert(io.popen(P.PLAIN .. "ls -A " .. P.quote(dir)))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

describe("the spec harness", function()
  it("removes a process's folder once it has ended, and keeps what it wrote readable", function()
    local proc = P.start{ "sh", "-c", "echo out; echo err >&2; exit 3" }
    P.defer(function() P.stop(proc) end)
    assert.equal(3, P.wait_exit(proc))
    assert.is_false(P.exists(proc.dir), proc.dir .. " is left")
    assert.equal("out\n", P.stdout(proc))
    assert.equal("err\n", P.stderr(proc))
    P.stop(proc)
    assert.equal(3, P.status(proc))
    assert.equal("err\n", P.stderr(proc))
  end)

  it("leaves nothing of a spec file that ends, replaces or forgets what it started", function()
    local out = H.public_tmpdir()
    P.defer(function() H.sh(P.PLAIN .. "rm -rf " .. P.quote(out)) end)
    local tmp, pids = out .. "/tmp", out .. "/pids"
    assert.is_true(H.sh(P.PLAIN .. "mkdir -m 1777 " .. P.quote(tmp)))
    local run = P.start{ "env", "TMPDIR=" .. tmp, "LEFT_PIDS=" .. pids, "lua5.4", "/usr/bin/busted",
      "--cpath=" .. P.build .. "/lua/?.so;", "spec/scripts/leaves_behind.lua" }
    P.defer(function() P.stop(run) end)
    local code = P.wait_exit(run, 180)
    local report = P.stdout(run) .. P.stderr(run)
    local noted = {}
    for pid in (P.read(pids) or ""):gmatch("%d+") do noted[#noted + 1] = pid end
    P.defer(function() -- what a broken harness left: those processes, by pid, if still them
      for _, pid in ipairs(noted) do
        local cmdline = P.read("/proc/" .. pid .. "/cmdline") or ""
        if cmdline == "sleep\x00300\x00" or P.has(cmdline, tmp) then H.sh("kill -KILL " .. pid .. " 2>/dev/null") end
      end
    end)
    assert.equal(0, code, report)
    assert.is_truthy(report:find("2 passed, 0 failed", 1, true), report)

    assert.same({}, names(tmp), "left in its TMPDIR")
    assert.same({}, P.processes_under(tmp), "still running")
    assert.equal(3, #noted, "the pids it noted")
    for _, pid in ipairs(noted) do assert.is_true(H.gone(pid), "process " .. pid .. " is still running") end
  end)
end)
