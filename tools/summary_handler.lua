-- busted output: the plain terminal report, then "N passed, N failed, N skipped"
-- (errors count as failures), the line scripts/test adds up.
return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.plainTerminal"(options)
  busted.subscribe({ "suite", "end" }, function()
    io.write(string.format("\n%d passed, %d failed, %d skipped\n",
      #handler.successes, #handler.failures + #handler.errors, #handler.pendings))
    io.flush()
    return nil, true
  end)
  return handler
end
