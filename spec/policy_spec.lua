-- The Host's orchestration policy (lua/host/policy.lua, docs/policies.md), end to end:
-- a real `hersh host --policy FILE` with a bearer token, a policy written here whose
-- hooks behave as the labels of each request say (accept, refuse, rewrite, raise,
-- loop forever, answer nonsense). One Host serves every test, in order; the reload
-- tests come last and put the first file back.
local H = require "scripts.host_harness"
local cjson = require "cjson"

local P = H.P
local call, create, assert_error, ok_json = H.call, H.create, H.assert_error, H.ok_json
local has = H.has

local TOKEN = "policy-spec-token"

-- The spec's policy. Its hooks key on the request's labels (or the program's, found
-- through ctx), so that one file covers every case.
local POLICY = [[
local restart_policy = require "host.restart_policy"
local policy = {}

function policy.admit(request, ctx)
  local how = (request.labels or {}).admit
  if how == "refuse" then return false, 409, "refused by the spec: " .. ctx.operation end
  if how == "rewrite" then
    request.labels.admitted = "yes"
    request.limits = { memory = 64 * 1024 * 1024 }
    return request
  end
  if how == "invalid" then request.user_id = "NOT VALID"; return request end
  if how == "loop" then while true do end end
  if how == "raise" then error("admit raised on purpose") end
  if how == "nonsense" then return 42 end
  if how == "bad-status" then return false, 200, "not a refusal" end
  return true
end

function policy.place(request)
  local how = (request.labels or {}).place
  if how == "bwrap" then return { isolation = "bwrap" } end
  if how == "unknown" then return { isolation = "teleport" } end
  if how == "nonsense" then return "somewhere" end
end

function policy.health(record, probe)
  if record.labels and record.labels.health == "sick" then return false, "the spec says sick" end
end

policy.restart = {
  normalize = function(given)
    if type(given) == "table" and given.spec then return given end
    return restart_policy.normalize(given)
  end,
  decide = function(p, record, exit)
    if p.spec == "nonsense" then return { action = "explode" } end
    if p.spec == "loop" then while true do end end
    return restart_policy.decide(p, record, exit)
  end,
}

function policy.on_event(event, ctx)
  local p = event.program_id and ctx.program(event.program_id)
  local how = p and p.labels.on_event
  if event.kind ~= "created" or not how then return end
  if how == "start" then assert(ctx.start(p.program_id)) end
  if how == "raise" then error("on_event raised on purpose") end
  if how == "flood" then
    local refused
    for i = 1, 12 do
      local ok, why = ctx.send(p.program_id, "hello " .. i)
      if not ok then refused = refused or why end
    end
    ctx.log("flood: " .. tostring(refused))
  end
end

function policy.routes(router)
  router:get("/x/echo", function(req, ctx)
    return 200, { path = req.path, who = req.query.who, programs = #ctx.programs(),
      token_hidden = req.headers.authorization == nil and req.headers.host ~= nil }
  end)
  router:post("/x/echo", function(req) return 201, { got = req.json } end)
  router:get("/x/raise", function() error("route raised on purpose") end)
  router:get("/x/loop", function() while true do end end)
  router:get("/x/nonsense", function() return "two hundred" end)
end

return policy
]]

-- A file whose restart-only module is read as {restart = it}, as before this policy.
local RESTART_ONLY = [[
return { decide = function() return { action = "stop" } end, normalize = function(g) return g or {} end }
]]

local ROUTES_ONLY = [[
return { routes = function(router) router:get("/x/v2", function() return 200, { version = 2 } end) end }
]]

