-- The C layers stay apart: the engine's structures (src/engine/engine.h) compile only in
-- src/engine, the other layers call the functions of include/hersh.h and
-- src/engine/binding.h, and src/base needs nothing but libc. The compiler enforces the
-- first (an #error unless CMake defined HERSH_ENGINE_INTERNAL); these checks prove the
-- guard works and that nobody goes around it.

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- Every C source and header under the given directories.
local function c_files(dirs)
  return lines_of("find " .. table.concat(dirs, " ") .. " -type f \\( -name '*.c' -o -name '*.h' \\) | sort")
end

local function includes(text)
  local out = {}
  for kind, name in text:gmatch('\n%s*#%s*include%s*([<"])([^>"]+)[>"]') do
    out[#out + 1] = { system = kind == "<", name = name }
  end
  return out
end

local function have_cc()
  return os.execute("command -v cc >/dev/null 2>&1") == true
end

-- Compiles (syntax only) a file holding `source`; returns ok and the compiler's output.
local function compile(source, defines)
  local dir = lines_of("mktemp -d")[1]
  local file = dir .. "/probe.c"
  local f = assert(io.open(file, "w"))
  f:write(source)
  f:close()
  -- Without the sanitizer runtimes the san build preloads into this process.
  local cmd = string.format("env -u LD_PRELOAD cc -std=c11 -D_GNU_SOURCE %s -Iinclude -Isrc -fsyntax-only %s 2>&1",
    defines or "", file)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  os.execute("rm -rf '" .. dir .. "'")
  return ok == true, out
end

describe("layers", function()
  it("engine.h does not compile outside src/engine", function()
    if not have_cc() then
      pending("no C compiler (cc) on this machine: the guard is not checked")
      return
    end
    local ok, out = compile('#include "engine/engine.h"\nstruct hersh_watcher *probe;\n')
    assert.is_false(ok, "a file outside src/engine compiled engine.h:\n" .. out)
    assert.matches("engine.h is private to src/engine", out, 1, true)
    -- The same probe compiles where CMake allows it: the refusal above is the guard's.
    local ok_inside, out_inside = compile('#include "engine/engine.h"\nsize_t probe = sizeof(struct hersh_watcher);\n',
      "-DHERSH_ENGINE_INTERNAL")
    assert.is_true(ok_inside, out_inside)
  end)

  it("the layers above the engine reach it only through hersh.h and binding.h", function()
    local files = c_files({ "src/base", "src/lua", "src/http", "src/proc", "src/store", "src/cli", "tests", "fuzz", "bench" })
    assert.is_true(#files > 20, "found only " .. #files .. " C files: run from the source root")
    local offenders = {}
    for _, path in ipairs(files) do
      local text = read(path)
      for _, inc in ipairs(includes(text)) do
        if inc.name:match("engine%.h$") then offenders[#offenders + 1] = path .. " includes " .. inc.name end
      end
      if text:find("HERSH_ENGINE_INTERNAL", 1, true) then
        offenders[#offenders + 1] = path .. " defines HERSH_ENGINE_INTERNAL"
      end
    end
    assert.are.same({}, offenders)
    -- CMake defines it for the engine's own sources and nothing else.
    local cmake = read("CMakeLists.txt")
    local uses = {}
    for line in cmake:gmatch("[^\n]*HERSH_ENGINE_INTERNAL[^\n]*") do
      if not line:match("^%s*#") then uses[#uses + 1] = line end
    end
    assert.are.same({
      "set_source_files_properties(${HERSH_ENGINE_SOURCES} PROPERTIES COMPILE_DEFINITIONS HERSH_ENGINE_INTERNAL)",
    }, uses)
  end)

  it("binding.h declares functions and interfaces, no engine structure", function()
    local text = read("src/engine/binding.h")
    -- Only callback tables a binding fills in itself.
    local allowed = { hersh_interrupt = true, hersh_observer = true }
    local layouts = {}
    for name in text:gmatch("struct%s+([%w_]+)%s*{") do
      if not allowed[name] then layouts[#layouts + 1] = name end
    end
    assert.are.same({}, layouts)
  end)

  it("src/base needs nothing but libc", function()
    local libc = {}
    for name in ([[assert.h ctype.h errno.h float.h inttypes.h limits.h locale.h math.h pthread.h
      signal.h stdarg.h stdatomic.h stdbool.h stddef.h stdint.h stdio.h stdlib.h string.h strings.h
      time.h unistd.h]]):gmatch("%S+") do
      libc[name] = true
    end
    local files = c_files({ "src/base" })
    assert.is_true(#files >= 8, "src/base holds only " .. #files .. " C files")
    local own = {}
    for _, path in ipairs(files) do own[path:match("[^/]+$")] = true end
    local offenders = {}
    for _, path in ipairs(files) do
      for _, inc in ipairs(includes(read(path))) do
        local fine = inc.system and libc[inc.name] or (not inc.system and (own[inc.name] or inc.name == "hersh.h"))
        if not fine then offenders[#offenders + 1] = path .. " includes " .. inc.name end
      end
    end
    assert.are.same({}, offenders)
  end)
end)
