-- Module boundaries: a program (what `hersh run` runs, in or out of the sandbox) gets
-- the engine, hersh.core, and not the Host's toolkit (hersh.os, hersh.httpd, hersh.http,
-- hersh.store) by any way an attacker would try: spec/programs/boundary/main.lua tries
-- require, package.loadlib on /proc/self/exe, libhersh and the module files, the C
-- searchers with a cpath of its choosing, package.preload and the registry, the Host's
-- own Lua modules, and a walk of everything reachable. The Host keeps its modules.
local H = require "scripts.host_harness"
local P = H.P

local BOUNDARY = "spec/programs/boundary"
-- The module files of this build, for the attacker to load: absolute, as the program
-- runs from elsewhere.
local CWD = assert(io.popen("pwd")):read("l")
local BUILD = P.build:sub(1, 1) == "/" and P.build or CWD .. "/" .. P.build:gsub("^%./", "")
local MODULE_FILES = {}
for _, m in ipairs{ "core", "os", "httpd", "http", "store" } do
  MODULE_FILES[#MODULE_FILES + 1] = BUILD .. "/lua/hersh/" .. m .. ".so"
end

-- The "reached" lines of the attacker's output and how many ways it tried.
local function verdict(out)
  local reached = {}
  for line in out:gmatch("[^\n]+") do
    if line:find("boundary: reached ", 1, true) then reached[#reached + 1] = line end
  end
  local tried = tonumber(out:match("boundary: tried (%d+) ways"))
  return tried, reached
end

-- Runs a Lua script under `hersh run` to its end; its stdout (fails on a bad exit).
local function run_script(text, args)
  local dir = P.tmpdir()
  P.defer(function() os.execute("rm -rf " .. P.quote(dir)) end)
  local path = dir .. "/main.lua"
  P.write(path, text)
  local proc = P.run(path, { args = args })
  P.defer(function() P.stop(proc) end)
  assert.equal(0, P.wait_exit(proc, P.WAIT), "hersh run failed or hung:\n" .. P.stderr(proc))
  assert.is_nil(P.sanitizer_report(proc))
  return P.stdout(proc)
end

describe("module boundaries: hersh run", function()
  it("lets a program reach none of the Host's modules, by any way it tries", function()
    local proc = P.run(BOUNDARY .. "/main.lua", { args = MODULE_FILES })
    P.defer(function() P.stop(proc) end)
    assert.equal(0, P.wait_exit(proc, P.WAIT), "the attacker did not end:\n" .. P.stderr(proc))
    local tried, reached = verdict(P.stdout(proc))
    assert.is_number(tried, "the attacker did not finish:\n" .. P.stdout(proc) .. P.stderr(proc))
    assert.is_true(tried >= 30, "it tried only " .. tostring(tried) .. " ways")
    assert.same({}, reached)
    assert.is_nil(P.sanitizer_report(proc))
  end)

  it("gives a program hersh.core with the engine and nothing else, and no way to load C code", function()
    local out = run_script([[
      local core = require "hersh.core"
      local names = {}
      for k in pairs(core) do names[#names + 1] = k end
      table.sort(names)
      print(table.concat(names, " "))
      print(package.loadlib, package.cpath, #package.searchers)
      local preload = {}
      for k in pairs(package.preload) do preload[#preload + 1] = k end
      table.sort(preload)
      print(table.concat(preload, " "))
    ]])
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    -- fetch (under hersh.http) and flow wait and feed on the program's own loop: an HTTP
    -- client reaches what the program's network reaches, nothing of the Host's.
    assert.equal("SKIP VERSION crash fetch flow kill now run run_for runner_api sleep stop timer wait watcher", lines[1])
    assert.equal("nil\t\t2", lines[2]) -- the preload and Lua-file searchers only
    assert.equal("hersh.core hersh.json", lines[3])
  end)

  it("writes ctx:update and the decoding of context logs in C: no Lua patches a C metatable", function()
    local out = run_script([[
      local hersh = require "hersh"
      local w = hersh.watcher{ id = "m", api = false }
      local seen = {}
      w:manage(function(msg, ctx)
        if not msg then return end
        ctx:update("k", function(v) seen.copy = v; return { n = (v and v.n or 0) + 1 } end)
        ctx:update("k", function(v) v.n = v.n + 1; return v end)
        seen.update = debug.getinfo(getmetatable(ctx).__index.update, "S").what
        seen.value = ctx:get("k").n
        return hersh.stop("done")
      end)
      assert(w:start())
      assert(w:send("go"))
      hersh.run()
      local entries = assert(w:logs("context"))
      print(seen.update, debug.getinfo(getmetatable(w).__index.logs, "S").what, seen.value, seen.copy)
      for _, e in ipairs(entries) do print(e.key, e.old and e.old.n, e.new and e.new.n) end
    ]])
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("C\tC\t2\tnil", lines[1])
    assert.equal("k\tnil\t1", lines[2])
    assert.equal("k\t1\t2", lines[3])
  end)
end)

describe("module boundaries: hersh's finalizers", function()
  it("refuse a value not their own when a program calls them (an error, not a crash)", function()
    local out = run_script([[
      local hersh = require "hersh"
      local w = hersh.watcher{ id = "g", api = false }
      assert(w:logs("context")) -- a copy of the log, owned by a userdata while tables are built
      local seen, refused = {}, 0
      local function poke(v)
        local mt = debug.getmetatable(v)
        local gc = type(mt) == "table" and rawget(mt, "__gc")
        if type(gc) == "function" and debug.getinfo(gc, "S").what == "C" and not seen[mt] then
          seen[mt] = true
          local ok, err = pcall(gc, io.stdout)
          if not ok and tostring(err):find("expected, got FILE*", 1, true) then refused = refused + 1 end
        end
      end
      for _, v in pairs(debug.getregistry()) do poke(v) end
      for _, v in pairs(debug.getregistry()) do
        if type(v) == "table" then for _, x in pairs(v) do poke(x) end end
      end
      collectgarbage()
      print("survived", refused)
    ]])
    local refused = tonumber(out:match("^survived\t(%d+)"))
    assert.is_number(refused, out)
    assert.is_true(refused >= 1, out)
  end)
end)

describe("module boundaries: a program in the sandbox of a real Host", function()
  it("reaches none of the Host's modules, and the Host runs on its own", function()
    local h = H.test_host()
    local body = { user_id = "boundary", dockerfile = assert(P.read(BOUNDARY .. "/Dockerfile")),
      src_files = { ["main.lua"] = assert(P.read(BOUNDARY .. "/main.lua")) } }
    local doc = H.create(h, body)
    H.start_ready(h, doc.program_id)
    assert.is_true(H.wait_log(h, doc.program_id, "boundary: tried "), H.logs(h, doc.program_id))
    local tried, reached = verdict(H.logs(h, doc.program_id, "?tail=1000"))
    assert.is_true(tried >= 30, "it tried only " .. tostring(tried) .. " ways")
    assert.same({}, reached)
    assert.equal(200, H.call(h, "GET", "/health").status)
    H.assert_clean_exit(h)
  end)
end)
