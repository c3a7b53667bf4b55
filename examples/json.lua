-- The JSON the examples' deploy scripts need, built and read with lua-cjson so that
-- no quoting in a source file can break a request:
--   lua5.4 examples/json.lua create USER_ID DIR FILE... [--env NAME=VALUE]...
--       the body of POST /programs: DIR/Dockerfile, and each FILE (read from DIR,
--       uploaded under its name relative to DIR), with the env given
--   lua5.4 examples/json.lua get FIELD < response.json
--       prints one field of a JSON object read from stdin (empty when absent)
local cjson = require "cjson"

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then
    io.stderr:write("json.lua: ", err, "\n")
    os.exit(1)
  end
  local text = f:read("a")
  f:close()
  return text
end

local function usage()
  io.stderr:write("usage: json.lua create USER_ID DIR FILE... [--env NAME=VALUE]...\n",
    "       json.lua get FIELD < response.json\n")
  os.exit(2)
end

local command = arg[1]
if command == "create" then
  local user_id, dir = arg[2], arg[3]
  if not user_id or not dir then usage() end
  local body = { user_id = user_id, dockerfile = read(dir .. "/Dockerfile"), src_files = {} }
  local i = 4
  while arg[i] do
    if arg[i] == "--env" then
      local name, value = (arg[i + 1] or ""):match("^([%w_]+)=(.*)$")
      if not name then usage() end
      body.env = body.env or {}
      body.env[name] = value
      i = i + 2
    else
      body.src_files[arg[i]] = read(dir .. "/" .. arg[i])
      i = i + 1
    end
  end
  if next(body.src_files) == nil then body.src_files = nil end -- cjson would write {} as []
  io.write(cjson.encode(body), "\n")
elseif command == "get" and arg[2] then
  local ok, doc = pcall(cjson.decode, io.read("a"))
  if not ok or type(doc) ~= "table" then
    io.stderr:write("json.lua: the input is not a JSON object\n")
    os.exit(1)
  end
  local value = doc[arg[2]]
  if value ~= nil and value ~= cjson.null then io.write(tostring(value)) end
  io.write("\n")
else
  usage()
end
