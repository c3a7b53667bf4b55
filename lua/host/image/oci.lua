-- A program's built image (host.build) as an OCI image archive: oci-layout, index.json
-- and blobs/sha256/ (the OCI Image Layout), plus the manifest.json of Docker's own
-- archive format beside it, which is what Docker 20.10's `docker load` reads (the OCI
-- index alone it does not take; podman takes either). One uncompressed layer holds:
--
--   * the image's rootfs: the program's files and what its RUN steps produced, owned by
--     root and not writable (the program writes /state and /tmp only);
--   * for FROM hersh, the Hersh runtime: /opt/hersh/bin/hersh, its Lua modules in
--     /opt/hersh/lua, and the shared libraries `ldd` names for it and for libcurl (which
--     it opens with dlopen), at their /usr paths. Not the host's /usr: a bwrap sandbox
--     binds that whole, an image would carry gigabytes; a program whose CMD runs bash or
--     python3 needs an image of its own (docs/cluster.md);
--   * /state, owned by the user the program runs as (a numeric uid, never root), the
--     image's VOLUME: Docker copies that owner into a fresh volume.
--
-- Reproducible: entries sorted, mtime 0, numeric owners, no compression, JSON with
-- sorted keys and no dates: the same image, runtime and options give the same digest.
local json = require "hersh.json"
local sys = require "hersh.os"
local build = require "host.build"
local dockerfile = require "host.dockerfile"
local tar = require "host.image.tar"

local fs = sys.fs
local sha256 = sys.sha256
local oci = {}

oci.DEFAULT_PORT = 8080
oci.DEFAULT_USER = 65534
oci.MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json" -- also a registry push's Content-Type

local DIR_MODE, FILE_MODE, EXEC_MODE = tonumber("755", 8), tonumber("644", 8), tonumber("755", 8)

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The output of a command run with an empty environment (nothing preloaded into ldd's
-- loader, the same answer for every caller).
local function command_output(cmd)
  local p = io.popen("env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin " .. cmd .. " 2>/dev/null")
  if not p then return "" end
  local out = p:read("a") or ""
  p:close()
  return out
end

-- Where a library the loader found on the host goes in an image whose /lib, /lib64,
-- /bin and /sbin are links into /usr (bwrap.skeleton).
local function usr_path(path)
  if path:match("^/lib6?4?/") or path:match("^/s?bin/") then return "/usr" .. path end
  return path
end

