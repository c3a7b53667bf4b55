-- Publish ports: the lowest free port of the range first, skipping ports that are
-- busy on the machine. A port is held by a bound socket from allocation until its
-- release, so nothing else can take it: listening when its program runs, refusing
-- connections at once when it does not.
local core = require "hersh.core"

local ports = {}

local Ports = {}
Ports.__index = Ports

function ports.new(opts)
  return setmetatable({ first = opts.first or 19001, last = opts.last or 29999,
    host = opts.host or "127.0.0.1", held = {} }, Ports)
end

-- Holds `port` (a registered program's, at Host start) or the lowest free one.
-- Returns port, fd; or nil, err, code ("EPORTS" when the range is exhausted).
function Ports:take(port)
  if port then
    local fd, bound_or_err, code = core.bind(self.host, port)
    if not fd then return nil, bound_or_err, code end
    self.held[port] = fd
    return port, fd
  end
  for p = self.first, self.last do
    if not self.held[p] then
      local fd = core.bind(self.host, p) -- busy on the machine: try the next one
      if fd then
        self.held[p] = fd
        return p, fd
      end
    end
  end
  return nil, string.format("no free port left in %d-%d", self.first, self.last), "EPORTS"
end

function Ports:fd(port)
  return self.held[port]
end

-- A program stopped: its socket is replaced by a fresh bound one, so connections are
-- refused rather than queued on a socket nobody accepts from.
function Ports:quiesce(port)
  local fd = self.held[port]
  if not fd then return end
  core.close_fd(fd)
  self.held[port] = core.bind(self.host, port) -- nil if taken in that instant
end

function Ports:release(port)
  local fd = self.held[port]
  if fd then core.close_fd(fd) end
  self.held[port] = nil
end

return ports
