-- Attacks on the Host's storage, end to end with a real `hersh host`, real builds in
-- the bubblewrap sandbox and real files (the spec runs as root):
--   * a build step leaves a FIFO (or a socket, a device) where COPY writes: the Host
--     must refuse it, not block its loop on open();
--   * a full disk: every registry write is checked; an operation whose write fails
--     answers 507 and changes nothing, so a restarted Host shows what clients were told;
--     a log line the disk refuses is dropped whole and its loss noted;
--   * local users: the registry (every program's env), the sources and the logs are
--     root's alone, while programs, run as user 65534, still work;
--   * a Host killed midway: its leftovers are removed at the next start.
-- Full disks are small tmpfs mounts made here (skipped, with the reason printed, where
-- mount is not permitted) and unmounted in the teardown.
local H = require "scripts.host_harness"
local P = H.P
local sys = require "hersh.os"
local store = require "hersh.store"
local hersh = require "hersh"

local fs = sys.fs
local has, sh = H.has, H.sh

local defer = P.defer -- runs fn when the test ends, passed or failed

-- A tmpfs of `size` on a new folder under `parent`; the folder, or nil, why.
local function small_disk(parent, size)
  local dir = parent .. "/disk"
  assert(fs.mkdir_p(dir))
  if not sh("mount -t tmpfs -o size=" .. size .. ",mode=0755 hersh-spec " .. P.quote(dir) .. " 2>/dev/null") then
    return nil, "cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)"
  end
  defer(function() sh("umount " .. P.quote(dir) .. " 2>/dev/null || umount -l " .. P.quote(dir)) end)
  return dir
end

local function skip(why)
  print("skipped: " .. why)
  pending(why)
end

-- Fills the disk until a write of one byte fails.
local function fill(dir)
  sh("dd if=/dev/zero of=" .. P.quote(dir .. "/fill-big") .. " bs=64k >/dev/null 2>&1")
  sh("dd if=/dev/zero of=" .. P.quote(dir .. "/fill-small") .. " bs=512 >/dev/null 2>&1")
  assert.is_false(sh("printf x > " .. P.quote(dir .. "/probe") .. " 2>/dev/null"), "the disk is full")
end

local function unfill(dir)
  assert(sh("rm -f " .. P.quote(dir .. "/fill-big") .. " " .. P.quote(dir .. "/fill-small") .. " "
    .. P.quote(dir .. "/probe")))
end

-- A 507 in the API's error shape, its message saying the disk is full.
local function assert_full(res, what)
  H.assert_error(res, 507, what)
  assert.is_true(has(res.json.message, "full"), what .. ": " .. res.body)
end

local function health_ok(h)
  local res = H.call(h, "GET", "/health")
  return res.status == 200 and res.json and res.json.status == "ok"
end

-- ---- 1: FIFOs, sockets and devices where a build writes -------------------------------

describe("attack: a build leaves a FIFO where COPY writes", function()
  local h
  lazy_setup(function() h = H.start_host() end)
  lazy_teardown(function() H.stop_host(h) end)

  it("fails the build with the line and the path, and the Host keeps answering", function()
    local body = H.counter_body("fifo", {
      dockerfile = "FROM hersh\nRUN mkfifo /x\nCOPY main.lua /x\nCMD [\"hersh\", \"run\", \"/x\"]\n" })
    local id = H.create(h, body).program_id
    assert.equal(202, H.act(h, id, "start").status)
    local rec = H.wait_state(h, id, "Error")
    assert.is_true(has(rec.error_msg, "COPY (line 3)"), rec.error_msg)
    assert.is_true(has(rec.error_msg, "/x: it is a FIFO, not a regular file"), rec.error_msg)
    assert.is_false(has(rec.error_msg, h.storage), "the path as the image sees it: " .. rec.error_msg)
    assert.is_true(health_ok(h), "the Host answers /health after the build")
    -- and goes on working: another program builds and runs
    local good = H.create(h, H.counter_body("after-fifo")).program_id
    H.start_ready(h, good)
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

-- The file operations themselves, in a child process with a time bound (the code
-- before the fix blocked for good on a FIFO): none blocks, each refuses what is not a
-- regular file, naming what it is.
describe("attack: sys.fs on FIFOs, sockets and devices", function()
  it("copy_file refuses them as destination and source, read_file refuses them", function()
    local dir = P.tmpdir()
    defer(function() sh("rm -rf " .. P.quote(dir)) end)
    assert(sh("mkfifo " .. P.quote(dir .. "/fifo")))
    assert(sh("mknod " .. P.quote(dir .. "/null") .. " c 1 3"))
    local have_socket = sh("env -u LD_PRELOAD python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "
      .. P.quote(dir .. "/sock") .. " 2>/dev/null")
    P.write(dir .. "/a.txt", "text\n")
    local script = dir .. "/probe.lua"
    P.write(script, [[
local fs = require("hersh.os").fs
local dir, kinds = arg[1], { fifo = "a FIFO", null = "a character device", sock = "a socket" }
for name, kind in pairs(kinds) do
  local path = dir .. "/" .. name
  if fs.stat(path) then
    local ok, err, code = fs.copy_file(dir .. "/a.txt", path)
    assert(not ok and code == "ENOTREG" and err:find(kind, 1, true), "copy to " .. name .. ": " .. tostring(err))
    ok, err, code = fs.copy_file(path, dir .. "/out")
    assert(not ok and code == "ENOTREG", "copy from " .. name .. ": " .. tostring(err))
    ok, err, code = fs.read_file(path)
    assert(not ok and code == "ENOTREG", "read " .. name .. ": " .. tostring(err))
  end
end
print("refused all")
]])
    local cmd = string.format("timeout 20 lua5.4 -e %s %s %s 2>&1", P.quote("package.cpath = './"
      .. P.build:gsub("^%./", "") .. "/lua/?.so;' .. package.cpath"), P.quote(script), P.quote(dir))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok, _, code = p:close()
    assert.is_true(ok, "exit " .. tostring(code) .. " (124: it blocked): " .. out)
    assert.is_true(has(out, "refused all"), out)
    if not have_socket then print("note: no python3 to make a socket: sockets not tried") end
    -- a link there is refused, not followed; a regular file is replaced
    P.write(dir .. "/target", "keep\n")
    assert(sh("ln -s target " .. P.quote(dir .. "/link")))
    local ok, err, code = fs.copy_file(dir .. "/a.txt", dir .. "/link")
    assert.is_nil(ok)
    assert.equal("ENOTREG", code, err)
    assert.equal("keep\n", P.read(dir .. "/target"))
    assert.is_true(fs.copy_file(dir .. "/a.txt", dir .. "/target"))
    assert.equal("text\n", P.read(dir .. "/target"))
  end)
end)

-- ---- 2: a full disk ---------------------------------------------------------------

describe("attack: a full disk", function()
  it("answers 507 to create, stop, start and delete, changes nothing, and a restart shows what clients were told",
    function()
      local root = H.public_tmpdir()
      defer(function() sh("rm -rf " .. P.quote(root)) end)
      local disk, why = small_disk(root, "24m")
      if not disk then return skip(why) end
      local range = { H.free_range(8) }
      local h = H.start_host{ storage = disk .. "/storage", ports = range }
      local ids = h.ids
      defer(function() H.stop_host(h) end)
      local run = H.create(h, H.counter_body("full-run")).program_id
      local idle = H.create(h, H.counter_body("full-idle")).program_id
      H.start_ready(h, run)

      fill(disk)
      local res = H.call(h, "POST", "/programs", H.counter_body("full-new"))
      assert_full(res, "create")
      assert_full(H.act(h, run, "stop"), "stop")
      assert_full(H.act(h, idle, "start"), "start")
      assert_full(H.call(h, "DELETE", "/programs/" .. idle), "delete")
      assert.equal("Ready", H.view(h, run).state)
      assert.equal("Created", H.view(h, idle).state)
      assert.equal(2, H.ok_json(H.call(h, "GET", "/programs")).count)
      assert.is_true(health_ok(h))

      unfill(disk)
      H.assert_clean_exit(h)
      P.stop(h.proc)
      h = H.start_host{ storage = disk .. "/storage", ports = range }
      h.ids = ids
      local listed = H.ok_json(H.call(h, "GET", "/programs"))
      assert.equal(2, listed.count, "only what was acknowledged")
      H.wait_state(h, run, "Ready") -- its stop was refused: it runs again
      assert.equal("Created", H.view(h, idle).state)

      -- with room again, the same operations go through, and last
      assert.equal(200, H.call(h, "DELETE", "/programs/" .. idle).status)
      assert.equal(202, H.act(h, run, "stop").status)
      H.wait_state(h, run, "Stopped")
      H.assert_clean_exit(h)
      P.stop(h.proc)
      h = H.start_host{ storage = disk .. "/storage", ports = range }
      h.ids = ids
      listed = H.ok_json(H.call(h, "GET", "/programs"))
      assert.equal(1, listed.count)
      assert.equal(run, listed.programs[1].program_id)
      assert.equal("Stopped", listed.programs[1].state)
      H.assert_clean_exit(h)
    end)

  it("drops a log line the disk refuses whole, and says in the log how many were lost", function()
    local root = P.tmpdir()
    defer(function() sh("rm -rf " .. P.quote(root)) end)
    local disk, why = small_disk(root, "1m")
    if not disk then return skip(why) end
    local ctl = root .. "/ctl"
    assert(fs.mkdir_p(ctl))
    local log = disk .. "/run.log"
    -- one short line, then (after "a") a line longer than a page, which a full disk
    -- cannot take even in part of the page already used, then (after "b") a last one
    local script = string.format([[
echo first
while [ ! -e %s/a ]; do sleep 0.05; done
echo "lost $(head -c 6000 /dev/zero | tr '\0' x)"
while [ ! -e %s/b ]; do sleep 0.05; done
echo after]], ctl, ctl)
    local done = false
    local proc = assert(sys.spawn{ argv = { "/bin/sh", "-c", script }, log = log, tail = 10,
      on_exit = function() done = true end })
    defer(function() if not done then proc:kill("KILL") end end)
    local function tail_has(text)
      for _, line in ipairs(proc:tail()) do
        if has(line.text, text) then return true end
      end
      return false
    end
    assert.is_true(hersh.wait(function() return tail_has("first") end, 20))
    fill(disk)
    local size = fs.stat(log).size
    assert(sh("touch " .. P.quote(ctl .. "/a")))
    assert.is_true(hersh.wait(function() return tail_has("lost") end, 20))
    assert.equal(size, fs.stat(log).size, "nothing of the refused line is in the log")
    unfill(disk)
    assert(sh("touch " .. P.quote(ctl .. "/b")))
    assert.is_true(hersh.wait(function() return done end, 20))
    local text = P.read(log)
    local first, note, after = text:find("stdout first\n", 1, true),
      text:find("[hersh: 1 log line lost: No space left on device]\n", 1, true), text:find("stdout after\n", 1, true)
    assert.is_truthy(first, text)
    assert.is_truthy(note, text)
    assert.is_truthy(after, text)
    assert.is_true(first < note and note < after, text)
    assert.is_false(has(text, "lost xxx"), "no piece of the lost line")
  end)
end)

-- ---- 3: what local users can read ----------------------------------------------------

-- Whether user 65534 can read the file (or list the folder).
-- Whether a user (65534, the sandbox's, unless another uid is given) can read or list.
local function nobody_reads(path, uid)
  uid = uid or 65534
  return sh(string.format("setpriv --reuid=%d --regid=%d --clear-groups cat %s >/dev/null 2>&1", uid, uid, P.quote(path)))
end

local function nobody_lists(path, uid)
  uid = uid or 65534
  return sh(string.format("setpriv --reuid=%d --regid=%d --clear-groups ls %s >/dev/null 2>&1", uid, uid, P.quote(path)))
end

-- A local user who is neither root nor the sandbox user.
local OTHER_UID = 4321

local function mode_of(path)
  return string.format("%o", fs.stat(path).mode)
end

describe("attack: local users read the storage", function()
  local h, id
  lazy_setup(function() h = H.start_host() end)
  lazy_teardown(function() H.stop_host(h) end)

  local function assert_private()
    local s, dir = h.storage, H.program_dir(h, id)
    for _, file in ipairs{ s .. "/host.db", s .. "/host.db-wal", dir .. "/src/main.lua", dir .. "/logs/runtime.log",
      dir .. "/logs/build.log" } do
      assert.is_true(P.exists(file), file)
      assert.is_false(nobody_reads(file), "user 65534 reads " .. file)
    end
    for _, folder in ipairs{ s, s .. "/programs", s .. "/images", dir, dir .. "/src", dir .. "/logs" } do
      assert.is_false(nobody_lists(folder), "user 65534 lists " .. folder)
    end
    assert.equal("600", mode_of(s .. "/host.db"))
    assert.equal("600", mode_of(s .. "/host.db-wal"))
    -- The image holds the sources and the Dockerfile's ENV: the sandbox user reaches it,
    -- no other local user does.
    local image = s .. "/images/" .. H.view(h, id).build_id
    assert.is_true(nobody_reads(image .. "/rootfs/app/main.lua"), "the sandbox user must reach its image")
    assert.is_false(nobody_reads(image .. "/rootfs/app/main.lua", OTHER_UID), "a local user reads an image's sources")
    assert.is_false(nobody_reads(image .. "/image.json", OTHER_UID), "a local user reads an image's metadata")
    assert.is_false(nobody_lists(s .. "/images", OTHER_UID), "a local user lists the images")
  end

  it("cannot read the registry, the sources or the logs; the program, run as 65534, works", function()
    if not sh("command -v setpriv >/dev/null") then return skip("no setpriv (util-linux)") end
    id = H.create(h, H.counter_body("private", { env = { SECRET = "s3cret" } })).program_id
    H.start_ready(h, id)
    assert.equal(200, P.send(H.view(h, id).publish_port, "one").status)
    assert.is_true(H.wait_log(h, id, "Counter: 1"))
    assert_private()
  end)

  it("has the modes of a storage an older Host made fixed at start", function()
    assert.is_string(id, "needs the previous test")
    local image = h.storage .. "/images/" .. H.view(h, id).build_id
    H.terminate(h)()
    P.stop(h.proc)
    local s, dir = h.storage, H.program_dir(h, id)
    assert(sh("chmod 755 " .. P.quote(s) .. " " .. P.quote(s .. "/programs") .. " " .. P.quote(dir) .. " "
      .. P.quote(dir .. "/src") .. " " .. P.quote(dir .. "/logs") .. " " .. P.quote(image)
      .. " && chmod 644 " .. P.quote(s .. "/host.db")))
    assert.is_true(nobody_reads(s .. "/host.db"), "the old modes let anyone read")
    local old = h
    h = H.start_host{ storage = s, ports = { old.first, old.last } }
    h.root, h.ids = old.root, old.ids
    H.wait_state(h, id, "Ready") -- it was running: it comes back, reachable by the sandbox
    assert.equal(200, P.send(H.view(h, id).publish_port, "two").status)
    assert.is_true(H.wait_log(h, id, "Counter: 2"))
    assert_private()
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

-- ---- 4: what a Host killed midway leaves ---------------------------------------------

describe("attack: leftovers of a killed Host", function()
  it("are removed at start: unfinished creates and images, folders without a record; real programs stay", function()
    local h = H.start_host()
    defer(function() H.stop_host(h) end)
    local id = H.create(h, H.counter_body("leftover")).program_id
    H.start_ready(h, id)
    assert.is_true(P.signal(h.proc, "KILL"))
    assert.is_truthy(P.wait_exit(h.proc))
    assert.is_true(H.no_process_of(h.ids))
    P.stop(h.proc)

    local s = h.storage
    local planted = {
      s .. "/programs/" .. id .. ".new/src/main.lua",            -- an unfinished create
      s .. "/programs/ghost-0123456789ab-deadbeef/src/main.lua", -- recorded never
      s .. "/programs/ghost-0123456789ab-deadbeef.new/src/x",
      s .. "/images/0123456789ab.tmp-12345/rootfs/app/main.lua",
    }
    for _, file in ipairs(planted) do
      assert(fs.mkdir_p(file:match("^(.*)/[^/]*$")))
      P.write(file, "leftover\n")
    end
    local kept = s .. "/programs/kept-0123456789ab-00000000/state/data" -- a delete that kept state/
    assert(fs.mkdir_p(kept:match("^(.*)/[^/]*$")))
    P.write(kept, "kept\n")

    local old = h
    h = H.start_host{ storage = s, ports = { old.first, old.last } }
    h.root, h.ids = old.root, old.ids
    for _, file in ipairs(planted) do
      local top = file:match("^(" .. s:gsub("%p", "%%%0") .. "/[^/]+/[^/]+)")
      assert.is_nil(fs.stat(top), top .. " is removed")
    end
    assert.equal("kept\n", P.read(kept))
    assert.same({ id }, (function()
      local ids = {}
      for _, p in ipairs(H.ok_json(H.call(h, "GET", "/programs")).programs) do ids[#ids + 1] = p.program_id end
      return ids
    end)())
    H.wait_state(h, id, "Ready")
    H.assert_clean_exit(h)
  end)
end)

describe("attack: a Host killed in the middle of a delete", function()
  it("finishes the delete at the next start: the record, the files and the port go; state/ stays if asked", function()
    local h = H.start_host()
    defer(function() H.stop_host(h) end)
    local gone_id = H.create(h, H.counter_body("half-deleted")).program_id
    local kept_id = H.create(h, H.counter_body("half-kept")).program_id
    local other = H.create(h, H.counter_body("untouched")).program_id
    local port = H.view(h, gone_id).publish_port
    H.assert_clean_exit(h)
    P.stop(h.proc)
    -- what the Host records before it stops the processes: the delete is under way
    local db = assert(store.open(h.storage .. "/host.db"))
    assert(db:run("UPDATE programs SET desired = 'deleted' WHERE program_id = ?", gone_id))
    assert(db:run("UPDATE programs SET desired = 'deleted_keep_state' WHERE program_id = ?", kept_id))
    db:close()

    local old = h
    h = H.start_host{ storage = old.storage, ports = { old.first, old.last } }
    h.root, h.ids = old.root, old.ids
    local listed = H.ok_json(H.call(h, "GET", "/programs"))
    assert.equal(1, listed.count)
    assert.equal(other, listed.programs[1].program_id)
    H.assert_error(H.call(h, "GET", "/programs/" .. gone_id), 404)
    assert.is_nil(fs.stat(H.program_dir(h, gone_id)))
    assert.same({ "state" }, H.list_names(H.program_dir(h, kept_id)))
    -- the port went back to the pool: the next create takes the lowest free one
    local again = H.create(h, H.counter_body("reuse"))
    assert.equal(port, again.publish_port)
    H.assert_clean_exit(h)
  end)
end)
