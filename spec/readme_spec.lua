-- The README's walkthrough, run as written: the shell blocks marked
-- `<!-- walkthrough -->` (the client: deploy, ps, send, logs -f, an update in place,
-- rollback, stop, rm; and one section of curl on the REST API) are run one after the
-- other in one bash (set -euo pipefail) against a real `hersh host` of the test's own
-- (temporary storage, --port 0), with HERSH_HOST pointing at it in place of the default
-- http://127.0.0.1:9000 and this build's hersh on PATH. The Host is stopped and its
-- directory removed at the end; every wait is bounded.
local H = require "scripts.host_harness"
local P = H.P

local defer = P.defer -- runs fn when the test ends, passed or failed
local has = P.has

local DEFAULT_HOST = "${HERSH_HOST:-http://127.0.0.1:9000}"
local BUILD_PATH = 'export PATH="$PWD/build:$PATH"' -- the README's client, this build's in the spec

-- The walkthrough blocks of the README, in order.
local function walkthrough()
  local blocks, marked, block = {}, false, nil
  for line in assert(P.read("README.md"), "no README.md"):gmatch("([^\n]*)\n") do
    if block then
      if line:match("^```%s*$") then
        blocks[#blocks + 1] = table.concat(block, "\n")
        block = nil
      else
        block[#block + 1] = line
      end
    elseif line:match("^<!%-%- walkthrough %-%->%s*$") then
      marked = true
    elseif marked and line:match("^```") then
      assert(line:match("^```sh%s*$"), "a walkthrough block is not a sh block: " .. line)
      block, marked = {}, false
    elseif marked and line:match("%S") then
      error("a walkthrough mark is not followed by a code block: " .. line)
    end
  end
  assert(not block, "the README ends inside a walkthrough block")
  return blocks
end


-- The engine example: the script its heredoc writes, the `hersh run` line, what it prints,
-- and the plain lua5.4 line.
local function engine_example()
  local text = assert(P.read("README.md"), "no README.md")
  local block, after = text:match("<!%-%- engine example %-%->\n```sh\n(.-)\n```\n(.*)$")
  assert(block, "no <!-- engine example --> sh block")
  local path, script = block:match("cat > (%S+) <<'LUA'\n(.-\n)LUA\n")
  local run_line = block:match("\n(%./build/hersh run [^\n]*)$")
  local prints = after:match("^%s*prints%s*\n```\n(.-\n)```")
  local plain_line = after:match("```sh\n([^\n]*lua5%.4 [^\n]*)\n```")
  assert(script and run_line and prints and plain_line, "the engine example is not as expected")
  return { path = path, script = script, run_line = run_line, prints = prints, plain_line = plain_line }
end

describe("README.md", function()
  it("its engine example prints what it says, under `hersh run` and under plain lua5.4", function()
    local ex = engine_example()
    local dir = P.tmpdir()
    defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
    local file = dir .. "/counter.lua"
    P.write(file, ex.script)
    -- The README's own lines, with this build and this file; `hersh run` on any free port,
    -- as 8080 may be taken on a shared machine.
    local function adapt(line)
      line = line:gsub("%./build/", function() return P.build .. "/" end)
      return (line:gsub(ex.path:gsub("%p", "%%%0"), function() return file end))
    end
    for _, cmd in ipairs { adapt(ex.run_line) .. " --port 0", adapt(ex.plain_line) } do
      local proc = P.start { "bash", "-c", cmd }
      defer(function() P.stop(proc) end)
      assert.equal(0, P.wait_exit(proc), cmd .. "\n" .. P.stderr(proc))
      assert.equal(ex.prints, P.stdout(proc), cmd .. "\n" .. P.stderr(proc))
      assert.is_nil(P.sanitizer_report(proc))
    end
  end)


  it("marks a walkthrough of the client's flow and one curl section, with the Host's address in one place", function()
    local blocks = walkthrough()
    assert.is_true(#blocks >= 7, #blocks .. " blocks")
    local all = table.concat(blocks, "\n")
    assert.equal("export HERSH_HOST=" .. DEFAULT_HOST, blocks[1]:match("^[^\n]*"))
    assert.is_true(has(blocks[1], BUILD_PATH), blocks[1])
    for _, step in ipairs {
      'hersh deploy "$DEMO"', "hersh ps", "hersh send demo", "hersh logs demo", "hersh logs -f demo",
      "hersh events demo", "hersh rollback demo", "hersh stop demo", "hersh rm demo",
      'curl -s "$HERSH_HOST/programs/demo"', '"$HERSH_HOST/programs/demo/events?follow=false',
    } do
      assert.is_true(has(all, step), "no " .. step)
    end
    -- an update in place: a file of the deployed folder is edited, then deployed again
    assert.truthy(all:match('sed %-i [^\n]*"%$DEMO/main%.lua"\nhersh deploy "%$DEMO"'), "no edit and deploy again")
    -- 9000 only as the default: a Host elsewhere is just HERSH_HOST=...
    local _, n = all:gsub("9000", "")
    assert.equal(1, n)
    local text = P.read("README.md")
    assert.is_true(has(text, "[docs/cli.md](docs/cli.md)"), "no link to docs/cli.md")
    assert.is_true(has(text, "The web dashboard: [docs/ui.md](docs/ui.md)"), "no line for docs/ui.md")
    assert.is_false(has(text, "examples/json.lua") or has(text, "deploy.sh"), "the README still uses the scripts")
  end)

  it("its walkthrough runs as written against a real Host", function()
    local blocks = walkthrough()
    local h = H.test_host()
    local parts = { "set -euo pipefail", "exec 2>&1" } -- the client's progress goes to stderr
    local bin = P.build:sub(1, 1) == "/" and P.build or "$PWD/" .. P.build:gsub("^%./", "")
    for i, b in ipairs(blocks) do
      parts[#parts + 1] = "echo '=== block " .. i .. "'"
      parts[#parts + 1] = (b:gsub(BUILD_PATH:gsub("%p", "%%%0"), function() return 'export PATH="' .. bin .. ':$PATH"' end))
    end
    local script = h.root .. "/walkthrough.sh"
    P.write(script, table.concat(parts, "\n") .. "\n")
    local run = P.start { "env", "-u", "LD_PRELOAD", "HERSH_HOST=" .. h.url, "bash", script }
    defer(function() P.stop(run) end)
    local status = P.wait_exit(run, 300)
    local out = P.stdout(run)
    assert.equal(0, status, out .. P.stderr(run))

    local got, current = {}, nil
    for line in out:gmatch("([^\n]*)\n") do
      local i = line:match("^=== block (%d+)$")
      if i then
        current = tonumber(i)
        got[current] = ""
      elseif current then
        got[current] = got[current] .. line .. "\n"
      end
    end
    assert.equal(#blocks, #got, out)
    local want = {
      { "NAME  ID" },                                                               -- ps
      { "demo: created ", "demo: ready in ", "demo is Ready at http://127.0.0.1:", "\ndemo  " }, -- deploy
      { "sent to demo", "stdout Counter: " },                                       -- send, logs
      { "demo: revision 2 is running", "stdout Simple Counter 1.1.0 started", "demo  revision 2 is running" }, -- update
      { "rolled back to revision 1", "stdout Simple Counter 1.0.0 started\n=== " },  -- rollback
      { '"name":"demo"', '"status":"message sent"', '"kind":"exited"', '"exit_signal":9', '"kind":"restarting"' }, -- curl
      { "demo is Stopped", "stdout Cleanup: stopped at", "demo deleted" },          -- stop, rm
    }
    got[5] = got[5] .. "=== " -- where the block's output ends
    -- The walkthrough cleans up after itself: no program is left.
    assert.equal(0, P.get(h.port, "/programs").json.count)

    H.assert_clean_exit(h) -- exit 0, no sanitizer report, no sandbox left
  end)
end)
