-- busted output: the plain terminal report, the slowest spec files (to keep make test
-- within its budget), then "N passed, N failed, N skipped" (errors count as failures),
-- the line scripts/test adds up.
local SLOWEST = 8

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  local started, took = {}, {}

  busted.subscribe({ "file", "start" }, function(file)
    started[file.name] = os.time()
    return nil, true
  end)
  busted.subscribe({ "file", "end" }, function(file)
    took[#took + 1] = { name = file.name, seconds = os.time() - (started[file.name] or os.time()) }
    return nil, true
  end)

  busted.subscribe({ "suite", "end" }, function()
    table.sort(took, function(a, b) return a.seconds > b.seconds end)
    io.write("\nslowest spec files:")
    for i = 1, math.min(SLOWEST, #took) do io.write(string.format(" %s %d s;", took[i].name, took[i].seconds)) end
    io.write(string.format("\n%d passed, %d failed, %d skipped\n",
      #handler.successes, #handler.failures + #handler.errors, #handler.pendings))
    io.flush()
    return nil, true
  end)
  return handler
end
