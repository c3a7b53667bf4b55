-- Paths named by users: the keys of src_files, COPY sources (relative to the
-- uploaded files) and the paths COPY and WORKDIR name inside the image. One
-- checker for all of them, so no path can mean one thing here and another later.
--
-- Refused: empty paths, NUL and other control bytes (they break logs and error
-- messages and are never meant), backslashes (a Windows separator in a Linux
-- tree, and an escape character in a Dockerfile: either reading surprises
-- someone), ".." segments (no escaping the tree, and no need for it), segments
-- over 255 bytes or paths over 4096 bytes (Linux NAME_MAX and PATH_MAX).
-- "." segments and repeated slashes are collapsed.
local paths = {
  max_segment = 255,
  max_total = 4096,
}

-- A path for an error message: quoted, control bytes and quotes escaped, long
-- ones cut.
function paths.quote(s)
  if #s > 80 then s = s:sub(1, 77) .. "..." end
  return '"' .. s:gsub('[%c"\\\127]', function(c)
    return string.format("\\x%02x", c:byte())
  end) .. '"'
end

-- Splits a relative path into its segments, leaving out empty and "." ones.
local function segments(p)
  local segs = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      return nil, "'..' is not allowed in a path"
    end
    if #seg > paths.max_segment then
      return nil, "a path segment is longer than " .. paths.max_segment .. " bytes"
    end
    if seg ~= "." then segs[#segs + 1] = seg end
  end
  return segs
end

local function check_chars(p)
  if p == "" then return nil, "empty path" end
  if p:find("\0", 1, true) then return nil, "NUL byte in path" end
  if p:find("[%c\127]") then return nil, "control character in path" end
  if p:find("\\", 1, true) then return nil, "backslash in path (folders are separated by /)" end
  if #p > paths.max_total then
    return nil, "path longer than " .. paths.max_total .. " bytes"
  end
  return true
end

-- The normalized form of a relative path ("a//./b" -> "a/b"), or nil, err.
-- A file path may not end in "/" or "/.". With opts.dir the path names a
-- folder: a trailing slash is fine and "." (or "./") is the root, returned as ".".
function paths.check_relative(p, opts)
  if type(p) ~= "string" then
    error("paths.check_relative: string expected, got " .. type(p), 2)
  end
  local dir = opts ~= nil and opts.dir
  local ok, err = check_chars(p)
  if not ok then return nil, err end
  if p:sub(1, 1) == "/" then return nil, "absolute path (paths are relative to the uploaded files)" end
  if not dir and (p:sub(-1) == "/" or p == "." or p:sub(-2) == "/.") then
    return nil, "a file path cannot end with / or /."
  end
  local segs
  segs, err = segments(p)
  if not segs then return nil, err end
  if #segs == 0 then
    if dir then return "." end
    return nil, "the path names no file"
  end
  return table.concat(segs, "/")
end

-- A path inside the image, absolute or relative to base (itself absolute and
-- normalized): its normalized absolute form without a trailing slash ("/" for
-- the root), or nil, err. ".." is refused here too: no path climbs out of
-- where it was written.
function paths.resolve(p, base)
  if type(p) ~= "string" or type(base) ~= "string" then
    error("paths.resolve: strings expected", 2)
  end
  local ok, err = check_chars(p)
  if not ok then return nil, err end
  local prefix = base
  if p:sub(1, 1) == "/" then prefix = "/" end
  local segs
  segs, err = segments(p)
  if not segs then return nil, err end
  local rel = table.concat(segs, "/")
  local full
  if rel == "" then
    full = prefix
  elseif prefix == "/" then
    full = "/" .. rel
  else
    full = prefix .. "/" .. rel
  end
  if #full > paths.max_total then
    return nil, "path longer than " .. paths.max_total .. " bytes"
  end
  return full
end

-- Byte order, whatever the locale (Lua's < on strings uses strcoll): the one
-- order paths are sorted in, for build ids and copies alike.
function paths.byte_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Validates an uploaded file table {path = content}: every key a good relative
-- file path, every content a string, no two keys naming the same file, no file
-- that is also a folder of another ("a" and "a/b"). Returns a new table keyed by
-- the normalized paths, or nil, err.
function paths.check_files(files)
  if type(files) ~= "table" then return nil, "the files must be a table of path = content" end
  local out = {}
  for k, v in pairs(files) do
    if type(k) ~= "string" then return nil, "a file path must be a string" end
    local norm, err = paths.check_relative(k)
    if not norm then return nil, "file " .. paths.quote(k) .. ": " .. err end
    if type(v) ~= "string" then return nil, "file " .. paths.quote(k) .. ": content must be a string" end
    if out[norm] then
      return nil, "file " .. paths.quote(k) .. ": names the same file as another path (" .. paths.quote(norm) .. ")"
    end
    out[norm] = v
  end
  for k in pairs(out) do
    local pos = k:find("/", 1, true)
    while pos do
      local folder = k:sub(1, pos - 1)
      if out[folder] then
        return nil, "file " .. paths.quote(folder) .. " is also the folder of " .. paths.quote(k)
      end
      pos = k:find("/", pos + 1, true)
    end
  end
  return out
end

return paths
