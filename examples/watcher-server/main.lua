-- watcher-server: a counter that keeps its count in /state, the one place of a
-- program that is writable and survives restarts. Every "tick" (one a second from
-- its own clock, and any sent to /watcher/message) writes /state/counter.txt; after a
-- restart the count goes on from the number in that file.
local hersh = require "hersh"

local STATE_DIR = os.getenv("HERSH_STATE_DIR") or "/state"
local COUNTER_FILE = STATE_DIR .. "/counter.txt"

local function read_count()
  local f = io.open(COUNTER_FILE, "r")
  if not f then return 0 end
  local n = tonumber(f:read("l") or "")
  f:close()
  return math.tointeger(n) or 0
end

-- Written under another name, then renamed: a stop in the middle never leaves a
-- half-written file.
local function write_count(n)
  local tmp = COUNTER_FILE .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  assert(f:write(n, "\n"))
  assert(f:close())
  assert(os.rename(tmp, COUNTER_FILE))
end

local w
w = hersh.watcher{ id = "watcher-server" }

w:manage(function(msg, ctx)
  if ctx:trigger().reason == "init" then
    local n = read_count()
    ctx:set("count", n)
    ctx:print(string.format("Starting from %d (%s)", n, COUNTER_FILE))
  end
  if ctx:watch_tick("clock", 1):triggered() then w:send("tick") end
  if msg and msg.content == "tick" then
    local n = ctx:update("count", function(n) return n + 1 end)
    write_count(n) -- an error here fails the run: the recovery policy retries it
    ctx:print(string.format("Counter: %d (state file updated)", n))
  end
end)

w:cleanup(function(ctx)
  ctx:print("Cleanup: counter.txt holds " .. tostring(ctx:get("count")))
end)

assert(w:start())