describe("hersh host --policy", function()
  local h, dir, file

  -- Events of `kind` after id `since`: the list.
  local function events(kind, since)
    local doc = ok_json(call(h, "GET", "/events?follow=false&kind=" .. kind .. "&since=" .. (since or 0)), 200, kind)
    return doc.events
  end

  -- The newest event id (a listing of a kind no test makes answers it at once).
  local function last_id()
    return ok_json(call(h, "GET", "/events?follow=false&kind=rolled_back"), 200).last_id
  end

  -- Waits for a policy_error of `hook` after `since` whose reason holds `text`; the event.
  local function policy_error(hook, since, text)
    local found
    assert(P.wait_for(function()
      for _, e in ipairs(events("policy_error", since)) do
        if e.details.hook == hook and has(e.details.reason, text) then found = e return true end
      end
    end, H.WAIT, 0.05), "no policy_error of " .. hook .. " with '" .. text .. "'")
    return found
  end

  local function answers()
    assert.equal(200, call(h, "GET", "/health").status)
  end

  local function body(user, labels, extra)
    local b = H.counter_body(user, extra)
    b.labels = labels
    return b
  end

  setup(function()
    dir = H.public_tmpdir()
    file = dir .. "/policy.lua"
    P.write(file, POLICY)
    P.write(dir .. "/token", TOKEN .. "\n")
    h = H.start_host{ token_file = dir .. "/token", args = { "--policy", file }, ports = { H.free_range(20) } }
    h.token = TOKEN
  end)

  teardown(function()
    if h then H.assert_clean_exit(h) end
    H.stop_host(h)
    H.sh("rm -rf " .. P.quote(dir))
  end)

  it("GET /policy says the file, its hooks and when it was loaded; behind the token", function()
    local doc = ok_json(call(h, "GET", "/policy"))
    assert.equal(file, doc.file)
    assert.same({ "admit", "health", "on_event", "place", "restart", "routes" }, doc.hooks)
    assert.matches(H.ISO, doc.loaded_at)
    assert.equal(cjson.null, doc.last_error)
    local none = { port = h.port }
    assert_error(call(none, "GET", "/policy"), 401, "no token")
    assert_error(call(none, "POST", "/policy/reload"), 401, "no token")
    assert_error(call(none, "GET", "/x/echo"), 401, "no token")
    assert_error(call(h, "DELETE", "/policy"), 405, "DELETE /policy")
  end)

  it("admit refuses with the policy's status and message, rewrites a request, and sees updates", function()
    local r = call(h, "POST", "/programs", body("adm", { admit = "refuse" }))
    assert_error(r, 409, "refused")
    assert.equal("refused by the spec: create", r.json.message)
    local doc = create(h, body("adm", { admit = "rewrite" }))
    local v = H.view(h, doc.program_id)
    assert.same({ admit = "rewrite", admitted = "yes" }, v.labels)
    assert.same({ memory = 64 * 1024 * 1024 }, v.limits)
    -- An update passes admit too: its operation is "update".
    r = call(h, "PUT", "/programs/" .. doc.program_id, body("adm", { admit = "refuse" }))
    assert_error(r, 409, "update refused")
    assert.equal("refused by the spec: update", r.json.message)
  end)

  it("an admit that loops forever, raises or answers nonsense: accepted as is, an event says why, the Host answers", function()
    local cases = {
      { "loop", "ran past its budget of 0.1 s" },
      { "raise", "admit raised on purpose" },
      { "nonsense", "returned a number" },
      { "bad-status", "not a 4xx number" },
      { "invalid", "returned a request the Host refuses (user_id must be" },
    }
    for _, case in ipairs(cases) do
      local since = last_id()
      local doc = create(h, body("bad-" .. case[1], { admit = case[1] }))
      assert.same({ admit = case[1] }, H.view(h, doc.program_id).labels, case[1])
      local e = policy_error("admit", since, case[2])
      assert.is_true(has(e.message, "the default decided"), e.message)
      answers()
    end
  end)

  it("place chooses the driver; an unknown driver or nonsense falls back to the default with an event", function()
    local doc = create(h, body("plc", { place = "bwrap" }, { isolation = "gvisor" }))
    assert.equal("bwrap", H.view(h, doc.program_id).isolation)
    for _, case in ipairs { { "unknown", "isolation teleport" }, { "nonsense", "returned a string" } } do
      local since = last_id()
      doc = create(h, body("plc", { place = case[1] }))
      assert.equal("bwrap", H.view(h, doc.program_id).isolation)
      policy_error("place", since, case[2])
    end
    answers()
  end)

  it("on_event acts (a start), health decides a check, and a restart decision that is nonsense is the default's", function()
    local since = last_id()
    -- Created, then started by on_event; the policy's health check fails it; its
    -- restart policy answers nonsense: the default restarts it.
    local doc = create(h, body("evt", { on_event = "start", health = "sick" },
      { health = { interval = 0.2, failures = 1 }, restart_policy = { spec = "nonsense" } }))
    local id = doc.program_id
    assert(P.wait_for(function()
      for _, e in ipairs(events("unhealthy", since)) do
        if e.program_id == id then return e.details.last_error == "the spec says sick" end
      end
    end, H.WAIT, 0.05), "no unhealthy event with the policy's reason")
    local e = policy_error("restart", since, "returned from decide the action explode")
    assert.equal(id, e.program_id)
    assert(P.wait_for(function()
      for _, r in ipairs(events("restarting", since)) do
        if r.program_id == id then return true end
      end
    end, H.WAIT, 0.05), "the default decision (a restart) was not taken")
    ok_json(H.act(h, id, "stop"), 202, "stop")
    H.wait_state(h, id, "Stopped")
  end)

  it("a restart decision that loops forever: the default's, and the Host answers (before, it hung the Host)", function()
    local since = last_id()
    local doc = create(h, { user_id = "rst", dockerfile = "FROM hersh\nCMD [\"/nonexistent\"]",
      restart_policy = { spec = "loop" } })
    ok_json(H.act(h, doc.program_id, "start"), 202, "start")
    local e = policy_error("restart", since, "ran past its budget of 0.1 s")
    assert.equal(doc.program_id, e.program_id)
    answers()
    ok_json(H.act(h, doc.program_id, "stop"), 202, "stop")
    H.wait_state(h, doc.program_id, "Stopped")
  end)

  it("an on_event that raises is an event; one that acts too often on a program is refused past the bound", function()
    local since = last_id()
    local doc = create(h, body("evt2", { on_event = "raise" }))
    local e = policy_error("on_event", since, "on_event raised on purpose")
    assert.equal(doc.program_id, e.program_id)
    doc = create(h, body("evt3", { on_event = "flood" }))
    e = policy_error("actions", since, "more than 10 actions on " .. doc.program_id)
    assert.equal(doc.program_id, e.program_id)
    assert.is_true(P.wait_stderr(h.proc, "flood: too many policy actions on " .. doc.program_id))
    answers()
  end)

  it("routes answer under /x/; a route that raises, loops or answers nonsense is a 500 with a JSON error", function()
    local doc = ok_json(call(h, "GET", "/x/echo?who=spec"))
    assert.equal("/x/echo", doc.path)
    assert.equal("spec", doc.who)
    assert.is_true(doc.programs > 0)
    assert.is_true(doc.token_hidden, "a route sees the headers but the token")
    doc = ok_json(call(h, "POST", "/x/echo", { a = 1 }), 201)
    assert.same({ a = 1 }, doc.got)
    for _, case in ipairs { { "raise", "route raised on purpose" }, { "loop", "ran past its budget" },
      { "nonsense", "a status that is not a number" } } do
      local since = last_id()
      local r = call(h, "GET", "/x/" .. case[1])
      assert.equal(500, r.status, r.body)
      assert.equal(500, r.json.code)
      assert.is_true(has(r.json.message, case[2]), r.body)
      policy_error("routes", since, case[2])
      answers()
    end
    assert_error(call(h, "GET", "/x/none"), 404, "no such route")
    assert_error(call(h, "DELETE", "/x/echo"), 405, "DELETE /x/echo")
  end)

  it("reloads: a broken file keeps the old policy and says why; a good one replaces it; SIGHUP too", function()
    local before = ok_json(call(h, "GET", "/policy"))
    for _, case in ipairs { { "return {", "cannot load" }, { "while true do end", "ran past 1 s" },
      { "return { admit = 1 }", "admit must be a function" }, { "return { deploy = function() end }", "unknown hook deploy" },
      { "return { routes = function(r) r:get('/elsewhere', function() end) end }", "must be under /x/" } } do
      P.write(file, case[1])
      local r = call(h, "POST", "/policy/reload")
      assert.equal(422, r.status, r.body)
      assert.is_true(has(r.json.message, case[2]), r.body)
      assert.is_true(has(r.json.message, file), r.body)
      local now = ok_json(call(h, "GET", "/policy"))
      assert.same(before.hooks, now.hooks)
      assert.equal(before.loaded_at, now.loaded_at)
      assert.equal("load", now.last_error.hook)
      ok_json(call(h, "GET", "/x/echo"), 200, "the old routes still answer")
    end
    -- A restart-only module of before is read as {restart = it}.
    P.write(file, RESTART_ONLY)
    ok_json(call(h, "POST", "/policy/reload"), 200, "restart-only")
    assert.same({ "restart" }, ok_json(call(h, "GET", "/policy")).hooks)
    P.write(file, ROUTES_ONLY)
    local doc = ok_json(call(h, "POST", "/policy/reload"), 200, "routes only")
    assert.same({ "routes" }, doc.hooks)
    assert.equal(2, ok_json(call(h, "GET", "/x/v2")).version)
    assert_error(call(h, "GET", "/x/echo"), 404, "the old route is gone")
    -- SIGHUP: a broken file is kept out, a good one is taken.
    P.write(file, "return 5")
    assert.is_true(P.signal(h.proc, "HUP"))
    assert.is_true(P.wait_stderr(h.proc, "SIGHUP: policy kept: " .. file .. " must return a table of hooks"))
    assert.same({ "routes" }, ok_json(call(h, "GET", "/policy")).hooks)
    P.write(file, POLICY)
    assert.is_true(P.signal(h.proc, "HUP"))
    assert.is_true(P.wait_stderr(h.proc, "SIGHUP: policy reloaded"))
    assert.same(before.hooks, ok_json(call(h, "GET", "/policy")).hooks)
    assert_error(call(h, "POST", "/programs", body("adm", { admit = "refuse" })), 409, "the reloaded admit")
    answers()
  end)
end)

