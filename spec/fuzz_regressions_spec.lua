-- Plain regression tests for what the fuzz targets (fuzz/, docs/fuzzing.md) found;
-- their inputs are kept in fuzz/regressions/<target>/ too.
local P = require "scripts.process"
local dockerfile = require "host.dockerfile"
local host = require "host.host"

describe("found by fuzzing", function()
  -- trim keeps a form feed, and the instruction match found no word: a Lua error
  -- (the API's POST /programs answered 500 with it) instead of a refusal (lua_host).
  it("a Dockerfile line led by a form feed is refused, naming its line", function()
    local cases = {
      { "\fFROM hersh\nCMD [\"x\"]", 'Dockerfile line 1: a line must start with an instruction, not "\\x0cFROM hersh"' },
      { "FROM hersh\n\f\nCMD [\"x\"]", 'Dockerfile line 2: a line must start with an instruction, not "\\x0c"' },
      { "FROM hersh\n \v \t\n", 'Dockerfile line 2: a line must start with an instruction, not "\\x0b"' },
    }
    for _, case in ipairs(cases) do
      local plan, err, code = dockerfile.parse(case[1])
      assert.is_nil(plan)
      assert.equal(case[2], err)
      assert.equal("EDOCKERFILE", code)
    end
    local req, err = host.validate { user_id = "u", dockerfile = "\fFROM hersh\nCMD [\"x\"]" }
    assert.is_nil(req)
    assert.same({ status = 400, message = 'Dockerfile line 1: a line must start with an instruction, not "\\x0cFROM hersh"' }, err)
  end)

  it("core.run_for returns on an idle loop whose clock went stale (host_http)", function()
    local proc = P.start { P.hersh, "run", "--port", "0", "spec/scripts/run_for_idle.lua" }
    finally(function() P.stop(proc) end)
    local status = P.wait_exit(proc, P.WAIT)
    assert.equal(0, status, "hersh run did not end in time or failed: " .. P.stderr(proc))
    assert.equal("returned\n", P.stdout(proc))
  end)
end)
