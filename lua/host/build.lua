-- The build: a Dockerfile plan (host.dockerfile) and the uploaded files become an
-- image, a directory images/<build_id>/ holding rootfs/ (the image's files) and
-- image.json (what to run). COPY copies from the uploaded sources only; RUN runs in
-- a build sandbox with no network, as the unprivileged build user, with a time limit
-- for the whole build; its output goes to the program's logs/build.log. The image is
-- made under a temporary name and renamed into place when complete, so a cache hit
-- (an existing images/<build_id>/image.json) is always a whole image.
local core = require "hersh.core"
local sys = require "hersh.os"
local json = require "hersh.json"
local dockerfile = require "host.dockerfile"

local fs = sys.fs
local build = {}

build.DEFAULT_TIMEOUT = 600
-- The layout of an image directory (its mount points): images of another layout are
-- built again rather than run (a Host upgrade may need new mount points).
build.LAYOUT = 2

local function parent_of(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function append_log(path, text)
  local f = io.open(path, "a")
  if f then
    f:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), text, "\n")
    f:close()
  end
end

-- An image folder (images/<build_id>, and its .tmp- while it builds) is root's, open to
-- the sandbox user's group only: the sandbox must reach rootfs/, while other local
-- users must not read the sources and ENV an image holds.
build.IMAGE_DIR_MODE = tonumber("710", 8)

function build.protect(dir, user)
  local ok, err = fs.chown(dir, 0, user.gid)
  if ok then ok, err = fs.chmod(dir, build.IMAGE_DIR_MODE) end
  return ok, err
end

function build.image_dir(images_dir, build_id)
  return images_dir .. "/" .. build_id
end

-- The image's metadata, or nil, err when there is no complete image.
function build.load_image(images_dir, build_id)
  local text, err = fs.read_file(build.image_dir(images_dir, build_id) .. "/image.json")
  if not text then return nil, err end
  local image, derr = json.decode(text)
  if type(image) ~= "table" then return nil, "image.json is not an image's metadata: " .. tostring(derr) end
  if image.layout ~= build.LAYOUT then return nil, "the image was built for another layout" end
  return image
end

-- The mount points and links the sandbox driver needs in an image's rootfs.
local function make_skeleton(rootfs, skeleton)
  for _, dir in ipairs(skeleton.dirs) do
    local ok, err = fs.mkdir_p(rootfs .. "/" .. dir)
    if not ok then return nil, err end
  end
  for _, file in ipairs(skeleton.files) do
    local ok, err = fs.write_file(rootfs .. "/" .. file, "")
    if not ok then return nil, err end
  end
  for name, target in pairs(skeleton.links) do
    local ok, err = fs.symlink(target, rootfs .. "/" .. name)
    if not ok then return nil, err end
  end
  return true
end

-- The uploaded files under dir, as the keys of a table of relative paths.
function build.list_files(dir, prefix, out)
  out = out or {}
  for _, name in ipairs(fs.list(dir .. (prefix and "/" .. prefix or "")) or {}) do
    local rel = prefix and prefix .. "/" .. name or name
    local st = fs.stat(dir .. "/" .. rel)
    if st and st.type == "dir" then build.list_files(dir, rel, out)
    elseif st and st.type == "file" then out[rel] = true end
  end
  return out
end

