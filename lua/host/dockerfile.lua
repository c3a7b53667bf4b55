-- The Dockerfile subset a program is built from: parse(text) turns it into a
-- plan (data the builder runs), or names the first line that is wrong. Errors
-- read "Dockerfile line N: ...", N being the line the instruction starts on.
-- docs/dockerfile.md describes the subset and why each refusal exists.
local paths = require "host.paths"

local dockerfile = {
  bases = { hersh = true, scratch = true },
  port = 8080,
  -- Instructions Docker has and Hersh refuses, with the reason given to users.
  unsupported = {
    ADD = "use COPY (ADD's URL downloads and archive extraction are not supported)",
    VOLUME = "the only writable place is /state, which the Host mounts itself",
    HEALTHCHECK = "the Host checks readiness through the WatcherAPI's /watcher/status",
    ONBUILD = "images are not bases for other builds",
    SHELL = "shell-form commands always run with /bin/sh -c",
    STOPSIGNAL = "the Host stops programs with SIGTERM, then SIGKILL after the grace period",
    MAINTAINER = "it is deprecated; use LABEL maintainer=...",
  },
}

local CODE = "EDOCKERFILE"
local NAME = "^[A-Za-z_][A-Za-z0-9_]*$"

local function fail(line, fmt, ...)
  return nil, string.format("Dockerfile line %d: " .. fmt, line, ...), CODE
end

