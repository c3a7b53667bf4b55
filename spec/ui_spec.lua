-- The dashboard in a real browser (issue 15): each test starts a real Host and runs
-- one flow of tests/ui/e2e.mjs, which drives Debian's /usr/bin/chromium headless with
-- playwright-core (tests/ui/package.json; scripts/setup runs npm ci). Without chromium,
-- node or tests/ui/node_modules each test says why and counts as skipped, never passed.
-- Screenshots go to <build>/ui-screens/; with HERSH_UI_DOCS_SCREENS=1 the light and
-- dark ones are copied to docs/ui/ as well (docs/ui.md shows them). The flows print
-- their measurements (render times, badge delay) on lines "e2e: ...".
local H = require "scripts.host_harness"
local P = H.P

local E2E = "tests/ui/e2e.mjs"
local SCREENS = P.build .. "/ui-screens"
local TIMEOUT = 900 -- seconds one flow may take in all (the sanitizer build is slow)

-- Why the browser test cannot run here, or nil.
local function cannot_run()
  if not P.exists("/usr/bin/chromium") then return "no /usr/bin/chromium (Debian's chromium; scripts/setup installs it)" end
  if not H.sh("command -v node >/dev/null 2>&1") then return "no node (Debian's nodejs; scripts/setup installs it)" end
  if not P.exists("tests/ui/node_modules/playwright-core/package.json") then
    return "no tests/ui/node_modules/playwright-core (scripts/setup runs npm ci in tests/ui)"
  end
  return nil
end

local function shell_env(env)
  local words = {}
  for k, v in pairs(env) do words[#words + 1] = P.quote(k .. "=" .. v) end
  return table.concat(words, " ")
end

-- Runs one flow against the Host h; asserts it passed. Its "e2e:" lines are printed.
-- node runs without the sanitizers' LD_PRELOAD (only the Host is instrumented).
local function run_flow(flow, h, env)
  env = env or {}
  env.HERSH_URL = h.url
  env.UI_FIXTURE = H.FIXTURE
  env.UI_SCREENS = SCREENS
  env.UI_WAIT = tostring(H.WAIT * 1000)
  if h.token then env.HERSH_TOKEN = h.token end
  os.remove(SCREENS .. "/FAILED-" .. flow .. ".png") -- the page as a failure left it, from an earlier run
  local out = P.tmpdir()
  local cmd = string.format("env -u LD_PRELOAD %s timeout -k 10 %d node %s %s >%s/out 2>&1",
    shell_env(env), TIMEOUT, E2E, flow, P.quote(out))
  local ok = os.execute(cmd) == true
  local text = P.read(out .. "/out") or ""
  H.sh("rm -rf " .. P.quote(out))
  for line in text:gmatch("[^\n]+") do
    if line:match("^e2e:") then print(line) end
  end
  -- Every program the flow made is known to the teardown (which kills what is left).
  local list = H.call(h, "GET", "/programs")
  for _, p in ipairs(list.json and list.json.programs or {}) do h.ids[#h.ids + 1] = p.program_id end
  assert(ok, "the " .. flow .. " flow failed:\n" .. text)
  H.assert_clean_exit(h) -- no program left behind, no sanitizer report
  if os.getenv("HERSH_UI_DOCS_SCREENS") == "1" then
    assert(H.sh("mkdir -p docs/ui && cp " .. P.quote(SCREENS) .. "/*-light.png " .. P.quote(SCREENS) .. "/*-dark.png docs/ui/"))
  end
end

describe("the dashboard in a real browser", function()
  local why = cannot_run()
  if why then
    it("runs (skipped: " .. why .. ")", function()
      print("ui_spec: skipped: " .. why)
      pending(why)
    end)
    return
  end

  it("creates a program from the form with files from disk and drives it: Ready without a reload, "
    .. "program and watcher pages, a message changes the counter, logs followed, stop, start, restart, delete",
    function()
      local first, last = H.free_range(32) -- more than it needs: a few may be taken meanwhile
      run_flow("lifecycle", H.test_host{ ports = { first, last } })
    end)

  it("asks for the token once, says when it is refused, and keeps it for the tab", function()
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    local token = "ui-e2e-token-" .. tostring(os.time())
    P.write(dir .. "/token", token .. "\n")
    assert(H.sh("chmod 600 " .. P.quote(dir .. "/token")))
    local h = H.test_host{ token_file = dir .. "/token" }
    h.token = token
    run_flow("auth", h)
  end)

  it("shows a program in Error with its reason", function()
    run_flow("error", H.test_host())
  end)

  it("shows Stopping on the dashboard and the program page from the Host's stopping event", function()
    run_flow("stopping", H.test_host())
  end)

  it("shows attacker text (file names and contents, env, a build error, logs, events, watcher values) "
    .. "as text on every page: no element made from it, no dialog", function()
    run_flow("xss", H.test_host())
  end)

  it("renders and filters 300 and 1,000 programs", function()
    local first, last = H.free_range(1010, 30000, 32000) -- apart from the other specs' ports
    run_flow("many", H.test_host{ ports = { first, last } })
  end)
end)