-- RUN steps may leave symbolic links in the image; COPY and WORKDIR run as root on
-- the host, so they must never write through one.
local function check_no_links(job, path)
  local at = job.rootfs
  for part in path:gmatch("[^/]+") do
    at = at .. "/" .. part
    local st = fs.stat(at)
    if not st then return true end -- what does not exist yet is made by us
    if st.type == "link" then
      return nil, "the image path " .. path .. " passes through a symbolic link (" .. at:sub(#job.rootfs + 1) .. ")"
    end
  end
  return true
end

-- Makes a directory of the image (and its parents), owned by the build user.
local function make_image_dir(job, path)
  local ok, err = check_no_links(job, path)
  if not ok then return nil, err end
  ok, err = fs.mkdir_p(job.rootfs .. path)
  if ok then ok, err = fs.chown(job.rootfs .. path, job.user.uid, job.user.gid) end
  return ok, err
end

-- A Lua file copied into the image is compiled here, never run, so that a syntax error
-- fails the build with its file and line instead of a restart loop at start. A
-- shebang line is skipped as the runtime skips it; a binary chunk is the runtime's
-- business (loading untrusted bytecode in the Host is not safe).
local function check_lua(job, from)
  if not from:match("%.lua$") then return true end
  local text, err = fs.read_file(job.src_dir .. "/" .. from)
  if not text then return nil, err end
  if text:sub(1, 1) == "\27" then return true end
  if text:sub(1, 1) == "#" then text = "--" .. text end
  local _, syntax_err = load(text, "=" .. from, "t", {})
  return syntax_err == nil, syntax_err
end

-- An error naming paths of the image as the image sees them (without the rootfs).
local function in_image(job, err)
  local text, at = tostring(err), 1
  local out = {}
  while true do
    local i, j = text:find(job.rootfs, at, true)
    if not i then break end
    out[#out + 1] = text:sub(at, i - 1)
    at = j + 1
  end
  out[#out + 1] = text:sub(at)
  return table.concat(out)
end

-- COPY: Docker's placement (dockerfile.copy_targets); what it writes belongs to the
-- build user, since later RUN steps run as that user. An existing file is replaced,
-- never written through; a FIFO, socket or device a RUN step left there is refused
-- (fs.copy_file), since opening one could block the Host.
local function do_copy(job, step)
  job.files = job.files or build.list_files(job.src_dir)
  local targets, err = dockerfile.copy_targets(step, job.files, function(path)
    local st = fs.stat(job.rootfs .. path)
    return st and st.type == "dir"
  end)
  if not targets then return nil, err end
  for _, t in ipairs(targets) do
    local ok, copy_err = make_image_dir(job, parent_of(t.to))
    if ok then ok, copy_err = check_no_links(job, t.to) end
    if ok then ok, copy_err = fs.copy_file(job.src_dir .. "/" .. t.from, job.rootfs .. t.to) end
    if ok then ok, copy_err = fs.chown(job.rootfs .. t.to, job.user.uid, job.user.gid) end
    if ok then ok, copy_err = check_lua(job, t.from) end
    if not ok then return nil, string.format("COPY (line %d): %s", step.line, in_image(job, copy_err)) end
  end
  return true
end

-- The environment of a process as sorted "K=V" strings: the tables given, merged in
-- order (later ones win).
-- What a process in a FROM hersh image finds before its own ENV: the runtime on PATH.
build.RUNTIME_ENV = { PATH = "/opt/hersh/bin:/usr/local/bin:/usr/bin:/bin", HERSH_LUA_DIR = "/opt/hersh/lua" }

function build.env_list(...)
  local merged, list = {}, {}
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do merged[k] = tostring(v) end
  end
  for k, v in pairs(merged) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  return list
end

-- Output lines of a failed RUN quoted in its error (one line: " | " between them),
-- each cut to FAILED_LINE_MAX bytes.
build.FAILED_LINES = 5
build.FAILED_LINE_MAX = 200

local function cut(line)
  return #line > build.FAILED_LINE_MAX and line:sub(1, build.FAILED_LINE_MAX) .. "..." or line
end

-- Why a RUN step failed: the step, what ended it, and its last output lines.
local function run_failed(step, exit, last)
  local why = exit.error or (exit.exit_signal and "killed by signal " .. exit.exit_signal)
    or ("exit code " .. tostring(exit.exit_code))
  if exit.oom_killed then why = why .. " (out of memory)" end
  local msg = string.format("RUN (line %d) %s failed: %s", step.line, cut(table.concat(step.argv, " ")), why)
  if #last > 0 then msg = msg .. "; last output: " .. table.concat(last, " | ") end
  return msg
end

-- Steps run one after the other; RUN steps wait for their process.
local function next_step(job)
  if job.finished then return end
  job.index = job.index + 1
  local step = job.plan.steps[job.index]
  if not step then return job:succeed() end
  if step.op == "copy" then
    local ok, err = do_copy(job, step)
    if not ok then return job:fail(err) end
    return next_step(job)
  elseif step.op == "run" then
    append_log(job.log_path, string.format("RUN (line %d): %s", step.line, table.concat(step.argv, " ")))
    local user = tostring(step.user or "0")
    local uid, gid = user:match("^(%d+):?(%d*)$")
    local last = {} -- its newest output lines, for the error
    local proc, err = job.driver.spawn({
      rootfs = job.rootfs, base = job.plan.base, writable_root = true, network = "none",
      uid = tonumber(uid), gid = tonumber(gid) or tonumber(uid), workdir = step.workdir or "/",
      runtime = job.runtime, argv = step.argv, env = build.env_list(build.RUNTIME_ENV, step.env),
    }, {
      uid = job.user.uid, gid = job.user.gid, log = job.log_path, tail = 20,
      on_line = function(_, line)
        last[#last + 1] = cut(line)
        if #last > build.FAILED_LINES then table.remove(last, 1) end
      end,
      on_exit = function(exit)
        job.proc = nil
        if job.finished then return end
        if exit.exit_code ~= 0 then return job:fail(run_failed(step, exit, last)) end
        -- No set-id file and nothing writable by group or others: the image's files
        -- belong to the build user on the host, and a local user who became it must
        -- gain nothing from them nor be able to poison the image.
        local ok, strip_err = sys.sandbox.strip_setid(job.rootfs)
        if not ok then return job:fail(string.format("RUN (line %d): %s", step.line, strip_err)) end
        next_step(job)
      end,
    })
    if not proc then return job:fail(string.format("RUN (line %d): %s", step.line, err)) end
    job.proc = proc
  elseif step.op == "workdir" then
    local ok, err = make_image_dir(job, step.path)
    if not ok then return job:fail(string.format("WORKDIR (line %d): %s", step.line or 0, err)) end
    return next_step(job)
  else
    return next_step(job)
  end
end

local Job = {}
Job.__index = Job

function Job:finish(ok, err)
  if self.finished then return end
  self.finished = true
  if self.timer then self.timer:stop() end
  if self.proc then self.proc:kill("KILL") end
  if not ok then fs.remove_tree(self.tmp_dir) end
  append_log(self.log_path, ok and "build finished" or ("build failed: " .. err))
  self.on_done(ok, err)
end

function Job:succeed()
  local p = self.plan
  local meta = json.encode{
    build_id = self.build_id, layout = build.LAYOUT, base = p.base, env = p.env, workdir = p.workdir,
    user = p.user, cmd = p.cmd, entrypoint = p.entrypoint,
  }
  local ok, err = fs.write_file(self.tmp_dir .. "/image.json", meta)
  if ok and build.load_image(self.images_dir, self.build_id) then
    -- Another build of the same id finished first, and programs may run from it: ours
    -- is the same image, so it is dropped rather than swapped in under them.
    fs.remove_tree(self.tmp_dir)
    return self:finish(true)
  end
  if ok then
    fs.remove_tree(self.image_dir) -- a partial leftover of a crashed Host
    ok, err = os.rename(self.tmp_dir, self.image_dir)
  end
  if not ok then return self:fail("cannot store the image: " .. tostring(err)) end
  self:finish(true)
end

function Job:fail(err)
  self:finish(false, err)
end

-- Cancels the build: its process is killed and on_done(false, "cancelled") follows.
function Job:cancel()
  self:finish(false, "cancelled")
end

-- build.start{plan, build_id, src_dir, images_dir, log_path, driver, runtime, user =
-- {uid, gid}, timeout, on_done(ok, err, cached)} -> job (job:cancel()). on_done is called
-- once, from the loop, never before start returns.
function build.start(opts)
  local job = setmetatable({
    plan = opts.plan, build_id = opts.build_id, src_dir = opts.src_dir, log_path = opts.log_path,
    driver = opts.driver, runtime = opts.runtime, user = opts.user or { uid = 65534, gid = 65534 },
    on_done = opts.on_done, index = 0, images_dir = opts.images_dir,
    image_dir = build.image_dir(opts.images_dir, opts.build_id),
  }, Job)
  job.tmp_dir = job.image_dir .. ".tmp-" .. tostring(math.random(1, 1 << 30))
  job.rootfs = job.tmp_dir .. "/rootfs"
  core.timer(0, function()
    if job.finished then return end
    if build.load_image(opts.images_dir, opts.build_id) then
      append_log(job.log_path, "image " .. opts.build_id .. " is cached")
      job.finished = true
      return job.on_done(true, nil, true)
    end
    append_log(job.log_path, "building " .. opts.build_id)
    fs.remove_tree(job.tmp_dir)
    local ok, err = fs.mkdir_p(job.rootfs)
    if ok then ok, err = make_skeleton(job.rootfs, job.driver.skeleton[job.plan.base]) end
    -- Only rootfs goes to the build user: the folder around it stays root's, or that
    -- user could swap rootfs for a link and have COPY write as root wherever it points.
    if ok then ok, err = fs.chown(job.rootfs, job.user.uid, job.user.gid, true) end
    if ok then ok, err = build.protect(job.tmp_dir, job.user) end
    if not ok then return job:fail(err) end
    job.timer = core.timer(opts.timeout or build.DEFAULT_TIMEOUT, function()
      job:fail(string.format("build timed out after %g s", opts.timeout or build.DEFAULT_TIMEOUT))
    end)
    next_step(job)
  end)
  return job
end

return build
