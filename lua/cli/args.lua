-- The command line of `hersh`: one table (COMMANDS) from which lua-argparse builds the
-- parser, and from which --help, the man page (cli.manpage) and the bash and zsh
-- completions are made, so that none of them can list a flag the parser does not take.
local argparse = require "argparse"

local args = {}

args.PROGRAM = "hersh"
args.SUMMARY = "run Lua watchers, host sandboxed programs, and drive a Host from the command line"

-- The exit codes of the client subcommands (docs/cli.md).
args.EXIT = { ok = 0, failed = 1, usage = 2, unreachable = 3, auth = 4, not_found = 5, changes = 6 }
args.EXIT_TEXT = {
  { 0, "success (deploy, start, restart: the program is Ready)" },
  { 1, "the Host refused the request, or the program failed (not Ready, build failed)" },
  { 2, "usage: a bad argument, flag or file given to hersh" },
  { 3, "the Host cannot be reached at its URL" },
  { 4, "the Host refused the token (auth)" },
  { 5, "no such program on the Host" },
  { 6, "plan: changes are pending (apply would make them)" },
}

-- The options every client subcommand takes.
local CONNECTION = {
  { "--host", "URL", "the Host's REST API (default $HERSH_HOST, else http://127.0.0.1:9000)" },
  { "--token-file", "FILE", "a file holding the bearer token (default $HERSH_TOKEN_FILE)" },
  { "--json", nil, "print JSON for scripts instead of tables" },
}

