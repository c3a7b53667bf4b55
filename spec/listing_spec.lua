-- GET /programs at scale: pages (limit, after, next), filters read in the registry,
-- the cached JSON of each record dropped exactly when the record changes, and a Host
-- with 2,000 registered programs whose state changes touch one record, not all.
--
-- The 2,000 records are written into a fresh registry (host.registry, the Host's own
-- module) before the Host starts: creating them over the API would take minutes. Every
-- Host is real (scripts.host_harness), on its own storage and free ports.
local H = require "scripts.host_harness"
local P = H.P
local registry = require "host.registry"
local cjson = require "cjson"

local call, ok_json, assert_error = H.call, H.ok_json, H.assert_error

local N = 2000
local USERS = 4

-- A storage holding n registered programs, as a Host that stopped leaves it: program i
-- belongs to user "u<i % USERS>", is named "prog-<i>" when i is a multiple of 100, was
-- Ready when the Host stopped (desired "stopped": it comes back Stopped), and every
-- three share one creation time (the cursor must tell them apart by id). Its root
-- folder (storage: <root>/storage) and the ids in listing order.
-- `n` ports nobody holds now, from a random place in 10000-19999: below the ranges
-- the other specs' Hosts publish on (H.free_range), and not consecutive (2,000
-- consecutive free ports are not always there).
local function free_ports(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local r = f:read(2)
  f:close()
  local start, out = (r:byte(1) * 256 + r:byte(2)) % 10000, {}
  for k = 0, 9999 do
    local port = 10000 + (start + k) % 10000
    if H.bindable(port) then out[#out + 1] = port end
    if #out == n then return out end
  end
  error("no " .. n .. " free ports in 10000-19999")
end

local function seeded_storage(n, ports)
  local root = H.public_tmpdir()
  local storage = root .. "/storage"
  assert(H.sh("mkdir -p " .. P.quote(storage) .. " && chmod 711 " .. P.quote(storage)))
  local reg = assert(registry.open(storage .. "/host.db"))
  local ids = {}
  assert(reg.db:transaction(function()
    for i = 1, n do
      local t = 1700000000 + i // 3
      local at = os.date("!%Y-%m-%dT%H:%M:%S", t) .. ".000Z"
      local id = string.format("u%d-seed-%05d", i % USERS, n - i) -- ids against creation order
      ids[i] = id
      assert(reg.db:run([[INSERT INTO programs (program_id, user_id, build_id, publish_port, spec, desired, state,
        created_at, updated_at, name) VALUES (?, ?, 'seed', ?, ?, 'stopped', 'Ready', ?, ?, ?)]],
        id, "u" .. (i % USERS), ports[i], cjson.encode{ dockerfile = H.DOCKERFILE }, at, at,
        i % 100 == 0 and "prog-" .. i or nil))
    end
    return true
  end))
  reg:close()
  -- the listing's order: creation time, then id
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(a, b)
    local ta, tb = a // 3, b // 3
    if ta ~= tb then return ta < tb end
    return ids[a] < ids[b]
  end)
  local sorted = {}
  for k, i in ipairs(order) do sorted[k] = ids[i] end
  return root, sorted
end

local function ids_of(doc)
  local out = {}
  for i, p in ipairs(doc.programs) do out[i] = p.program_id end
  return out
end

-- Every program the listing `query` gives, page by page (limit `limit`), checking each
-- page's shape; the ids in order.
local function walk(h, query, limit)
  local out, after, pages = {}, nil, 0
  repeat
    local path = "/programs?limit=" .. limit .. (query ~= "" and "&" .. query or "")
      .. (after and "&after=" .. after or "")
    local doc = ok_json(call(h, "GET", path), 200, path)
    assert.is_true(#doc.programs <= limit, path)
    assert.equal(#doc.programs, doc.count, path)
    for _, id in ipairs(ids_of(doc)) do out[#out + 1] = id end
    after = doc.next
    if after then assert.equal(limit, #doc.programs, "a page with a next is full: " .. path) end
    pages = pages + 1
    assert.is_true(pages <= N + 1, "the cursor never ends")
  until after == nil
  return out, pages
end

local function only(list, pred)
  local out = {}
  for _, v in ipairs(list) do
    if pred(v) then out[#out + 1] = v end
  end
  return out
end

describe("GET /programs at scale", function()
  local h, root, all

  setup(function()
    root, all = seeded_storage(N, free_ports(N))
    h = H.start_host{ storage = root .. "/storage" }
  end)

  teardown(function()
    H.stop_host(h)
    if root then H.sh("rm -rf " .. P.quote(root)) end
  end)

  it("without parameters lists every program in one answer, as before", function()
    local res = call(h, "GET", "/programs")
    local doc = ok_json(res, 200, "list")
    assert.equal(N, doc.count)
    assert.same(all, ids_of(doc))
    assert.is_nil(doc.next)
    local keys = {}
    for k in pairs(doc) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "count", "programs" }, keys)
    assert.equal(N, ok_json(call(h, "GET", "/health")).programs)
  end)

  it("pages through every program once, in order, whatever the page size", function()
    for _, limit in ipairs{ 1000, 333, 64 } do
      local got, pages = walk(h, "", limit)
      assert.same(all, got, "limit " .. limit)
      assert.equal(math.ceil(N / limit), pages, "limit " .. limit)
    end
  end)

  it("filters in the registry, paged alike", function()
    local mine = only(all, function(id) return id:match("^u1%-") end)
    assert.equal(N // USERS, #mine)
    assert.same(mine, (walk(h, "user_id=u1", 100)))
    assert.same(mine, ids_of(ok_json(call(h, "GET", "/programs?user_id=u1"))))
    local named = ok_json(call(h, "GET", "/programs?name=prog-300")).programs
    assert.equal(1, #named)
    assert.equal("prog-300", named[1].name)
    assert.equal(0, ok_json(call(h, "GET", "/programs?name=prog-301")).count)
    -- the seeded programs were Ready when their Host stopped: they came back Stopped,
    -- and the state filter says so
    assert.same(all, (walk(h, "state=Stopped", 500)))
    assert.equal(0, ok_json(call(h, "GET", "/programs?state=Ready&limit=10")).count)
    assert.same(mine, (walk(h, "user_id=u1&state=Stopped", 64)))
  end)

  it("refuses a bad limit, cursor or state with a 400 naming it", function()
    for _, bad in ipairs{ "0", "1001", "-1", "1.5", "abc", "", "99999999999999999999" } do
      local res = call(h, "GET", "/programs?limit=" .. bad)
      assert_error(res, 400, "limit=" .. bad)
      assert.matches("limit", res.json.message)
    end
    for _, bad in ipairs{ "x", "2023-11-14T22:13:20.000Z", "~u1-seed-00001", "2023-11-14T22:13:20.000Z~U1",
      "2023-11-14T22:13:20.000Z~u1-seed%0a", ("a"):rep(5000) } do
      local res = call(h, "GET", "/programs?limit=5&after=" .. bad)
      assert_error(res, 400, "after=" .. bad)
      assert.matches("after", res.json.message)
    end
    local res = call(h, "GET", "/programs?state=Runnin")
    assert_error(res, 400, "state")
    assert.matches("state", res.json.message)
  end)

  it("a cursor stays valid when the program it points at is deleted", function()
    local first = ok_json(call(h, "GET", "/programs?limit=10"))
    local last = first.programs[10].program_id
    assert.equal(all[10], last)
    ok_json(call(h, "DELETE", "/programs/" .. last), 200, "delete")
    assert.is_true(P.wait_for(function()
      return call(h, "GET", "/programs/" .. last).status == 404
    end, H.WAIT))
    local second = ok_json(call(h, "GET", "/programs?limit=10&after=" .. first.next))
    assert.same({ table.unpack(all, 11, 20) }, ids_of(second))
    table.remove(all, 10)
    assert.same(all, (walk(h, "", 1000)))
  end)
end)

describe("GET /programs's cached records", function()
  -- The listed record is GET /programs/{id}'s, field for field, after every change.
  local function same_as_view(h, id)
    local listed = only(ok_json(call(h, "GET", "/programs")).programs, function(p) return p.program_id == id end)
    assert.equal(1, #listed)
    local paged = ok_json(call(h, "GET", "/programs?limit=1000")).programs
    paged = only(paged, function(p) return p.program_id == id end)[1]
    local single = H.view(h, id)
    assert.same(single, listed[1])
    assert.same(single, paged)
    return listed[1]
  end

  it("follow each change of the record", function()
    local h = H.test_host()
    local a = H.create(h, H.counter_body("cache-a")).program_id
    local b = H.create(h, H.counter_body("cache-b", { name = "cache-b" })).program_id
    assert.equal("Created", same_as_view(h, a).state) -- now encoded and cached
    same_as_view(h, b)
    H.start_ready(h, a)
    local ready = same_as_view(h, a)
    assert.equal("Ready", ready.state)
    assert.is_number(ready.pid)
    assert.equal("Created", same_as_view(h, b).state) -- the other is untouched
    assert.equal(1, ok_json(call(h, "GET", "/programs?state=Ready")).count)
    assert.equal(202, call(h, "POST", "/programs/" .. a .. "/stop").status)
    H.wait_state(h, a, "Stopped")
    local stopped = same_as_view(h, a)
    assert.equal(cjson.null, stopped.pid)
    assert.equal(0, ok_json(call(h, "GET", "/programs?state=Ready")).count)
    -- an update in place of a stopped program: the next revision, for the next start
    local put = ok_json(call(h, "PUT", "/programs/" .. b, H.counter_body("cache-b", { env = { X = "1" } })), 202, "PUT")
    assert.equal(2, put.revision)
    H.wait_record(h, b, function(r) return r.revision == 2 and r.updating_revision == cjson.null end, "at revision 2")
    assert.equal(2, same_as_view(h, b).revision)
    ok_json(call(h, "DELETE", "/programs/" .. a), 200, "delete")
    assert.is_true(P.wait_for(function() return call(h, "GET", "/programs/" .. a).status == 404 end, H.WAIT))
    assert.same({ b }, ids_of(ok_json(call(h, "GET", "/programs"))))
    H.assert_clean_exit(h)
  end)
end)
