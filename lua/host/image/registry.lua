-- Pushes an image (host.image.oci's archive) to a registry with the registry v2 HTTP
-- API, through the Host's own HTTP client: each blob the registry does not hold yet is
-- uploaded (POST /v2/<repo>/blobs/uploads/, then PUT to the upload's Location with its
-- digest: one monolithic upload), then the manifest is PUT under a tag. The blobs are
-- content-addressed, so every node that pulls <registry>/<repo>@<manifest digest> gets
-- these very bytes. Plain HTTP and no credentials: the registry is the cluster's own,
-- which each dockerd names with --insecure-registry (docs/cluster.md).
local core = require "hersh.core"
local http = require "hersh.http"
local json = require "hersh.json"
local oci = require "host.image.oci"

local registry = {}

-- A request; done(res) or done(nil, err). Started from the loop, never inside another
-- request's callback (libcurl refuses that).
local function request(opts, done)
  opts.timeout, opts.connect_timeout = opts.timeout or 300, 5
  core.timer(0, function()
    local ok, err = http.request(opts, function(res, req_err) done(res, req_err) end)
    if not ok then done(nil, err) end
  end)
end

local function why(what, res, err)
  if not res then return what .. ": " .. tostring(err) end
  local doc = json.decode(res.body or "")
  local errors = type(doc) == "table" and type(doc.errors) == "table" and doc.errors[1]
  local message = type(errors) == "table" and tostring(errors.message) or (res.body or ""):sub(1, 200)
  return string.format("%s: %d %s", what, res.status, message)
end

-- The upload's Location (absolute, or a path on the registry) with ?digest=.
local function upload_url(base, location, digest)
  if not location:match("^https?://") then location = base .. location end
  return location .. (location:find("?", 1, true) and "&" or "?") .. "digest=" .. digest
end

-- Uploads one blob; done(true) or done(nil, err).
local function push_blob(base, repo, digest, bytes, done)
  request({ method = "POST", url = base .. "/v2/" .. repo .. "/blobs/uploads/", body = "" }, function(up, up_err)
    local location = up and up.status == 202 and up.headers.location
    if not location then return done(nil, why("cannot start the upload of " .. digest, up, up_err)) end
    request({ method = "PUT", url = upload_url(base, location, digest), body = bytes,
      headers = { ["Content-Type"] = "application/octet-stream" } }, function(put, put_err)
      if not put or put.status ~= 201 then return done(nil, why("cannot upload " .. digest, put, put_err)) end
      done(true)
    end)
  end)
end

-- Pushes image (oci.archive's: blobs, manifest, digest) as address/repo:tag (address
-- "HOST:PORT"); done(reference) with the reference by digest, address/repo@sha256:...,
-- or done(nil, err). A manifest the registry holds already (its blobs with it) is not
-- pushed again.
function registry.push(address, repo, tag, image, done)
  local base = "http://" .. address
  local reference = address .. "/" .. repo .. "@" .. image.digest
  local digests = {}
  for digest in pairs(image.blobs) do digests[#digests + 1] = digest end
  table.sort(digests)
  local function next_blob(i)
    if i > #digests then
      return request({ method = "PUT", url = base .. "/v2/" .. repo .. "/manifests/" .. tag, body = image.manifest,
        headers = { ["Content-Type"] = oci.MANIFEST_TYPE } }, function(res, err)
        if not res or res.status ~= 201 then
          return done(nil, "registry " .. address .. ": " .. why("cannot push the manifest", res, err))
        end
        local said = res.headers["docker-content-digest"]
        if said and said ~= image.digest then
          return done(nil, "the registry names the manifest " .. said .. ", not " .. image.digest)
        end
        done(reference)
      end)
    end
    push_blob(base, repo, digests[i], image.blobs[digests[i]], function(ok, err)
      if not ok then return done(nil, "registry " .. address .. ": " .. err) end
      next_blob(i + 1)
    end)
  end
  request({ method = "GET", url = base .. "/v2/" .. repo .. "/manifests/" .. image.digest, timeout = 30,
    headers = { Accept = oci.MANIFEST_TYPE } }, function(res)
    if res and res.status == 200 then return done(reference) end
    next_blob(1)
  end)
end

return registry
