-- hersh.http.stream: the client's streamed answers, against a hersh.httpd server on this
-- same loop whose handler writes a chunked body and never finishes it (an SSE stream).
-- The pieces must reach the handlers while the answer is still open; cancel ends it with
-- "cancelled" exactly once. Every wait is bounded.
local http = require "hersh.http"
local h = require "helpers"

local serve, url = h.serve, h.url

-- Opens a stream; what its handlers see is recorded in the returned table.
local function open(opts)
  local got = { pieces = {}, text = "", ends = {} }
  local s, err, code = http.stream(opts, {
    head = function(res)
      got.head = res
      got.head_before_data = #got.pieces == 0
    end,
    data = function(piece)
      got.pieces[#got.pieces + 1] = piece
      got.text = got.text .. piece
    end,
    done = function(...) got.ends[#got.ends + 1] = table.pack(...) end,
  })
  assert.is_not_nil(s, tostring(err) .. " " .. tostring(code))
  got.stream = s
  return got
end

describe("hersh.http.stream", function()
  after_each(h.close_servers)

  it("hands out an endless SSE stream's first event before the answer ends, then cancels", function()
    local server_stream
    local srv = serve(function(_, res)
      server_stream = res:stream(200, { ["Content-Type"] = "text/event-stream" })
      assert(server_stream:write("id: 1\nevent: ready\ndata: {\"n\":1}\n\n"))
    end)
    local got = open({ url = url(srv, "/events") })
    assert.is_true(h.wait(function() return got.text:find("\n\n", 1, true) ~= nil end),
      "the first event did not arrive while the stream stayed open")
    assert.equal(0, #got.ends) -- the answer has not ended: the piece came as it was written
    assert.equal(200, got.head.status)
    assert.equal("text/event-stream", got.head.headers["content-type"])
    assert.is_true(got.head_before_data)
    assert.equal("id: 1\nevent: ready\ndata: {\"n\":1}\n\n", got.text)
    -- a second event written later arrives too
    assert(server_stream:write("id: 2\ndata: two\n\n"))
    assert.is_true(h.wait(function() return got.text:find("data: two", 1, true) ~= nil end))
    got.stream:cancel()
    got.stream:cancel() -- again is harmless
    assert.is_true(h.wait(function() return #got.ends > 0 end), "cancel did not end the stream")
    assert.same({ n = 3, nil, "cancelled", "ECANCELLED" }, got.ends[1])
    -- the server sees its client go, and nothing more is handed out
    assert.is_true(h.wait(function() return server_stream:closed() end), "the connection stayed open")
    local before = #got.pieces
    server_stream:write("id: 3\ndata: late\n\n")
    h.wait(function() return false end, 0.3)
    assert.equal(before, #got.pieces)
    assert.equal(1, #got.ends)
    got.stream:cancel() -- after the end: nothing happens
  end)

  it("cancels from inside its own data handler", function()
    local srv = serve(function(_, res)
      local s = res:stream(200, { ["Content-Type"] = "text/plain" })
      assert(s:write("first\n"))
    end)
    local pieces, ends, s = 0, {}, nil
    s = assert(http.stream({ url = url(srv, "/") }, {
      data = function()
        pieces = pieces + 1
        s:cancel()
      end,
      done = function(...) ends[#ends + 1] = table.pack(...) end,
    }))
    assert.is_true(h.wait(function() return #ends > 0 end))
    assert.equal(1, pieces)
    assert.same({ n = 3, nil, "cancelled", "ECANCELLED" }, ends[1])
  end)

  it("ends a finished answer with done(true) once, after every piece", function()
    local srv = serve(function(_, res)
      local s = res:stream(404, { ["Content-Type"] = "text/plain" })
      assert(s:write("no "))
      assert(s:write("such thing"))
      s:finish()
    end)
    local got = open({ url = url(srv, "/") })
    assert.is_true(h.wait(function() return #got.ends > 0 end))
    assert.equal(404, got.head.status)
    assert.equal("no such thing", got.text)
    assert.same({ n = 1, true }, got.ends[1])
  end)

  it("reports a refused connection through done, with no head", function()
    local got = open({ url = "http://127.0.0.1:1/", connect_timeout = 5 })
    assert.is_true(h.wait(function() return #got.ends > 0 end))
    assert.is_nil(got.head)
    assert.equal("ECONNREFUSED", got.ends[1][3])
  end)

  it("cancels the stream when a handler raises", function()
    local server_stream
    local srv = serve(function(_, res)
      server_stream = res:stream(200, {})
      assert(server_stream:write("x"))
    end)
    local ends = {}
    local s = assert(http.stream({ url = url(srv, "/") }, {
      data = function() error("the consumer broke") end,
      done = function(...) ends[#ends + 1] = table.pack(...) end,
    }))
    assert.is_true(h.wait(function() return #ends > 0 end))
    assert.equal("ECANCELLED", ends[1][3])
    assert.is_true(h.wait(function() return server_stream:closed() end))
    s:cancel()
  end)

  it("refuses bad handlers and bad requests with a clear error", function()
    assert.has_error(function() http.stream({ url = "http://127.0.0.1:1/" }, { data = 3 }) end,
      "hersh.http.stream: handlers.data must be a function")
    local s, err = http.stream({ url = "ftp://127.0.0.1/" }, {})
    assert.is_nil(s)
    assert.matches("only http and https", err)
  end)
end)