-- name, summary, arguments {name, description, optional?}, options {flag, metavar or nil
-- for a flag, description}, client = takes CONNECTION.
args.COMMANDS = {
  { name = "run", summary = "run a Lua script's watchers, the first one serving its WatcherAPI",
    arguments = { { "file", "the Lua script" }, { "args", "the script's own arguments (arg[1..n])", many = true } },
    options = {
      { "--port", "N", "port of the WatcherAPI (0: any free one; default 8080)" },
      { "--bind", "ADDR", "address of the WatcherAPI (default 127.0.0.1)" },
      { "--record", "TRACE", "write the first watcher's whole trace to TRACE, for hersh replay" },
    } },
  { name = "replay", summary = "run a script's reducer again on a recorded trace, offline, and compare every run",
    arguments = { { "trace", "the trace file: recorded by hersh run, or served by GET /watcher/trace" },
                  { "file", "the Lua script whose first watcher made it" } },
    options = {
      { "--until", "N", "stop after run N and print the context store and the watch values" },
      { "--step", nil, "print each run's inputs and results" },
      { "--strict", nil, "os.time, os.clock, math.random, io.* and the like raise inside a run" },
    } },
  { name = "host", summary = "serve the Host's REST API: build, run and supervise sandboxed programs",
    options = {
      { "--bind", "ADDR", "address of the REST API (default 127.0.0.1)" },
      { "--port", "N", "port of the REST API (0: any free one; default 9000)" },
      { "--storage", "DIR", "registry, sources, state, logs and images (default ./var)" },
      { "--token-file", "FILE", "require this bearer token on every route but /health" },
      { "--sandbox", "NAME", "the Host's sandbox driver (bwrap)" },
      { "--isolation", "NAME", "a program's sandbox unless its create says: bwrap (default), gvisor or swarm" },
      { "--driver", "NAME", "the same as --isolation (swarm: Docker Swarm services, docs/cluster.md)" },
      { "--docker-socket", "PATH", "the Docker Engine's API socket for swarm (default /var/run/docker.sock)" },
      { "--registry", "HOST:PORT", "swarm: push images to this registry, so that any node pulls them" },
      { "--publish", "MODE", "swarm: socket (default; the Host's node) or node (the WatcherAPI on the task's node)" },
      { "--ports", "FIRST-LAST", "range of the publish ports (default 19001-29999)" },
      { "--policy", "FILE", "a Lua restart policy module for every program" },
      { "--allow-host", "NAME", "one more name the API answers to; repeatable", many = true },
      { "--max-connections", "N", "connections in all (default 1024)" },
      { "--max-per-client", "N", "connections per client address (default 256)" },
      { "--idle-timeout", "S", "seconds of silence before a connection is closed (default 10)" },
      { "--request-timeout", "S", "seconds for a request to come in (default 30)" },
      { "--events-heartbeat", "S", "seconds between keep-alive comments of GET /events (default 15)" },
      { "--events-max", "N", "lifecycle events kept (default 10000)" },
      { "--ready-timeout", "S", "seconds a started program has to answer /watcher/status (default 30)" },
    } },
  { name = "version", summary = "print the versions of hersh and its libraries" },
  -- not a client command: a folder needs no Host (a NAME is looked up with --host)
  { name = "image", summary = "write a program's built image as an OCI image archive (docker load, podman load)",
    arguments = { { "program", "a folder with a Dockerfile (built here), or a program's name or id on the Host" } },
    options = {
      { "--output", "FILE", "where the archive goes", short = "-o" },
      { "--port", "N", "the WatcherAPI's port in the image, declared in ExposedPorts (default 8080)" },
      { "--user", "UID[:GID]", "the numeric user the image runs as, never 0 (default 65534)" },
      { "--storage", "DIR", "for a NAME: the Host's storage on this machine, its images (default ./var)" },
      { "--host", "URL", "for a NAME: the Host's REST API (default $HERSH_HOST, else http://127.0.0.1:9000)" },
      { "--token-file", "FILE", "for a NAME: a file holding the bearer token (default $HERSH_TOKEN_FILE)" },
      { "--json", nil, "print the archive's name, digest and size as JSON" },
    } },
  { name = "deploy", client = true,
    summary = "create or update a program from DIR (its Dockerfile and files), start it, wait until Ready",
    arguments = { { "dir", "the folder holding the Dockerfile and the files it copies" } },
    options = {
      { "--name", "NAME", "the program's name (default: DIR's base name)" },
      { "--user", "USER", "the owner at create (default $USER, else hersh)" },
      { "--isolation", "NAME", "the sandbox at create: bwrap, gvisor or swarm (default: the Host's); fixed after" },
      { "--env", "NAME=VALUE", "an environment variable of the program; repeatable", many = true },
      { "--timeout", "S", "seconds to wait for Ready (default 120)" },
    } },
  { name = "ps", client = true, summary = "list the programs", options = {
      { "--state", "STATE", "only the programs in this state" },
    } },
  { name = "inspect", client = true, summary = "show a program's whole record",
    arguments = { { "name", "the program's name or id" } } },
  { name = "logs", client = true, summary = "print a program's logs",
    arguments = { { "name", "the program's name or id" } },
    options = {
      { "--follow", nil, "keep printing new lines until interrupted", short = "-f" },
      { "--build", nil, "the build's log instead of the runtime log" },
      { "--tail", "N", "the last N lines (default 200)" },
    } },
  { name = "events", client = true, summary = "print the Host's lifecycle events",
    arguments = { { "name", "only this program's events", optional = true } },
    options = {
      { "--follow", nil, "keep printing new events until interrupted", short = "-f" },
      { "--since", "ID", "only the events after this id" },
    } },
  { name = "start", client = true, summary = "start a program and wait until it is Ready",
    arguments = { { "name", "the program's name or id" } },
    options = { { "--timeout", "S", "seconds to wait for Ready (default 120; 0: do not wait)" } } },
  { name = "stop", client = true, summary = "stop a program and wait until it is Stopped",
    arguments = { { "name", "the program's name or id" } },
    options = { { "--timeout", "S", "seconds to wait for Stopped (default 60; 0: do not wait)" } } },
  { name = "restart", client = true, summary = "restart a Ready program and wait until it is Ready again",
    arguments = { { "name", "the program's name or id" } },
    options = { { "--timeout", "S", "seconds to wait for Ready (default 120; 0: do not wait)" } } },
  { name = "rm", client = true, summary = "delete a program (its processes, files and port)",
    arguments = { { "name", "the program's name or id" } },
    options = { { "--keep-state", nil, "keep the program's state folder" } } },
  { name = "send", client = true, summary = "send a message to a program's watcher (POST /watcher/message)",
    arguments = { { "name", "the program's name or id" }, { "message", "the message's text" } } },
  { name = "watch", client = true, summary = "show a watcher's status, vars and recent logs, refreshed",
    arguments = { { "name", "the program's name or id" } },
    options = {
      { "--interval", "S", "seconds between refreshes (default 1)" },
      { "--count", "N", "stop after N refreshes (default: until interrupted)" },
    } },
  { name = "rollback", client = true, summary = "run a kept revision of a program again, as a new revision",
    arguments = { { "name", "the program's name or id" } },
    options = { { "--revision", "N", "the revision to go back to" } } },
  { name = "plan", client = true,
    summary = "show what apply would change: per program of FILE create, update (which fields), start, delete",
    arguments = { { "file", "the Lua file listing the programs (docs/cli.md, apply)" } },
    options = { { "--prune", nil, "also list the programs an apply of FILE created that FILE no longer has" } } },
  { name = "apply", client = true,
    summary = "create, update in place, start and (--prune) delete programs to match FILE; wait until all are Ready",
    arguments = { { "file", "the Lua file listing the programs (docs/cli.md, apply)" } },
    options = {
      { "--prune", nil, "delete the programs an apply of FILE created that FILE no longer has" },
      { "--timeout", "S", "seconds to wait for each program to be Ready (default 120)" },
    } },
  { name = "export", client = true,
    summary = "write a program as Kubernetes manifests (YAML; --json: a List) or a Nomad job (JSON)",
    arguments = { { "target", "k8s or nomad", choices = { "k8s", "nomad" } },
                  { "program", "a program's name or id on the Host, or a program folder (its Dockerfile)" } },
    options = {
      { "--output", "FILE", "write to FILE instead of stdout", short = "-o" },
      { "--image", "REF", "the image to run (default hersh/NAME:BUILD_ID, as hersh image names it)" },
      { "--namespace", "NS", "the Kubernetes or Nomad namespace (default: none given)" },
      { "--name", "NAME", "the name in the manifests (default: the program's name, or the folder's)" },
      { "--state-volume", "NAME", "/state on this claim (k8s: a PersistentVolumeClaim) or Nomad host volume, "
        .. "not on a volume of the pod or the node" },
      { "--state-size", "SIZE", "the claim's size with --state-volume (k8s; default 1Gi)" },
    } },
  { name = "completion", summary = "print a shell completion script",
    arguments = { { "shell", "bash or zsh", choices = { "bash", "zsh" } } } },
  { name = "man", summary = "print this manual page (roff), made from the same table as --help" },
}

