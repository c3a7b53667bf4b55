-- busted output: the plain terminal report, the slowest spec files and the slowest tests
-- (to keep make test within its budget), then "N passed, N failed, N skipped" (errors
-- count as failures), the line scripts/test adds up.
local SLOWEST_FILES = 8
local SLOWEST_TESTS = 12

-- Sub-second wall time when the hersh module loads (it does in every run of the specs).
local have_core, core = pcall(require, "hersh.core")
local now = have_core and core.now or os.time

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  local files, tests = {}, {}
  local file_name, file_started, current = nil, nil, nil

  -- A test's time runs from its start to the next test's start or its file's end, so
  -- that its cleanups (scripts.process's P.defer, after_each) count with it.
  local function close_test(t)
    if current then
      current.seconds = t - current.started
      tests[#tests + 1] = current
      current = nil
    end
  end

  busted.subscribe({ "file", "start" }, function(file)
    file_name, file_started = file.name, now()
    return nil, true
  end)
  busted.subscribe({ "test", "start" }, function(element)
    local t = now()
    close_test(t)
    current = { name = handler.getFullName(element), file = file_name, started = t }
    return nil, true
  end)
  busted.subscribe({ "file", "end" }, function(file)
    local t = now()
    close_test(t)
    files[#files + 1] = { name = file.name, seconds = t - (file_started or t) }
    return nil, true
  end)

  local function by_time(a, b) return a.seconds > b.seconds end

  busted.subscribe({ "suite", "end" }, function()
    table.sort(files, by_time)
    table.sort(tests, by_time)
    io.write("\nslowest spec files:")
    for i = 1, math.min(SLOWEST_FILES, #files) do
      io.write(string.format(" %s %.0f s;", files[i].name, files[i].seconds))
    end
    io.write("\nslowest tests:\n")
    for i = 1, math.min(SLOWEST_TESTS, #tests) do
      io.write(string.format("  %6.1f s  %s: %s\n", tests[i].seconds, tests[i].file, tests[i].name))
    end
    io.write(string.format("%d passed, %d failed, %d skipped\n",
      #handler.successes, #handler.failures + #handler.errors, #handler.pendings))
    io.flush()
    return nil, true
  end)
  return handler
end
