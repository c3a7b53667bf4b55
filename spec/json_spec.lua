-- hersh.json (src/lua/ljson.c): JSON text to Lua values and back on the C reader and
-- writer the WatcherAPI writes with, and the one style the Host and the WatcherAPI
-- answer in. lua-cjson, which the runtime no longer has, is kept here as an
-- independent decoder of what hersh.json writes.
local json = require "hersh.json"
local cjson = require "cjson"
local H = require "scripts.host_harness"
local P = require "scripts.process"

-- The keys of each object in a JSON text, in the order written (a decoder cannot tell:
-- Lua tables keep no order), and how many whitespace bytes stand outside strings.
local function scan(text)
  local objects, stack, ws, i = {}, {}, 0, 1
  while i <= #text do
    local c = text:sub(i, i)
    local top = stack[#stack]
    if c == '"' then
      local j = i + 1
      while j <= #text and text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      if top and top.keys and top.want_key then
        top.keys[#top.keys + 1] = text:sub(i + 1, j - 1)
        top.want_key = false
      end
      i = j
    elseif c == "{" then
      stack[#stack + 1] = { keys = {}, want_key = true }
      objects[#objects + 1] = stack[#stack].keys
    elseif c == "[" then
      stack[#stack + 1] = {}
    elseif c == "}" or c == "]" then
      stack[#stack] = nil
    elseif c == "," and top and top.keys then
      top.want_key = true
    elseif c:match("%s") then
      ws = ws + 1
    end
    i = i + 1
  end
  return objects, ws
end

local function sorted(keys)
  for i = 2, #keys do
    if not (keys[i - 1] < keys[i]) then return false end
  end
  return true
end

-- encode, then decode with lua-cjson: the same value (cjson reads integers as floats).
local function same_through_cjson(v)
  local text = json.encode(v)
  assert.same(v, cjson.decode(text), text)
end

local function encode_error(v)
  local ok, err = pcall(json.encode, v)
  assert.is_false(ok, "encoded: " .. tostring(err))
  return err
end

local function nest(depth, leaf)
  local v = leaf
  for _ = 1, depth do v = { v } end
  return v
end

describe("hersh.json", function()
  describe("encode", function()
    it("writes object keys sorted bytewise, whatever order they were set in", function()
      local a, b = {}, {}
      for _, k in ipairs { "b", "a", "B", "ab", "", "a b", "_" } do a[k] = #k end
      for _, k in ipairs { "_", "a b", "", "ab", "B", "a", "b" } do b[k] = #k end
      local text = json.encode{ z = a, y = b }
      assert.equal('{"y":{"":0,"B":1,"_":1,"a":1,"a b":3,"ab":2,"b":1},'
        .. '"z":{"":0,"B":1,"_":1,"a":1,"a b":3,"ab":2,"b":1}}', text)
      for _ = 1, 20 do
        local t = {}
        for i = 1, 50 do t["k" .. (i * 7919 % 101)] = i end
        local keys = scan(json.encode(t))[1]
        assert.equal(50, #keys)
        assert.is_true(sorted(keys), table.concat(keys, " "))
      end
    end)

    it("writes / as it is, and escapes only what JSON requires", function()
      assert.equal('"http://127.0.0.1:80/a/b"', json.encode("http://127.0.0.1:80/a/b"))
      assert.equal('"q\\"b\\\\n\\n\\r\\t\\b\\f\\u0000\\u001f"', json.encode('q"b\\n\n\r\t\b\f\0\31'))
      assert.equal('"héllo ✓ 😀"', json.encode("héllo ✓ 😀"))
      assert.equal('"a\xef\xbf\xbdb"', json.encode("a\xffb")) -- invalid UTF-8: U+FFFD
    end)

    it("writes integers exactly and floats so that they read back the same", function()
      assert.equal("9223372036854775807", json.encode(math.maxinteger))
      assert.equal("-9223372036854775808", json.encode(math.mininteger))
      assert.equal("9007199254740993", json.encode(9007199254740993))
      assert.equal("0.1", json.encode(0.1))
      for _, x in ipairs { 1 / 3, 1e300, -2.5e-300, 123456.789, 2 ^ 63, 5e-324 } do
        local back = json.decode(json.encode(x))
        assert.equal(x, back)
        assert.equal("float", math.type(back))
      end
    end)

    it("writes null for json.null, [] for a marked empty table, {} for an unmarked one", function()
      assert.equal("null", json.encode(json.null))
      assert.equal("null", json.encode(nil))
      assert.equal('{"a":null}', json.encode{ a = json.null })
      assert.equal("[]", json.encode(json.array{}))
      assert.equal("[]", json.encode(json.array()))
      assert.equal("{}", json.encode{})
      assert.equal('[1,"x",true]', json.encode(json.array{ 1, "x", true }))
      assert.equal('[[],{}]', json.encode{ json.array{}, {} })
      assert.is_true(json.is_array(json.array{}))
      assert.is_false(json.is_array{})
      assert.is_false(json.is_array("[]"))
    end)

    it("agrees with an independent decoder", function()
      same_through_cjson{ name = "x/y", list = { 1.5, "two", false, { nested = { "deep" } } }, n = 0.25 }
      same_through_cjson{ "a", "b", { c = "d" } }
      same_through_cjson("\0\1\127 ünï")
    end)

    it("round-trips 500 generated values, and lua-cjson reads them the same", function()
      math.randomseed(11)
      local atoms = { "", "/", "a\\b", '"', "\n\t", "é😀", "\0", 0, -1, 2 ^ 53, 0.1, -1e-300, true, false }
      local function gen(depth)
        local r = math.random(depth > 3 and 1 or 3)
        if r == 1 then return atoms[math.random(#atoms)] end
        local t = {}
        for i = 1, math.random(0, 4) do
          if r == 2 then t[i] = gen(depth + 1) else t["k" .. math.random(20)] = gen(depth + 1) end
        end
        return r == 2 and json.array(t) or t
      end
      for _ = 1, 500 do
        local v = gen(0)
        local text = json.encode(v)
        assert.same(v, json.decode(text), text)
        assert.equal(text, json.encode(json.decode(text)))
        local ok, other = pcall(cjson.decode, text)
        assert.is_true(ok, text)
        assert.same(v, other, text)
      end
    end)

    it("refuses what JSON cannot hold, naming it and where it is", function()
      assert.matches("cannot encode a function at %$%.a%.b%[2%]$", encode_error{ a = { b = { 1, print } } })
      assert.matches("a thread at %$", encode_error(coroutine.create(print)))
      assert.matches("a userdata at %$%[1%]", encode_error{ io.stdout })
      assert.matches("NaN", encode_error{ x = 0 / 0 })
      assert.matches("cannot encode an infinity .* at %$%.x$", encode_error{ x = math.huge })
      assert.matches("infinity", encode_error(-math.huge))
      assert.matches("sparse array", encode_error{ 1, nil, 3 })
      assert.matches("sparse array", encode_error{ [2] = "x" })
      assert.matches("sparse array", encode_error{ [0] = "x" })
      assert.matches("both string and integer keys", encode_error{ 1, 2, a = 3 })
      assert.matches("a number key", encode_error{ [1.5] = "x" })
      assert.matches("a boolean key", encode_error{ [true] = "x" })
      assert.matches("a table key", encode_error{ [{}] = "x" })
      assert.matches("string keys in a table marked as an array", encode_error(json.array{ a = 1 }))
      assert.matches('at %$%["a b"%]', encode_error{ ["a b"] = print })
      local long = string.rep("k", 100)
      assert.matches("a function at %$%." .. string.rep("k", 64) .. "%.%.%.%[1%]$", encode_error{ [long] = { print } })
      local deep = print
      for i = 1, 64 do deep = { ["level " .. (65 - i)] = deep } end
      local path = encode_error(deep):match("at (%$.*)$")
      assert.equal(64, select(2, path:gsub('%["level %d+"%]', "")), path)
      local ok, err = pcall(function() return json.encode{ f = print } end)
      assert.is_false(ok)
      assert.matches("^spec/json_spec%.lua:%d+: hersh%.json%.encode: cannot encode a function at %$%.f$", err)
      local cyclic = {}
      cyclic.self = { up = cyclic }
      assert.matches("a cycle .* at %$%.self%.up", encode_error(cyclic))
    end)

    it("writes a table reached twice, not through itself, each time", function()
      local shared = { 1 }
      assert.equal('{"a":[1],"b":[1]}', json.encode{ a = shared, b = shared })
    end)

    it("nests 64 levels and refuses a 65th", function()
      assert.equal(string.rep("[", 64) .. "0" .. string.rep("]", 64), json.encode(nest(64, 0)))
      assert.matches("deeper than 64", encode_error(nest(65, 0)))
    end)

    it("raises for a wrong argument", function()
      assert.has_error(function() json.encode() end)
      assert.has_error(function() json.array("x") end)
      assert.has_error(function() json.array(setmetatable({}, {})) end)
    end)
  end)

  describe("decode", function()
    it("reads every kind of value", function()
      local v = json.decode('{"s":"a\\/b","i":-12,"f":1.5,"e":1e2,"t":true,"n":null,"a":[1,null,3],"o":{}}')
      assert.equal("a/b", v.s)
      assert.equal(-12, v.i)
      assert.equal("integer", math.type(v.i))
      assert.equal(1.5, v.f)
      assert.equal(100, v.e)
      assert.is_true(v.t)
      assert.equal(json.null, v.n)
      assert.equal(3, #v.a)
      assert.equal(json.null, v.a[2])
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.o))
      assert.is_nil(next(v.o))
    end)

    it("reads integers exactly: int64 stays an integer, a fraction or exponent is a float", function()
      assert.equal(math.maxinteger, json.decode("9223372036854775807"))
      assert.equal("integer", math.type(json.decode("9223372036854775807")))
      assert.equal(math.mininteger, json.decode("-9223372036854775808"))
      assert.equal("float", math.type(json.decode("9223372036854775808")))
      assert.equal("float", math.type(json.decode("1.0")))
    end)

    it("reads \\u escapes, surrogate pairs included, as UTF-8", function()
      assert.equal("é✓😀", json.decode('"\\u00e9\\u2713\\ud83d\\ude00"'))
      assert.equal("a\0b", json.decode('"a\\u0000b"'))
    end)

    it("round-trips: an empty array stays [], an empty object {}, null stays null", function()
      for _, text in ipairs { "[]", "{}", "null", '[[],{},[null]]', '{"a":[],"b":{},"c":null}',
          '{"/":"/","a/b":[1,2.5,"x"]}', '"😀"', "-0.5", "true" } do
        assert.equal(text, json.encode(json.decode(text)))
      end
    end)

    it("keeps the last of duplicate keys", function()
      assert.equal(2, json.decode('{"a":1,"a":2}').a)
    end)

    it("answers nil and a message with the byte offset for text that is not JSON", function()
      local cases = {
        { "", 0 }, { "[1,]", 3 }, { '{"a":1,}', 7 }, { "tru", 0 }, { "01", 0 }, { "1 2", 2 },
        { '"\1"', 1 }, { "{a:1}", 1 }, { "[1", 2 }, { "NaN", 0 }, { '"\\ud800"', 1 }, { "\xff", 0 },
      }
      for _, case in ipairs(cases) do
        local v, err, code = json.decode(case[1])
        assert.is_nil(v, case[1])
        assert.is_string(err, case[1])
        local at = tonumber(err:match("at byte (%d+)"))
        assert.is_number(at, err)
        assert.is_true(at >= case[2] and at <= #case[1], case[1] .. ": " .. err)
        assert.equal("EINVAL", code)
      end
      assert.matches("at byte 3:", select(2, json.decode("[1,]")))
    end)

    it("nests 64 levels and refuses a 65th, without a crash at any depth", function()
      assert.is_table(json.decode(string.rep("[", 64) .. string.rep("]", 64)))
      local v, err = json.decode(string.rep("[", 65) .. string.rep("]", 65))
      assert.is_nil(v)
      assert.matches("at byte 64", err)
      assert.is_nil(json.decode(string.rep("[", 100000)))
      assert.is_nil(json.decode(string.rep('{"a":', 100000)))
    end)

    it("raises for a wrong argument", function()
      assert.has_error(function() json.decode() end)
      assert.has_error(function() json.decode{} end)
    end)
  end)
end)

describe("the Host and the WatcherAPI", function()
  local h, id

  lazy_setup(function()
    h = H.start_host()
    id = H.create(h, H.counter_body("style")).program_id
    H.start_ready(h, id)
  end)
  lazy_teardown(function() H.stop_host(h) end)

  -- Two answers to the same request: compact, no \/, one newline at the end, and keys
  -- in the same order both times; sorted_keys for the Host's.
  local function same_style(path, sorted_keys, must_have_slash)
    local first, second = H.call(h, "GET", path), H.call(h, "GET", path)
    for _, res in ipairs { first, second } do
      local what = path .. ": " .. res.body
      assert.is_table(res.json, what)
      assert.is_nil(res.body:find("\\/", 1, true), what)
      if must_have_slash then assert.is_truthy(res.body:find("/", 1, true), what) end
      assert.equal("\n", res.body:sub(-1), what)
      local objects, ws = scan(res.body:sub(1, -2))
      assert.equal(0, ws, what)
      if sorted_keys then
        for _, keys in ipairs(objects) do assert.is_true(sorted(keys), what) end
      end
    end
    assert.same(scan(first.body), scan(second.body), path)
  end

  it("the Host: keys sorted, / as is, the same order every time", function()
    same_style("/programs/" .. id, true, true)
    same_style("/programs", true, true)
    same_style("/health", true, false)
    same_style("/nope/a/b", true, true)
    local empty = H.call(h, "GET", "/programs?user_id=nobody")
    assert.equal('{"count":0,"programs":[]}\n', empty.body)
  end)

  it("the Host refuses bodies that are not strict JSON, or not an object, with a 400 saying which", function()
    local cases = {
      { "[]", "^the body must be a JSON object$" },
      { "[1]", "^the body must be a JSON object$" },
      { "null", "^the body must be a JSON object$" },
      { '"user_id"', "^the body must be a JSON object$" },
      { '{"user_id":NaN}', "^malformed JSON at byte 11: " },
      { '{"user_id":0x10}', "^malformed JSON at byte 12: " },
      { '{"user_id":"u"} {"user_id":"v"}', "^malformed JSON at byte 16: " },
      { '{"user_id":"\\ud800"}', "^malformed JSON at byte %d+: " },
      { '{"a\\u0000b":1}', "^malformed JSON at byte %d+: " },
      { string.rep("[", 100000), "^malformed JSON at byte 64: " },
      { string.rep('{"a":', 100000), "^malformed JSON at byte %d+: " },
    }
    for _, case in ipairs(cases) do
      local res = H.call(h, "POST", "/programs", case[1])
      H.assert_error(res, 400, case[1]:sub(1, 40))
      assert.matches(case[2], res.json.message, case[1]:sub(1, 40))
    end
    assert.equal(200, H.call(h, "GET", "/health").status)
  end)

  it("the WatcherAPI through the Host's proxy: its documented order, / as is, the same order every time", function()
    local sent = H.call(h, "POST", "/programs/" .. id .. "/proxy/watcher/message", { content = "a/b" })
    assert.equal(200, sent.status, sent.body)
    local logs = "/programs/" .. id .. "/proxy/watcher/logs"
    assert.is_true(P.wait_for(function() -- the reduce and its effect, logged after the answer
      local body = H.call(h, "GET", logs).body
      return P.has(body, '"Detail":"a/b"') and P.has(body, "Counter: 1")
    end, H.WAIT) == true)
    same_style("/programs/" .. id .. "/proxy/watcher/logs", false, true) -- the message, "a/b"
    same_style("/programs/" .. id .. "/proxy/watcher/state", false, false)
    same_style("/programs/" .. id .. "/proxy/watcher/config", false, false)
  end)
end)
