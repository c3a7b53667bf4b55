-- `hersh export k8s|nomad NAME|DIR`: a program as manifests for a cluster — a Kubernetes
-- Deployment + Service (+ NetworkPolicy, + PersistentVolumeClaim) or a Nomad job in the
-- shape of its HTTP API — from its record on the Host (NAME) or from a program folder
-- (DIR: its Dockerfile, the defaults for the rest). The manifests run the program's OCI
-- image (`hersh image`) and keep what of the sandbox a cluster can keep; what does not
-- map is said on stderr, one line each. docs/cluster.md has the mapping table.
local json = require "hersh.json"
local sys = require "hersh.os"
local client = require "cli.client"
local deploy = require "cli.deploy"
local yaml = require "cli.yaml"
local build_id = require "host.build_id"
local dockerfile = require "host.dockerfile"
local health = require "host.health"
local program = require "host.program"
local restart_policy = require "host.restart_policy"
local supervisor = require "host.supervisor"
local EXIT = require("cli.args").EXIT

local export = {}

export.DEFAULTS = {
  port = 8080,              -- the WatcherAPI's port inside the program's image (hersh image)
  port_name = "watcher",    -- its name in the manifests (probes and checks use it)
  repository = "hersh/",    -- the image is hersh/<name>:<build id> unless --image
  uid = 65534,              -- when the Dockerfile has no USER (or USER 0): never root on a cluster
  state_size = "1Gi",       -- the PersistentVolumeClaim's request (k8s --state-volume)
  cpu_mhz = 1000,           -- Nomad counts CPU in MHz: MHz per CPU of limits.cpus
  nomad_cpu = 100,          -- Nomad's own defaults for a task without limits
  nomad_memory_mb = 300,
  nomad_min_interval = 5,   -- Nomad refuses a restart interval below 5 s
  nomad_min_check = 1,      -- ... and a check interval or timeout below 1 s
}

local MIB = 1024 * 1024
local NS = 1000000000

-- A Kubernetes Service name is a DNS-1035 label; a namespace a DNS-1123 label.
local function dns_label(s, first_letter)
  return #s <= 63 and s:match("^[a-z0-9][a-z0-9%-]*$") ~= nil and not s:match("%-$")
    and (not first_letter or s:match("^[a-z]") ~= nil)
end

local function usage(message)
  client.fail(EXIT.usage, message)
end

local function note(text)
  io.stderr:write("hersh export: ", text, "\n")
end

-- The program as export needs it: name, image tag, uid/gid, limits, restart policy,
-- health checks and network.
local function from_plan(p, text)
  local plan, err = dockerfile.parse(text)
  if not plan then usage(err) end
  local uid, gid = tostring(plan.user or ""):match("^(%d+):?(%d*)$")
  uid, gid = tonumber(uid), tonumber(gid) or tonumber(uid)
  if uid == 0 then
    note("the Dockerfile's USER 0 runs as uid " .. export.DEFAULTS.uid .. " instead (runAsNonRoot)")
  end
  if not uid or uid == 0 then uid, gid = export.DEFAULTS.uid, export.DEFAULTS.uid end
  p.uid, p.gid = uid, gid ~= 0 and gid or uid
  return p
end

function export.from_dir(dir)
  local text, files = deploy.read_dir(dir, "DIR")
  local name = (sys.fs.realpath(dir) or dir):match("([^/]+)$") or ""
  return from_plan({ name = name, tag = build_id.compute(text, files), policy = assert(restart_policy.normalize(nil)),
    network = "none" }, text)
end

function export.from_host(c, ref)
  local rec = c:program(ref)
  local src = c:call("GET", "/programs/" .. ref .. "/source", nil, { program = ref })
  local name = rec.name ~= json.null and rec.name or ref
  return from_plan({ from_host = true, name = name, tag = rec.build_id, limits = rec.limits ~= json.null and rec.limits or nil,
    policy = rec.restart_policy, health = rec.health ~= json.null and rec.health or nil,
    network = rec.network }, src.dockerfile)
end

local function ceil_int(x)
  return math.tointeger(math.ceil(x - 1e-9)) or error("not a number")
end

local function seconds(x, least)
  return math.max(least or 1, ceil_int(x))
end

