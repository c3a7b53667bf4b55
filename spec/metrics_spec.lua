-- The Host's GET /metrics: the Prometheus text format (checked by the real promtool),
-- the values a real Host reports for real programs (built, Ready, crashed), the token
-- it needs like every route, and a real Prometheus on loopback scraping it. Every wait
-- is bounded; what a test starts it stops by pid.
local H = require "scripts.host_harness"
local P = H.P
local metrics = require "host.metrics"

local has = H.has
local call, create, act = H.call, H.create, H.act
local counter_body, start_ready, wait_state = H.counter_body, H.start_ready, H.wait_state
local assert_error, ok_json = H.assert_error, H.ok_json

local TOKEN = "metrics-spec-token-0123456789abcdef"
local CRASH = assert(P.read("spec/programs/crash/Dockerfile"))

local function which(name)
  local f = io.popen("command -v " .. name .. " 2>/dev/null")
  local path = f:read("l")
  f:close()
  return path
end

-- promtool check metrics on `text`: ok, and what it said.
local function promtool(text)
  local dir = P.tmpdir()
  P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
  P.write(dir .. "/m.txt", text)
  local f = io.popen("promtool check metrics < " .. P.quote(dir .. "/m.txt") .. " 2>&1; echo rc=$?")
  local out = f:read("a")
  f:close()
  return out:match("rc=0%s*$") ~= nil, out
end

