-- GET /watcher/metrics end to end: `hersh run` in a real process, real HTTP on loopback,
-- the answer parsed as Prometheus text and checked with `promtool check metrics` when
-- it is installed (scripts/setup installs prometheus). Then the same route through a
-- real Host's proxy, with its token. Every wait is bounded; processes and directories
-- go away when each test ends (P.defer).
local P = require "scripts.process"
local H = require "scripts.host_harness"

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local ODD_ID = 'odd"id\\x\239\191\189' -- the script's id, its byte \255 read back as U+FFFD

local function have_promtool()
  return os.execute("command -v promtool >/dev/null 2>&1") == true
end

-- `promtool check metrics` on text: true, or false and what it said. nil when promtool
-- is missing: the caller says so and does not count the check.
local function promtool(text)
  if not have_promtool() then return nil end
  local dir = P.tmpdir()
  P.write(dir .. "/metrics", text)
  local p = assert(io.popen("env -u LD_PRELOAD promtool check metrics < " .. P.quote(dir .. "/metrics") .. " 2>&1"))
  local said = p:read("a")
  local ok = p:close()
  os.execute("rm -rf " .. P.quote(dir))
  return ok == true, said
end

-- A label set {name=value} from its text inside the braces, undoing the escapes.
local function parse_labels(text)
  local labels, i = {}, 1
  while i <= #text do
    local name, after = text:match("^([%a_][%w_]*)=\"()", i)
    assert(name, "bad label at " .. i .. " in " .. text)
    local value = {}
    i = after
    while true do
      local c = text:sub(i, i)
      assert(c ~= "", "unterminated label value in " .. text)
      if c == "\\" then
        local e = text:sub(i + 1, i + 1)
        value[#value + 1] = e == "n" and "\n" or e
        i = i + 2
      elseif c == '"' then
        i = i + 1
        break
      else
        value[#value + 1] = c
        i = i + 1
      end
    end
    labels[name] = table.concat(value)
    if text:sub(i, i) == "," then i = i + 1 end
  end
  return labels
end

-- The exposition as {types = {family = type}, samples = {{name, labels, value}}};
-- raises on a line that is neither a comment nor a sample.
local function parse(text)
  local doc = { types = {}, samples = {} }
  for line in text:gmatch("[^\n]+") do
    local family, kind = line:match("^# TYPE (%S+) (%S+)$")
    if family then
      doc.types[family] = kind
    elseif not line:match("^# HELP ") then
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      assert(name, "not a sample: " .. line)
      local labels = {}
      local inner, value = rest:match("^{(.*)} (%S+)$")
      if inner then labels = parse_labels(inner) else value = rest:match("^ (%S+)$") end
      assert(value, "no value: " .. line)
      doc.samples[#doc.samples + 1] = { name = name, labels = labels, value = tonumber(value) or value }
    end
  end
  return doc
end

-- The value of the one sample `name` whose labels include `want`; raises if none or several.
local function value(doc, name, want)
  local found
  for _, s in ipairs(doc.samples) do
    local match = s.name == name
    for k, v in pairs(want or {}) do match = match and s.labels[k] == v end
    if match then
      assert(found == nil, "several samples " .. name)
      found = s.value
    end
  end
  assert(found ~= nil, "no sample " .. name)
  return found
end

local function sum(doc, name)
  local n = 0
  for _, s in ipairs(doc.samples) do
    if s.name == name then n = n + s.value end
  end
  return n
end

local function get_metrics(port)
  local res = P.get(port, "/watcher/metrics")
  assert.equal(200, res.status, res.body)
  assert.equal(CONTENT_TYPE, res.headers["content-type"])
  return res.body, parse(res.body)
end

-- promtool's verdict on text, or a note that it could not be asked.
local function check_with_promtool(text, what)
  local ok, said = promtool(text)
  if ok == nil then
    print("watcher_metrics_spec: promtool is missing (scripts/setup installs prometheus): " .. what
      .. " not checked with it")
    return
  end
  assert.is_true(ok, what .. ": promtool check metrics: " .. tostring(said))
end

describe("GET /watcher/metrics", function()
  it("counts runs by trigger and outcome, with a duration histogram, memo and context sizes", function()
    local proc = P.run_with_dir("spec/scripts/metrics_main.lua")
    local port, id = P.announced(proc)
    assert.equal('odd"id\\x', id:sub(1, 8))
    for i = 1, 5 do assert.equal(200, P.send(port, "m" .. i).status) end
    assert.equal(200, P.send(port, "fail").status)
    local text, doc
    assert.is_true(P.wait_for(function()
      text, doc = get_metrics(port)
      return sum(doc, "hersh_watcher_runs_total") >= 7
    end, P.WAIT) == true, "the runs were never counted: " .. tostring(text))

    local me = { watcher = ODD_ID }
    local function runs(trigger, outcome)
      return value(doc, "hersh_watcher_runs_total", { watcher = ODD_ID, trigger = trigger, outcome = outcome })
    end
    assert.equal(1, runs("init", "ok"))
    assert.equal(5, runs("message", "ok"))
    assert.equal(1, runs("message", "failed"))
    assert.equal(0, runs("message", "timeout"))
    assert.equal(7, sum(doc, "hersh_watcher_runs_total"))
    assert.equal(1, value(doc, "hersh_watcher_failed_runs_total", me))
    assert.equal(1, value(doc, "hersh_watcher_consecutive_failures", me))
    assert.equal(1, value(doc, "hersh_watcher_state", { watcher = ODD_ID, state = "Ready" }))
    assert.equal(1, sum(doc, "hersh_watcher_state"))

    -- the histogram: cumulative buckets ending in +Inf = _count = runs, a positive _sum
    assert.equal("histogram", doc.types.hersh_watcher_run_duration_seconds)
    local last = 0
    for _, s in ipairs(doc.samples) do
      if s.name == "hersh_watcher_run_duration_seconds_bucket" then
        assert.is_true(s.value >= last, "buckets not cumulative at le=" .. s.labels.le)
        last = s.value
      end
    end
    assert.equal(7, value(doc, "hersh_watcher_run_duration_seconds_bucket", { le = "+Inf" }))
    assert.equal(7, value(doc, "hersh_watcher_run_duration_seconds_count", me))
    assert.is_true(value(doc, "hersh_watcher_run_duration_seconds_sum", me) > 0)

    assert.equal(1, value(doc, "hersh_watcher_context_entries", me))
    assert.equal(#'{"seen":6}', value(doc, "hersh_watcher_context_bytes", me))
    assert.equal(1, value(doc, "hersh_watcher_memo_entries", me))
    for _, q in ipairs { "watcher", "user", "var" } do
      assert.equal(0, value(doc, "hersh_watcher_queue_depth", { watcher = ODD_ID, queue = q }))
    end
    assert.is_true(value(doc, "hersh_watcher_queue_capacity", me) > 0)
    assert.is_true(value(doc, "hersh_watcher_start_time_seconds", me) > 1.6e9)
    for _, family in ipairs { "hersh_watcher_runs_total", "hersh_watcher_failed_runs_total" } do
      assert.equal("counter", doc.types[family])
    end
    check_with_promtool(text, "the WatcherAPI's metrics")
    assert.is_true(P.signal(proc, "TERM"))
    assert.equal(0, P.wait_exit(proc), P.stderr(proc))
    assert.is_nil(P.sanitizer_report(proc))
  end)

  it("answers HEAD, refuses other methods with 405 and a JSON error", function()
    local proc = P.run_with_dir("spec/scripts/metrics_main.lua")
    local port = P.announced(proc)
    local head = P.http(port, "HEAD", "/watcher/metrics")
    assert.equal(200, head.status)
    assert.equal(CONTENT_TYPE, head.headers["content-type"])
    for _, method in ipairs { "POST", "PUT", "DELETE" } do
      local res = P.http(port, method, "/watcher/metrics")
      assert.equal(405, res.status, method .. ": " .. res.body)
      assert.equal("GET, HEAD", res.headers["allow"], method)
      assert.is_table(res.json, method .. ": " .. res.body)
      assert.is_truthy(res.json.error:find("/watcher/metrics", 1, true), res.body)
    end
  end)

  it("through the Host's proxy: the token is needed, the content type is kept", function()
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/token", "metrics-token\n")
    local h = H.test_host { token_file = dir .. "/token" }
    h.token = "metrics-token"
    local id = H.create(h, H.counter_body("metrics")).program_id
    H.start_ready(h, id)
    local path = "/programs/" .. id .. "/proxy/watcher/metrics"
    h.token = nil
    H.assert_error(H.call(h, "GET", path), 401, "no token")
    h.token = "wrong"
    H.assert_error(H.call(h, "GET", path), 401, "wrong token")
    h.token = "metrics-token"
    local res = H.call(h, "GET", path)
    assert.equal(200, res.status, res.body)
    assert.equal(CONTENT_TYPE, res.headers["content-type"])
    local doc = parse(res.body)
    assert.equal(1, value(doc, "hersh_watcher_runs_total", { watcher = "counter", trigger = "init", outcome = "ok" }))
    check_with_promtool(res.body, "the proxied metrics")
    assert.equal(200, H.call(h, "DELETE", "/programs/" .. id).status)
  end)
end)