-- Seconds as Nomad's durations: int64 nanoseconds (some 292 years at most).
local function nanoseconds(s)
  local ns = math.tointeger(math.floor(s * NS + 0.5))
  if not ns then
    client.fail(EXIT.failed, string.format("%.17g s is longer than a Nomad duration can be (int64 nanoseconds): "
      .. "lower the program's restart policy", s))
  end
  return ns
end

-- Bytes as a Kubernetes quantity: Mi or Ki when exact, else plain bytes.
local function quantity(bytes)
  bytes = ceil_int(bytes)
  if bytes % MIB == 0 then return string.format("%dMi", bytes // MIB) end
  if bytes % 1024 == 0 then return string.format("%dKi", bytes // 1024) end
  return string.format("%d", bytes)
end

local function millicores(cpus)
  local m = math.max(1, ceil_int(cpus * 1000))
  return m % 1000 == 0 and string.format("%d", m // 1000) or string.format("%dm", m)
end

-- The seconds of backoff the Host's policy spends on max_restarts restarts in a row:
-- doubling until max_delay (some 1100 steps at most), then max_delay each.
local function backoff_total(policy)
  local total, i, delay = 0, 0, policy.base_delay
  while i < policy.max_restarts and delay < policy.max_delay do
    total, i, delay = total + delay, i + 1, delay * 2
  end
  return total + (policy.max_restarts - i) * policy.max_delay
end

local function checks_of(p)
  return p.health or health.DEFAULTS
end

local function notes_common(p, target)
  if p.policy.mode == "on-failure" then
    note("restart mode on-failure: " .. target .. " restarts a service after a clean exit too")
  end
  if p.from_host then note("env is not exported (the Host never shows it): give it to the cluster as a secret") end
end

-- ---- Kubernetes --------------------------------------------------------------------

local function k8s_probe(path, period, timeout, failures)
  return { httpGet = { path = path, port = export.DEFAULTS.port_name, scheme = "HTTP" },
    periodSeconds = period, timeoutSeconds = timeout, failureThreshold = failures, successThreshold = 1 }
end

local function k8s_resources(p)
  local l = p.limits or {}
  local r = {}
  if l.memory then r.memory = quantity(l.memory) end
  if l.cpus then r.cpu = millicores(l.cpus) end
  if l.pids then note("limits.pids has no per-container field in Kubernetes (the kubelet's podPidsLimit sets it)") end
  if not next(r) then return {} end
  local req = {}
  for k, v in pairs(r) do req[k] = v end
  return { limits = r, requests = req }
end

function export.k8s(p, opts)
  local D = export.DEFAULTS
  local labels = { ["app.kubernetes.io/name"] = p.name, ["app.kubernetes.io/managed-by"] = "hersh" }
  local function meta(extra)
    local m = { name = p.name, labels = labels, namespace = opts.namespace }
    for k, v in pairs(extra or {}) do m[k] = v end
    return m
  end
  local selector = { ["app.kubernetes.io/name"] = p.name }
  local h = checks_of(p)
  local pod_labels = {}
  for k, v in pairs(labels) do pod_labels[k] = v end
  pod_labels["hersh.dev/build"] = p.tag:match("^[%w][%w%-_.]*$") and #p.tag <= 63 and p.tag or nil
  local state = opts.state_volume and { name = "state", persistentVolumeClaim = { claimName = opts.state_volume } }
    or { name = "state", emptyDir = {} }
  local container = {
    name = p.name, image = opts.image, imagePullPolicy = "IfNotPresent",
    ports = { { name = D.port_name, containerPort = D.port, protocol = "TCP" } },
    resources = k8s_resources(p),
    startupProbe = k8s_probe("/watcher/status", 1, 1, program.READY_TIMEOUT),
    readinessProbe = k8s_probe("/watcher/status", 5, seconds(h.timeout), 1),
    livenessProbe = k8s_probe(h.path, seconds(h.interval), seconds(h.timeout), h.failures),
    securityContext = {
      allowPrivilegeEscalation = false, privileged = false, readOnlyRootFilesystem = true,
      runAsNonRoot = true, runAsUser = p.uid, runAsGroup = p.gid,
      capabilities = { drop = { "ALL" } }, seccompProfile = { type = "RuntimeDefault" },
    },
    volumeMounts = { { name = "state", mountPath = "/state" }, { name = "tmp", mountPath = "/tmp" } },
  }
  local deployment = {
    apiVersion = "apps/v1", kind = "Deployment",
    metadata = meta { annotations = { ["hersh.dev/restart-policy"] = json.encode(p.policy),
      ["hersh.dev/health"] = json.encode(h) } },
    spec = {
      replicas = 1, revisionHistoryLimit = 10, selector = { matchLabels = selector },
      -- a ReadWriteOnce claim cannot be held by the old and the new pod at once
      strategy = opts.state_volume and { type = "Recreate" }
        or { type = "RollingUpdate", rollingUpdate = { maxSurge = 1, maxUnavailable = 0 } },
      template = {
        metadata = { labels = pod_labels },
        spec = {
          restartPolicy = "Always", automountServiceAccountToken = false, enableServiceLinks = false,
          terminationGracePeriodSeconds = program.STOP_GRACE,
          securityContext = { runAsNonRoot = true, runAsUser = p.uid, runAsGroup = p.gid, fsGroup = p.gid,
            seccompProfile = { type = "RuntimeDefault" } },
          containers = { container },
          volumes = { state, { name = "tmp", emptyDir = { medium = "Memory", sizeLimit = quantity(supervisor.TMP_SIZE) } } },
        },
      },
    },
  }
  local docs = { deployment, {
    apiVersion = "v1", kind = "Service", metadata = meta(),
    spec = { type = "ClusterIP", selector = selector,
      ports = { { name = D.port_name, port = D.port, targetPort = D.port_name, protocol = "TCP" } } },
  } }
  if p.network ~= "host" then -- "none": the sandbox has no network out; so no egress here
    docs[#docs + 1] = { apiVersion = "networking.k8s.io/v1", kind = "NetworkPolicy", metadata = meta(),
      spec = { podSelector = { matchLabels = selector }, policyTypes = { "Egress" } } }
  end
  if opts.state_volume then
    docs[#docs + 1] = { apiVersion = "v1", kind = "PersistentVolumeClaim",
      metadata = meta { name = opts.state_volume },
      spec = { accessModes = { "ReadWriteOnce" }, resources = { requests = { storage = opts.state_size } } } }
  end
  notes_common(p, "Kubernetes")
  if p.policy.mode == "no" then note("restart mode no: a Deployment always restarts (restartPolicy Always)") end
  note("restart backoff: the kubelet's CrashLoopBackOff (10 s doubling to 5 min) replaces base_delay "
    .. p.policy.base_delay .. " s, max_delay " .. p.policy.max_delay .. " s and max_restarts "
    .. p.policy.max_restarts .. " (kept as the annotation hersh.dev/restart-policy)")
  return docs
end

-- ---- Nomad -------------------------------------------------------------------------

local function nomad_restart(policy)
  local D = export.DEFAULTS
  local attempts = policy.mode == "no" and 0 or math.tointeger(policy.max_restarts)
  if not attempts then
    client.fail(EXIT.failed, string.format("max_restarts %.17g is more than Nomad's Attempts can hold", policy.max_restarts))
  end
  local delay = policy.base_delay
  -- Nomad counts attempts within a window from the first start; the Host forgives them
  -- after reset_after s in Ready. The window: that, plus the backoff the Host would take.
  local interval = math.max(D.nomad_min_interval, policy.reset_after + backoff_total(policy), attempts * delay)
  return { Attempts = attempts, Delay = nanoseconds(delay), Interval = nanoseconds(interval), Mode = "fail" }
end

function export.nomad(p, opts)
  local D = export.DEFAULTS
  local h = checks_of(p)
  local l = p.limits or {}
  local memory_mb = l.memory and math.max(10, ceil_int(l.memory / MIB)) or D.nomad_memory_mb
  local cpu = l.cpus and math.max(1, ceil_int(l.cpus * D.cpu_mhz)) or D.nomad_cpu
  local mounts = { { type = "tmpfs", target = "/tmp", readonly = false,
    tmpfs_options = { { size = supervisor.TMP_SIZE } } } }
  if not opts.state_volume then
    table.insert(mounts, 1, { type = "volume", target = "/state", source = "hersh-" .. p.name .. "-state", readonly = false })
  end
  local config = {
    image = opts.image, ports = { D.port_name }, readonly_rootfs = true, cap_drop = { "ALL" },
    security_opt = { "no-new-privileges" }, mount = mounts,
    pids_limit = l.pids and math.tointeger(l.pids) or nil, cpu_hard_limit = l.cpus and true or nil,
  }
  local task = {
    Name = p.name, Driver = "docker", User = string.format("%d:%d", p.uid, p.gid), Config = config,
    Resources = { CPU = cpu, MemoryMB = memory_mb }, KillTimeout = nanoseconds(program.STOP_GRACE),
    VolumeMounts = opts.state_volume and { { Volume = "state", Destination = "/state", ReadOnly = false } } or nil,
  }
  local group = {
    Name = p.name, Count = 1, Tasks = { task }, RestartPolicy = nomad_restart(p.policy),
    Networks = { { DynamicPorts = { { Label = D.port_name, To = D.port } } } },
    Services = { {
      Name = p.name, PortLabel = D.port_name, Provider = "nomad",
      Checks = { {
        Name = p.name .. "-alive", Type = "http", Path = h.path, PortLabel = D.port_name,
        Interval = nanoseconds(math.max(D.nomad_min_check, h.interval)),
        Timeout = nanoseconds(math.max(D.nomad_min_check, h.timeout)),
        CheckRestart = { Limit = math.tointeger(h.failures), Grace = nanoseconds(program.READY_TIMEOUT),
          IgnoreWarnings = false },
      } },
    } },
    Volumes = opts.state_volume and { state = { Name = "state", Type = "host", Source = opts.state_volume,
      ReadOnly = false } } or nil,
  }
  notes_common(p, "Nomad")
  note("restart backoff: Nomad waits a fixed Delay (" .. p.policy.base_delay .. " s, plus jitter) between restarts; "
    .. "the Host doubles it up to max_delay " .. p.policy.max_delay .. " s")
  if p.network ~= "host" then
    note("network none: a Nomad docker task cannot publish its port without a network; egress is not denied")
  end
  if not l.memory then note("no memory limit: Nomad's default MemoryMB " .. D.nomad_memory_mb .. " applies") end
  return { Job = {
    ID = p.name, Name = p.name, Type = "service", Namespace = opts.namespace, Datacenters = { "*" },
    Meta = { hersh_program = p.name, hersh_build = p.tag }, TaskGroups = { group },
  } }
end

-- ---- the command ---------------------------------------------------------------------

local function write(path, text)
  if not path or path == "-" then
    io.stdout:write(text)
    return
  end
  local ok, err = sys.fs.write_file(path, text, tonumber("644", 8))
  if not ok then usage("cannot write " .. path .. ": " .. tostring(err)) end
end

local IMAGE = "^[%w][%w%._%-/:@]*$"

function export.run(a, c, out)
  local st = sys.fs.stat(a.program)
  local p
  if st and st.type == "dir" then
    p = export.from_dir(a.program)
  elseif a.program:find("/", 1, true) or a.program:match("^%.") then
    usage(a.program .. " is not a folder (a program folder holds a Dockerfile; a NAME has no '/')")
  else
    p = export.from_host(c, a.program)
  end
  p.name = a.name or p.name
  if not dns_label(p.name, true) then
    usage("'" .. p.name .. "' cannot name a Kubernetes Service or a Nomad job (lower-case letters, digits "
      .. "and '-', at most 63, starting with a letter): give one with --name")
  end
  local opts = { namespace = a.namespace, state_volume = a.state_volume, state_size = a.state_size or export.DEFAULTS.state_size,
    image = a.image or (export.DEFAULTS.repository .. p.name .. ":" .. p.tag) }
  if opts.namespace and not dns_label(opts.namespace) then
    usage("--namespace '" .. opts.namespace .. "' is not a namespace (lower-case letters, digits and '-', at most 63)")
  end
  if opts.state_volume and not dns_label(opts.state_volume) then
    usage("--state-volume '" .. opts.state_volume .. "' is not a volume name (lower-case letters, digits and '-', at most 63)")
  end
  if not opts.state_size:match("^[1-9]%d*[KMGTPE]i$") then
    usage("--state-size wants a size like 512Mi or 10Gi, not '" .. opts.state_size .. "'")
  end
  if not opts.image:match(IMAGE) or #opts.image > 255 then
    usage("--image '" .. opts.image .. "' is not an image reference (like registry.example/hersh/web:1)")
  end
  local text
  if a.target == "k8s" then
    local docs = export.k8s(p, opts)
    text = out.json_mode and json.encode { apiVersion = "v1", kind = "List", items = docs } .. "\n"
      or yaml.documents(docs)
  else
    text = json.encode(export.nomad(p, opts)) .. "\n"
  end
  write(a.output, text)
  return EXIT.ok
end

return export
