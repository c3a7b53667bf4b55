-- bench/lib.lua -- what the Lua benchmarks that drive a real `hersh host` share: shell
-- helpers, statistics, and the Host itself (started on a temporary storage, its pid
-- written where the benchmark's run.sh finds it should the benchmark die first).
local lib = {}

function lib.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- cmd -> its output, whether it succeeded, its exit code
function lib.run(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  local ok, _, code = f:close()
  return out, ok, code
end

-- cmd -> its output; raises when it fails
function lib.sh(cmd)
  local out, ok, code = lib.run(cmd)
  if not ok then error(string.format("failed (%s): %s\n%s", tostring(code), cmd, out)) end
  return out
end

function lib.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function lib.read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

function lib.sleep(s) os.execute("sleep " .. s) end

function lib.now()
  return tonumber((lib.run("date +%s.%N")))
end

function lib.quantile(list, q)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(q * #s))]
end

function lib.median(list) return lib.quantile(list, 0.5) end

function lib.abs_path(p)
  if p:sub(1, 1) == "/" then return p end
  return (lib.run("pwd")):gsub("\n$", "") .. "/" .. p
end

-- Not gone, and not a zombie waiting for whoever adopted it to reap it.
function lib.alive(pid)
  local status = lib.read("/proc/" .. pid .. "/status")
  return status ~= nil and not status:find("\nState:%s*Z")
end

-- The program the Host benchmarks run: the counter of bench/api/counter.lua (run from the
-- top of the tree, as every run.sh does), and the Dockerfile that builds it.
lib.COUNTER = assert(lib.read("bench/api/counter.lua"), "bench/api/counter.lua: run from the top of the tree")
lib.DOCKERFILE = 'FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\nCMD ["hersh", "run", "/app/main.lua"]\n'

-- A `hersh host` of the binary `bin` on `storage`, logging to tmp/host.err; `name` says
-- which benchmark speaks. h:start() sets h.pid and h.base (http://127.0.0.1:PORT).
local Host = {}
Host.__index = Host

function lib.host(bin, storage, tmp, name)
  return setmetatable({ bin = bin, storage = storage, tmp = tmp, name = name, err = tmp .. "/host.err" }, Host)
end

function Host:start(extra)
  local out = lib.sh(string.format("%s host --port 0 --storage %s %s </dev/null >/dev/null 2>%s & echo $!",
    lib.quote(self.bin), lib.quote(self.storage), extra or "", lib.quote(self.err)))
  self.pid = assert(tonumber(out:match("(%d+)")), "no pid for the Host")
  lib.write(self.tmp .. "/host.pid", self.pid .. "\n") -- for run.sh, should the benchmark die first
  for _ = 1, 200 do
    local port = (lib.read(self.err) or ""):match("serving http://127%.0%.0%.1:(%d+)")
    if port then
      self.base = "http://127.0.0.1:" .. port
      return
    end
    if not lib.alive(self.pid) then break end
    lib.sleep(0.05)
  end
  error(self.name .. ": the Host did not start\n" .. (lib.read(self.err) or ""))
end

-- SIGTERM (the Host stops its programs, then exits), SIGKILL after 30 s.
function Host:stop()
  if not self.pid or not lib.alive(self.pid) then return end
  os.execute("kill -TERM " .. self.pid)
  for _ = 1, 600 do
    if not lib.alive(self.pid) then return end
    lib.sleep(0.05)
  end
  io.stderr:write(self.name .. ": the Host did not stop in 30 s; killing it\n")
  os.execute("kill -KILL " .. self.pid)
end

return lib
