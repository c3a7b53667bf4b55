-- `hersh export k8s|nomad` (lua/cli/export.lua, lua/cli/yaml.lua): the manifests of a
-- program folder and of a program on a real Host, checked offline — Kubernetes against
-- the models Debian's python3-kubernetes generates from the API's OpenAPI spec, Nomad
-- against spec/schemas/nomad_job.schema.json — plus the API servers' rules the fields
-- depend on (spec/schemas/*_check.py). The checkers are shown to refuse broken
-- manifests, so a pass means something. Nothing here runs on a cluster.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"
local EXIT = require("cli.args").EXIT

local PYTHON = "/usr/bin/python3" -- Debian's, with Debian's modules (not a pyenv one)

-- argv running Debian's python: a helper, not under the sanitizer runtime lua5.4 may be
-- preloaded with.
local function python(...)
  return { "env", "-u", "LD_PRELOAD", PYTHON, ... }
end
local K8S_CHECK, NOMAD_CHECK = "spec/schemas/k8s_check.py", "spec/schemas/nomad_check.py"
local MIB = 1024 * 1024
local NS = 1000000000

-- Why the offline checkers cannot run here, or nil.
local function why_no_checker()
  if not H.sh("test -x " .. PYTHON) then return "no " .. PYTHON end
  if not H.sh("env -u LD_PRELOAD " .. PYTHON .. " -c 'import yaml, kubernetes, jsonschema' 2>/dev/null") then
    return "python3-yaml, python3-kubernetes or python3-jsonschema is missing (scripts/setup installs them)"
  end
end
local NO_CHECKER = why_no_checker()

-- Runs a checker on a file: exit code and output.
local function check(script, file, extra)
  local proc = P.start(python(script, file, extra))
  local code = P.wait_exit(proc, 60)
  local out = P.stdout(proc) .. P.stderr(proc)
  P.stop(proc)
  assert(code, script .. " did not end")
  return code, out
end

local function tmp()
  local dir = P.tmpdir()
  P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
  return dir
end

-- A program folder: the counter's Dockerfile and main.lua, in DIR/<name>.
local function program_folder(name, dockerfile)
  local dir = tmp() .. "/" .. name
  assert(H.sh("mkdir -p " .. P.quote(dir)))
  P.write(dir .. "/Dockerfile", dockerfile or H.DOCKERFILE)
  P.write(dir .. "/main.lua", H.MAIN_LUA)
  return dir
end

local function export(argv, opts)
  local full = { "export" }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  return H.client(full, opts)
end

-- The Kubernetes documents of a --json export, by kind.
local function by_kind(list)
  local out = {}
  for _, d in ipairs(list.items) do out[d.kind] = d end
  return out
end

local function container(deployment)
  return deployment.spec.template.spec.containers[1]
end

local function copy(v)
  return cjson.decode(cjson.encode(v))
end

-- Runs a checker on each of files[i] = path, in one start-up: {code, output} per path.
local function check_each(script, files)
  local proc = P.start(python(script, "--each", table.unpack(files)))
  local code = P.wait_exit(proc, 60)
  local out = P.stdout(proc)
  local err = P.stderr(proc)
  P.stop(proc)
  assert.equal(0, code, script .. " --each: " .. err)
  local answers, current = {}, nil
  for line in out:gmatch("[^\n]*") do
    local path, rc = line:match("^== (.-) (%d+)$")
    if path then
      current = { code = tonumber(rc), out = "" }
      answers[path] = current
    elseif current then
      current.out = current.out .. line .. "\n"
    end
  end
  return answers
end

-- Each broken variant of base (cases[i] = {what the checker must say, how to break it})
-- is refused by the checker, naming what is wrong.
local function assert_refused(script, base, cases, out)
  local files = {}
  for i, case in ipairs(cases) do
    local broken = copy(base)
    case[2](broken)
    files[i] = out .. "/broken-" .. i .. ".json"
    P.write(files[i], cjson.encode(broken))
  end
  local answers = check_each(script, files)
  for i, case in ipairs(cases) do
    local answer = answers[files[i]]
    assert.is_table(answer, case[1] .. ": no answer")
    assert.equal(1, answer.code, case[1] .. ": " .. answer.out)
    assert.has_match(case[1], answer.out, 1, true)
  end
end

-- Marks the test pending (saying why) when the checkers cannot run; true then.
local function no_checker()
  if NO_CHECKER then
    pending("the offline checkers cannot run: " .. NO_CHECKER)
    return true
  end
end

describe("hersh export", function()
  it("writes a folder's program as Kubernetes YAML that the API's schema takes, the same as its JSON", function()
    if no_checker() then return end
    local dir = program_folder("counter")
    local out = tmp()
    local code, _, err = export { "k8s", dir, "-o", out .. "/k8s.yaml" }
    assert.equal(EXIT.ok, code, err)
    code, _, err = export { "k8s", dir, "--json", "-o", out .. "/k8s.json" }
    assert.equal(EXIT.ok, code, err)
    local ok, why = check(K8S_CHECK, out .. "/k8s.yaml")
    assert.equal(0, ok, why)
    assert.equal("ok 3\n", why)
    ok, why = check(K8S_CHECK, out .. "/k8s.json")
    assert.equal(0, ok, why)
    -- the YAML, read back by PyYAML, is the JSON's List item for item
    local _, from_yaml = check(K8S_CHECK, out .. "/k8s.yaml", "--dump")
    local _, from_json = check(K8S_CHECK, out .. "/k8s.json", "--dump")
    assert.equal(from_json, from_yaml)
    local docs = by_kind(cjson.decode(P.read(out .. "/k8s.json")))
    local d, c = docs.Deployment, container(docs.Deployment)
    assert.matches("^hersh/counter:build%-%x+$", c.image)
    assert.equal("Always", d.spec.template.spec.restartPolicy)
    assert.equal(false, d.spec.template.spec.automountServiceAccountToken)
    local sc = c.securityContext
    assert.same({ drop = { "ALL" } }, sc.capabilities)
    assert.is_true(sc.readOnlyRootFilesystem)
    assert.is_true(sc.runAsNonRoot)
    assert.equal(false, sc.allowPrivilegeEscalation)
    assert.equal("RuntimeDefault", sc.seccompProfile.type)
    assert.is_true(sc.runAsUser > 0)
    assert.equal("/watcher/status", c.readinessProbe.httpGet.path)
    assert.equal("/watcher/status", c.livenessProbe.httpGet.path)
    assert.equal("/watcher/status", c.startupProbe.httpGet.path)
    assert.equal(8080, c.ports[1].containerPort)
    assert.same({ name = "state", emptyDir = {} }, d.spec.template.spec.volumes[1])
    assert.same({ "Egress" }, docs.NetworkPolicy.spec.policyTypes) -- network "none": no way out
    assert.same({ { name = "watcher", port = 8080, targetPort = "watcher", protocol = "TCP" } },
      docs.Service.spec.ports)
  end)

  it("writes a program on a real Host with its limits, policy and health checks, for Kubernetes and Nomad", function()
    if no_checker() then return end
    local h = H.test_host()
    local rec = H.create(h, H.counter_body("alice", {
      name = "web", limits = { memory = 64 * MIB, cpus = 0.5, pids = 64 }, network = "host",
      restart_policy = { mode = "always", base_delay = 1, max_delay = 30, max_restarts = 4, reset_after = 20 },
      health = { path = "/health", interval = 3, timeout = 1.5, failures = 5 },
    }))
    local out = tmp()
    local code, _, err = export({ "k8s", "web", "--namespace", "prod", "--state-volume", "web-state",
      "--state-size", "2Gi", "--json", "-o", out .. "/web.json" }, { host = h })
    assert.equal(EXIT.ok, code, err)
    local ok, why = check(K8S_CHECK, out .. "/web.json")
    assert.equal(0, ok, why)
    assert.equal("ok 3\n", why) -- Deployment, Service, claim: network "host" needs no NetworkPolicy
    local docs = by_kind(cjson.decode(P.read(out .. "/web.json")))
    local d, c = docs.Deployment, container(docs.Deployment)
    assert.equal("hersh/web:" .. rec.build_id, c.image)
    -- the folder of the same Dockerfile and files names the same image: the build id
    local _, from_dir = export { "k8s", program_folder("web"), "--json" }
    assert.equal(c.image, container(by_kind(cjson.decode(from_dir)).Deployment).image)
    for _, doc in pairs(docs) do assert.equal("prod", doc.metadata.namespace) end
    assert.same({ memory = "64Mi", cpu = "500m" }, c.resources.limits)
    assert.same(c.resources.limits, c.resources.requests)
    assert.same({ "/health", 3, 2, 5 }, { c.livenessProbe.httpGet.path, c.livenessProbe.periodSeconds,
      c.livenessProbe.timeoutSeconds, c.livenessProbe.failureThreshold })
    assert.equal("Recreate", d.spec.strategy.type) -- one ReadWriteOnce claim: no two pods at once
    assert.same({ claimName = "web-state" }, d.spec.template.spec.volumes[1].persistentVolumeClaim)
    assert.equal("2Gi", docs.PersistentVolumeClaim.spec.resources.requests.storage)
    assert.same(H.view(h, "web").restart_policy,
      cjson.decode(d.metadata.annotations["hersh.dev/restart-policy"]))

    code, _, err = export({ "nomad", "web", "--namespace", "prod", "--image", "registry.example:5000/web@sha256:"
      .. string.rep("ab", 32), "-o", out .. "/web.nomad.json" }, { host = h })
    assert.equal(EXIT.ok, code, err)
    ok, why = check(NOMAD_CHECK, out .. "/web.nomad.json")
    assert.equal(0, ok, why)
    local job = cjson.decode(P.read(out .. "/web.nomad.json")).Job
    local g = job.TaskGroups[1]
    local t = g.Tasks[1]
    assert.equal("prod", job.Namespace)
    assert.equal("registry.example:5000/web@sha256:" .. string.rep("ab", 32), t.Config.image)
    assert.is_true(t.Config.readonly_rootfs)
    assert.same({ "ALL" }, t.Config.cap_drop)
    assert.same({ "no-new-privileges" }, t.Config.security_opt)
    assert.equal(64, t.Config.pids_limit)
    assert.same({ CPU = 500, MemoryMB = 64 }, t.Resources)
    -- always, 4 restarts 1 s apart; the window: reset_after + the Host's backoff 1+2+4+8
    assert.same({ Attempts = 4, Delay = 1 * NS, Interval = 35 * NS, Mode = "fail" }, g.RestartPolicy)
    local chk = g.Services[1].Checks[1]
    assert.same({ "http", "/health", 3 * NS, 1.5 * NS, 5 }, { chk.Type, chk.Path, chk.Interval, chk.Timeout,
      chk.CheckRestart.Limit })
    assert.equal("/state", t.Config.mount[1].target)
    assert.same({ { Label = "watcher", To = 8080 } }, g.Networks[1].DynamicPorts)
  end)

  it("maps restart policy no onto zero attempts, and a named volume onto a Nomad host volume", function()
    if no_checker() then return end
    local h = H.test_host()
    H.create(h, H.counter_body("bob", { name = "once", restart_policy = "no" }))
    local file = tmp() .. "/once.json"
    local code, _, err = export({ "nomad", "once", "--state-volume", "once-data", "-o", file }, { host = h })
    assert.equal(EXIT.ok, code, err)
    local ok, why = check(NOMAD_CHECK, file)
    assert.equal(0, ok, why)
    local g = cjson.decode(P.read(file)).Job.TaskGroups[1]
    assert.equal(0, g.RestartPolicy.Attempts)
    assert.equal("fail", g.RestartPolicy.Mode)
    assert.same({ state = { Name = "state", Type = "host", Source = "once-data", ReadOnly = false } }, g.Volumes)
    assert.same({ { Volume = "state", Destination = "/state", ReadOnly = false } }, g.Tasks[1].VolumeMounts)
    assert.is_nil(err:find("restart mode", 1, true)) -- no restarts maps whole: nothing to say
  end)

  it("maps a huge restart policy at once, and says when Nomad's durations cannot hold it", function()
    if no_checker() then return end
    local h = H.test_host()
    H.create(h, H.counter_body("carol", { name = "huge",
      restart_policy = { max_restarts = 1e15, base_delay = 1e-300, max_delay = 1e12 } }))
    H.create(h, H.counter_body("carol", { name = "many", restart_policy = { max_restarts = 5000 } }))
    local out = tmp()
    local code, _, err = export({ "k8s", "huge", "--json", "-o", out .. "/huge.json" }, { host = h, timeout = 60 })
    assert.equal(EXIT.ok, code, err)
    local ok, why = check(K8S_CHECK, out .. "/huge.json")
    assert.equal(0, ok, why)
    code, _, err = export({ "nomad", "huge", "-o", out .. "/huge.nomad.json" }, { host = h, timeout = 60 })
    assert.equal(EXIT.failed, code, err)
    assert.has_match("longer than a Nomad duration can be", err, 1, true)
    -- 5000 restarts: 0.1 s doubling to 60 s (0.1 + ... + 51.2 = 102.3 s), then 4990 of 60 s
    code, _, err = export({ "nomad", "many", "-o", out .. "/many.json" }, { host = h, timeout = 60 })
    assert.equal(EXIT.ok, code, err)
    ok, why = check(NOMAD_CHECK, out .. "/many.json")
    assert.equal(0, ok, why)
    local rp = cjson.decode(P.read(out .. "/many.json")).Job.TaskGroups[1].RestartPolicy
    assert.same({ 5000, (10 + 102.3 + 4990 * 60) * NS }, { rp.Attempts, rp.Interval })
  end)

  it("runs as the Dockerfile's numeric USER, and never as root", function()
    if no_checker() then return end
    local out = tmp()
    local as_1000 = program_folder("svc", H.DOCKERFILE:gsub("\nCMD", "\nUSER 1000:2000\nCMD", 1))
    local code, stdout, err = export { "k8s", as_1000, "--json" }
    assert.equal(EXIT.ok, code, err)
    local sc = container(by_kind(cjson.decode(stdout)).Deployment).securityContext
    assert.same({ 1000, 2000 }, { sc.runAsUser, sc.runAsGroup })
    local as_root = program_folder("svc", H.DOCKERFILE:gsub("\nCMD", "\nUSER 0\nCMD", 1))
    code, stdout, err = export { "k8s", as_root, "--json", "-o", out .. "/root.json" }
    assert.equal(EXIT.ok, code, err)
    assert.has_match("USER 0 runs as uid", err)
    local ok, why = check(K8S_CHECK, out .. "/root.json")
    assert.equal(0, ok, why)
    assert.is_true(container(by_kind(cjson.decode(P.read(out .. "/root.json"))).Deployment).securityContext.runAsUser > 0)
    assert.equal("", stdout)
  end)

  it("the Kubernetes checker refuses broken manifests, naming what is wrong", function()
    if no_checker() then return end
    local dir, out = program_folder("counter"), tmp()
    local code, stdout, err = export { "k8s", dir, "--json" }
    assert.equal(EXIT.ok, code, err)
    local base = cjson.decode(stdout)
    local function c(l) return container(l.items[1]) end
    local cases = {
      { "unknown field 'readOnlyRootFS'", function(l) c(l).readOnlyRootFS = true end },
      { "runAsUser: want an integer", function(l) c(l).securityContext.runAsUser = "1000" end },
      { "'Sometimes' is not one of", function(l) c(l).imagePullPolicy = "Sometimes" end },
      { "'Unconfined2' is not one of", function(l) c(l).securityContext.seccompProfile.type = "Unconfined2" end },
      { "`name`, must not be `None`", function(l) c(l).name = nil end },
      { "`selector`, must not be `None`", function(l) l.items[1].spec.selector = nil end },
      { "selector does not match", function(l) l.items[1].spec.selector.matchLabels.tier = "web" end },
      { "names no port of the container", function(l) c(l).livenessProbe.httpGet.port = "http" end },
      { "names no volume", function(l) c(l).volumeMounts[1].name = "data" end },
      { "only take Always", function(l) l.items[1].spec.template.spec.restartPolicy = "Never" end },
      { "runAsUser 0", function(l) c(l).securityContext.runAsUser = 0 end },
      { "is not a quantity", function(l) c(l).resources = { limits = { memory = "64 MB" } } end },
      { "above the limit", function(l) c(l).resources = { limits = { cpu = "500m" }, requests = { cpu = "1" } } end },
      { "is not a valid name", function(l) l.items[2].metadata.name = "1web" end },
      { "selects none of the Deployment's pods", function(l) l.items[2].spec.selector = { app = "other" } end },
      { "unknown apiVersion/kind", function(l) l.items[1].apiVersion = "apps/v2" end },
    }
    assert_refused(K8S_CHECK, base, cases, out)
  end)

  it("the Nomad checker refuses broken jobs, naming what is wrong", function()
    if no_checker() then return end
    local dir, out = program_folder("counter"), tmp()
    local code, stdout, err = export { "nomad", dir }
    assert.equal(EXIT.ok, code, err)
    local base = cjson.decode(stdout)
    local function g(j) return j.Job.TaskGroups[1] end
    local function t(j) return g(j).Tasks[1] end
    local cases = {
      { "'ReadonlyRootfs' was unexpected", function(j) t(j).Config.ReadonlyRootfs = true end },
      { "'image' is a required property", function(j) t(j).Config.image = nil end },
      { "'64' is not of type 'integer'", function(j) t(j).Resources.MemoryMB = "64" end },
      { "'podman' is not one of", function(j) t(j).Driver = "podman" end },
      { "'Tasks' is a required property", function(j) g(j).Tasks = nil end },
      { "is less than the minimum of 1000000000", function(j) g(j).Services[1].Checks[1].Interval = NS // 2 end },
      { "below Nomad's minimum of 5 s", function(j) g(j).RestartPolicy.Interval = NS end },
      { "cannot restart 10 times", function(j) g(j).RestartPolicy.Delay = 60 * NS end },
      { "0 attempts and mode 'delay'", function(j) g(j).RestartPolicy = { Attempts = 0, Mode = "delay",
        Interval = 60 * NS, Delay = NS } end },
      { "names no port of the group's network: 'http'", function(j) t(j).Config.ports = { "http" } end },
      { "names no volume of the group", function(j) t(j).VolumeMounts = { { Volume = "data", Destination = "/state" } } end },
      { "'Job' is a required property", function(j) j.job, j.Job = j.Job, nil end },
    }
    assert_refused(NOMAD_CHECK, base, cases, out)
  end)

  it("quotes every YAML scalar a reader could take for something else, and reads back exactly", function()
    if no_checker() then return end
    local yaml = require "cli.yaml"
    local json = require "hersh.json"
    local tricky = { "yes", "No", "ON", "off", "y", "N", "true", "False", "null", "NULL", "~", "", " lead",
      "trail ", "1e3", "0x1F", "012", "0o17", "1_000", "1:20", "2001-12-14", ".inf", "-.Inf", ".nan", "+1", "-1",
      "-x", "- x", "a: b", "a #c", "#c", "*alias", "&anchor", "!tag", "%dir", "@at", "`tick", "{", "[x]", ",",
      "?", "|", ">", "'", "\"", "back\\slash", "two\nlines", "tab\there", "cr\rhere", "\0nul", "\x7f", "\u{85}",
      "\u{2028}", "\u{2029}", "\u{feff}bom", "é ü 日本 🎉", "<<", "=", "app.kubernetes.io/name", "/watcher/status", "64Mi" }
    local keys = {}
    for i, s in ipairs(tricky) do keys["k" .. i .. s] = s end
    local value = { list = tricky, keys = keys, n = { 0, -7, 1.5, 1e300, 2 ^ 53, 1e22, -2.5e-7, 0.1, 1 / 3 }, b = { true, false },
      empty = { list = json.array {}, map = {} }, nested = { { { "deep" } }, { a = { b = { c = "d" } } } } }
    local file = tmp() .. "/tricky.yaml"
    P.write(file, yaml.encode(value))
    local proc = P.start(python("-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), "
      .. "sort_keys=True))", file))
    assert.equal(0, P.wait_exit(proc, 60), P.stderr(proc))
    local back = cjson.decode(P.stdout(proc))
    P.stop(proc)
    assert.same(tricky, back.list)
    assert.same(keys, back.keys)
    assert.same({ true, false }, back.b)
    assert.same({ list = {}, map = {} }, { list = back.empty.list, map = back.empty.map })
    assert.same({ { { "deep" } }, { a = { b = { c = "d" } } } }, back.nested)
    assert.same({ 0, -7, 1.5, 1e300, 2 ^ 53, 1e22, -2.5e-7, 0.1, 1 / 3 }, back.n)
    assert.equal("table", type(back.empty.list)) -- [] and {} both survive as collections
    -- bytes that are no UTF-8 cannot be a YAML string: refused, never written mangled
    assert.has_error(function() yaml.encode { bad = "\xff\xfe" } end)
    assert.has_error(function() yaml.encode { x = 0 / 0 } end)
  end)

  it("says what is wrong with its arguments, with the exit codes of the client", function()
    local dir = program_folder("counter")
    local empty = tmp()
    local cases = {
      { { "swarm", dir }, EXIT.usage, "must be one of 'k8s', 'nomad'" },
      { { "k8s", empty }, EXIT.usage, "no Dockerfile" },
      { { "k8s", dir .. "/nope" }, EXIT.usage, "is not a folder" },
      { { "k8s", dir, "--name", "1web" }, EXIT.usage, "starting with a letter" },
      { { "k8s", dir, "--name", "Web_1" }, EXIT.usage, "give one with --name" },
      { { "k8s", dir, "--namespace", "Prod!" }, EXIT.usage, "is not a namespace" },
      { { "nomad", dir, "--image", "a b" }, EXIT.usage, "is not an image reference" },
      { { "k8s", dir, "--state-volume", "v", "--state-size", "lots" }, EXIT.usage, "--state-size wants" },
      { { "k8s", dir, "--state-volume", "V/1" }, EXIT.usage, "is not a volume name" },
      { { "k8s", dir, "-o", empty .. "/missing/dir/out.yaml" }, EXIT.usage, "cannot write" },
      { { "k8s", "web" }, EXIT.unreachable, "cannot reach the Host" },
    }
    for _, case in ipairs(cases) do
      local code, out, err = export(case[1])
      assert.equal(case[2], code, table.concat(case[1], " ") .. ": " .. err)
      assert.has_match(case[3], err, 1, true)
      assert.equal("", out)
    end
    local bad = program_folder("bad", "FROM hersh\nVOLUME /data\nCMD [\"x\"]\n")
    local code, _, err = export { "k8s", bad }
    assert.equal(EXIT.usage, code)
    assert.has_match("Dockerfile line 2: VOLUME is not supported", err, 1, true)
  end)

  it("names a program the Host does not have, with exit 5", function()
    local h = H.test_host()
    local code, out, err = export({ "nomad", "ghost" }, { host = h })
    assert.equal(EXIT.not_found, code, err)
    assert.has_match("no program 'ghost'", err, 1, true)
    assert.equal("", out)
  end)
end)
