-- Raw HTTP for attack specs: the exact bytes given are written to a TCP connection to
-- 127.0.0.1 (bash's /dev/tcp; curl would normalize the method, path and headers),
-- and whatever comes back until the server closes, or `timeout` seconds pass, is
-- parsed. A request that is never answered gives status nil, never a hang.
local P = require "scripts.process"
local cjson = require "cjson"

local R = {}

R.TIMEOUT = 15

-- raw.request(port, bytes [, timeout]) -> {status, headers, body, raw}
function R.request(port, bytes, timeout)
  local dir = P.tmpdir()
  local file = dir .. "/request"
  P.write(file, bytes)
  local cmd = string.format("env -u LD_PRELOAD timeout %d bash -c %s _ %d %s 2>/dev/null",
    timeout or R.TIMEOUT, P.quote('exec 3<>/dev/tcp/127.0.0.1/"$1" && cat "$2" >&3 && cat <&3'),
    port, P.quote(file))
  local pipe = assert(io.popen(cmd))
  local raw = pipe:read("a")
  pipe:close()
  os.execute("rm -rf " .. P.quote(dir))
  local res = { raw = raw, headers = {}, body = "" }
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then return res end
  res.status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do res.headers[name:lower()] = value end
  if (res.headers["transfer-encoding"] or ""):lower() == "chunked" then
    local out, pos = {}, 1
    while true do
      local size, data_at = body:match("^(%x+)[^\r\n]*\r\n()", pos)
      if not size or tonumber(size, 16) == 0 then break end
      out[#out + 1] = body:sub(data_at, data_at + tonumber(size, 16) - 1)
      pos = data_at + tonumber(size, 16) + 2
    end
    body = table.concat(out)
  end
  res.body = body
  local ok, doc = pcall(cjson.decode, body)
  if ok and type(doc) == "table" then res.json = doc end
  return res
end

-- A one-shot request: `method target HTTP/1.1`, the Host header, extra header lines
-- (raw strings, sent as given), Connection: close.
function R.build(method, target, port, lines)
  local out = { method .. " " .. target .. " HTTP/1.1", "Host: 127.0.0.1:" .. port }
  for _, line in ipairs(lines or {}) do out[#out + 1] = line end
  out[#out + 1] = "Connection: close"
  return table.concat(out, "\r\n") .. "\r\n\r\n"
end

return R
