-- The program the end-to-end specs run with `hersh run`: one watcher, which gets the
-- runner's WatcherAPI. Arguments: DIR (a directory for release files) and an
-- optional queue capacity. Markers the specs wait for go to stderr.
--
-- Messages: every message is appended to the context list "received" and logged
-- ("got <content>"); then
--   "fail"        raises an error (a failed run)
--   "quit"        returns hersh.stop; "die" returns hersh.kill
--   "watch"       registers two watches: answer_var (42) and broken_var (poll error)
--   "hold:NAME"   keeps the run busy until the file DIR/NAME exists (at most 60 s)
--   "wait:NAME"   the run waits (hersh.sleep, the loop stays free) until DIR/NAME exists
--   "double-stop" calls w:stop() twice (the second is refused: a state fault)
-- The cleanup, when the file DIR/hold-cleanup exists, waits for DIR/release-cleanup.
local hersh = require "hersh"

local dir = assert(arg[1], "usage: api_main.lua DIR [CAPACITY]")
local capacity = tonumber(arg[2]) or 1000

local marks = dofile(arg[0]:match("^(.*)/") .. "/script_marks.lua")
local mark, exists, wait_file = marks.mark, marks.exists, marks.wait_file

mark("LISTEN_FDS in script: " .. tostring(os.getenv("LISTEN_FDS")))

local w = assert(hersh.watcher {
  id = "api-main",
  signal_capacity = capacity,
  max_log_entries = 5000,
  max_memo = 20,
  max_watches = 30,
  timeout = 120,
  cleanup_timeout = 30,
  recovery = { min_failures = 4, max_failures = 8, base_delay = 2, max_delay = 60, light_delays = { 30 } },
  env = {
    API_KEY = "k-123", DB_PASSWORD = "hunter2", GITHUB_TOKEN = "t-456", CLIENT_SECRET = "s-789",
    PASSPHRASE = "open sesame", MONKEY = "banana", REGION = "eu-west", HOME_DIR = "/srv/home",
  },
})

w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then
    local cycle = { name = "loop" }
    cycle.self = cycle
    ctx:set("phase", "init")
    ctx:set("received", {})
    ctx:set("fn", function() end)
    ctx:set("co", coroutine.create(function() end))
    ctx:set("ud", io.stdout)
    ctx:set("cyc", cycle)
    ctx:set("nested", { list = { 1, 2, 3 }, flag = true, text = "x<y>&z" })
    ctx:memo("answer", function() return 42 end)
    ctx:memo("fnmemo", function() return function() end end)
    for i = 1, 120 do ctx:log("line " .. i) end
    return
  end
  if not msg then return end -- var runs and retries
  local c = msg.content
  ctx:update("received", function(list)
    list[#list + 1] = c
    return list
  end)
  ctx:log("got " .. c)
  if c == "fail" then error("boom on purpose") end
  if c == "quit" then return hersh.stop("asked to quit") end
  if c == "die" then return hersh.kill("asked to die") end
  if c == "watch" then
    local answered, broke = false, false
    ctx:watch_call("answer_var", 0.05, function()
      if answered then return hersh.SKIP end
      answered = true
      return 42
    end)
    ctx:watch_call("broken_var", 0.05, function()
      if broke then return hersh.SKIP end
      broke = true
      error("poll broke on purpose")
    end)
    return
  end
  local hold = c:match("^hold:(.+)$")
  if hold then
    ctx:set("phase", "holding " .. hold)
    mark("HOLD-START " .. hold)
    wait_file(dir .. "/" .. hold, 60)
    mark("HOLD-END " .. hold)
    return
  end
  local wait = c:match("^wait:(.+)$")
  if wait then
    mark("WAIT-START " .. wait)
    while not exists(dir .. "/" .. wait) do hersh.sleep(0.01) end
    mark("WAIT-END " .. wait)
    return
  end
  if c == "double-stop" then
    local first = w:stop()
    local second, err = w:stop()
    mark(string.format("DOUBLE-STOP %s %s %s", tostring(first), tostring(second), tostring(err)))
    return
  end
  ctx:set("phase", "after " .. c)
end)

w:cleanup(function()
  mark("CLEANUP-START")
  if exists(dir .. "/hold-cleanup") then wait_file(dir .. "/release-cleanup", 25) end
  mark("CLEANUP-END")
end)

assert(w:start())
