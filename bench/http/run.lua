-- bench/http/run.lua -- requests per second of CONCURRENCY (100) watch_call polls each
-- doing hersh.http.get in a loop (bench/http/polls.lua under `hersh run`: one loop,
-- one thread) against a local server, beside wrk (2 threads, the same number of
-- keep-alive connections) against the same server in the same run, alternately,
-- ROUNDS rounds of SECONDS each; the medians. The server is bench/api's minimal
-- libmicrohttpd server (its own threads), so both clients meet the same answers.
--
-- Run through bench/http/run.sh:  lua5.4 bench/http/run.lua BUILD_DIR
local B = require "lib"

local build = arg[1] or "build-bench"
local ROUNDS = tonumber(os.getenv("BENCH_HTTP_ROUNDS")) or 3
local SECONDS = tonumber(os.getenv("BENCH_HTTP_SECONDS")) or 5
local CONCURRENCY = tonumber(os.getenv("BENCH_HTTP_CONCURRENCY")) or 100

local tmp = B.sh("mktemp -d"):gsub("\n$", "")
local out = tmp .. "/server.out"
local pid = tonumber(B.sh(string.format("%s/bench_minimal_server 0 >%s 2>&1 & echo $!", build, B.quote(out))))
local ok, err = pcall(function()
  local port
  for _ = 1, 100 do
    port = tonumber((B.read(out) or ""):match("^(%d+)\n"))
    if port then break end
    B.sleep(0.05)
  end
  assert(port, "the server did not start: " .. (B.read(out) or ""))
  local url = string.format("http://127.0.0.1:%d/watcher/status", port)

  local wrk_rps, hersh_rps, failures = {}, {}, 0
  for round = 1, ROUNDS do
    local text = B.sh(string.format("wrk -t2 -c%d -d%ds %s", CONCURRENCY, SECONDS, url))
    wrk_rps[round] = assert(tonumber(text:match("Requests/sec:%s*([%d.]+)")), text)
    local line = B.sh(string.format("%s/hersh run bench/http/polls.lua %s %d %d 2>&1", build, url, SECONDS, CONCURRENCY))
    local n, errors, secs = line:match("requests (%d+) errors (%d+) seconds ([%d.]+)")
    assert(n, line)
    hersh_rps[round] = tonumber(n) / tonumber(secs)
    failures = failures + tonumber(errors)
    print(string.format("round %d: wrk %.0f req/s, hersh.http %.0f req/s", round, wrk_rps[round], hersh_rps[round]))
  end
  local w, h = B.median(wrk_rps), B.median(hersh_rps)
  print(string.format("median of %d rounds of %d s, %d at once: wrk %.0f req/s; hersh.http polls %.0f req/s (%.0f%% of wrk); %d failed requests",
    ROUNDS, SECONDS, CONCURRENCY, w, h, 100 * h / w, failures))
end)
os.execute("kill " .. pid .. " 2>/dev/null")
os.execute("rm -rf " .. B.quote(tmp))
if not ok then error(err, 0) end
