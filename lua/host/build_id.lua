-- The build id: a name for a build's inputs, so the same payload always finds
-- the same cached image. It hashes a canonical encoding of the Dockerfile and
-- the uploaded files:
--
--   "D" .. #dockerfile .. ":" .. dockerfile
--   then for each file, paths in byte order:
--   "F" .. #path .. ":" .. path .. #content .. ":" .. content
--
-- Lengths are decimal byte counts. Every field carries its length, so no two
-- payloads share an encoding (("ab", "c") and ("a", "bc") differ), and the
-- sort makes the order of the table irrelevant. The id is "build-" and the
-- first 12 hex digits of the SHA-256 of that encoding.
--
-- Paths are hashed as given: callers pass the normalized table from
-- paths.check_files, so "./a.lua" and "a.lua" cannot give two ids.
local sha256 = require "host.sha256"
local paths = require "host.paths"

local build_id = {}

-- Feeds the canonical encoding to emit(s), piece by piece, so large files are
-- never copied into one string.
local function encode(dockerfile, src_files, emit)
  if type(dockerfile) ~= "string" then
    error("build_id: the Dockerfile must be a string, got " .. type(dockerfile), 3)
  end
  if src_files ~= nil and type(src_files) ~= "table" then
    error("build_id: src_files must be a table, got " .. type(src_files), 3)
  end
  src_files = src_files or {}
  emit("D" .. #dockerfile .. ":")
  emit(dockerfile)
  local names = {}
  for path, content in pairs(src_files) do
    if type(path) ~= "string" or type(content) ~= "string" then
      error("build_id: src_files must map string paths to string contents", 3)
    end
    names[#names + 1] = path
  end
  table.sort(names, paths.byte_less)
  for _, path in ipairs(names) do
    local content = src_files[path]
    emit("F" .. #path .. ":" .. path .. #content .. ":")
    emit(content)
  end
end

-- The encoding as one string (for tests and for reading it).
function build_id.encoding(dockerfile_text, src_files)
  local parts = {}
  encode(dockerfile_text, src_files, function(s) parts[#parts + 1] = s end)
  return table.concat(parts)
end

function build_id.compute(dockerfile_text, src_files)
  local h = sha256.new()
  encode(dockerfile_text, src_files, function(s) h:update(s) end)
  return "build-" .. h:hex():sub(1, 12)
end

return build_id
