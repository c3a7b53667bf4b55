-- The JSON the examples' deploy scripts need, built and read with lua-cjson so that
-- no quoting in a source file can break a request:
--   lua5.4 examples/json.lua create USER_ID DIR FILE... [--env NAME=VALUE]...
--       the body of POST /programs: DIR/Dockerfile, and each FILE (read from DIR,
--       uploaded under its name relative to DIR), with the env given
--   lua5.4 examples/json.lua get FIELD < response.json
--       prints one field of a JSON object read from stdin (empty when absent)
--   lua5.4 examples/json.lua ids < programs.json
--       prints the program_id of each program of a GET /programs answer, one a line
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
    "       json.lua get FIELD < response.json\n",
    "       json.lua ids < programs.json\n")
  os.exit(2)
end

local function read_object()
  local ok, doc = pcall(cjson.decode, io.read("a"))
  if not ok or type(doc) ~= "table" then
    io.stderr:write("json.lua: the input is not a JSON object\n")
    os.exit(1)
  end
  return doc
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
  io.write(cjson.encode(body), "\n")
elseif command == "get" and arg[2] then
  local value = read_object()[arg[2]]
  if type(value) == "number" and value == math.floor(value) then
    value = string.format("%d", value) -- cjson reads every number as a float: 1 not 1.0
  elseif type(value) == "table" then
    value = cjson.encode(value)
  end
  if value ~= nil and value ~= cjson.null then io.write(tostring(value)) end
  io.write("\n")
elseif command == "ids" then
  for _, p in ipairs(read_object().programs or {}) do io.write(p.program_id, "\n") end
else
  usage()
end
