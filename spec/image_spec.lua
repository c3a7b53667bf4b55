-- `hersh image DIR -o FILE` (lua/cli/image.lua, lua/host/image/oci.lua): the archive is
-- an OCI image layout plus Docker's manifest.json, every blob is what its digest says
-- (checked with coreutils' sha256sum and GNU tar, which share no code with the writer),
-- the same program gives the same bytes twice, and the image runs as a plain user with
-- nothing in it writable or set-id but /state and /tmp. (docker load and docker run of
-- such an archive: spec/swarm_spec.lua.)
local cjson = require "cjson"
local P = require "scripts.process"
local H = require "scripts.host_harness"

local function run(argv)
  local dir = P.tmpdir()
  P.defer(function() os.execute("env -u LD_PRELOAD rm -rf " .. P.quote(dir)) end)
  argv.dir = dir
  local proc = P.start(argv)
  local rc = P.wait_exit(proc, 120)
  return rc, P.stdout(proc), P.stderr(proc)
end

-- The member `name` of the tar at path (GNU tar), or nil.
local function member(path, name)
  local p = io.popen("env -u LD_PRELOAD tar -xOf " .. P.quote(path) .. " " .. P.quote(name) .. " 2>/dev/null")
  local data = p:read("a")
  local ok = p:close()
  return ok and data or nil
end

-- `tar -tv` lines of a tar held in a file.
local function listing(path)
  local p = io.popen("env -u LD_PRELOAD tar --numeric-owner -tvf " .. P.quote(path))
  local lines = {}
  for line in p:lines() do lines[#lines + 1] = line end
  p:close()
  return lines
end

describe("hersh image", function()
  local dir
  before_each(function()
    dir = P.tmpdir()
    P.defer(function() os.execute("env -u LD_PRELOAD rm -rf " .. P.quote(dir)) end)
  end)

  it("writes an OCI layout whose blobs match their digests, the same bytes twice", function()
    local a, b = dir .. "/a.tar", dir .. "/b.tar"
    local rc, out, err = run{ P.hersh, "image", H.FIXTURE, "-o", a, "--json" }
    assert.equal(0, rc, err)
    local made = cjson.decode(out)
    rc, out, err = run{ P.hersh, "image", H.FIXTURE, "-o", b, "--json" }
    assert.equal(0, rc, err)
    assert.equal(made.digest, cjson.decode(out).digest)
    assert.equal(P.sha256sum(P.read(a)), P.sha256sum(P.read(b)))
    assert.equal("1.0.0", cjson.decode(member(a, "oci-layout")).imageLayoutVersion)
    local index = cjson.decode(member(a, "index.json"))
    local entry = index.manifests[1]
    assert.equal(made.digest, entry.digest)
    local function blob(digest)
      local data = assert(member(a, "blobs/sha256/" .. digest:sub(8)), "no blob " .. digest)
      assert.equal(digest, "sha256:" .. P.sha256sum(data))
      return data
    end
    local manifest = cjson.decode(blob(entry.digest))
    assert.equal("application/vnd.oci.image.manifest.v1+json", manifest.mediaType)
    local config = cjson.decode(blob(manifest.config.digest))
    local layer = blob(manifest.layers[1].digest)
    assert.equal(#layer, manifest.layers[1].size)
    assert.same({ manifest.layers[1].digest }, config.rootfs.diff_ids)
    -- Docker's own manifest (what docker load of 20.10 reads) names the same blobs
    local docker = cjson.decode(member(a, "manifest.json"))[1]
    assert.equal("blobs/sha256/" .. manifest.config.digest:sub(8), docker.Config)
    assert.same({ "blobs/sha256/" .. manifest.layers[1].digest:sub(8) }, docker.Layers)
    assert.same({ made.name }, docker.RepoTags)
    -- what it runs: hersh run of the program, its WatcherAPI on the declared port
    assert.same({ "hersh", "run" }, config.config.Entrypoint)
    assert.same({ "--bind", "0.0.0.0", "--port", "8080", "/app/main.lua" }, config.config.Cmd)
    assert.same({ ["8080/tcp"] = {} }, config.config.ExposedPorts)
    assert.same({ ["/state"] = {} }, config.config.Volumes)
    assert.equal("65534:65534", config.config.User)
  end)

  it("holds the program and the runtime, root's and read-only but for /state, nothing set-id", function()
    local a = dir .. "/a.tar"
    local rc, out, err = run{ P.hersh, "image", H.FIXTURE, "-o", a, "--json", "--port", "9191", "--user", "4242:4343" }
    assert.equal(0, rc, err)
    local made = cjson.decode(out)
    local manifest = cjson.decode(member(a, "blobs/sha256/" .. made.digest:sub(8)))
    local layer_path = dir .. "/layer.tar"
    P.write(layer_path, member(a, "blobs/sha256/" .. manifest.layers[1].digest:sub(8)))
    local entries = {}
    for _, line in ipairs(listing(layer_path)) do
      local mode, owner, name = line:match("^(%S+)%s+(%S+)%s+%d+%s+%S+%s+%S+%s+(.-)/?$")
      name = name and name:gsub(" %-> .*$", "")
      entries[name] = { mode = mode, owner = owner }
    end
    assert.truthy(entries["app/main.lua"], "the program's file")
    assert.truthy(entries["opt/hersh/bin/hersh"], "the runtime")
    assert.truthy(entries["opt/hersh/lua/hersh/init.lua"], "its Lua modules")
    assert.equal("drwx------", entries.state.mode)
    assert.equal("4242/4343", entries.state.owner)
    for name, e in pairs(entries) do
      if name ~= "state" then
        assert.equal("0/0", e.owner, name)
        if e.mode:sub(1, 1) ~= "l" and name ~= "tmp" then
          assert.is_nil(e.mode:sub(6, 6):find("w") or e.mode:sub(9, 9):find("w"), name .. " " .. e.mode)
          assert.is_nil(e.mode:find("[sS]"), name .. " " .. e.mode)
        end
      end
    end
    local config = cjson.decode(member(a, "blobs/sha256/" .. manifest.config.digest:sub(8)))
    assert.equal("4242:4343", config.config.User)
    assert.same({ ["9191/tcp"] = {} }, config.config.ExposedPorts)
  end)

  it("runs as the Dockerfile's numeric USER unless it is root or absent, as hersh export does", function()
    local oci = require "host.image.oci"
    assert.same({ 1000, 2000 }, { oci.user_of{ user = "1000:2000" } })
    assert.same({ 1000, 1000 }, { oci.user_of{ user = "1000" } })
    assert.same({ 1000, 1000 }, { oci.user_of{ user = "1000:0" } })
    assert.same({ 65534, 65534 }, { oci.user_of{ user = "0:0" } })
    assert.same({ 65534, 65534 }, { oci.user_of{} })
  end)

  it("refuses root, a bad port and a missing -o with a usage error naming the flag", function()
    local rc, _, err = run{ P.hersh, "image", H.FIXTURE, "-o", dir .. "/x.tar", "--user", "0" }
    assert.equal(2, rc)
    assert.truthy(err:find("--user", 1, true), err)
    rc, _, err = run{ P.hersh, "image", H.FIXTURE, "-o", dir .. "/x.tar", "--port", "70000" }
    assert.equal(2, rc)
    assert.truthy(err:find("--port", 1, true), err)
    rc, _, err = run{ P.hersh, "image", H.FIXTURE }
    assert.equal(2, rc)
    assert.truthy(err:find("-o FILE", 1, true), err)
    rc, _, err = run{ P.hersh, "image", dir, "-o", dir .. "/x.tar" } -- no Dockerfile there
    assert.equal(2, rc)
    assert.truthy(err:find("Dockerfile", 1, true), err)
    assert.is_false(P.exists(dir .. "/x.tar"))
  end)
end)
