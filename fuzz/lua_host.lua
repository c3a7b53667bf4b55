-- The Lua side of fuzz_lua_host (lua_host.c): one input, read three ways by its first
-- byte. Any Lua error, raised by the code under test or by a check below, is a finding.
--   0: the rest is a Dockerfile: dockerfile.parse, then command and copy_targets.
--   1: the rest is a request body: hersh.json's decode (its refusal is the API's 400), then
--      host.validate.
--   2: the rest is "Dockerfile\0path\npath...": a create request with those files.
local json = require "hersh.json"
local dockerfile = require "host.dockerfile"
local host = require "host.host"

local FILES = { ["app.lua"] = "return 1\n", ["dir/a"] = "a", ["dir/sub/b"] = "b" }
local DIRS = { ["/app"] = true, ["/srv/dir"] = true }

local function check(cond, what, ...)
  if not cond then error(string.format(what, ...), 2) end
end

local function lines_in(text)
  return select(2, text:gsub("\n", "")) + 1
end

local function dockerfile_refusal(text, err, code)
  check(type(err) == "string" and code == "EDOCKERFILE", "a refusal without message or code: %s %s",
    tostring(err), tostring(code))
  local n, why = err:match("^Dockerfile line (%d+): (.+)$")
  check(n, "a refusal that does not name its line: %s", err)
  check(tonumber(n) >= 1 and tonumber(n) <= lines_in(text), "a refusal names line %s of %d", n, lines_in(text))
  check(#why > 0, "a refusal that says nothing")
end

local function run_dockerfile(text)
  local plan, err, code = dockerfile.parse(text)
  if not plan then return dockerfile_refusal(text, err, code) end
  check(type(plan.steps) == "table" and (plan.base == "hersh" or plan.base == "scratch"),
    "a plan without steps or with base %s", tostring(plan.base))
  local argv, cmd_err = dockerfile.command(plan)
  if argv then
    check(#argv > 0, "an empty command")
    for _, a in ipairs(argv) do check(type(a) == "string", "a command word of type %s", type(a)) end
  else
    check(type(cmd_err) == "string", "command refused without a message")
  end
  for _, step in ipairs(plan.steps) do
    if step.op == "copy" then
      local targets, copy_err = dockerfile.copy_targets(step, FILES, function(p) return DIRS[p] end)
      if targets then
        for _, t in ipairs(targets) do
          check(FILES[t.from] ~= nil and type(t.to) == "string", "a copy of %s to %s", tostring(t.from), tostring(t.to))
        end
      else
        check(type(copy_err) == "string" and copy_err:match("^Dockerfile line %d+: "), "a copy refusal: %s",
          tostring(copy_err))
      end
    end
  end
end

local function run_validate(body)
  local req, err = host.validate(body)
  if req then
    check(type(req.user_id) == "string" and type(req.plan) == "table" and type(req.files) == "table",
      "an accepted request without user_id, plan or files")
    return
  end
  check(type(err) == "table" and math.type(err.status) == "integer" and err.status >= 400 and err.status < 500,
    "a refusal without a 4xx status: %s", tostring(type(err) == "table" and err.status or err))
  check(type(err.message) == "string" and #err.message > 0, "a refusal without a message")
  json.encode({ message = err.message }) -- the API sends it: it must encode
end

local function one(input)
  local mode, rest = input:byte(1) or 0, input:sub(2)
  mode = mode % 3
  if mode == 0 then
    run_dockerfile(rest)
  elseif mode == 1 then
    local body = json.decode(rest)
    if body ~= nil then run_validate(body) end
  else
    local text, list = rest:match("^(.-)%z(.*)$")
    local files = {}
    for p in (list or ""):gmatch("[^\n]+") do files[p] = "x" end
    run_validate({ user_id = "fuzz", dockerfile = text or rest, src_files = files })
  end
end

return { one = one }
