-- bench/http/polls.lua -- the program bench/http/run.lua measures, run by `hersh run`:
-- CONCURRENCY watch_call polls of one watcher, each fetching URL with hersh.http.get in
-- a loop (one request at a time per poll, so CONCURRENCY at once on the loop) for
-- SECONDS. It prints one line: "requests N errors E seconds S".
--
--   hersh run bench/http/polls.lua URL SECONDS CONCURRENCY
local hersh = require "hersh"

local url, seconds, concurrency = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(url and seconds and concurrency, "usage: polls.lua URL SECONDS CONCURRENCY")

local requests, errors, finished = 0, 0, 0
local first, last, stop_at
local w = hersh.watcher{ id = "bench-http", api = false }
w:manage(function(_, ctx)
  for i = 1, concurrency do
    local started = false
    ctx:watch_call("p" .. i, 0.001, function()
      if started then return hersh.SKIP end
      started = true
      first = first or hersh.now()
      stop_at = stop_at or first + seconds
      while hersh.now() < stop_at do
        local res = hersh.http.get(url)
        if res and res.status == 200 then requests = requests + 1 else errors = errors + 1 end
      end
      finished = finished + 1
      last = hersh.now()
      return hersh.SKIP
    end)
  end
end)
assert(w:start())
assert(hersh.wait(function() return finished == concurrency end, seconds + 60), "the polls did not finish")
print(string.format("requests %d errors %d seconds %.3f", requests, errors, last - first))
w:stop("measured")
