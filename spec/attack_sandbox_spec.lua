-- The sandbox attacked the way a hostile program (or Dockerfile) would, with real
-- builds, real sandboxes and real processes (spec/scripts/sandbox_harness.lua), once
-- per driver (bwrap, gvisor: S.DRIVERS; a driver that cannot run here has its tests
-- pending with the reason):
--   * code of the program's image named in LD_PRELOAD must run nowhere but inside:
--     bwrap (runsc) itself runs on the host, before any namespace exists;
--   * the Host's session keyring, new namespaces, mounts, BPF, perf and friends are
--     out of reach (the seccomp filter, and a session keyring per child);
--   * a RUN step leaves no set-id file and nothing writable by others in the image,
--     and cannot trick the Host into changing a host file through a link;
--   * the image is mounted nosuid; /opt/hersh/lib holds the runtime's files only.
-- Under gVisor every system call reaches gVisor's kernel (the Sentry), not the host's:
-- namespaces and mounts a program makes are the Sentry's own, so only what reaches
-- the host's keyring or what gVisor does not offer must fail there (REFUSED).
-- The C attackers are in spec/programs/attack/; they are compiled here with cc.
local sys = require "hersh.os"
local build_id = require "host.build_id"
local S = require "scripts.sandbox_harness"
local H = require "scripts.host_harness"
local sandbox = require "host.sandbox"

local fs = sys.fs
local read, shell, has, exists, host_run = S.read, S.shell, S.has, S.exists, S.host_run

local TOOLS       -- the compiled attackers, or nil when there is no C compiler
local NO_CC       -- why not

local function compile(args)
  return S.run("cc -O -Wall -o " .. args .. " 2>" .. S.ROOT .. "/cc.err")
end

local function need_cc()
  if not S.need_driver(pending) then return false end
  if not TOOLS then pending(NO_CC) end
  return TOOLS ~= nil
end

