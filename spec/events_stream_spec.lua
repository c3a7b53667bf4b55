-- GET /events and GET /programs/{id}/events against a real `hersh host`: the stream
-- (Server-Sent Events) sees lifecycle events live, resumes by Last-Event-ID or ?since
-- with nothing missed or repeated, filters by program and kind, answers the backlog as
-- JSON with follow=false, keeps a quiet stream alive with a comment, and a client that
-- never reads is disconnected while others and the REST API keep answering.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"
local registry = require "host.registry"
local events = require "host.events"

local WAIT = H.WAIT
local call, create, counter_body, wait_state = H.call, H.create, H.counter_body, H.wait_state
local test_host, assert_error, ok_json, has = H.test_host, H.assert_error, H.ok_json, H.has

-- `curl -N` on the stream in the background (its response headers in a file);
-- stopped by pid when the test ends.
local function open_stream(h, path, headers)
  local argv = { "env", "-u", "LD_PRELOAD", "curl", "-sN", "--max-time", "120" }
  local dir = P.tmpdir()
  argv[#argv + 1] = "-D"
  argv[#argv + 1] = dir .. "/headers"
  if h.token then headers = { "Authorization: Bearer " .. h.token, table.unpack(headers or {}) } end
  for _, hdr in ipairs(headers or {}) do
    argv[#argv + 1] = "-H"
    argv[#argv + 1] = hdr
  end
  argv[#argv + 1] = "http://127.0.0.1:" .. h.port .. path
  local proc = P.start(argv)
  proc.headfile = dir .. "/headers"
  P.defer(function()
    P.stop(proc)
    H.sh("rm -rf " .. P.quote(dir))
  end)
  return proc
end

-- The complete frames received so far: {id, event, data (decoded)} and comments.
local function frames(proc)
  local out, comments = {}, {}
  local text = P.stdout(proc)
  for block in text:gmatch("(.-)\n\n") do
    local f = {}
    for line in block:gmatch("[^\n]+") do
      local field, value = line:match("^([^:]*): ?(.*)$")
      if field == "" then comments[#comments + 1] = value
      elseif field == "id" then f.id = math.tointeger(tonumber(value))
      elseif field == "event" then f.event = value
      elseif field == "data" then f.data = H.integers(cjson.decode(value))
      end
    end
    if f.id then out[#out + 1] = f end
  end
  return out, comments
end

-- Waits until pred(frames) holds; the frames. Fails with what came.
local function wait_frames(proc, pred, what)
  local got
  local ok = P.wait_for(function()
    got = frames(proc)
    return pred(got)
  end, WAIT, 0.05)
  local out = P.stdout(proc)
  assert(ok, (what or "frames") .. " never came; got " .. #got .. " frames, " .. #out .. " bytes, ending:\n"
    .. out:sub(-1000))
  return got
end

local function has_kind(list, id, kind)
  for _, f in ipairs(list) do
    if f.data.program_id == id and f.event == kind then return true end
  end
  return false
end

local function ids_of(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.id end
  return out
end

local function backlog(h, query)
  return ok_json(call(h, "GET", "/events?follow=false" .. (query or "")), 200, "backlog")
end

-- Each frame is its event: the SSE id and event are the event's id and kind, ids rise.
local function assert_well_formed(list)
  local last = -1
  for _, f in ipairs(list) do
    assert.equal(f.id, f.data.id)
    assert.equal(f.event, f.data.kind)
    assert.is_number(f.data.at)
    assert.is_string(f.data.message)
    assert.is_true(f.id > last, "ids rise: " .. f.id .. " after " .. last)
    last = f.id
  end
end

describe("GET /events", function()
  it("streams created, build, starting and ready live, each with its id as the SSE id", function()
    local h = test_host()
    local s = open_stream(h, "/events")
    local id = create(h, counter_body("stream-live")).program_id
    local got = wait_frames(s, function(l) return has_kind(l, id, "created") end, "created")
    assert.equal(1, #got, "a new store holds no older event")
    ok_json(H.act(h, id, "start"), 202, "start")
    got = wait_frames(s, function(l) return has_kind(l, id, "ready") end, "ready")
    for _, kind in ipairs { "build_started", "build_finished", "starting", "ready" } do
      assert.is_true(has_kind(got, id, kind), kind .. " in\n" .. P.stdout(s))
    end
    assert_well_formed(got)
    local head = P.read(s.headfile)
    assert.matches("\r\n[Cc]ontent%-[Tt]ype: text/event%-stream", head)
    -- the stream and the store agree, event for event
    assert.same(ids_of(backlog(h).events), ids_of(got))
    assert.is_true(P.alive(s), "the stream is still open")
    H.assert_clean_exit(h)
  end)

  it("resumes by Last-Event-ID and by ?since with exactly the missed events, then live", function()
    local h = test_host()
    local a = create(h, counter_body("resume-a")).program_id
    H.start_ready(h, a)
    local all = backlog(h).events
    assert.is_true(#all >= 4, "events to resume in")
    local mid = all[2].id
    local want = {}
    for _, e in ipairs(all) do
      if e.id > mid then want[#want + 1] = e.id end
    end
    local by_header = open_stream(h, "/events", { "Last-Event-ID: " .. mid })
    -- a reconnecting EventSource sends its first URL again: the header wins over it
    local both = open_stream(h, "/events?since=0", { "Last-Event-ID: " .. mid })
    local by_query = open_stream(h, "/events?since=" .. mid)
    for _, s in ipairs { by_header, both, by_query } do
      local got = wait_frames(s, function(l) return #l >= #want end, "the backlog")
      assert.same(want, ids_of(got))
      assert_well_formed(got)
    end
    -- then live, once each
    ok_json(H.act(h, a, "stop"), 202, "stop")
    for _, s in ipairs { by_header, both, by_query } do
      local got = wait_frames(s, function(l) return has_kind(l, a, "stopped") end, "stopped")
      local seen = {}
      for _, f in ipairs(got) do
        assert.is_nil(seen[f.id], "event " .. f.id .. " came twice")
        seen[f.id] = true
      end
      assert.same(ids_of(backlog(h, "&since=" .. mid).events), ids_of(got))
    end
  end)

  it("filters by program and kind, on /events and /programs/{id}/events", function()
    local h = test_host()
    local a = create(h, counter_body("filter-a")).program_id
    local b = create(h, counter_body("filter-b")).program_id
    local only_a = open_stream(h, "/events?program=" .. a .. "&kind=created,ready,stopped")
    local path_a = open_stream(h, "/programs/" .. a .. "/events?kind=ready")
    H.start_ready(h, a)
    H.start_ready(h, b)
    ok_json(H.act(h, a, "stop"), 202, "stop")
    local got = wait_frames(only_a, function(l) return has_kind(l, a, "stopped") end, "a stopped")
    local kinds = {}
    for _, f in ipairs(got) do
      assert.equal(a, f.data.program_id)
      kinds[#kinds + 1] = f.event
    end
    assert.same({ "created", "ready", "stopped" }, kinds)
    got = wait_frames(path_a, function(l) return has_kind(l, a, "ready") end, "a ready")
    assert.equal(1, #got, P.stdout(path_a))
    -- the same filters on the backlog
    local doc = ok_json(call(h, "GET", "/programs/" .. b .. "/events?follow=false"), 200)
    assert.is_true(#doc.events >= 4)
    for _, e in ipairs(doc.events) do assert.equal(b, e.program_id) end
    doc = backlog(h, "&kind=created")
    assert.same({ a, b }, { doc.events[1].program_id, doc.events[2].program_id })
    assert.equal(2, #doc.events)
  end)

  it("answers the backlog as JSON with follow=false, in pages by limit and since", function()
    local h = test_host()
    local empty = backlog(h)
    assert.same({}, empty.events)
    assert.equal(0, empty.last_id)
    for i = 1, 3 do create(h, counter_body("page-" .. i)) end
    local all = backlog(h)
    assert.equal(3, #all.events)
    assert.equal(all.events[3].id, all.last_id)
    local first = backlog(h, "&limit=2")
    assert.same({ all.events[1].id, all.events[2].id }, ids_of(first.events))
    assert.equal(all.events[2].id, first.last_id)
    local rest = backlog(h, "&limit=2&since=" .. first.last_id)
    assert.same({ all.events[3].id }, ids_of(rest.events))
    assert.equal(all.last_id, rest.last_id)
    for i, e in ipairs(all.events) do
      assert.equal("created", e.kind)
      assert.equal(h.ids[i], e.program_id)
      assert.is_table(e.details)
      assert.is_string(e.message)
    end
    -- a filter that matches nothing still moves the cursor past what it looked at
    local none = backlog(h, "&kind=ready")
    assert.same({}, none.events)
    assert.equal(all.last_id, none.last_id)
  end)

  it("refuses bad parameters with a 400 naming the parameter", function()
    local h = test_host()
    local cases = {
      { "/events?kind=created,exploded", nil, "kind" },
      { "/events?kind=", nil, "kind" },
      { "/events?since=-1", nil, "since" },
      { "/events?since=1e3", nil, "since" },
      { "/events?follow=maybe", nil, "follow" },
      { "/events?follow=false&limit=0", nil, "limit" },
      { "/events?follow=false&limit=10001", nil, "limit" },
      { "/events?program=", nil, "program" },
      { "/events", "Last-Event-ID: abc", "Last-Event-ID" },
    }
    for _, c in ipairs(cases) do
      local res = call(h, "GET", c[1], nil, c[2] and { c[2] } or nil)
      assert_error(res, 400, c[1])
      assert.is_true(has(res.json.message, c[3]), c[1] .. ": " .. res.json.message)
    end
    assert_error(call(h, "GET", "/programs/nope/events?follow=false"), 404, "unknown program")
    assert_error(call(h, "POST", "/events"), 405, "POST")
    assert_error(call(h, "DELETE", "/programs/nope/events"), 405, "DELETE")
  end)

  it("sends a keep-alive comment on a quiet stream", function()
    local h = test_host{ args = { "--events-heartbeat", "1" } }
    local s = open_stream(h, "/events")
    local ok = P.wait_for(function()
      local _, comments = frames(s)
      return #comments >= 2
    end, WAIT, 0.1)
    assert.is_true(ok == true, "no keep-alive came: " .. P.stdout(s))
    local list, comments = frames(s)
    assert.same({}, list)
    assert.equal("keep-alive", comments[1])
    assert.is_true(P.alive(s), "the stream is still open")
  end)

  it("wants the token when the Host has one, on both routes", function()
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/token", "s3cret-events-token\n")
    local h = test_host{ token_file = dir .. "/token" }
    local res = call(h, "GET", "/events")
    assert_error(res, 401, "no token")
    assert_error(call(h, "GET", "/programs/x/events?follow=false"), 401, "no token")
    h.token = "s3cret-events-token"
    local doc = backlog(h)
    assert.same({}, doc.events)
    local s = open_stream(h, "/events")
    local id = create(h, counter_body("auth")).program_id
    wait_frames(s, function(l) return has_kind(l, id, "created") end, "created")
  end)
end)

-- ---- slow clients ------------------------------------------------------------------------

-- The inode of the socket on fd 3 of a process, and its TCP state from /proc/net/tcp
-- ("01" established, "08" close-wait: the other end closed).
describe("GET /events and a slow client", function()
  it("disconnects a client that never reads; the others and the REST API keep answering", function()
    -- a store of megabytes, written by the Host's own events module before it starts
    local root = H.public_tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(root)) end)
    local storage = root .. "/storage"
    assert.is_true(H.sh("mkdir -m 700 " .. P.quote(storage)))
    local reg = assert(registry.open(storage .. "/host.db"))
    local store = assert(events.open(reg.db))
    local pad = string.rep("x", 4000)
    for i = 1, 1500 do assert(store:record("filler", "error", { reason = i .. " " .. pad })) end
    reg:close()
    local h = test_host{ storage = storage, args = { "--events-heartbeat", "2" } }
    -- a client that sends its request and never reads a byte
    local req = "GET /events?since=0 HTTP/1.1\r\nHost: 127.0.0.1:" .. h.port .. "\r\n\r\n"
    local sleeper = H.never_reading_client(h.port, req)
    assert.is_true(P.wait_for(function() return H.socket_state(sleeper.pid) == "01" end, WAIT) == true)
    -- others are served in the meantime, the whole backlog and then live
    local s = open_stream(h, "/events?since=0")
    local got = wait_frames(s, function(l) return #l == 1500 end, "the whole backlog")
    assert_well_formed(got)
    ok_json(call(h, "GET", "/programs"), 200, "the REST API")
    ok_json(call(h, "GET", "/health"), 200, "health")
    -- reset (gone from the table) or closed by the Host (close-wait)
    local closed = P.wait_for(function() return H.socket_state(sleeper.pid) ~= "01" end, WAIT, 0.1)
    assert.is_true(closed == true, "the Host kept the stalled stream open: " .. tostring(H.socket_state(sleeper.pid)))
    local late = create(h, counter_body("after-slow")).program_id
    wait_frames(s, function(l) return has_kind(l, late, "created") end, "live after the slow client")
    -- streams open at shutdown end with it: exit 0, no sanitizer report
    H.assert_clean_exit(h)
  end)
end)
