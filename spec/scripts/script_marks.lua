-- What the `hersh run` scripts of the specs (api_main.lua, self_run.lua) share: markers
-- on stderr for the specs to wait for, and release files the specs create.
-- Loaded with dofile from the script's own directory (arg[0]).
local hersh = require "hersh"

local M = {}

-- One marker line on stderr, flushed at once (the spec reads the file while we run).
function M.mark(text)
  io.stderr:write(text, "\n")
  io.stderr:flush()
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Busy until `path` exists or `limit` seconds pass (a run keeps the loop busy by design).
function M.wait_file(path, limit)
  local deadline = hersh.now() + limit
  while not M.exists(path) and hersh.now() < deadline do end
  return M.exists(path)
end

return M