-- The calls of spec/programs/attack that must fail in each driver's sandbox, and
-- whether the program itself runs under the Host's seccomp filter.
local ALL_CALLS = { "keyctl_read", "keyctl_search", "keyctl_session", "add_key", "request_key", "unshare_user",
  "unshare_net", "clone_newuser", "mount", "umount", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup" }
local REFUSED = {
  bwrap = ALL_CALLS,
  gvisor = { "keyctl_read", "keyctl_search", "keyctl_session", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd" }, -- io_uring: the Sentry's own
}
local FILTERED = { bwrap = true, gvisor = false }
-- Whether the image's mount says nosuid (gVisor's root shows no flags: it grants no
-- set-id on exec at all, which the euid below shows), and whether a fifo a RUN step
-- makes is a host file (gVisor keeps it in the Sentry).
local NOSUID_SHOWN = { bwrap = true, gvisor = false }
local FIFO_ON_HOST = { bwrap = true, gvisor = false }
-- The user the program runs as inside for USER 1000 (gVisor: the sandbox user, always).
local USER_INSIDE = { bwrap = "1000", gvisor = "65534" }

-- A directory anyone may write into: what a process running as the sandbox user on
-- the host could drop its marker in.
local function drop_dir(name)
  local dir = S.ROOT .. "/" .. name
  assert(fs.mkdir_p(dir))
  assert(S.run("chmod 1777 '" .. dir .. "'"))
  return dir
end

-- TCP connections made to a port of this network namespace (its listening socket
-- aside): what the preload's connect leaves in the accept queue.
local function connections_to(port)
  local hex, n = string.format(":%04X", port), 0
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    for line in (read(file) or ""):gmatch("[^\n]+") do
      local localaddr, state = line:match("^%s*%d+:%s+(%S+)%s+%S+%s+(%x%x)")
      if localaddr and localaddr:sub(-5) == hex and state ~= "0A" then n = n + 1 end
    end
  end
  return n
end

local function mode_of(path)
  return shell("stat -c %a '" .. path .. "'")
end

-- The image holding the preload, built by a program that does nothing: the host path
-- of its preload.so (what the attacker reads in bwrap's command line).
local CARRIER = 'FROM hersh\nWORKDIR /app\nCOPY preload.so /app/\nCMD ["true"]\n'
local function preload_path(text)
  local files = { ["preload.so"] = assert(read(TOOLS .. "/preload.so")) }
  return S.IMAGES .. "/" .. build_id.compute(text, files) .. "/rootfs/app/preload.so", files
end

for _, driver in ipairs(S.DRIVERS) do
  describe("the sandbox attacked (" .. driver .. ")", function()
    setup(function()
      if not S.setup(driver) then return end
      local dir = S.ROOT .. "/tools"
      assert(fs.mkdir_p(dir))
      local src = S.FIXTURES .. "/attack"
      if not (compile(dir .. "/attack " .. src .. "/attack.c")
          and compile(dir .. "/preload.so -shared -fPIC " .. src .. "/preload.c")
          and compile(dir .. "/keyring.so -shared -fPIC -I/usr/include/lua5.4 " .. src .. "/keyring.c")) then
        NO_CC = "cannot compile the C attackers here: " .. tostring(read(S.ROOT .. "/cc.err"))
        return
      end
      assert(S.run("chmod -R a+rX '" .. dir .. "'"))
      TOOLS = dir
    end)

    teardown(S.teardown)

    it("LD_PRELOAD in a program's env runs its image's code only inside; the program still sees its env", function()
      finally(S.cleanup)
      if not need_cc() then return end
      local drop = drop_dir("drop-program")
      local lfd, lport = assert(sys.listen("127.0.0.1", 0))
      S.defer(function() sys.close_fd(lfd) end)
      -- The control: on the host, the preload leaves its marker and connects.
      local control = drop_dir("drop-control")
      assert.equal(0, host_run({ "/bin/true" }, { "LD_PRELOAD=" .. TOOLS .. "/preload.so",
        "HERSH_SPEC_MARKER_DIR=" .. control }))
      assert.equal(1, #fs.list(control), "the preload does not work: the attack below proves nothing")

      local text = CARRIER:gsub('CMD %b[]', 'CMD ["sh", "-c", "echo \\"$HERSH_SPEC_VAR|$LD_PRELOAD\\" > /state/env.tmp; mv /state/env.tmp /state/env.txt; exec sleep 60"]')
      local so, files = preload_path(text)
      local p = S.program("preload", { dockerfile = text, files = files, policy = "no", env = {
        LD_PRELOAD = so .. ":/app/preload.so", HERSH_SPEC_VAR = "inside",
        HERSH_SPEC_MARKER_DIR = drop, HERSH_SPEC_PORT = tostring(lport) } })
      assert.equal(p.rootfs .. "/app/preload.so", so)
      S.start_until(p, { "Starting", "Error", "Stopped" })
      assert.equal("inside|" .. so .. ":/app/preload.so\n", S.state_file(p, "env.txt"), S.story(p))
      -- bwrap (runsc), on the host: none of the program's variables.
      local pid = assert(p.sup.record.pid, S.story(p))
      local outer = read("/proc/" .. pid .. "/environ")
      assert.is_truthy(outer, driver .. " (pid " .. pid .. ") is gone")
      assert.is_false(has(outer, "LD_PRELOAD"), driver .. " runs with the program's LD_PRELOAD")
      assert.is_false(has(outer, "HERSH_SPEC_VAR"), driver .. " runs with the program's environment")
      -- Nor on its command line, which every local user can read (a variable may be a secret).
      local cmdline = read("/proc/" .. pid .. "/cmdline")
      assert.is_truthy(cmdline, driver .. " (pid " .. pid .. ") is gone")
      assert.is_false(has(cmdline, "--setenv"), "the program's environment is on " .. driver .. "'s command line")
      assert.is_false(has(cmdline, "inside"), "a variable's value is on " .. driver .. "'s command line")
      assert.same({}, fs.list(drop), "the preload ran on the host")
      assert.equal(0, connections_to(lport), "the preload reached a host port")
    end)

    it("LD_PRELOAD in a Dockerfile's ENV runs only inside its RUN steps, which still see their ENV", function()
      finally(S.cleanup)
      if not need_cc() then return end
      local drop = drop_dir("drop-run")
      local lfd, lport = assert(sys.listen("127.0.0.1", 0))
      S.defer(function() sys.close_fd(lfd) end)
      local so, files = preload_path(CARRIER)
      local carrier = S.program("carrier", { dockerfile = CARRIER, files = files, policy = "no" })
      S.start_until(carrier, { "Stopped", "Error" })
      assert.is_true(exists(so), S.story(carrier))
      local text = table.concat({
        "FROM hersh",
        "ENV LD_PRELOAD=" .. so,
        "ENV HERSH_SPEC_MARKER_DIR=" .. drop,
        "ENV HERSH_SPEC_PORT=" .. lport,
        "ENV HERSH_SPEC_VAR=from-env",
        'RUN test "$HERSH_SPEC_VAR" = from-env && echo "$LD_PRELOAD" > /run-env.txt',
        'CMD ["true"]', "" }, "\n")
      local p = S.program("run-preload", { dockerfile = text, policy = "no" })
      S.start_until(p, { "Stopped", "Error" })
      assert.equal(so .. "\n", read(p.rootfs .. "/run-env.txt"), S.story(p))
      assert.same({}, fs.list(drop), "the preload ran on the host during a RUN step")
      assert.equal(0, connections_to(lport), "the preload reached a host port during a RUN step")
    end)

    it("cannot read or add keys of the Host's keyring, nor make host namespaces, mount, bpf, perf or io_uring", function()
      finally(S.cleanup)
      if not need_cc() then return end
      if not exists("/usr/bin/keyctl") then pending("keyctl is not installed (keyutils; scripts/setup)") return end
      local name = "hersh-spec-" .. S.MY_PID
      local open = assert(package.loadlib(TOOLS .. "/keyring.so", "luaopen_spec_keyring"))
      local key = open(name)
      if not key then pending("this machine gives no session keyring (keyctl is refused)") return end
      S.defer(function() shell("keyctl unlink " .. key .. " @s") end)
      -- The control: a child of ours reads it. Not one made by sys.spawn, even unsandboxed:
      -- it has a session keyring of its own.
      assert.equal("hersh-spec-secret", shell("keyctl print " .. key))
      assert.not_equal(0, host_run({ "/usr/bin/keyctl", "print", tostring(key) }, { "PATH=/usr/bin:/bin" }),
        "a child spawned by the Host reads the Host's session keyring")
      local attack = assert(read(TOOLS .. "/attack"))
      local text = table.concat({
        "FROM hersh", "WORKDIR /app", "COPY attack /app/",
        "ENV HERSH_SPEC_KEY=" .. key, "ENV HERSH_SPEC_KEY_NAME=" .. name,
        "RUN chmod 755 /app/attack && /app/attack > /app/attack-run.txt 2>&1",
        'CMD ["sh", "-c", "/app/attack > /state/attack.tmp 2>&1; mv /state/attack.tmp /state/attack.txt"]', "" }, "\n")
      local p = S.program("attack", { dockerfile = text, files = { attack = attack }, policy = "no" })
      S.start_until(p, { "Starting", "Stopped", "Error" })
      local results = { program = S.state_file(p, "attack.txt"), ["RUN step"] = read(p.rootfs .. "/app/attack-run.txt") }
      for where, out in pairs(results) do
        local r = {}
        for call, rc, err in out:gmatch("(%S+) (%-?%d+) (%d+)\n") do r[call] = { rc = tonumber(rc), errno = tonumber(err) } end
        for _, call in ipairs(ALL_CALLS) do assert.is_truthy(r[call], where .. ": no result for " .. call .. "\n" .. out) end
        for _, call in ipairs(REFUSED[driver]) do
          assert.is_true(r[call].rc < 0 or call == "clone_newuser" and r[call].rc ~= 0,
            where .. ": " .. call .. " worked\n" .. out)
        end
        assert.equal(38, r.clone3.errno, where .. ": clone3 is not ENOSYS (glibc would not fall back to clone)\n" .. out)
        assert.equal(0, r.fork.rc, where .. ": a plain fork failed\n" .. out)
        if FILTERED[driver] then assert.is_truthy(out:match("Seccomp:%s+2\n"), where .. ": no seccomp filter\n" .. out) end
      end
      assert.equal("", shell("keyctl search @s user hersh-spec-planted 2>/dev/null"), "a sandbox added a key to ours")
    end)

    it("a RUN step's set-id files and world-writable files lose those bits; links and fifos do not trick it", function()
      finally(S.cleanup)
      if not S.need_driver(pending) then return end
      local victim = S.ROOT .. "/victim-setuid"
      assert(fs.write_file(victim, "#!/bin/sh\n"))
      assert(S.run("chmod 4755 '" .. victim .. "'"))
      local text = table.concat({
        "FROM hersh",
        "RUN cp /bin/sh /x && chmod u+s,g+s /x && mkdir /d && chmod 2777 /d && touch /d/w && chmod 666 /d/w"
          .. " && mkfifo /f && chmod 4666 /f && ln -s " .. victim .. " /v && ln -s /x /l",
        'CMD ["true"]', "" }, "\n")
      local p = S.program("setid", { dockerfile = text, policy = "no" })
      S.start_until(p, { "Stopped", "Error" })
      assert.is_true(exists(p.rootfs .. "/x"), S.story(p))
      assert.equal("755", mode_of(p.rootfs .. "/x"))
      assert.equal("755", mode_of(p.rootfs .. "/d"))
      assert.equal("644", mode_of(p.rootfs .. "/d/w"))
      if FIFO_ON_HOST[driver] then assert.equal("644", mode_of(p.rootfs .. "/f")) end
      assert.equal("4755", mode_of(victim), "the strip followed a link to a host file")
      assert.equal("", shell("find '" .. p.rootfs .. "' -perm /6022 ! -type l"), "set-id or writable files are left")
    end)

    it("mounts the image nosuid: a setuid-root binary put in the image gains nothing", function()
      finally(S.cleanup)
      if not S.need_driver(pending) then return end
      local script = table.concat({
        "if [ -e /idp ]; then /idp -u > /state/euid.tmp; mv /state/euid.tmp /state/euid; fi",
        "awk '$5 == \"/\"' /proc/self/mountinfo > /state/mount.tmp; mv /state/mount.tmp /state/mount.txt", "" }, "\n")
      local text = 'FROM hersh\nUSER 1000\nCOPY check.sh /\nCMD ["sh", "/check.sh"]\n'
      local p = S.program("nosuid", { dockerfile = text, files = { ["check.sh"] = script }, policy = "no" })
      S.start_until(p, { "Stopped", "Error" })
      local mounts = S.state_file(p, "mount.txt")
      if NOSUID_SHOWN[driver] then
        assert.is_truthy(mounts:match("[ ,]nosuid[ ,]"), "the image is not nosuid: " .. mounts)
      end
      -- What a poisoned image would hold: a setuid-root copy of id, made by the host's root.
      assert(fs.copy_file("/usr/bin/id", p.rootfs .. "/idp"))
      assert(fs.chown(p.rootfs .. "/idp", 0, 0))
      assert(S.run("chmod 4755 '" .. p.rootfs .. "/idp'"))
      assert.is_true(p.sup:start())
      assert.equal(USER_INSIDE[driver] .. "\n", S.state_file(p, "euid"), S.story(p))
    end)
  end)
end

for _, driver in ipairs(S.DRIVERS) do
  describe("a Host's sandboxes (" .. driver .. ")", function()
    it("see in /opt/hersh/lib the runtime's libhersh files and nothing else of the build folder", function()
      local usable, why = sandbox.get(driver)
      if not usable then pending("this driver cannot run here: " .. why) return end
      local h = H.start_host()
      finally(function() H.stop_host(h) end)
      local body = H.counter_body("libs", { isolation = driver, dockerfile = table.concat({
        "FROM hersh", "WORKDIR /app", "COPY main.lua /app/",
        -- find, not ls: gVisor's statx refuses the flags of this coreutils' ls (EINVAL)
        [=[CMD ["sh", "-c", "echo libs: $(find /opt/hersh/lib -mindepth 1 -maxdepth 1 -printf '%f '); exec hersh run /app/main.lua"]]=],
        "" }, "\n") })
      local id = H.create(h, body).program_id
      H.start_ready(h, id)
      assert.is_true(H.wait_log(h, id, "libs: "))
      local seen = {}
      for name in H.logs(h, id, "?tail=1000"):match("libs: ([^\n]*)"):gmatch("%S+") do seen[#seen + 1] = name end
      local want = {}
      for _, name in ipairs(fs.list(S.BUILD)) do
        if name:match("^libhersh") then want[#want + 1] = name end
      end
      table.sort(want)
      table.sort(seen)
      assert.is_true(#want > 0, "no libhersh in " .. S.BUILD)
      assert.same(want, seen)
    end)
  end)
end
