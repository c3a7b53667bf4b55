-- `hersh image DIR|NAME -o FILE`: a program's built image as an OCI image archive
-- (host.image.oci) that `docker load` and `podman load` take.
--
-- DIR (a folder with a Dockerfile): built here as the Host builds it (host.build, RUN
-- steps in the bwrap sandbox as the Host's sandbox user), in a temporary image store
-- removed afterwards. NAME (a program on a Host): its build id from the REST API
-- (--host), its image from that Host's storage on this machine (--storage, default
-- ./var): the Host keeps images as folders, and the REST API serves no image files.
local core = require "hersh.core"
local sys = require "hersh.os"
local build = require "host.build"
local build_id = require "host.build_id"
local dockerfile = require "host.dockerfile"
local host = require "host.host"
local host_main = require "host.main"
local oci = require "host.image.oci"
local client = require "cli.client"
local deploy = require "cli.deploy"
local EXIT = require("cli.args").EXIT

local fs = sys.fs
local image = {}

-- Runs the loop until fn(done) calls done(...); returns what done got.
local function on_loop(fn)
  local result
  core.timer(0, function()
    fn(function(...)
      result = table.pack(...)
      sys.stop_serving()
    end)
  end)
  while not result do sys.serve() end
  return table.unpack(result, 1, result.n)
end

local function tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p and p:read("l")
  if p then p:close() end
  if not dir or dir == "" then client.fail(EXIT.failed, "cannot make a temporary folder") end
  return dir
end

-- Builds DIR's image into a temporary store: the store and the build id.
local function build_dir(dir, runtime)
  local text, files = deploy.read_dir(dir, "image")
  local plan, perr = dockerfile.parse(text)
  if not plan then client.fail(EXIT.usage, dir .. "/Dockerfile: " .. tostring(perr)) end
  local driver, why = require("host.sandbox").get("bwrap")
  if not driver then client.fail(EXIT.failed, "cannot build here: " .. why) end
  local store = tmpdir()
  local src = store .. "/src"
  local ok, err = fs.chmod(store, tonumber("711", 8)) -- the sandbox user walks to the image
  for path, content in pairs(files) do
    if not ok then break end
    ok, err = fs.mkdir_p((src .. "/" .. path):match("^(.*)/[^/]*$"))
    if ok then ok, err = fs.write_file(src .. "/" .. path, content) end
  end
  if ok then ok, err = fs.mkdir_p(store .. "/images") end
  if not ok then
    fs.remove_tree(store)
    client.fail(EXIT.failed, "cannot stage the files: " .. tostring(err))
  end
  local id = build_id.compute(text, files)
  local built, build_err = on_loop(function(done)
    build.start{ plan = plan, build_id = id, src_dir = src, images_dir = store .. "/images",
      log_path = store .. "/build.log", driver = driver, runtime = runtime, user = host.SANDBOX_USER,
      on_done = done }
  end)
  if not built then
    fs.remove_tree(store)
    client.fail(EXIT.failed, "the build failed: " .. tostring(build_err))
  end
  return store, id
end

local function number(a, key, what)
  if a[key] == nil then return nil end
  local n = tonumber(a[key])
  if not n or n ~= math.floor(n) or n < 0 then client.fail(EXIT.usage, "--" .. key .. " wants " .. what) end
  return math.tointeger(n)
end

function image.run(a, c, out)
  if not a.output then client.fail(EXIT.usage, "-o FILE is required (where the archive goes)") end
  local port = number(a, "port", "a port number") or oci.DEFAULT_PORT
  if port < 1 or port > 65535 then client.fail(EXIT.usage, "--port wants 1-65535") end
  local uid, gid -- nil: the Dockerfile's USER, else oci.DEFAULT_USER
  if a.user then
    local u, g = tostring(a.user):match("^(%d+):?(%d*)$")
    if not u then client.fail(EXIT.usage, "--user wants a numeric UID[:GID], not '" .. tostring(a.user) .. "'") end
    uid, gid = math.tointeger(tonumber(u)), math.tointeger(tonumber(g))
    if uid == 0 then client.fail(EXIT.usage, "--user must not be root (uid 0): the image runs as a plain user") end
  end
  local runtime = host_main.runtime(fs.realpath("/proc/self/exe"))
  local store, images_dir, id, name
  local st = fs.stat(a.program)
  if st and st.type == "dir" then
    store, id = build_dir(a.program, runtime)
    images_dir = store .. "/images"
    name = "hersh/" .. (a.program:gsub("/+$", ""):match("[^/]+$") or "program"):lower():gsub("[^a-z0-9._-]", "-")
  else
    local rec = c:program(client.check_name(a.program))
    id, images_dir = rec.build_id, (a.storage or "./var") .. "/images"
    name = "hersh/" .. (type(rec.name) == "string" and rec.name or rec.program_id):lower()
  end
  name = name .. ":" .. id
  local archive, err = oci.archive{ images_dir = images_dir, build_id = id, runtime = runtime, uid = uid, gid = gid,
    port = port, name = name }
  if store then fs.remove_tree(store) end
  if not archive then client.fail(EXIT.failed, err) end
  local ok, werr = fs.write_file(a.output, archive.bytes)
  if not ok then client.fail(EXIT.failed, "cannot write " .. a.output .. ": " .. tostring(werr)) end
  local summary = { file = a.output, name = name, digest = archive.digest, size = #archive.bytes,
    layer_size = archive.layer.size }
  if out.json_mode then out:json(summary) else
    out:line(string.format("%s: %s %s (%d bytes)", a.output, name, archive.digest, #archive.bytes))
  end
  return EXIT.ok
end

return image