function args.command(name)
  for _, c in ipairs(args.COMMANDS) do
    if c.name == name then return c end
  end
end

-- Every option of a command, its connection options included, in help order.
function args.options(c)
  local out = {}
  for _, o in ipairs(c.options or {}) do out[#out + 1] = o end
  if c.client then
    for _, o in ipairs(CONNECTION) do out[#out + 1] = o end
  end
  return out
end

local function add_option(cmd, o)
  local flag = o.short and (o.short .. " " .. o[1]) or o[1]
  local e = o[2] and cmd:option(flag, o[3]):argname(o[2]) or cmd:flag(flag, o[3])
  if o.many then e:count("*") end
end

-- The parser. A help flag records which (sub)command asked and stops the parse, so that
-- `hersh deploy --help` needs no DIR; parse() turns that into {help = text}.
function args.parser()
  local state = {}
  local function help_of(cmd)
    cmd:add_help { action = function()
      state.help = cmd
      error("help", 0)
    end }
  end
  local p = argparse(args.PROGRAM, args.SUMMARY)
  p:command_target("command")
  p:help_max_width(90)
  p:epilog("Run `hersh COMMAND --help` for a command's flags. Exit codes: "
    .. "0 ok, 1 failed, 2 usage, 3 Host unreachable, 4 auth refused, 5 no such program, "
    .. "6 plan: changes pending.")
  help_of(p)
  for _, c in ipairs(args.COMMANDS) do
    local cmd = p:command(c.name, c.summary)
    help_of(cmd)
    for _, a in ipairs(c.arguments or {}) do
      local e = cmd:argument(a[1], a[2])
      if a.many then e:args("*") elseif a.optional then e:args("?") end
      if a.choices then e:choices(a.choices) end
    end
    for _, o in ipairs(args.options(c)) do add_option(cmd, o) end
  end
  return p, state
end

-- args.parse(argv) -> {command = name, <options>...} | {help = text} | nil, usage message.
function args.parse(argv)
  local p, state = args.parser()
  local ok, ok_parse, result = pcall(p.pparse, p, argv)
  if state.help then return { help = state.help:get_help() } end
  if not ok then error(ok_parse, 0) end
  if not ok_parse then
    local which = argv[1] and args.command(argv[1]) and p._commands
    local usage = p:get_usage()
    for _, cmd in ipairs(which or {}) do
      if cmd._name == argv[1] then usage = cmd:get_usage() end
    end
    return nil, result .. "\n" .. usage .. "\n(hersh " .. (which and argv[1] .. " " or "") .. "--help for more)"
  end
  return result
end

function args.completion(shell)
  local p = args.parser()
  return shell == "zsh" and p:get_zsh_complete() or p:get_bash_complete()
end

return args
