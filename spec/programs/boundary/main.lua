-- An attacker's program (spec/boundary_spec.lua): it tries every way it knows to get
-- the Host's toolkit (processes, files, sockets, the HTTP server and client, SQLite)
-- from the Lua state `hersh run` gives it, and prints one line per way it got in:
--   "boundary: reached <how>: <what>"
-- then "boundary: tried N ways, reached M". arg[1..] are more C module files to try
-- (the spec passes its build's). With "serve" as an argument it then serves its
-- WatcherAPI (for a Host to find it Ready); otherwise it ends.
local hersh = require "hersh"
io.stdout:setvbuf("line")

local extra, serve = {}, false
for _, a in ipairs(arg) do
  if a == "serve" then serve = true else extra[#extra + 1] = a end
end

-- What only the Host may hold: functions by name, classes by metatable name.
local HOST_FUNCTIONS = { "spawn", "listen", "relisten", "close_fd", "answer_unavailable", "fs", "fs_watch",
  "file_id", "sandbox", "sha256", "on_signal", "stop_serving", "http_serve", "http_request", "db_open",
  "remove_tree", "chown", "mkdir_p", "seccomp_fd", "strip_setid", "request" }
local HOST_CLASSES = { "hersh.Process", "hersh.Unavailable", "hersh.Database", "hersh.HttpServer",
  "hersh.HttpResponse", "hersh.HttpStream", "hersh.FsWatch", "hersh.Sha256", "hersh.Signal", "hersh.HttpState" }
local HOST_MODULES = { "hersh.os", "hersh.httpd", "hersh.http", "hersh.store" }
local OPENERS = { "luaopen_hersh_core", "luaopen_hersh_os", "luaopen_hersh_httpd", "luaopen_hersh_http",
  "luaopen_hersh_store" }

local tried, reached = 0, 0
local function got(how, what)
  reached = reached + 1
  print("boundary: reached " .. how .. ": " .. tostring(what))
end
local function try(how, fn)
  tried = tried + 1
  local ok, err = pcall(fn)
  if not ok and not tostring(err):find("not found", 1, true) and not tostring(err):find("attempt to call a nil", 1, true) then
    print("boundary: (" .. how .. " raised: " .. tostring(err):gsub("\n.*", "") .. ")")
  end
end

-- A table that holds one of the Host's functions.
local function host_function_in(t)
  if type(t) ~= "table" then return nil end
  for _, name in ipairs(HOST_FUNCTIONS) do
    local ok, v = pcall(function() return t[name] end)
    if ok and v ~= nil and (type(v) == "function" or type(v) == "table") then return name end
  end
end

-- 1. require, directly and under every name a loader might answer to.
for _, name in ipairs(HOST_MODULES) do
  try("require " .. name, function()
    local ok, m = pcall(require, name)
    if ok and m ~= nil then got("require " .. name, m) end
  end)
end

-- 2. The modules a program does get hold nothing of the Host's.
for _, name in ipairs{ "hersh", "hersh.core", "hersh.recovery", "hersh.json" } do
  try("the module " .. name, function()
    local found = host_function_in(require(name))
    if found then got("the module " .. name, name .. "." .. found) end
  end)
end

-- 3. package.loadlib on the executable, every shared object mapped into the process,
-- the runtime's libraries and the given module files, with every opener's name.
local files = { "/proc/self/exe", "/opt/hersh/bin/hersh" }
local maps = io.open("/proc/self/maps")
if maps then
  for line in maps:lines() do
    local path = line:match("%s(/%S+)$")
    if path then files[#files + 1] = path end
  end
  maps:close()
end
local ls = io.popen("ls /opt/hersh/lib/ 2>/dev/null")
if ls then
  for f in ls:lines() do files[#files + 1] = "/opt/hersh/lib/" .. f end
  ls:close()
end
for _, f in ipairs(extra) do files[#files + 1] = f end
try("package.loadlib", function()
  if package.loadlib then got("package.loadlib", "is there") end
end)
local loaded = debug.getregistry()._LOADED
local loadlibs = { package.loadlib, require("package").loadlib, loaded and loaded.package and loaded.package.loadlib }
for i = 1, 3 do -- each tried even when missing: calling nil is a way that fails
  local loadlib = loadlibs[i]
  for _, f in ipairs(files) do
    for _, opener in ipairs(OPENERS) do
      try("package.loadlib(" .. f .. ", " .. opener .. ")", function()
        local open = loadlib(f, opener)
        if type(open) == "function" then
          local m = open(opener:match("luaopen_(.*)"):gsub("_", "."))
          local found = host_function_in(m)
          if found then got("package.loadlib(" .. f .. ", " .. opener .. ")", found) end
        end
      end)
    end
  end
end

-- 4. The C searchers: a cpath that names the module files, and every searcher asked
-- for every Host module, and require again with package.loaded cleared.
local dirs = {}
for _, f in ipairs(extra) do dirs[#dirs + 1] = f:match("^(.*)/hersh/[^/]+%.so$") end
package.cpath = table.concat((function()
  local t = {}
  for _, d in ipairs(dirs) do t[#t + 1] = d .. "/?.so" end
  t[#t + 1] = "/opt/hersh/lib/?.so"
  return t
end)(), ";")
for i, searcher in ipairs(package.searchers) do
  for _, name in ipairs(HOST_MODULES) do
    try("package.searchers[" .. i .. "](" .. name .. ")", function()
      local loader, data = searcher(name)
      if type(loader) == "function" then
        local found = host_function_in(loader(name, data))
        if found then got("package.searchers[" .. i .. "](" .. name .. ")", found) end
      end
    end)
  end
end
for _, name in ipairs(HOST_MODULES) do
  try("require " .. name .. " on the cpath", function()
    package.loaded[name] = nil
    local ok, m = pcall(require, name)
    if ok and host_function_in(m) then got("require " .. name .. " on the cpath", m) end
  end)
end
try("require hersh.core again", function()
  package.loaded["hersh.core"] = nil
  local found = host_function_in(require("hersh.core"))
  if found then got("require hersh.core again", found) end
end)

-- 5. package.preload, as the program sees it and in the registry.
try("package.preload", function()
  for _, t in ipairs{ package.preload, debug.getregistry()._PRELOAD } do
    for _, name in ipairs(HOST_MODULES) do
      if t[name] then got("package.preload", name) end
    end
  end
end)

-- 6. The Host's own Lua modules on package.path, which would bring theirs along.
for _, name in ipairs{ "host.api", "host.main", "host.sandbox.bwrap", "host.registry", "host.sha256" } do
  try("require " .. name, function()
    local ok, m = pcall(require, name)
    if ok then got("require " .. name, m) end
  end)
end

-- 7. Everything reachable: globals, the registry, metatables, upvalues.
try("a walk of everything reachable", function()
  local registry = debug.getregistry()
  for _, class in ipairs(HOST_CLASSES) do
    if registry[class] then got("the registry", class) end
  end
  local seen, queue, n = {}, { _G, registry }, 0
  while #queue > 0 and n < 100000 do
    local v = table.remove(queue)
    if not seen[v] then
      seen[v] = true
      n = n + 1
      if type(v) == "table" then
        for _, name in ipairs{ "spawn", "remove_tree", "chown", "relisten", "answer_unavailable", "http_serve",
            "db_open", "seccomp_fd", "strip_setid", "fs_watch", "on_signal", "stop_serving", "close_fd" } do
          if type(rawget(v, name)) == "function" then got("a reachable table", name) end
        end
        for k, x in next, v do
          if type(k) == "table" or type(k) == "function" or type(k) == "userdata" then queue[#queue + 1] = k end
          if type(x) == "table" or type(x) == "function" or type(x) == "userdata" or type(x) == "thread" then
            queue[#queue + 1] = x
          end
        end
      end
      local mt = debug.getmetatable(v)
      if mt then queue[#queue + 1] = mt end
      if type(v) == "function" then
        for i = 1, 255 do
          local name, up = debug.getupvalue(v, i)
          if not name then break end
          if type(up) == "table" or type(up) == "function" or type(up) == "userdata" then queue[#queue + 1] = up end
        end
      end
      if type(v) == "userdata" then
        for i = 1, 4 do
          local uv, ok = debug.getuservalue(v, i)
          if not ok then break end
          if type(uv) == "table" or type(uv) == "function" then queue[#queue + 1] = uv end
        end
      end
    end
  end
end)

print(string.format("boundary: tried %d ways, reached %d", tried, reached))
if serve then
  local w = hersh.watcher{ id = "boundary" }
  w:manage(function() end)
  assert(w:start())
  hersh.run()
end
