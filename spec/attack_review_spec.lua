-- The security fixes attacked again, by a reviewer: what the first round missed.
--   * a program's env value holding a NUL byte must be refused at create with a 400
--     naming env (bwrap's --args descriptor is NUL-separated: the value cannot be
--     passed). Before, create answered 201, the start raised in the supervisor, the
--     program stayed in Starting, a stop never ended and the Host hung on SIGTERM;
--   * the sandbox driver refuses such a value (an image's ENV loaded from disk too)
--     with an error, never by raising, and never splits it into bwrap options;
--   * a process running as the build user (65534) on the host cannot make COPY, which
--     runs as root, write outside the image by swapping the image's rootfs for a link
--     while a RUN step runs. Before, the folder around rootfs belonged to that user:
--     the swap worked and root wrote (and chowned to 65534) a file in a root-only dir.
local H = require "scripts.host_harness"
local bwrap = require "host.sandbox.bwrap"
local P = require "scripts.process"

describe("review: a NUL byte in a program's env", function()
  local h
  setup(function() h = H.start_host() end)
  teardown(function() H.stop_host(h) end)

  it("is refused at create with a 400 naming env, and the Host keeps answering", function()
    for _, value in ipairs{ "a\0--bind\0/\0/host", "\0", "x\0" } do
      local body = H.counter_body("nul", { env = { SECRET = value } })
      local res = H.call(h, "POST", "/programs", body)
      if res.status == 201 then h.ids[#h.ids + 1] = res.json.program_id end
      H.assert_error(res, 400, "env with a NUL")
      assert.truthy(res.json.message:find("env", 1, true), res.json.message)
    end
    H.ok_json(H.call(h, "GET", "/health"), 200, "health")
  end)

  it("stops cleanly on SIGTERM", function()
    H.assert_clean_exit(h)
  end)
end)

describe("review: the bwrap driver and a NUL byte in a variable", function()
  it("refuses it with an error naming the variable, never raises nor passes it on", function()
    local spec = { rootfs = "/nonexistent", base = "scratch", argv = { "true" },
      env = { "A=1", "SECRET=x\0--bind\0/\0/host" } }
    local argv, err = bwrap.command(spec)
    assert.is_nil(argv)
    assert.truthy(err:find("SECRET", 1, true) and err:find("NUL", 1, true), err)
    local ok, proc, spawn_err, code = pcall(bwrap.spawn, spec, { uid = 65534, gid = 65534 })
    assert.is_true(ok, tostring(proc))
    assert.is_nil(proc)
    assert.truthy(spawn_err:find("SECRET", 1, true), spawn_err)
    assert.equal("EINVAL", code)
  end)
end)

describe("review: the build user swaps an image's rootfs for a link during a RUN step", function()
  local h, victim
  -- The RUN step says it runs (/ready), then waits (bounded) for the attacker's /go.
  local DOCKERFILE = "FROM hersh\n"
    .. "RUN touch /ready; i=0; while [ ! -e /go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
    .. "COPY pwn.txt /\nCMD [\"true\"]\n"

  setup(function()
    victim = P.tmpdir() -- root's, 0755: the build user cannot write in it
    assert(H.sh("chmod 755 " .. P.quote(victim)))
    h = H.start_host()
  end)
  teardown(function()
    H.stop_host(h)
    if victim then H.sh("rm -rf " .. P.quote(victim)) end
  end)

  it("makes COPY write into the image, never through the link into a host folder", function()
    if not H.sh("command -v setpriv >/dev/null") then return pending("no setpriv (util-linux)") end
    if not H.sh("[ \"$(id -u)\" = 0 ]") then return pending("needs root: the Host hands the build to 65534") end
    local id = H.create(h, { user_id = "swap", dockerfile = DOCKERFILE,
      src_files = { ["pwn.txt"] = "written by the Host\n" } }).program_id
    assert.equal(202, H.act(h, id, "start").status)
    local rootfs
    assert.is_true(P.wait_for(function()
      for _, name in ipairs(H.list_names(h.storage .. "/images")) do
        local r = h.storage .. "/images/" .. name .. "/rootfs"
        if name:find(".tmp-", 1, true) and P.exists(r .. "/ready") then rootfs = r return true end
      end
    end, 60), "the RUN step never ran")
    local q, real = P.quote(rootfs), P.quote(rootfs .. ".real")
    local swapped = H.sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "
      .. P.quote("mv " .. q .. " " .. real .. " && ln -s " .. P.quote(victim) .. " " .. q) .. " 2>/dev/null")
    -- let the RUN step end, through whichever path now leads to its root
    assert(H.sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "
      .. P.quote("touch " .. (swapped and real or q) .. "/go")))
    local log = H.program_dir(h, id) .. "/logs/build.log"
    assert.is_true(P.wait_for(function()
      local text = P.read(log) or ""
      return H.has(text, "build finished") or H.has(text, "build failed")
    end, 60), "the build never ended")
    assert.is_false(P.exists(victim .. "/pwn.txt"), "the Host wrote through the link: " .. victim .. "/pwn.txt")
    assert.is_false(swapped, "the build user could replace the image's rootfs")
    assert.truthy(H.has(P.read(log), "build finished"), P.read(log))
  end)
end)
