-- A restarted Host serves first and starts the programs meant to run afterwards, a few
-- at a time (host.lua, Host:start_later): they all come back Ready, each showing its
-- real state meanwhile; and a SIGTERM while some still wait for their start ends the
-- Host cleanly, starting none of them and leaving no process behind. A real
-- `hersh host`, real programs in the sandbox; never how long anything took.
local H = require "scripts.host_harness"
local P = H.P

-- More than host.STARTING (32) at once: some wait until others are Ready.
local N = 40
local KNOWN = { Stopped = true, Building = true, Starting = true, Ready = true }

describe("hersh host: programs meant to run start after the Host serves", function()
  local root, first, last, ids = nil, nil, nil, {}

  lazy_setup(function()
    root = H.public_tmpdir()
    first, last = H.free_range(N + 2)
  end)
  lazy_teardown(function()
    H.kill_programs(ids)
    if root then H.sh("rm -rf " .. P.quote(root)) end
  end)

  local function host()
    local h = H.start_host{ storage = root .. "/storage", ports = { first, last } }
    h.ids = ids
    return h
  end

  local function all_ready(h)
    for _, id in ipairs(ids) do H.wait_state(h, id, "Ready") end
  end

  it("brings every program back Ready after a restart, showing a real state meanwhile", function()
    local h = host()
    for i = 1, N do
      ids[i] = H.create(h, H.counter_body("back" .. i)).program_id
      H.ok_json(H.act(h, ids[i], "start"), 202, "start")
    end
    all_ready(h)
    H.terminate(h)()
    h = host()
    local doc = H.ok_json(H.call(h, "GET", "/programs"), 200, "list right after serving")
    assert.equal(N, doc.count)
    for _, rec in ipairs(doc.programs) do
      assert.is_true(KNOWN[rec.state] == true, rec.program_id .. " is " .. tostring(rec.state))
    end
    all_ready(h)
    H.terminate(h)()
  end)

  it("ends cleanly on a SIGTERM while programs wait for their start, and starts them next time", function()
    local h = host()
    assert.equal(200, H.call(h, "GET", "/health").status)
    local check = H.terminate(h) -- at once: some are still waiting for their start
    check()
    h = host()
    all_ready(h)
    H.terminate(h)()
  end)
end)
