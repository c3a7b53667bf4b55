-- How much slower than the normal build the build under test runs: the bounds of the
-- specs' waits are multiplied by it. Under ASan+UBSan (HERSH_SANITIZE in the build's
-- CMakeCache.txt) everything takes 3 to 10 times longer, more on a loaded 2-core
-- machine: a bound that only a hang should reach must grow with it. Only bounds: no
-- spec asserts how long anything took.
local build = os.getenv("HERSH_BUILD") or "build"

local function sanitized()
  local f = io.open(build .. "/CMakeCache.txt", "r")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find("HERSH_SANITIZE:BOOL=ON", 1, true) ~= nil
end

return { factor = sanitized() and 4 or 1 }
