-- Random names for what the Host makes (program ids, sandbox and service names): bytes
-- from the kernel's generator, as lowercase hex.
local random = {}

function random.hex(bytes)
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(bytes)
  f:close()
  return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

return random
