-- Publish ports: the lowest free port of the range first, skipping ports that are
-- busy on the machine. The Host holds each port's listening socket from allocation
-- until the program is deleted. While a process runs, it accepts on that socket
-- (fd 3); while none does, the Host answers every connection with a 503 itself, so a
-- client never waits on a socket nobody serves and the port is never given up.
--
-- A process shares the socket (and its file description) it is handed: it can shut it
-- down, attach a locked filter, change its options or flags. So a socket that was
-- handed out is never used again: before the Host answers on the port or hands it to
-- the next process, it is replaced by a fresh one bound to the same port (renew).
-- The one exception is an update in place (host.supervisor): the new revision gets the
-- socket the running one serves, so that no connection waits on a socket nobody
-- accepts from; both are the same program's, which can only spoil its own port.
--
-- A program of a sandbox that cannot be handed the socket (gVisor) listens on a unix
-- socket instead; the Host keeps the port's socket and relays each connection to it
-- (relay), answering 503 while nothing listens there. No process ever holds the
-- port's socket then.
local sys = require "hersh.os"
local json = require "hersh.json"

local ports = {}

local Ports = {}
Ports.__index = Ports

function ports.new(opts)
  local first = opts.first or 19001
  -- lowest: every port of first..lowest-1 is held, so a new program's search starts
  -- there instead of walking past every registered program's port.
  return setmetatable({ first = first, last = opts.last or 29999, lowest = first,
    host = opts.host or "127.0.0.1", held = {}, answering = {}, handed = {}, relaying = {} }, Ports)
end

local function unavailable_body(port)
  return json.encode{ error = "Service Unavailable", code = 503,
    message = "no program is running on port " .. port } .. "\n"
end

-- Holds `port` (a registered program's, at Host start) or the lowest free one.
-- Returns port, fd; or nil, err, code ("EPORTS" when the range is exhausted).
function Ports:take(port)
  local fd, bound_or_err, code
  if port then
    fd, bound_or_err, code = sys.listen(self.host, port)
    if not fd then return nil, bound_or_err, code end
  else
    while self.held[self.lowest] do self.lowest = self.lowest + 1 end
    for p = self.lowest, self.last do
      if not self.held[p] then
        fd = sys.listen(self.host, p) -- busy on the machine: try the next one
        if fd then port = p break end
      end
    end
    if not fd then return nil, string.format("no free port left in %d-%d", self.first, self.last), "EPORTS" end
  end
  self.held[port] = fd
  self:answer(port)
  return port, fd
end

-- The socket of `port`, fresh when the last one was handed out; nil, err if the port
-- was lost.
function Ports:renew(port)
  local fd = self.held[port]
  if not (fd and self.handed[port]) then return fd end
  self.handed[port] = nil
  local err
  fd, err = sys.relisten(fd, self.host, port, unavailable_body(port))
  if err then io.stderr:write("hersh host: port ", port, ": no fresh socket: ", tostring(err), "\n") end
  self.held[port] = fd
  return fd, err
end

-- The port's socket, fresh, once the Host stops answering on it. -> fd | nil, err.
local function take_from_answering(self, port)
  if self.answering[port] then
    self.answering[port]:stop()
    self.answering[port] = nil
  end
  local fd, err = self:renew(port)
  if not fd then return nil, "port " .. port .. " is not held" .. (err and ": " .. err or "") end
  return fd
end

-- The socket for a process to serve: the Host stops answering on it.
function Ports:hand_over(port)
  local fd, err = take_from_answering(self, port)
  if not fd then return nil, err end
  self.handed[port] = true
  return fd
end

-- The port relayed to the unix socket at path (its program is starting): the Host
-- stops answering on it. -> the port's fd, or nil, err.
function Ports:relay(port, path)
  self:stop_relay(port)
  local fd, err = take_from_answering(self, port)
  if not fd then return nil, err end
  local relay, relay_err = sys.relay(fd, path, unavailable_body(port))
  if not relay then return nil, "port " .. port .. ": " .. tostring(relay_err) end
  self.relaying[port] = relay
  return fd
end

function Ports:stop_relay(port)
  if self.relaying[port] then self.relaying[port]:stop() end
  self.relaying[port] = nil
end

-- No process serves the port any more: the Host answers on it again.
function Ports:answer(port)
  self:stop_relay(port)
  if self.answering[port] then return end
  local fd = self:renew(port)
  if fd then self.answering[port] = sys.answer_unavailable(fd, unavailable_body(port)) end
end

function Ports:release(port)
  self:stop_relay(port)
  if self.answering[port] then self.answering[port]:stop() end
  self.answering[port] = nil
  local fd = self.held[port]
  if fd then sys.close_fd(fd) end
  self.held[port] = nil
  self.handed[port] = nil
  if port >= self.first and port < self.lowest then self.lowest = port end
end

return ports