-- The value of the series written exactly as `series` (name and labels), or nil.
local function value(text, series)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then return tonumber(line:sub(#series + 2)) end
  end
end

local function token_host()
  local dir = P.tmpdir()
  P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
  P.write(dir .. "/token", TOKEN .. "\n")
  local h = H.test_host{ token_file = dir .. "/token" }
  h.token = TOKEN
  h.token_file = dir .. "/token"
  return h
end

local function scrape(h)
  local res = call(h, "GET", "/metrics")
  assert.equal(200, res.status, res.body)
  assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
  return res.body
end

describe("host.metrics", function()
  it("writes HELP and TYPE, escapes label values, and cumulative histogram buckets up to +Inf", function()
    local r = metrics.registry()
    local c = r:counter("t_requests_total", "Requests.\nSecond line \\ here.", { "path" })
    c:inc({ path = 'a "quoted" \\ path\nwith a newline' }, 2)
    local hist = r:histogram("t_seconds", "Latency.", nil, { 0.1, 1 })
    hist:observe(nil, 0.05)
    hist:observe(nil, 0.5)
    hist:observe(nil, 7)
    local text = r:render()
    assert.is_truthy(has(text, "# HELP t_requests_total Requests.\\nSecond line \\\\ here.\n"))
    assert.is_truthy(has(text, "# TYPE t_requests_total counter\n"))
    assert.is_truthy(has(text, 't_requests_total{path="a \\"quoted\\" \\\\ path\\nwith a newline"} 2\n'))
    assert.equal(1, value(text, 't_seconds_bucket{le="0.1"}'))
    assert.equal(2, value(text, 't_seconds_bucket{le="1"}'))
    assert.equal(3, value(text, 't_seconds_bucket{le="+Inf"}'))
    assert.equal(7.55, value(text, "t_seconds_sum"))
    assert.equal(3, value(text, "t_seconds_count"))
    if not which("promtool") then
      return pending("promtool is not installed (scripts/setup installs prometheus): the format was not checked by it")
    end
    local ok, out = promtool(text)
    assert.is_true(ok, out)
  end)

  it("refuses a bad metric or label name (a caller's bug)", function()
    local r = metrics.registry()
    assert.has_error(function() r:counter("bad-name", "x") end)
    assert.has_error(function() r:counter("ok", "x", { "le" }) end)
    assert.has_error(function() r:histogram("h", "x", nil, { 1, 0.5 }) end)
  end)
end)

describe("GET /metrics", function()
  it("needs the token like every route but /health, and only answers GET", function()
    local h = token_host()
    local none = { port = h.port, ids = h.ids }
    assert_error(call(none, "GET", "/metrics"), 401, "no token")
    assert_error(call({ port = h.port, token = "wrong", ids = h.ids }, "GET", "/metrics"), 401, "wrong token")
    assert_error(call(h, "POST", "/metrics"), 405, "POST")
    assert_error(call(h, "DELETE", "/metrics"), 405, "DELETE")
    scrape(h)
  end)

  it("labels requests with the route pattern: distinct paths an attacker sends add no series", function()
    local h = token_host()
    local before = scrape(h)
    for i = 1, 40 do
      call(h, "GET", "/junk-" .. i .. "/x%22y")
      call(h, "GET", "/programs/no-such-" .. i .. "/proxy/a" .. i)
      call(h, "POST", "/programs/no-such-" .. i .. "/frob" .. i)
    end
    local text = scrape(h)
    assert.is_falsy(has(text, "junk-"), text)
    assert.is_falsy(has(text, "no-such-"), text)
    assert.equal(80, value(text, 'hersh_http_requests_total{route="other",status="404"}'), text)
    assert.equal(40, value(text, 'hersh_http_requests_total{route="/programs/{id}/proxy",status="404"}'), text)
    local _, series = text:gsub("\nhersh_http_requests_total{", "")
    local _, series_before = before:gsub("\nhersh_http_requests_total{", "")
    assert.is_true(series <= series_before + 3, text)
  end)

  it("tells programs by state, exits, restarts, builds, time to Ready, cgroup usage, requests and proxy latency; promtool accepts it", function()
    local h = token_host()
    local idle = create(h, counter_body("idle"))
    local run = create(h, counter_body("runner", { limits = { memory = 64 * 1024 * 1024, pids = 64 } }))
    local crash = create(h, { user_id = "crashy", dockerfile = CRASH,
      restart_policy = { base_delay = 0.05, max_delay = 0.05, max_restarts = 2 } })
    start_ready(h, run.program_id)
    ok_json(act(h, crash.program_id, "start"), 202, "start crash")
    local crashed = wait_state(h, crash.program_id, "Error")
    assert.equal(2, crashed.restarts)
    local proxied = call(h, "GET", "/programs/" .. run.program_id .. "/proxy/watcher/status")
    assert.equal(200, proxied.status, proxied.body)
    assert_error(call(h, "GET", "/programs/" .. idle.program_id .. "/nothing"), 404, "no route")

    local text = scrape(h)
    local ok, out = true, "promtool is not installed"
    if which("promtool") then ok, out = promtool(text) end
    assert.is_true(ok, out .. "\n" .. text)

    assert.equal(1, value(text, 'hersh_programs{state="Created"}'), text)
    assert.equal(1, value(text, 'hersh_programs{state="Ready"}'), text)
    assert.equal(1, value(text, 'hersh_programs{state="Error"}'), text)
    assert.equal(0, value(text, 'hersh_programs{state="Stopped"}'), text)
    -- the crash program: three exits with code 1, two restarts between them
    assert.equal(3, value(text, 'hersh_program_exits_total{reason="code"}'), text)
    assert.equal(0, value(text, 'hersh_program_exits_total{reason="oom"}'), text)
    assert.equal(2, value(text, "hersh_program_restarts_total"), text)
    assert.equal(2, value(text, 'hersh_events_total{kind="restarting"}'), text)
    assert.is_true(value(text, 'hersh_time_to_ready_seconds_count') >= 1, text)
    local builds = (value(text, 'hersh_build_duration_seconds_count{outcome="built"}') or 0)
      + (value(text, 'hersh_build_duration_seconds_count{outcome="cached"}') or 0)
    assert.is_true(builds >= 1, text)
    assert.equal(1, value(text, "hersh_proxy_duration_seconds_count"), text)
    -- requests by route pattern: never the raw path with its id
    assert.is_true(value(text, 'hersh_http_requests_total{route="/programs/{id}",status="200"}') >= 1, text)
    assert.equal(3, value(text, 'hersh_http_requests_total{route="/programs",status="201"}'), text)
    assert.equal(1, value(text, 'hersh_http_requests_total{route="other",status="404"}'), text)
    assert.equal(1, value(text, 'hersh_http_requests_total{route="/programs/{id}/proxy",status="200"}'), text)
    assert.is_falsy(has(text, run.program_id .. "/"), text)

    local id = 'program_id="' .. run.program_id .. '"'
    local view = ok_json(call(h, "GET", "/programs/" .. run.program_id), 200, "view")
    -- the counts by state follow a stop and a delete
    ok_json(act(h, run.program_id, "stop"), 202, "stop")
    wait_state(h, run.program_id, "Stopped")
    ok_json(call(h, "DELETE", "/programs/" .. idle.program_id), 200, "delete")
    local after = scrape(h)
    assert.equal(0, value(after, 'hersh_programs{state="Created"}'), after)
    assert.equal(0, value(after, 'hersh_programs{state="Ready"}'), after)
    assert.equal(1, value(after, 'hersh_programs{state="Stopped"}'), after)
    assert.equal(1, value(after, 'hersh_programs{state="Error"}'), after)
    H.assert_clean_exit(h) -- the scrapes left no sanitizer report, no process behind
    if not (view.limits_enforced and view.limits_enforced.memory) then
      return pending("no cgroup for the program here (" .. tostring(view.limits_enforced and view.limits_enforced.why)
        .. "): CPU, memory and pids series not checked")
    end
    assert.is_true(value(text, "hersh_program_memory_bytes{" .. id .. "}") > 0, text)
    assert.is_true(value(text, "hersh_program_memory_peak_bytes{" .. id .. "}")
      >= value(text, "hersh_program_memory_bytes{" .. id .. "}"), text)
    assert.is_true(value(text, "hersh_program_pids{" .. id .. "}") >= 1, text)
    assert.is_true(value(text, "hersh_program_cpu_seconds_total{" .. id .. "}") > 0, text)
    -- no series for a program with no process
    assert.is_falsy(has(text, 'program_id="' .. idle.program_id .. '"'), text)
  end)

  it("counts exits by reason: code, signal inside the sandbox, and oom for a memory hog", function()
    local h = token_host()
    local function run_until_error(body)
      body.restart_policy = "no"
      local doc = create(h, body)
      ok_json(act(h, doc.program_id, "start"), 202, "start")
      return wait_state(h, doc.program_id, "Error")
    end
    run_until_error{ user_id = "code", dockerfile = 'FROM hersh\nCMD ["bash", "-c", "exit 3"]\n' }
    run_until_error{ user_id = "signal", dockerfile = 'FROM hersh\nCMD ["bash", "-c", "kill -KILL $$"]\n' }
    local text = scrape(h)
    assert.equal(1, value(text, 'hersh_program_exits_total{reason="code"}'), text)
    assert.equal(1, value(text, 'hersh_program_exits_total{reason="signal"}'), text)
    assert.equal(0, value(text, 'hersh_program_exits_total{reason="oom"}'), text)
    local hog = run_until_error{ user_id = "hog", dockerfile = assert(P.read("spec/programs/memhog/Dockerfile")),
      src_files = { ["hog.lua"] = assert(P.read("spec/programs/memhog/hog.lua")) }, env = { HOG_MB = "1024" },
      limits = { memory = 32 * 1024 * 1024 } }
    text = scrape(h)
    if not hog.oom_killed then
      return pending("the memory limit is not enforced here (" .. tostring(hog.error_msg) .. "): oom not checked")
    end
    assert.equal(1, value(text, 'hersh_program_exits_total{reason="oom"}'), text)
    assert.equal(1, value(text, 'hersh_program_exits_total{reason="signal"}'), text)
  end)

  it("is scraped by a real Prometheus on loopback with the token, and answers a query", function()
    local prometheus = which("prometheus")
    if not prometheus then
      return pending("prometheus is not installed (scripts/setup installs it): the end-to-end scrape did not run")
    end
    local h = token_host()
    local doc = create(h, counter_body("scraped"))
    start_ready(h, doc.program_id)
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/prometheus.yml", table.concat({
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "scrape_configs:",
      "  - job_name: hersh",
      "    authorization:",
      "      credentials_file: " .. h.token_file,
      "    static_configs:",
      "      - targets: ['127.0.0.1:" .. h.port .. "']",
      "",
    }, "\n"))
    local port = H.free_range(1)
    local proc = P.start{ prometheus, "--config.file=" .. dir .. "/prometheus.yml",
      "--storage.tsdb.path=" .. dir .. "/data", "--web.listen-address=127.0.0.1:" .. port }
    P.defer(function() P.stop(proc) end)
    local query = "/api/v1/query?query=" .. 'hersh_programs%7Bstate%3D%22Ready%22%7D'
    local answer
    local got = P.wait_for(function()
      if not P.alive(proc) then return true end
      local res = P.http(port, "GET", query)
      answer = res.body
      local r = res.json and res.json.data and res.json.data.result
      return r and #r == 1 and r[1].value and r[1].value[2] == "1"
    end, 60, 0.5)
    assert.is_true(P.alive(proc), "prometheus ended: " .. P.stderr(proc))
    assert.is_true(got == true, "prometheus never got hersh_programs{state=\"Ready\"} = 1; last answer: "
      .. tostring(answer) .. "\n" .. P.stderr(proc):sub(-2000))
    -- and it saw the target up, with the token
    local up = P.http(port, "GET", "/api/v1/query?query=up")
    assert.is_truthy(has(up.body, '"1"'), up.body)
  end)
end)