describe("hersh host without --policy", function()
  it("shows the defaults and refuses a reload with 409", function()
    local h = H.test_host()
    local doc = ok_json(call(h, "GET", "/policy"))
    assert.equal(cjson.null, doc.file)
    assert.same({}, doc.hooks)
    assert_error(call(h, "POST", "/policy/reload"), 409, "no file")
    assert_error(call(h, "GET", "/x/anything"), 404, "no routes")
    -- labels, which policies read: checked like every field, a 400 naming what is wrong
    local many = {}
    for i = 1, 65 do many["k" .. i] = "v" end
    for _, case in ipairs { { "x", "labels must be an object" }, { { "a" }, "labels must be an object" },
      { { ["bad key!"] = "x" }, "labels: a name must be" }, { { k = "a\nb" }, "labels: the value of k" },
      { { k = 5 }, "labels: the value of k" }, { many, "labels: at most 64" } } do
      local r = call(h, "POST", "/programs", H.counter_body("lbl", { labels = case[1] }))
      assert_error(r, 400, case[2])
      assert.is_true(has(r.json.message, case[2]), r.body)
    end
    local doc = create(h, H.counter_body("lbl", { labels = { depends_on = "db", ["team.io/owner"] = "ops" } }))
    assert.same({ depends_on = "db", ["team.io/owner"] = "ops" }, H.view(h, doc.program_id).labels)
  end)
end)