-- The shared libraries of the ELF files given (ldd), with the loader itself.
local function libraries(files)
  local seen, list = {}, {}
  for _, file in ipairs(files) do
    for path in command_output("ldd " .. quote(file)):gmatch("(/[^%s]+) %(0x") do
      if not seen[path] then
        seen[path] = true
        list[#list + 1] = path
      end
    end
  end
  return list
end

-- The libcurl the runtime opens with dlopen (src/http/curl.c), as ldconfig knows it.
local function libcurl()
  local cache = command_output("ldconfig -p")
  return cache:match("libcurl%.so%.4 %([^)]*x86%-64[^)]*%) => (%S+)") or cache:match("libcurl%.so%.4 %([^)]*%) => (%S+)")
end

-- The tree under src as entries at `at` (a relative path, "" for the root).
local function add_tree(entries, src, at, mode_of)
  for _, name in ipairs(fs.list(src) or {}) do
    local path, rel = src .. "/" .. name, at == "" and name or at .. "/" .. name
    local st = fs.stat(path)
    if st and st.type == "dir" then
      entries[rel] = { path = rel, type = "dir", mode = DIR_MODE }
      add_tree(entries, path, rel, mode_of)
    elseif st and st.type == "link" then
      local target = command_output("readlink -- " .. quote(path)):gsub("\n$", "")
      entries[rel] = { path = rel, type = "link", linkname = target, mode = tonumber("777", 8) }
    elseif st and st.type == "file" then
      entries[rel] = { path = rel, type = "file", source = path, mode = mode_of(st) }
    end
  end
end

-- The image's own files: as built, but root's, and nothing set-id or writable by others.
local function rootfs_mode(st)
  return (st.mode or FILE_MODE) & tonumber("755", 8)
end

-- Adds the directories above path (relative, no leading /).
local function parents(entries, path)
  local dir = path:match("^(.*)/[^/]+$")
  while dir and not entries[dir] do
    entries[dir] = { path = dir, type = "dir", mode = DIR_MODE }
    dir = dir:match("^(.*)/[^/]+$")
  end
end

local function add_file(entries, source, path, mode)
  path = path:gsub("^/", "")
  parents(entries, path)
  entries[path] = { path = path, type = "file", source = source, mode = mode }
end

-- The layer's entries (a list, sorted) of opts {rootfs, base, runtime = {bin, lua},
-- uid, gid}, or nil, err.
function oci.entries(opts)
  local entries = {}
  add_tree(entries, opts.rootfs, "", rootfs_mode)
  if opts.base == "hersh" then
    local rt = opts.runtime or {}
    if not rt.bin or not rt.lua then return nil, "the hersh runtime (binary and Lua modules) is not known" end
    add_file(entries, rt.bin, "opt/hersh/bin/hersh", EXEC_MODE)
    add_tree(entries, rt.lua, "opt/hersh/lua", function() return FILE_MODE end)
    local elves = { rt.bin }
    local curl = libcurl()
    if curl then elves[#elves + 1] = curl end
    for _, lib in ipairs(libraries(elves)) do
      local real = fs.realpath(lib)
      if not real then return nil, "cannot find the library " .. lib end
      add_file(entries, real, usr_path(lib), EXEC_MODE)
    end
    if curl then add_file(entries, fs.realpath(curl) or curl, usr_path(curl), EXEC_MODE) end
  end
  -- /state: the program's, the image's VOLUME; /tmp: for a tmpfs (or writable without --read-only)
  entries.state = { path = "state", type = "dir", mode = tonumber("700", 8), uid = opts.uid, gid = opts.gid }
  entries.tmp = { path = "tmp", type = "dir", mode = tonumber("1777", 8) }
  local list = {}
  for _, e in pairs(entries) do list[#list + 1] = e end
  table.sort(list, function(a, b) return a.path < b.path end)
  return list
end

-- The layer (a tar) of the entries: their files read now.
function oci.layer(entries)
  local out = {}
  for _, e in ipairs(entries) do
    if e.source then
      local data, err = fs.read_file(e.source)
      if not data then return nil, "cannot read " .. e.source .. ": " .. tostring(err) end
      e.data = data
    end
    tar.add(out, e)
    e.data = nil
  end
  return tar.finish(out)
end

-- What the image runs: the program's command; for `hersh run` its WatcherAPI on every
-- address of the container's network at the declared port (127.0.0.1, hersh run's
-- default, would be unreachable from outside the container). -> entrypoint, cmd.
function oci.command(image, port)
  local argv, err = dockerfile.command(image)
  if not argv then return nil, err end
  local listening = oci.listening(argv, port)
  if listening then return { argv[1], "run" }, table.move(listening, 3, #listening, 1, {}) end
  return argv, json.array{}
end

-- argv of a `hersh run` with its WatcherAPI on every address at port (--bind, --port
-- after "run"); nil for another command.
function oci.listening(argv, port)
  if not ((argv[1] == "hersh" or argv[1] == "/opt/hersh/bin/hersh") and argv[2] == "run") then return nil end
  local out = { argv[1], "run", "--bind", "0.0.0.0", "--port", tostring(port) }
  return table.move(argv, 3, #argv, #out + 1, out)
end

-- The user an image runs as when none is given: its Dockerfile's numeric USER, unless
-- that is root or absent, then DEFAULT_USER (as `hersh export` runs it on a cluster).
function oci.user_of(image)
  local u, g = tostring(image.user or ""):match("^(%d+):?(%d*)$")
  local uid, gid = math.tointeger(tonumber(u)), math.tointeger(tonumber(g))
  if not uid or uid == 0 then return oci.DEFAULT_USER, oci.DEFAULT_USER end
  return uid, (gid and gid ~= 0) and gid or uid
end

-- The archive of opts {images_dir, build_id (a built image), runtime, uid, gid, port,
-- name (repository:tag)} -> {bytes (the archive), digest (the manifest's), config
-- (its digest), layer (its digest and size), name, manifest (its bytes), blobs (digest
-- -> bytes: the config and the layer, for a registry push)}, or nil, err.
function oci.archive(opts)
  local image, err = build.load_image(opts.images_dir, opts.build_id)
  if not image then return nil, "no built image " .. tostring(opts.build_id) .. ": " .. tostring(err) end
  local uid, gid = opts.uid, opts.gid
  if not uid then uid, gid = oci.user_of(image) end
  gid = gid or uid
  if uid == 0 then return nil, "the image's user must not be root (uid 0)" end
  local port = opts.port or oci.DEFAULT_PORT
  local entrypoint, cmd = oci.command(image, port)
  if not entrypoint then return nil, cmd end
  local entries, entries_err = oci.entries{ rootfs = build.image_dir(opts.images_dir, opts.build_id) .. "/rootfs",
    base = image.base, runtime = opts.runtime, uid = uid, gid = gid }
  if not entries then return nil, entries_err end
  local layer, layer_err = oci.layer(entries)
  if not layer then return nil, layer_err end
  local layer_digest = "sha256:" .. sha256.hex(layer)
  local env = build.env_list(image.base == "hersh" and build.RUNTIME_ENV or {}, { HOME = "/state" }, image.env,
    { HERSH_STATE_DIR = "/state" })
  local config = json.encode{
    architecture = "amd64", os = "linux", created = "1970-01-01T00:00:00Z",
    config = {
      User = uid .. ":" .. gid, Env = env, Entrypoint = entrypoint, Cmd = cmd, WorkingDir = image.workdir or "/",
      ExposedPorts = { [port .. "/tcp"] = {} }, Volumes = { ["/state"] = {} },
      Labels = { ["org.opencontainers.image.title"] = opts.name, ["dev.hersh.build-id"] = opts.build_id },
    },
    rootfs = { type = "layers", diff_ids = { layer_digest } },
  }
  local config_digest = "sha256:" .. sha256.hex(config)
  local manifest = json.encode{
    schemaVersion = 2, mediaType = oci.MANIFEST_TYPE,
    config = { mediaType = "application/vnd.oci.image.config.v1+json", digest = config_digest, size = #config },
    layers = { { mediaType = "application/vnd.oci.image.layer.v1.tar", digest = layer_digest, size = #layer } },
  }
  local manifest_digest = "sha256:" .. sha256.hex(manifest)
  local index = json.encode{
    schemaVersion = 2, mediaType = "application/vnd.oci.image.index.v1+json",
    manifests = { { mediaType = oci.MANIFEST_TYPE, digest = manifest_digest,
      size = #manifest, annotations = { ["org.opencontainers.image.ref.name"] = opts.name } } },
  }
  local blob = function(digest) return "blobs/sha256/" .. digest:sub(8) end
  local docker = json.encode{ { Config = blob(config_digest), RepoTags = { opts.name }, Layers = { blob(layer_digest) } } }
  local files = {
    { path = "blobs", type = "dir", mode = DIR_MODE }, { path = "blobs/sha256", type = "dir", mode = DIR_MODE },
    { path = blob(config_digest), type = "file", mode = FILE_MODE, data = config },
    { path = blob(layer_digest), type = "file", mode = FILE_MODE, data = layer },
    { path = blob(manifest_digest), type = "file", mode = FILE_MODE, data = manifest },
    { path = "index.json", type = "file", mode = FILE_MODE, data = index },
    { path = "manifest.json", type = "file", mode = FILE_MODE, data = docker },
    { path = "oci-layout", type = "file", mode = FILE_MODE, data = json.encode{ imageLayoutVersion = "1.0.0" } },
  }
  return { bytes = tar.archive(files), digest = manifest_digest, config = config_digest,
    layer = { digest = layer_digest, size = #layer }, name = opts.name, manifest = manifest,
    blobs = { [config_digest] = config, [layer_digest] = layer } }
end

return oci
