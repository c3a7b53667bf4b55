-- The program of spec/host_spec.lua. At each start it counts its boots in
-- /state/boots and prints "Boot: N"; each message it gets adds one to the count in
-- /state/count and prints "Counter: N". Its WatcherAPI (watcher "counter") is served
-- on the socket the Host hands over.
local hersh = require "hersh"

io.stdout:setvbuf("line")

local function read_number(path)
  local f = io.open(path, "r")
  if not f then return 0 end
  local n = tonumber(f:read("a")) or 0
  f:close()
  return n
end

local function write_number(path, n)
  local f = assert(io.open(path .. ".tmp", "w"))
  assert(f:write(tostring(n)))
  assert(f:close())
  assert(os.rename(path .. ".tmp", path))
end

local boots = read_number("/state/boots") + 1
write_number("/state/boots", boots)
print("Boot: " .. boots)

local count = read_number("/state/count")
local w = hersh.watcher{ id = "counter" }
w:manage(function(msg, ctx)
  if not msg then return end
  count = count + 1
  write_number("/state/count", count)
  ctx:print("Counter: " .. count)
end)
assert(w:start())
hersh.run()
