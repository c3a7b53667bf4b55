-- A lint: no C source in src/ builds JSON by hand. Every JSON text goes through the
-- writer of src/base/json.h, which tracks nesting, escapes and numbers; a format string
-- such as ",\"code\":%d" or "\"%s\"" skips all of that. The checker flags C string
-- literals that hold JSON object syntax (`{\"`, `\":`) or are a bare quoted format.

-- The string literals of C source, comments removed first (a literal's text between
-- its quotes, escapes as written).
local function literals(source)
  local out = {}
  local i, n = 1, #source
  while i <= n do
    local c, two = source:sub(i, i), source:sub(i, i + 1)
    if two == "/*" then
      local e = source:find("*/", i + 2, true)
      i = e and e + 2 or n + 1
    elseif two == "//" then
      local e = source:find("\n", i + 2, true)
      i = e and e + 1 or n + 1
    elseif c == "'" then -- a character constant: skip it whole ('"' included)
      local j = i + 1
      while j <= n and source:sub(j, j) ~= "'" do j = j + (source:sub(j, j) == "\\" and 2 or 1) end
      i = j + 1
    elseif c == '"' then
      local j = i + 1
      while j <= n and source:sub(j, j) ~= '"' do j = j + (source:sub(j, j) == "\\" and 2 or 1) end
      out[#out + 1] = source:sub(i + 1, j - 1)
      i = j + 1
    else
      i = i + 1
    end
  end
  return out
end

-- Why a literal looks like hand-built JSON, or nil.
local function hand_json(lit)
  if lit:find('{\\"', 1, true) then return "an object opened by hand" end
  if lit:find('\\"%s*:') then return "an object key written by hand" end
  if lit:find('^\\"%%[^"]*\\"$') then return "a JSON string quoted by a format" end
  return nil
end

local function offenders(source)
  local found = {}
  for _, lit in ipairs(literals(source)) do
    local why = hand_json(lit)
    if why then found[#found + 1] = why .. ': "' .. lit .. '"' end
  end
  return found
end

describe("no hand-built JSON in src/", function()
  it("the checker catches what the old code did", function()
    -- Lines of the WatcherAPI, the engine and the HTTP server before the writer.
    local old = {
      [[hersh_buf_printf(&b, ",\"code\":%d,\"message\":", status);]],
      [[hersh_buf_puts(&b, "{\"error\":");]],
      [[hersh_buf_printf(b, "\"%s\"", text);]],
      [[hersh_buf_printf(&b, ",\"state\":\"%s\",\"isRunning\":%s,\"uptime\":", a, b);]],
      [[res->body = hersh_strdup("{\"status\":\"message sent\"}\n");]],
      [[hersh_buf_printf(b, "{\"LogID\" : %llu", id);]],
    }
    for _, line in ipairs(old) do
      assert.is_true(#offenders(line) > 0, line)
    end
  end)

  it("the checker lets messages, comments and characters be", function()
    local fine = {
      [[return fail("invalid request body: expected a JSON object with a \"content\" string");]],
      [[return hersh_fail_with(E, "no SQL statement in \"%.60s\"", sql);]],
      [[/* {"error": "..."} is what hersh_http_error writes */ int x = 1;]],
      [[// the answer: {"status":"message sent"}]],
      [[char q = '"'; const char *s = "a:b";]],
      [[snprintf(seg, sizeof seg, "[\"%.*s\"]", n, k);]],
    }
    for _, line in ipairs(fine) do
      assert.same({}, offenders(line), line)
    end
  end)

  it("finds none in src/", function()
    local p = assert(io.popen("find src -name '*.c' -o -name '*.h' | sort"))
    local files = {}
    for path in p:lines() do files[#files + 1] = path end
    p:close()
    assert.is_true(#files > 20, "found only " .. #files .. " C files: run from the checkout's root")
    local report = {}
    for _, path in ipairs(files) do
      local f = assert(io.open(path, "rb"))
      local source = f:read("a")
      f:close()
      for _, why in ipairs(offenders(source)) do report[#report + 1] = path .. ": " .. why end
    end
    assert.same({}, report)
  end)
end)
