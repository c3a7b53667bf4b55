-- The client half of `hersh` (src/cli/main.c hands over every subcommand but run, host
-- and version): parses the command line (cli.args), then runs the subcommand. What goes
-- wrong is one line on stderr and an exit code of cli.args.EXIT, never a traceback.
local main = {}

-- lua-argparse is the one module the client needs beyond hersh's own.
if not pcall(require, "argparse") then
  function main.run()
    io.stderr:write("hersh: the Lua module argparse is missing: install lua-argparse (Debian) ",
      "or `luarocks install argparse`\n")
    return 2
  end
  return main
end

local args = require "cli.args"
local client = require "cli.client"
local output = require "cli.output"

local EXIT = args.EXIT

local function handlers()
  local programs, stream = require "cli.programs", require "cli.stream"
  return {
    deploy = require("cli.deploy").run,
    ps = programs.ps, inspect = programs.inspect, start = programs.start, stop = programs.stop,
    restart = programs.restart, rm = programs.rm, send = programs.send, rollback = programs.rollback,
    logs = stream.logs, events = stream.events, watch = stream.watch,
    plan = require("cli.plan").run, apply = require("cli.apply").run,
    export = require("cli.export").run,
    image = require("cli.image").run, -- not a client command (cli.args): a Host only for a NAME
  }
end

-- Commands that need no Host: what the parser table holds, and replay.
local function local_command(a)
  if a.command == "completion" then
    io.stdout:write(args.completion(a.shell))
    return EXIT.ok
  end
  if a.command == "man" then
    io.stdout:write(require("cli.manpage").render())
    return EXIT.ok
  end
  if a.command == "replay" then return require("cli.replay").run(a) end -- offline, no Host
end

-- main.run(argv, {tty = bool}) -> exit code.
function main.run(argv, env)
  local a, usage = args.parse(argv)
  if not a then
    io.stderr:write("hersh: ", usage, "\n")
    return EXIT.usage
  end
  if a.help then
    io.stdout:write(a.help, "\n")
    return EXIT.ok
  end
  local code = local_command(a)
  if code then return code end
  local handler = handlers()[a.command]
  if not handler then -- run, host, version: main.c takes them before the client
    io.stderr:write("hersh: '", a.command, "' is not a client command\n")
    return EXIT.usage
  end
  local ok, result = pcall(function()
    local c = client.new { host = a.host, token_file = a.token_file }
    return handler(a, c, output.new { json = a.json, tty = env and env.tty })
  end)
  if ok then return result end
  if client.is_failure(result) then
    io.stderr:write("hersh ", a.command, ": ", result.message, "\n")
    return result.exit
  end
  io.stderr:write("hersh ", a.command, ": internal error: ", tostring(result), "\n")
  return EXIT.failed
end

return main