local function trim(s)
  return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- Logical lines: comments and blank lines dropped (also inside a continuation,
-- as Docker does), a trailing backslash joins the next line. Returns a list of
-- {line = N, text = ...}, or nil, err.
local function logical_lines(text)
  local out, cur, start = {}, nil, nil
  local n, pos, len = 0, 1, #text
  if text:sub(1, 3) == "\239\187\191" then pos = 4 end
  while pos <= len do
    local nl = text:find("\n", pos, true) or len + 1
    local raw = text:sub(pos, nl - 1):gsub("\r$", "")
    pos = nl + 1
    n = n + 1
    if raw:find("\0", 1, true) then return fail(n, "NUL byte") end
    local t = trim(raw)
    if t:sub(1, 1) == "#" then
      -- A parser directive would change how every later line reads; refuse it
      -- rather than misread the file. "# syntax=" changes nothing here.
      if #out == 0 and not cur and t:match("^#%s*[Ee][Ss][Cc][Aa][Pp][Ee]%s*=") then
        return fail(n, "the escape parser directive is not supported (the escape character is \\)")
      end
    elseif t ~= "" then
      local body = raw
      if not cur then start, cur, body = n, "", t end
      local joined = body:match("^(.-)\\[ \t]*$")
      if joined then
        cur = cur .. joined
      else
        out[#out + 1] = { line = start, text = trim(cur .. body) }
        cur = nil
      end
    end
  end
  if cur then
    return fail(start, "the instruction ends with a line continuation (\\) but the file ends")
  end
  return out
end

-- Docker's word processing: $VAR, ${VAR}, ${VAR:-word} and ${VAR:+word}
-- expanded from vars (unset is empty), quotes removed, backslash escapes
-- applied. With split, unquoted blanks separate words and a list comes back;
-- without, blanks are kept and one string comes back. Expanded values are
-- never split again.
local lex

-- The expansion of the $ at s[i]: its value and the index after it, or nil, err.
local function dollar(s, i, vars)
  local c = s:sub(i + 1, i + 1)
  if c == "{" then
    local depth, j = 1, i + 2
    while j <= #s do
      local d = s:sub(j, j)
      if d == "{" then depth = depth + 1 elseif d == "}" then depth = depth - 1 end
      if depth == 0 then break end
      j = j + 1
    end
    if depth ~= 0 then return nil, "unterminated ${" end
    local inner = s:sub(i + 2, j - 1)
    local name, op, word = inner:match("^([A-Za-z_][A-Za-z0-9_]*):([-+])(.*)$")
    if not name then
      name = inner:match(NAME)
      if not name then return nil, "bad substitution ${" .. inner .. "}" end
    end
    local value = vars[name] or ""
    if op == "-" and value == "" or op == "+" and value ~= "" then
      local err
      value, err = lex(word, vars, false)
      if not value then return nil, err end
    elseif op == "+" then
      value = ""
    end
    return value, j + 1
  end
  local name = s:match("^[A-Za-z_][A-Za-z0-9_]*", i + 1)
  if name then return vars[name] or "", i + 1 + #name end
  return "$", i + 1
end

lex = function(s, vars, split)
  local words, buf, started = {}, {}, false
  local i, n = 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if split and (c == " " or c == "\t") then
      if started then
        words[#words + 1] = table.concat(buf)
        buf, started = {}, false
      end
      i = i + 1
    elseif c == "\\" then
      buf[#buf + 1] = i < n and s:sub(i + 1, i + 1) or "\\"
      i, started = i + 2, true
    elseif c == "'" then
      local j = s:find("'", i + 1, true)
      if not j then return nil, "unterminated single quote" end
      buf[#buf + 1] = s:sub(i + 1, j - 1)
      i, started = j + 1, true
    elseif c == '"' then
      i, started = i + 1, true
      local closed = false
      while i <= n do
        local d = s:sub(i, i)
        if d == '"' then
          closed, i = true, i + 1
          break
        elseif d == "\\" and i < n then
          local e = s:sub(i + 1, i + 1)
          buf[#buf + 1] = (e == '"' or e == "\\" or e == "$") and e or d .. e
          i = i + 2
        elseif d == "$" then
          local v, nxt = dollar(s, i, vars)
          if not v then return nil, nxt end
          buf[#buf + 1], i = v, nxt
        else
          buf[#buf + 1], i = d, i + 1
        end
      end
      if not closed then return nil, "unterminated double quote" end
    elseif c == "$" then
      local v, nxt = dollar(s, i, vars)
      if not v then return nil, nxt end
      buf[#buf + 1], i = v, nxt
      started = started or v ~= ""
    else
      buf[#buf + 1], i, started = c, i + 1, true
    end
  end
  if not split then return table.concat(buf) end
  if started then words[#words + 1] = table.concat(buf) end
  return words
end

-- A JSON array of strings (the exec form), or nil, err. Strict JSON: no single
-- quotes, no trailing commas, nothing after the closing bracket.
local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function json_array(s)
  local i, n = 1, #s
  local function ws() i = s:find("[^ \t\r\n]", i) or n + 1 end
  local function str()
    local out = {}
    i = i + 1
    while true do
      local c = s:sub(i, i)
      if c == "" then return nil, "unterminated string" end
      if c == '"' then i = i + 1; return table.concat(out) end
      if c:byte() < 32 then return nil, "control character in a string" end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        if ESCAPES[e] then
          out[#out + 1], i = ESCAPES[e], i + 2
        elseif e == "u" then
          local hex = s:match("^%x%x%x%x", i + 2)
          if not hex then return nil, "bad \\u escape" end
          local cp = tonumber(hex, 16)
          i = i + 6
          if cp >= 0xD800 and cp <= 0xDBFF then
            local lo = s:match("^\\u(%x%x%x%x)", i)
            lo = lo and tonumber(lo, 16)
            if not lo or lo < 0xDC00 or lo > 0xDFFF then return nil, "lone surrogate in \\u escape" end
            cp, i = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), i + 6
          elseif cp >= 0xDC00 and cp <= 0xDFFF then
            return nil, "lone surrogate in \\u escape"
          end
          if cp == 0 then return nil, "NUL in a string" end
          out[#out + 1] = utf8.char(cp)
        else
          return nil, "bad escape \\" .. e
        end
      else
        out[#out + 1], i = c, i + 1
      end
    end
  end
  local list = {}
  ws()
  if s:sub(i, i) ~= "[" then return nil, "expected [" end
  i = i + 1
  ws()
  if s:sub(i, i) == "]" then
    i = i + 1
  else
    while true do
      ws()
      if s:sub(i, i) ~= '"' then return nil, "expected a string" end
      local v, err = str()
      if not v then return nil, err end
      list[#list + 1] = v
      ws()
      local c = s:sub(i, i)
      i = i + 1
      if c == "]" then break end
      if c ~= "," then return nil, "expected , or ]" end
    end
  end
  ws()
  if i <= n then return nil, "unexpected text after ]" end
  return list
end

-- Exec form unless the text is the shell's own "[" test ("[ -f x ] && ..."):
-- "[" then blanks then something that cannot start a JSON value.
local function is_exec(rest)
  return rest:sub(1, 1) == "[" and not rest:match("^%[[ \t]+[^ \t\"'%]]")
end

-- argv for RUN, CMD or ENTRYPOINT: the exec form as written, the shell form
-- as /bin/sh -c text (unexpanded: the shell expands it).
local function command_of(instr, rest, line)
  if is_exec(rest) then
    local argv, err = json_array(rest)
    if not argv then
      return fail(line, "%s: the exec form must be a JSON array of strings (%s)", instr, err)
    end
    return argv
  end
  return { "/bin/sh", "-c", rest }
end

-- k=v pairs (ENV, LABEL), or the legacy "K the rest of the line" form when the
-- first word has no "=". Returns a list of {k, v} in order, or nil, err.
local function pairs_of(rest, vars, legacy_ok)
  local first = rest:match("^[^ \t]+")
  if legacy_ok and not first:find("=", 1, true) then
    local value_text = trim(rest:sub(#first + 1))
    if value_text == "" then return nil, "needs a value: " .. first .. " value, or " .. first .. "=value" end
    local key, err = lex(first, vars, false)
    if not key then return nil, err end
    local value
    value, err = lex(value_text, vars, false)
    if not value then return nil, err end
    return { { key, value } }
  end
  local words, err = lex(rest, vars, true)
  if not words then return nil, err end
  local out = {}
  for _, w in ipairs(words) do
    local k, v = w:match("^([^=]*)=(.*)$")
    if not k then return nil, "expected key=value, got " .. paths.quote(w) end
    out[#out + 1] = { k, v }
  end
  return out
end

local function check_user(u)
  local uid, gid = u:match("^(%d+):(%d+)$")
  uid = uid or u:match("^%d+$")
  local function ok(x)
    -- 4294967295 is (uid_t)-1, "no change", never a user
    return x == nil or #x <= 10 and tonumber(x) < 4294967295
  end
  if not uid or not ok(uid) or not ok(gid) then return nil end
  if gid then return string.format("%d:%d", tonumber(uid), tonumber(gid)) end
  return string.format("%d", tonumber(uid))
end

-- Refuses leading --flags, naming the reason for the ones people use.
local FLAG_REASONS = {
  COPY = {
    from = "multi-stage builds are not supported, so there is no other stage or image to copy from",
    chown = "image files keep one owner; the program writes only to /state",
    chmod = "image files keep the mode they are uploaded with",
  },
}

local function refuse_flags(instr, words, line)
  local first = words[1]
  if first and first:sub(1, 2) == "--" then
    local name = first:match("^%-%-([^=]*)")
    local reason = FLAG_REASONS[instr] and FLAG_REASONS[instr][name]
    return fail(line, "%s --%s is not supported%s", instr, name, reason and ": " .. reason or "")
  end
  return true
end

-- Variables visible to the expansion: ARG values, overridden by ENV ones.
local function vars_of(st)
  local v = copy(st.args)
  for k, x in pairs(st.env) do v[k] = x end
  return v
end

local handlers = {}

function handlers.ARG(st, rest, line)
  local words, err = lex(rest, st.from and vars_of(st) or st.pre_args, true)
  if not words then return fail(line, "ARG: %s", err) end
  for _, w in ipairs(words) do
    local name, value = w:match("^([^=]*)=(.*)$")
    name = name or w
    if not name:match(NAME) then
      return fail(line, "ARG: bad name %s (letters, digits and _, not starting with a digit)", paths.quote(name))
    end
    if not st.from then
      if value ~= nil then st.pre_args[name] = value end
    else
      -- A redeclared pre-FROM ARG takes its value, as in Docker.
      if value == nil then value = st.pre_args[name] end
      if value ~= nil then st.args[name] = value end
    end
  end
  return true
end

function handlers.FROM(st, rest, line)
  if st.from then
    return fail(line, "a second FROM: multi-stage builds are not supported (exactly one FROM)")
  end
  local words, err = lex(rest, st.pre_args, true)
  if not words then return fail(line, "FROM: %s", err) end
  local ok
  ok, err = refuse_flags("FROM", words, line)
  if not ok then return nil, err, CODE end
  if #words == 3 and words[2]:upper() == "AS" then
    return fail(line, "FROM ... AS %s: multi-stage builds are not supported", words[3])
  end
  if #words ~= 1 then return fail(line, "FROM takes one base: FROM hersh or FROM scratch") end
  if not dockerfile.bases[words[1]] then
    return fail(line, "unknown base %s: the bases are hersh and scratch", paths.quote(words[1]))
  end
  st.from, st.base = true, words[1]
  return true
end

function handlers.WORKDIR(st, rest, line)
  local p, err = lex(rest, vars_of(st), false)
  if not p then return fail(line, "WORKDIR: %s", err) end
  if p == "" then return fail(line, "WORKDIR needs a path") end
  local full
  full, err = paths.resolve(p, st.workdir)
  if not full then return fail(line, "WORKDIR %s: %s", paths.quote(p), err) end
  st.workdir = full
  st.steps[#st.steps + 1] = { op = "workdir", path = full, line = line }
  return true
end

function handlers.COPY(st, rest, line)
  local words, err
  if rest:sub(1, 1) == "[" then
    -- JSON form, for names with blanks; taken literally, no expansion.
    words, err = json_array(rest)
  else
    words, err = lex(rest, vars_of(st), true)
  end
  if not words then return fail(line, "COPY: %s", err) end
  local ok
  ok, err = refuse_flags("COPY", words, line)
  if not ok then return nil, err, CODE end
  if #words < 2 then return fail(line, "COPY needs at least one source and a destination") end
  local sources = {}
  for i = 1, #words - 1 do
    local src = words[i]
    if src:find("[*?[]") then
      return fail(line, "COPY source %s: wildcards are not supported; name the files or a folder", paths.quote(src))
    end
    local norm
    norm, err = paths.check_relative(src, { dir = true })
    if not norm then return fail(line, "COPY source %s: %s", paths.quote(src), err) end
    sources[#sources + 1] = norm
  end
  local dest = words[#words]
  local is_dir = dest:sub(-1) == "/" or dest == "." or dest:sub(-2) == "/."
  if #sources > 1 and not is_dir then
    return fail(line, "COPY with several sources needs a destination folder ending in /")
  end
  local full
  full, err = paths.resolve(dest, st.workdir)
  if not full then return fail(line, "COPY destination %s: %s", paths.quote(dest), err) end
  if is_dir and full ~= "/" then full = full .. "/" end
  st.steps[#st.steps + 1] = { op = "copy", sources = sources, dest = full, line = line }
  return true
end

function handlers.ENV(st, rest, line)
  local list, err = pairs_of(rest, vars_of(st), true)
  if not list then return fail(line, "ENV: %s", err) end
  for _, kv in ipairs(list) do
    if not kv[1]:match(NAME) then
      return fail(line, "ENV: bad name %s (letters, digits and _, not starting with a digit)", paths.quote(kv[1]))
    end
  end
  -- Every value on the line was expanded with the variables from before it.
  for _, kv in ipairs(list) do st.env[kv[1]] = kv[2] end
  return true
end

function handlers.LABEL(st, rest, line)
  local list, err = pairs_of(rest, vars_of(st), true)
  if not list then return fail(line, "LABEL: %s", err) end
  for _, kv in ipairs(list) do
    if kv[1] == "" then return fail(line, "LABEL: empty key") end
    st.labels[kv[1]] = kv[2]
  end
  return true
end

-- A heredoc (<<WORD, <<-WORD, <<'WORD' as a word of its own) would need the
-- lines after it, which this parser reads as instructions: refuse it by name.
-- "$((1 << x))" and "a<<b" are not heredocs.
local function has_heredoc(text)
  for pos, after in text:gmatch("()<<%-?[ \t]*[\"']?[A-Za-z_][A-Za-z0-9_]*[\"']?()") do
    local b, a = text:sub(pos - 1, pos - 1), text:sub(after, after)
    if (b == "" or b == " " or b == "\t") and (a == "" or a:find("[ \t>|;&]")) then
      return true
    end
  end
  return false
end

function handlers.RUN(st, rest, line)
  local ok, err = refuse_flags("RUN", { rest:match("^%S+") }, line)
  if not ok then return nil, err, CODE end
  if not is_exec(rest) and has_heredoc(rest) then
    return fail(line, "RUN: heredocs (<<WORD) are not supported")
  end
  local argv
  argv, err = command_of("RUN", rest, line)
  if not argv then return nil, err, CODE end
  if #argv == 0 then return fail(line, "RUN needs a command") end
  local env = copy(st.args)
  for k, v in pairs(st.env) do env[k] = v end
  st.steps[#st.steps + 1] = {
    op = "run", argv = argv, env = env, workdir = st.workdir, user = st.user, line = line,
  }
  return true
end

function handlers.CMD(st, rest, line)
  local argv, err = command_of("CMD", rest, line)
  if not argv then return nil, err, CODE end
  st.cmd = argv
  return true
end

function handlers.ENTRYPOINT(st, rest, line)
  local argv, err = command_of("ENTRYPOINT", rest, line)
  if not argv then return nil, err, CODE end
  st.entrypoint = argv
  return true
end

function handlers.EXPOSE(st, rest, line)
  local words, err = lex(rest, vars_of(st), true)
  if not words then return fail(line, "EXPOSE: %s", err) end
  for _, w in ipairs(words) do
    local port, proto = w:match("^(%d+)/(%a+)$")
    port = port or w:match("^%d+$")
    if not port or proto and proto:lower() ~= "tcp" then
      return fail(line, "EXPOSE %s: expected 8080 or 8080/tcp", paths.quote(w))
    end
    if tonumber(port) ~= dockerfile.port then
      return fail(line, "EXPOSE %s: only port 8080 can be exposed; the WatcherAPI listens on 8080 "
        .. "and the Host publishes it on 127.0.0.1:<publish_port>", w)
    end
  end
  st.expose = { dockerfile.port }
  return true
end

function handlers.USER(st, rest, line)
  local u, err = lex(rest, vars_of(st), false)
  if not u then return fail(line, "USER: %s", err) end
  local user = check_user(trim(u))
  if not user then
    return fail(line, "USER %s: only a numeric uid or uid:gid is supported "
      .. "(there is no user database to look names up in)", paths.quote(u))
  end
  st.user = user
  return true
end

-- The plan for a Dockerfile, or nil, err, "EDOCKERFILE".
function dockerfile.parse(text)
  if type(text) ~= "string" then
    error("dockerfile.parse: string expected, got " .. type(text), 2)
  end
  local lines, err = logical_lines(text)
  if not lines then return nil, err, CODE end
  if #lines == 0 then
    return fail(1, "empty Dockerfile: it needs FROM hersh or FROM scratch")
  end
  local st = {
    from = false, base = nil, pre_args = {}, args = {}, env = {}, labels = {},
    steps = {}, workdir = "/", user = nil, cmd = nil, entrypoint = nil, expose = {},
  }
  for _, l in ipairs(lines) do
    local word, rest = l.text:match("^(%S+)[ \t]*(.*)$")
    if not word then -- trim keeps blanks other than space and tab, e.g. a form feed
      return fail(l.line, "a line must start with an instruction, not %s", paths.quote(l.text))
    end
    local instr = word:upper()
    local handler = word:match("^%a+$") and handlers[instr]
    if not handler then
      local why = dockerfile.unsupported[instr]
      if why then return fail(l.line, "%s is not supported: %s", instr, why) end
      return fail(l.line, "unknown instruction %s", paths.quote(word))
    end
    if not st.from and instr ~= "ARG" and instr ~= "FROM" then
      return fail(l.line, "%s before FROM: FROM must be the first instruction (only ARG may precede it)", instr)
    end
    if rest == "" then return fail(l.line, "%s needs arguments", instr) end
    local ok
    ok, err = handler(st, rest, l.line)
    if not ok then return nil, err, CODE end
  end
  if not st.from then
    return fail(lines[#lines].line, "no FROM after this ARG: a Dockerfile needs FROM hersh or FROM scratch")
  end
  return {
    base = st.base, steps = st.steps, env = st.env, args = st.args, workdir = st.workdir,
    user = st.user, cmd = st.cmd, entrypoint = st.entrypoint, labels = st.labels,
    expose = st.expose,
  }
end

-- The argv a program runs: ENTRYPOINT then CMD, concatenated as Docker does
-- (so with a shell-form ENTRYPOINT, CMD only lands in the shell's $0, $1...).
function dockerfile.command(plan)
  local argv = {}
  for _, a in ipairs(plan.entrypoint or {}) do argv[#argv + 1] = a end
  for _, a in ipairs(plan.cmd or {}) do argv[#argv + 1] = a end
  if #argv == 0 then
    return nil, "the Dockerfile has no CMD or ENTRYPOINT: nothing to run", "ENOCOMMAND"
  end
  return argv
end

local function basename(p)
  return p:match("[^/]+$")
end

-- What a copy step writes: a list of {from = uploaded path, to = image path},
-- or nil, err naming the step's line. files is the uploaded table (normalized
-- keys, see paths.check_files). is_dir(path), when given, says whether a path
-- already is a folder in the image being built: a file copied to a destination
-- without a trailing slash then lands inside it, as in Docker.
function dockerfile.copy_targets(step, files, is_dir)
  local out = {}
  local dest = step.dest
  local into = dest:sub(-1) == "/"
  if not into and is_dir and is_dir(dest) then
    dest, into = dest .. "/", true
  end
  for _, src in ipairs(step.sources) do
    if src ~= "." and files[src] ~= nil then
      out[#out + 1] = { from = src, to = into and dest .. basename(src) or dest }
    else
      -- A folder: its contents (not the folder itself) go under dest.
      local prefix = src == "." and "" or src .. "/"
      local found = {}
      for k in pairs(files) do
        if k:sub(1, #prefix) == prefix then found[#found + 1] = k end
      end
      if #found == 0 then
        return nil, string.format("Dockerfile line %d: COPY source %s is not among the uploaded files",
          step.line, paths.quote(src)), "ENOTFOUND"
      end
      table.sort(found, paths.byte_less)
      local base = into and dest or dest .. "/"
      for _, k in ipairs(found) do
        out[#out + 1] = { from = k, to = base .. k:sub(#prefix + 1) }
      end
    end
  end
  return out
end

return dockerfile
