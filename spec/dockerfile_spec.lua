-- The Dockerfile subset: every accepted form, and every refusal naming its line.
local dockerfile = require "host.dockerfile"

local function parse(text)
  local plan, err, code = dockerfile.parse(text)
  assert(plan, err)
  assert.is_nil(code)
  return plan
end

local function df(...)
  return table.concat({ ... }, "\n") .. "\n"
end

-- The steps of one op, in order.
local function steps_of(plan, op)
  local out = {}
  for _, s in ipairs(plan.steps) do
    if s.op == op then out[#out + 1] = s end
  end
  return out
end

describe("dockerfile.parse accepts", function()
  it("the smallest Dockerfile, with every default", function()
    assert.same({
      base = "hersh", steps = {}, env = {}, args = {}, workdir = "/", labels = {}, expose = {},
    }, parse("FROM hersh"))
  end)

  it("FROM scratch", function()
    assert.equal("scratch", parse("FROM scratch\n").base)
  end)

  local layout = {
    { "lowercase instructions", "from hersh\ncmd [\"x\"]" },
    { "mixed-case instructions", "FrOm hersh\nCmD [\"x\"]" },
    { "comments and blank lines", "# a comment\n\n   # indented comment\nFROM hersh\n\n# more\nCMD [\"x\"]\n\n" },
    { "leading and trailing blanks", "   FROM hersh   \n\t CMD [\"x\"] \t" },
    { "CRLF line ends", "FROM hersh\r\nCMD [\"x\"]\r\n" },
    { "a UTF-8 byte order mark", "\239\187\191FROM hersh\nCMD [\"x\"]" },
    { "a syntax directive (read as a comment)", "# syntax=docker/dockerfile:1\nFROM hersh\nCMD [\"x\"]" },
    { "no newline at the end", "FROM hersh\nCMD [\"x\"]" },
    { "a continued FROM", "FROM \\\n  hersh\nCMD [\"x\"]" },
  }
  for _, c in ipairs(layout) do
    it(c[1], function()
      local plan = parse(c[2])
      assert.equal("hersh", plan.base)
      assert.same({ "x" }, plan.cmd)
    end)
  end

  describe("line continuations", function()
    local cases = {
      { "joined without the backslash", df("FROM hersh", "RUN echo a \\", "  && echo b"),
        "echo a   && echo b" },
      { "blanks after the backslash", df("FROM hersh", "RUN echo a \\  \t", "b"), "echo a b" },
      { "comment lines inside are dropped", df("FROM hersh", "RUN a \\", "# note", "  # indented", " b"),
        "a  b" },
      { "blank lines inside are dropped", df("FROM hersh", "RUN a \\", "", "   ", "b"), "a b" },
      { "several lines", df("FROM hersh", "RUN a \\", "b \\", "c"), "a b c" },
      { "CRLF", "FROM hersh\r\nRUN a \\\r\nb\r\n", "a b" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local run = steps_of(parse(c[2]), "run")[1]
        assert.same({ "/bin/sh", "-c", c[3] }, run.argv)
        assert.equal(2, run.line)
      end)
    end

    it("name the line the instruction starts on", function()
      local plan = parse(df("FROM hersh", "", "RUN a \\", "b", "COPY \\", "  x \\", "  /y/", "RUN c"))
      assert.same({ 3, 5, 8 }, { plan.steps[1].line, plan.steps[2].line, plan.steps[3].line })
    end)

    it("inside ENV", function()
      local plan = parse(df("FROM hersh", "ENV A=1 \\", "    B=2"))
      assert.same({ A = "1", B = "2" }, plan.env)
    end)
  end)

  describe("RUN", function()
    it("in shell form runs /bin/sh -c with the text as written (the shell expands it)", function()
      local run = steps_of(parse(df("FROM hersh", "ENV X=1", "RUN echo $X ${X} \"$HOME\" > /tmp/o")), "run")[1]
      assert.same({ "/bin/sh", "-c", 'echo $X ${X} "$HOME" > /tmp/o' }, run.argv)
    end)

    it("in exec form runs the array", function()
      local run = steps_of(parse(df("FROM hersh", 'RUN ["lua", "-e", "print(1)"]')), "run")[1]
      assert.same({ "lua", "-e", "print(1)" }, run.argv)
    end)

    it("starting with the shell's [ test is shell form", function()
      local run = steps_of(parse(df("FROM hersh", "RUN [ -f /etc/passwd ] && echo yes")), "run")[1]
      assert.same({ "/bin/sh", "-c", "[ -f /etc/passwd ] && echo yes" }, run.argv)
    end)

    it("carries the env (ARG and ENV, ENV winning), workdir and user of its point", function()
      local plan = parse(df("FROM hersh", "ARG V=1", "ARG SHARED=arg", "RUN one",
        "ENV SHARED=env E=2", "WORKDIR /app", "USER 1000", "RUN two"))
      local one, two = table.unpack(steps_of(plan, "run"))
      assert.same({ V = "1", SHARED = "arg" }, one.env)
      assert.equal("/", one.workdir)
      assert.is_nil(one.user)
      assert.same({ V = "1", SHARED = "env", E = "2" }, two.env)
      assert.equal("/app", two.workdir)
      assert.equal("1000", two.user)
      assert.equal(4, one.line)
      assert.equal(8, two.line)
    end)

    for _, text in ipairs({ "echo $((1 << x))", 'echo "a<<b"', "cat <<<word" }) do
      it("with << that is no heredoc: " .. text, function()
        assert.same({ "/bin/sh", "-c", text }, parse("FROM hersh\nRUN " .. text).steps[1].argv)
      end)
    end

    it("gets a copy of the env: later ENV does not change an earlier step", function()
      local plan = parse(df("FROM hersh", "ENV A=1", "RUN x", "ENV A=2"))
      assert.equal("1", plan.steps[1].env.A)
      assert.equal("2", plan.env.A)
    end)
  end)

  describe("exec form JSON", function()
    local cases = {
      { '["a"]', { "a" } },
      { '[ "a" , "b c" ]', { "a", "b c" } },
      { '["a","b"]', { "a", "b" } },
      { '["q\\"uote", "back\\\\slash", "s\\/lash"]', { 'q"uote', "back\\slash", "s/lash" } },
      { '["\\n\\t\\r\\b\\f"]', { "\n\t\r\b\f" } },
      { '["\\u00e9", "\\u20AC"]', { "é", "€" } },
      { '["\\ud83d\\ude00"]', { "😀" } },
      { '["$HOME"]', { "$HOME" } },
      { "[]", {} },
      { "[ ]", {} },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.same(c[2], parse("FROM hersh\nCMD " .. c[1]).cmd)
      end)
    end
  end)

  describe("CMD and ENTRYPOINT", function()
    local cases = {
      { "CMD exec form", { 'CMD ["hersh", "run", "app.lua"]' }, { "hersh", "run", "app.lua" } },
      { "CMD shell form", { "CMD hersh run app.lua" }, { "/bin/sh", "-c", "hersh run app.lua" } },
      { "ENTRYPOINT exec form", { 'ENTRYPOINT ["hersh", "run"]' }, { "hersh", "run" } },
      { "ENTRYPOINT shell form", { "ENTRYPOINT exec hersh run app.lua" },
        { "/bin/sh", "-c", "exec hersh run app.lua" } },
      { "ENTRYPOINT then CMD", { 'ENTRYPOINT ["hersh", "run"]', 'CMD ["app.lua"]' },
        { "hersh", "run", "app.lua" } },
      { "CMD then ENTRYPOINT: the same", { 'CMD ["app.lua"]', 'ENTRYPOINT ["hersh", "run"]' },
        { "hersh", "run", "app.lua" } },
      { "the last CMD wins", { 'CMD ["one"]', 'CMD ["two"]' }, { "two" } },
      { "the last ENTRYPOINT wins", { 'ENTRYPOINT ["one"]', 'ENTRYPOINT ["two"]', 'CMD ["x"]' }, { "two", "x" } },
      { "CMD [] clears CMD", { 'ENTRYPOINT ["e"]', 'CMD ["x"]', "CMD []" }, { "e" } },
      { "a shell-form ENTRYPOINT takes CMD as $0 (as Docker does)", { "ENTRYPOINT run", 'CMD ["x"]' },
        { "/bin/sh", "-c", "run", "x" } },
      { "no expansion in CMD", { "ENV A=1", "CMD echo $A" }, { "/bin/sh", "-c", "echo $A" } },
    }
    for _, c in ipairs(cases) do
      it("command(): " .. c[1], function()
        local plan = parse("FROM hersh\n" .. table.concat(c[2], "\n"))
        assert.same(c[3], dockerfile.command(plan))
      end)
    end

    it("command() copies: changing the argv leaves the plan alone", function()
      local plan = parse('FROM hersh\nCMD ["a"]')
      dockerfile.command(plan)[1] = "changed"
      assert.same({ "a" }, plan.cmd)
    end)

    local none = {
      { "neither is set", "FROM hersh" },
      { "both are empty", "FROM hersh\nCMD []\nENTRYPOINT []" },
    }
    for _, c in ipairs(none) do
      it("command() is nil, err, ENOCOMMAND when " .. c[1], function()
        local argv, err, code = dockerfile.command(parse(c[2]))
        assert.is_nil(argv)
        assert.matches("no CMD or ENTRYPOINT", err)
        assert.equal("ENOCOMMAND", code)
      end)
    end
  end)

  describe("ENV", function()
    local cases = {
      { "K=V", { "ENV K=V" }, { K = "V" } },
      { "several pairs", { "ENV A=1 B=2  C=3" }, { A = "1", B = "2", C = "3" } },
      { "double quotes", { 'ENV K2="v 2" K3="a \\"q\\" \\\\ \\$x"' }, { K2 = "v 2", K3 = 'a "q" \\ $x' } },
      { "single quotes, no expansion", { "ENV A=1", "ENV B='$A \"x\"'" }, { A = "1", B = '$A "x"' } },
      { "an escaped blank", { "ENV K=a\\ b" }, { K = "a b" } },
      { "an empty value", { "ENV K=", 'ENV L=""' }, { K = "", L = "" } },
      { "= inside a value", { "ENV K=a=b" }, { K = "a=b" } },
      { "legacy K V", { "ENV K V" }, { K = "V" } },
      { "legacy K with the rest of the line", { "ENV K  hello   world " }, { K = "hello   world" } },
      { "legacy with quotes", { 'ENV K "a b" c' }, { K = "a b c" } },
      { "$VAR and ${VAR} of earlier ENV", { "ENV A=x", "ENV B=$A/${A}/$A_1/${A}_1" },
        { A = "x", B = "x/x//x_1" } },
      { "one line sees the values from before it", { "ENV A=old", "ENV A=new B=$A" }, { A = "new", B = "old" } },
      { "an unset variable is empty", { "ENV A=[$NOPE][${NOPE}]" }, { A = "[][]" } },
      { "${VAR:-default}", { "ENV A=1 E=", "ENV B=${A:-d} C=${NOPE:-d} D=${E:-d} F=${NOPE:-$A}" },
        { A = "1", E = "", B = "1", C = "d", D = "d", F = "1" } },
      { "${VAR:+alt}", { "ENV A=1", "ENV B=${A:+yes} C=${NOPE:+yes}" }, { A = "1", B = "yes", C = "" } },
      { "nested ${}", { "ENV A=1", "ENV B=${NOPE:-${A}}" }, { A = "1", B = "1" } },
      { "a lone $ and \\$", { "ENV A=$ B=a$ C=\\$A D=$1" }, { A = "$", B = "a$", C = "$A", D = "$1" } },
      { "ARG values", { "ARG V=1.0", "ENV VERSION=$V" }, { VERSION = "1.0" } },
      { "a value with a # (not a comment)", { "ENV A=a#b" }, { A = "a#b" } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.same(c[3], parse("FROM hersh\n" .. table.concat(c[2], "\n")).env)
      end)
    end
  end)

  describe("ARG", function()
    it("before FROM is usable in FROM", function()
      assert.equal("scratch", parse(df("ARG BASE=scratch", "FROM $BASE")).base)
      assert.equal("scratch", parse(df("ARG BASE=scratch", "FROM ${BASE}")).base)
    end)

    it("before FROM is not visible after it unless declared again", function()
      local plan = parse(df("ARG A=1", "ARG B=2", "FROM hersh", "ARG B", "ENV X=[$A] Y=[$B]"))
      assert.same({ X = "[]", Y = "[2]" }, plan.env)
      assert.same({ B = "2" }, plan.args)
    end)

    it("gives its default to later instructions, not to the final env", function()
      local plan = parse(df("FROM hersh", "ARG DIR=/app", "WORKDIR $DIR", "RUN x"))
      assert.equal("/app", plan.workdir)
      assert.same({}, plan.env)
      assert.same({ DIR = "/app" }, plan.args)
      assert.same({ DIR = "/app" }, steps_of(plan, "run")[1].env)
    end)

    it("without a default is empty and not in RUN's env", function()
      local plan = parse(df("FROM hersh", "ARG NOPE", "ENV A=[$NOPE]", "RUN x"))
      assert.same({ A = "[]" }, plan.env)
      assert.same({ A = "[]" }, plan.steps[1].env)
    end)

    it("several on one line, seeing the values from before the line, as ENV does", function()
      local plan = parse(df("FROM hersh", "ARG A=0", 'ARG A=1 B=$A C="x y"', "ARG D=$A"))
      assert.same({ A = "1", B = "0", C = "x y", D = "1" }, plan.args)
    end)

    it("is overridden by ENV of the same name", function()
      local plan = parse(df("FROM hersh", "ENV V=env", "ARG V=arg", "ENV W=$V"))
      assert.equal("env", plan.env.W)
    end)
  end)

  describe("LABEL", function()
    local cases = {
      { "k=v pairs", { "LABEL a=1 b=2" }, { a = "1", b = "2" } },
      { "quoted keys and values", { 'LABEL "com.example.vendor"="ACME Inc" version="1 0"' },
        { ["com.example.vendor"] = "ACME Inc", version = "1 0" } },
      { "legacy k v", { "LABEL maintainer someone <a@b.c>" }, { maintainer = "someone <a@b.c>" } },
      { "expansion", { "ARG V=2", "LABEL version=$V" }, { version = "2" } },
      { "the last value wins", { "LABEL a=1", "LABEL a=2" }, { a = "2" } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.same(c[3], parse("FROM hersh\n" .. table.concat(c[2], "\n")).labels)
      end)
    end
  end)

  describe("EXPOSE", function()
    for _, form in ipairs({ "8080", "8080/tcp", "8080/TCP", "8080 8080/tcp", "$PORT" }) do
      it(form, function()
        assert.same({ 8080 }, parse(df("FROM hersh", "ARG PORT=8080", "EXPOSE " .. form)).expose)
      end)
    end
  end)

  describe("USER", function()
    local cases = {
      { "1000", "1000" }, { "1000:1000", "1000:1000" }, { "0", "0" }, { "0:0", "0:0" },
      { "0042", "42" }, { "4294967294", "4294967294" }, { "$UID", "1234" }, { "${UID}:${UID}", "1234:1234" },
      { '"1000"', "1000" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.equal(c[2], parse(df("FROM hersh", "ARG UID=1234", "USER " .. c[1])).user)
      end)
    end

    it("the last one wins", function()
      assert.equal("2", parse(df("FROM hersh", "USER 1", "USER 2")).user)
    end)
  end)

  describe("WORKDIR", function()
    local cases = {
      { { "/app" }, "/app" },
      { { "/app/" }, "/app" },
      { { "/app", "lib" }, "/app/lib" },
      { { "/app", "lib", "./x/" }, "/app/lib/x" },
      { { "/app", "/opt" }, "/opt" },
      { { "app" }, "/app" },
      { { "/app", "." }, "/app" },
      { { "//a//b" }, "/a/b" },
      { { '"/my app"' }, "/my app" },
      { { "/my app" }, "/my app" },
      { { "$D" }, "/from/arg" },
      { { "${D}/sub" }, "/from/arg/sub" },
    }
    for _, c in ipairs(cases) do
      it(table.concat(c[1], " then ") .. " is " .. c[2], function()
        local lines = { "FROM hersh", "ARG D=/from/arg" }
        for _, w in ipairs(c[1]) do lines[#lines + 1] = "WORKDIR " .. w end
        local plan = parse(df(table.unpack(lines)))
        assert.equal(c[2], plan.workdir)
        local steps = steps_of(plan, "workdir")
        assert.equal(#c[1], #steps)
        assert.same({ op = "workdir", path = c[2], line = #lines }, steps[#steps])
      end)
    end
  end)

  describe("COPY", function()
    local cases = {
      { "a file into a folder", { "COPY app.lua /app/" }, { "app.lua" }, "/app/" },
      { "several sources", { "COPY app.lua lib/ conf/x.json /app/" }, { "app.lua", "lib", "conf/x.json" }, "/app/" },
      { "a file under a new name", { "COPY app.lua /app/main.lua" }, { "app.lua" }, "/app/main.lua" },
      { "everything", { "COPY . /app" }, { "." }, "/app" },
      { "everything, ./ form", { "COPY ./ /app/" }, { "." }, "/app/" },
      { "normalized sources", { "COPY ./src//lib/ /app/" }, { "src/lib" }, "/app/" },
      { "to the workdir with .", { "WORKDIR /app", "COPY app.lua ." }, { "app.lua" }, "/app/" },
      { "to the workdir with ./", { "WORKDIR /app", "COPY a b ./" }, { "a", "b" }, "/app/" },
      { "relative to the workdir", { "WORKDIR /app", "COPY app.lua lib/x.lua" }, { "app.lua" }, "/app/lib/x.lua" },
      { "relative without a workdir", { "COPY app.lua app/" }, { "app.lua" }, "/app/" },
      { "to the root", { "COPY app.lua /" }, { "app.lua" }, "/" },
      { "JSON form with blanks", { 'COPY ["my app.lua", "dir/x y", "/opt/my app/"]' },
        { "my app.lua", "dir/x y" }, "/opt/my app/" },
      { "quoted words", { "COPY \"my app.lua\" '/opt/my app/'" }, { "my app.lua" }, "/opt/my app/" },
      { "expansion", { "ARG SRC=app.lua", "ENV DEST=/srv", "COPY $SRC ${DEST}/" }, { "app.lua" }, "/srv/" },
      { "dotfiles and odd names", { "COPY .env a..b ... /app/" }, { ".env", "a..b", "..." }, "/app/" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local plan = parse("FROM hersh\n" .. table.concat(c[2], "\n"))
        local step = steps_of(plan, "copy")[1]
        assert.same({ op = "copy", sources = c[3], dest = c[4], line = #c[2] + 1 }, step)
      end)
    end
  end)
end)

describe("dockerfile.parse refuses", function()
  -- { what, Dockerfile, line named, fragment of the message }
  local cases = {
    -- instructions Hersh does not have
    { "ADD", df("FROM hersh", "ADD app.tar /app/"), 2, "ADD is not supported: use COPY" },
    { "add (lowercase)", df("FROM hersh", "add x /x"), 2, "ADD is not supported" },
    { "HEALTHCHECK", df("FROM hersh", "HEALTHCHECK CMD true"), 2, "HEALTHCHECK is not supported: the Host checks readiness" },
    { "VOLUME", df("FROM hersh", 'VOLUME ["/data"]'), 2, "VOLUME is not supported: the only writable place is /state" },
    { "ONBUILD", df("FROM hersh", "ONBUILD RUN x"), 2, "ONBUILD is not supported" },
    { "SHELL", df("FROM hersh", 'SHELL ["/bin/bash", "-c"]'), 2, "SHELL is not supported" },
    { "STOPSIGNAL", df("FROM hersh", "STOPSIGNAL SIGINT"), 2, "STOPSIGNAL is not supported: the Host stops programs" },
    { "MAINTAINER", df("FROM hersh", "MAINTAINER me"), 2, "MAINTAINER is not supported: it is deprecated; use LABEL" },
    { "an unknown instruction", df("FROM hersh", "RUN x", "FOO bar"), 3, 'unknown instruction "FOO"' },
    { "a word with punctuation", df("FROM hersh", "RUN-X y"), 2, 'unknown instruction "RUN-X"' },
    { "a stray JSON line", df("FROM hersh", '["x"]'), 2, "unknown instruction" },
    { "an unsupported instruction before FROM", df("ADD x /x", "FROM hersh"), 1, "ADD is not supported" },

    -- malformed lines
    { "RUN without a command", df("FROM hersh", "RUN"), 2, "RUN needs arguments" },
    { "CMD without a command", df("FROM hersh", "CMD   "), 2, "CMD needs arguments" },
    { "ENTRYPOINT alone", df("FROM hersh", "ENTRYPOINT"), 2, "ENTRYPOINT needs arguments" },
    { "ENV alone", df("FROM hersh", "ENV"), 2, "ENV needs arguments" },
    { "LABEL alone", df("FROM hersh", "LABEL"), 2, "LABEL needs arguments" },
    { "WORKDIR alone", df("FROM hersh", "WORKDIR"), 2, "WORKDIR needs arguments" },
    { "USER alone", df("FROM hersh", "USER"), 2, "USER needs arguments" },
    { "EXPOSE alone", df("FROM hersh", "EXPOSE"), 2, "EXPOSE needs arguments" },
    { "ARG alone", df("FROM hersh", "ARG"), 2, "ARG needs arguments" },
    { "COPY alone", df("FROM hersh", "COPY"), 2, "COPY needs arguments" },
    { "FROM alone", df("FROM"), 1, "FROM needs arguments" },
    { "RUN with an empty exec form", df("FROM hersh", "RUN []"), 2, "RUN needs a command" },
    { "COPY with one word", df("FROM hersh", "COPY app.lua"), 2, "COPY needs at least one source and a destination" },
    { "ENV K without a value", df("FROM hersh", "ENV K"), 2, "ENV: needs a value" },
    { "ENV mixing forms", df("FROM hersh", "ENV A=1 B"), 2, 'ENV: expected key=value, got "B"' },
    { "ENV with a trailing comment", df("FROM hersh", "ENV A=1 # note"), 2, 'expected key=value, got "#"' },
    { "ENV with a name starting with a digit", df("FROM hersh", "ENV 1A=x"), 2, 'ENV: bad name "1A"' },
    { "ENV with a dash in the name", df("FROM hersh", "ENV A-B=x"), 2, 'ENV: bad name "A-B"' },
    { "ENV with an empty name", df("FROM hersh", "ENV =x"), 2, 'ENV: bad name ""' },
    { "ENV legacy with a bad name", df("FROM hersh", "ENV A.B x"), 2, 'ENV: bad name "A.B"' },
    { "LABEL with an empty key", df("FROM hersh", "LABEL =x"), 2, "LABEL: empty key" },
    { "LABEL mixing forms", df("FROM hersh", "LABEL a=1 b"), 2, "LABEL: expected key=value" },
    { "ARG with a bad name", df("FROM hersh", "ARG 9x=1"), 2, 'ARG: bad name "9x"' },
    { "ARG with a bad name before FROM", df("ARG a-b", "FROM hersh"), 1, 'ARG: bad name "a-b"' },
    { "WORKDIR that expands to nothing", df("FROM hersh", "WORKDIR $NOPE"), 2, "WORKDIR needs a path" },
    { "a NUL byte", "FROM hersh\nRUN a\0b\n", 2, "NUL byte" },

    -- quoting and substitution
    { "an unterminated double quote in ENV", df("FROM hersh", 'ENV A="x'), 2, "ENV: unterminated double quote" },
    { "an unterminated single quote in ENV", df("FROM hersh", "ENV A='x"), 2, "ENV: unterminated single quote" },
    { "an unterminated quote in legacy ENV", df("FROM hersh", 'ENV A "x'), 2, "unterminated double quote" },
    { "an unterminated quote in LABEL", df("FROM hersh", 'LABEL a="b'), 2, "LABEL: unterminated double quote" },
    { "an unterminated quote in COPY", df("FROM hersh", 'COPY "a /app/'), 2, "COPY: unterminated double quote" },
    { "an unterminated quote in WORKDIR", df("FROM hersh", "WORKDIR '/app"), 2, "WORKDIR: unterminated single quote" },
    { "an unterminated quote in USER", df("FROM hersh", 'USER "1000'), 2, "USER: unterminated double quote" },
    { "an unterminated quote in ARG", df("FROM hersh", 'ARG A="1'), 2, "ARG: unterminated double quote" },
    { "an unterminated quote in FROM", df('FROM "hersh'), 1, "FROM: unterminated double quote" },
    { "an unterminated quote over continued lines", df("FROM hersh", 'ENV A="x \\', "y"), 2, "unterminated double quote" },
    { "an unterminated ${", df("FROM hersh", "ENV A=${B"), 2, "ENV: unterminated ${" },
    { "a bad substitution ${B?x}", df("FROM hersh", "ENV A=${B?x}"), 2, "bad substitution ${B?x}" },
    { "a bad substitution ${1}", df("FROM hersh", "ENV A=${1}"), 2, "bad substitution ${1}" },
    { "an empty ${}", df("FROM hersh", "WORKDIR /${}"), 2, "bad substitution ${}" },

    -- FROM
    { "ubuntu:22.04", df("FROM ubuntu:22.04"), 1, 'unknown base "ubuntu:22.04": the bases are hersh and scratch' },
    { "alpine", df("# base", "FROM alpine"), 2, 'unknown base "alpine"' },
    { "hersh with a tag", df("FROM hersh:latest"), 1, 'unknown base "hersh:latest"' },
    { "HERSH in capitals", df("FROM HERSH"), 1, 'unknown base "HERSH"' },
    { "a base from an ARG", df("ARG B=debian", "FROM $B"), 2, 'unknown base "debian"' },
    { "a base from an unset ARG", df("FROM $NOPE"), 1, "FROM takes one base" },
    { "two words", df("FROM hersh scratch"), 1, "FROM takes one base" },
    { "FROM ... AS", df("FROM hersh AS build"), 1, "FROM ... AS build: multi-stage builds are not supported" },
    { "FROM ... as", df("FROM hersh as build"), 1, "multi-stage builds are not supported" },
    { "--platform", df("FROM --platform=linux/amd64 hersh"), 1, "FROM --platform is not supported" },
    { "a second FROM", df("FROM hersh", "RUN x", "FROM scratch"), 3, "a second FROM: multi-stage builds are not supported" },
    { "a repeated FROM", df("FROM hersh", "FROM hersh"), 2, "a second FROM" },

    -- missing FROM
    { "an empty Dockerfile", "", 1, "empty Dockerfile" },
    { "only blank lines", "\n\n  \n", 1, "empty Dockerfile" },
    { "only comments", "# one\n# two\n", 1, "empty Dockerfile" },
    { "RUN first", df("RUN x", "FROM hersh"), 1, "RUN before FROM: FROM must be the first instruction" },
    { "COPY first", df("# c", "", "COPY a /a", "FROM hersh"), 3, "COPY before FROM" },
    { "ENV after ARG", df("ARG A=1", "ENV B=2", "FROM hersh"), 2, "ENV before FROM" },
    { "ARG and no FROM", df("ARG A=1", "", "ARG B=2", "# end"), 3, "no FROM after this ARG" },

    -- EXPOSE
    { "EXPOSE 80", df("FROM hersh", "EXPOSE 80"), 2,
      "EXPOSE 80: only port 8080 can be exposed; the WatcherAPI listens on 8080" },
    { "EXPOSE 80/tcp", df("FROM hersh", "EXPOSE 80/tcp"), 2, "EXPOSE 80/tcp: only port 8080" },
    { "EXPOSE 8080/udp", df("FROM hersh", "EXPOSE 8080/udp"), 2, 'EXPOSE "8080/udp": expected 8080 or 8080/tcp' },
    { "a port range", df("FROM hersh", "EXPOSE 8080-8081"), 2, 'EXPOSE "8080-8081"' },
    { "a second, other port", df("FROM hersh", "EXPOSE 8080 9000"), 2, "EXPOSE 9000: only port 8080" },
    { "a name", df("FROM hersh", "EXPOSE http"), 2, 'EXPOSE "http"' },
    { "a port from an ARG", df("FROM hersh", "ARG P=3000", "EXPOSE $P"), 3, "EXPOSE 3000" },

    -- USER
    { "USER root", df("FROM hersh", "USER root"), 2, 'USER "root": only a numeric uid or uid:gid is supported' },
    { "USER name", df("FROM hersh", "USER app"), 2, 'USER "app": only a numeric uid' },
    { "USER uid:group name", df("FROM hersh", "USER 1000:staff"), 2, 'USER "1000:staff"' },
    { "USER name:gid", df("FROM hersh", "USER app:1000"), 2, 'USER "app:1000"' },
    { "USER with a trailing colon", df("FROM hersh", "USER 1000:"), 2, 'USER "1000:"' },
    { "USER -1", df("FROM hersh", "USER -1"), 2, 'USER "-1"' },
    { "USER (uid_t)-1", df("FROM hersh", "USER 4294967295"), 2, 'USER "4294967295"' },
    { "USER too large", df("FROM hersh", "USER 99999999999"), 2, 'USER "99999999999"' },
    { "USER empty from an ARG", df("FROM hersh", "USER $NOPE"), 2, 'USER "": only a numeric uid' },
    { "USER with two words", df("FROM hersh", "USER 1000 1000"), 2, 'USER "1000 1000"' },

    -- COPY
    { "COPY ../x", df("FROM hersh", "COPY ../x /app/"), 2, "COPY source \"../x\": '..' is not allowed" },
    { "COPY a/../../x", df("FROM hersh", "COPY a/../../x /app/"), 2, "'..' is not allowed" },
    { "COPY an absolute source", df("FROM hersh", "COPY /etc/passwd /app/"), 2, 'COPY source "/etc/passwd": absolute path' },
    { "COPY a backslash source", df("FROM hersh", "COPY 'a\\b' /app/"), 2, "backslash" },
    { "COPY an empty source", df("FROM hersh", 'COPY "" /app/'), 2, 'COPY source "": empty path' },
    { "COPY --from", df("FROM hersh", "COPY --from=build /out /app/"), 2,
      "COPY --from is not supported: multi-stage builds are not supported" },
    { "COPY --chown", df("FROM hersh", "COPY --chown=1000:1000 app.lua /app/"), 2,
      "COPY --chown is not supported: image files keep one owner" },
    { "COPY --chmod", df("FROM hersh", "COPY --chmod=755 x /app/"), 2, "COPY --chmod is not supported" },
    { "COPY --link", df("FROM hersh", "COPY --link x /app/"), 2, "COPY --link is not supported" },
    { "COPY --from in JSON form", df("FROM hersh", 'COPY ["--from=x", "a", "/b/"]'), 2, "COPY --from is not supported" },
    { "COPY a wildcard *", df("FROM hersh", "COPY *.lua /app/"), 2, 'COPY source "*.lua": wildcards are not supported' },
    { "COPY a wildcard ?", df("FROM hersh", "COPY a?.lua /app/"), 2, "wildcards are not supported" },
    { "COPY a wildcard [", df("FROM hersh", "COPY a[12].lua /app/"), 2, "wildcards are not supported" },
    { "COPY several sources to a file", df("FROM hersh", "COPY a b /app"), 2,
      "COPY with several sources needs a destination folder ending in /" },
    { "COPY to a destination with ..", df("FROM hersh", "COPY a /app/../etc/"), 2,
      "COPY destination \"/app/../etc/\": '..' is not allowed" },
    { "COPY to a relative ..", df("FROM hersh", "WORKDIR /app", "COPY a ../x"), 3, "'..' is not allowed" },
    { "COPY bad JSON", df("FROM hersh", 'COPY ["a", "/b/"'), 2, "COPY: expected , or ]" },

    -- WORKDIR
    { "WORKDIR ..", df("FROM hersh", "WORKDIR /app", "WORKDIR .."), 3, "WORKDIR \"..\": '..' is not allowed" },
    { "WORKDIR /a/../b", df("FROM hersh", "WORKDIR /a/../b"), 2, "'..' is not allowed" },
    { "WORKDIR with a long segment", df("FROM hersh", "WORKDIR /" .. string.rep("x", 256)), 2, "longer than 255 bytes" },

    -- exec form JSON
    { "single quotes", df("FROM hersh", "CMD ['lua', 'app.lua']"), 2,
      "CMD: the exec form must be a JSON array of strings (expected a string)" },
    { "a missing comma", df("FROM hersh", 'CMD ["lua" "app.lua"]'), 2, "(expected , or ])" },
    { "a trailing comma", df("FROM hersh", 'CMD ["lua",]'), 2, "(expected a string)" },
    { "a missing ]", df("FROM hersh", 'CMD ["lua", "app.lua"'), 2, "(expected , or ])" },
    { "bare words", df("FROM hersh", "CMD [lua, app.lua]"), 2, "(expected a string)" },
    { "a number", df("FROM hersh", 'RUN ["sleep", 1]'), 2, "RUN: the exec form must be a JSON array of strings" },
    { "text after ]", df("FROM hersh", 'ENTRYPOINT ["a"] b'), 2, "ENTRYPOINT: the exec form must be a JSON array of strings (unexpected text after ])" },
    { "a bad escape", df("FROM hersh", 'CMD ["\\q"]'), 2, "(bad escape \\q)" },
    { "a bad \\u", df("FROM hersh", 'CMD ["\\u12"]'), 2, "(bad \\u escape)" },
    { "a NUL \\u0000", df("FROM hersh", 'CMD ["a\\u0000"]'), 2, "(NUL in a string)" },
    { "a lone high surrogate", df("FROM hersh", 'CMD ["\\ud800"]'), 2, "(lone surrogate" },
    { "a lone low surrogate", df("FROM hersh", 'CMD ["\\udc00"]'), 2, "(lone surrogate" },
    { "an unterminated string", df("FROM hersh", 'CMD ["abc]'), 2, "(unterminated string)" },
    { "a tab inside a string", df("FROM hersh", 'CMD ["a\tb"]'), 2, "(control character in a string)" },
    { "a JSON-looking shell test", df("FROM hersh", 'RUN [ "$X" = 1 ]'), 2, "RUN: the exec form must be a JSON array" },

    -- RUN
    { "RUN --mount", df("FROM hersh", "RUN --mount=type=cache,target=/c make"), 2, "RUN --mount is not supported" },
    { "RUN --network", df("FROM hersh", "RUN --network=host curl x"), 2, "RUN --network is not supported" },
    { "a heredoc", df("FROM hersh", "RUN <<EOF", "echo hi", "EOF"), 2, "RUN: heredocs (<<WORD) are not supported" },
    { "a quoted heredoc", df("FROM hersh", "RUN cat <<-'EOF' > x"), 2, "heredocs" },
    { "a heredoc into a pipe", df("FROM hersh", "RUN cat <<EOF|sh", "echo", "EOF"), 2, "heredocs" },
    { "a heredoc after a blank", df("FROM hersh", "RUN cat << EOF"), 2, "heredocs" },

    -- continuations and directives
    { "a trailing backslash at the end of the file", "FROM hersh\nRUN a \\", 2,
      "the instruction ends with a line continuation (\\) but the file ends" },
    { "a trailing backslash then a newline", df("FROM hersh", "RUN a \\"), 2, "line continuation" },
    { "a continuation running into comments only", df("FROM hersh", "RUN a \\", "b \\", "# c", ""), 2,
      "line continuation" },
    { "the escape directive", df("# escape=`", "FROM hersh"), 1, "the escape parser directive is not supported" },

    -- the line named is where the instruction starts
    { "an error on a continued line", df("FROM hersh", "RUN echo \\", "  ok", "EXPOSE \\", "  80"), 4, "EXPOSE 80" },
    { "an error after comments", df("# c", "", "FROM hersh", "# d", "", "USER root"), 6, "USER" },
  }

  for _, c in ipairs(cases) do
    it(c[1] .. " (line " .. c[3] .. ")", function()
      local plan, err, code = dockerfile.parse(c[2])
      assert.is_nil(plan)
      assert.equal("EDOCKERFILE", code)
      local prefix = "Dockerfile line " .. c[3] .. ": "
      assert.equal(prefix, err:sub(1, #prefix), err)
      assert.is_truthy(err:find(c[4], 1, true), "want " .. c[4] .. " in: " .. err)
    end)
  end

  it("raises on a non-string (a caller's bug)", function()
    assert.has_error(function() dockerfile.parse(nil) end)
    assert.has_error(function() dockerfile.parse({}) end)
  end)
end)

describe("dockerfile.copy_targets", function()
  local FILES = {
    ["app.lua"] = "", ["lib/a.lua"] = "", ["lib/b.lua"] = "", ["lib/sub/c.lua"] = "", ["conf.json"] = "",
    ["library.lua"] = "",
  }
  local function targets(line, is_dir)
    local step = steps_of(parse("FROM hersh\n" .. line), "copy")[1]
    return dockerfile.copy_targets(step, FILES, is_dir)
  end

  local cases = {
    { "a file into a folder", "COPY app.lua /app/", { { "app.lua", "/app/app.lua" } } },
    { "a file under a new name", "COPY app.lua /app/main.lua", { { "app.lua", "/app/main.lua" } } },
    { "a folder's contents, not the folder", "COPY lib /app/",
      { { "lib/a.lua", "/app/a.lua" }, { "lib/b.lua", "/app/b.lua" }, { "lib/sub/c.lua", "/app/sub/c.lua" } } },
    { "a folder to a destination without a slash", "COPY lib/ /opt/lib",
      { { "lib/a.lua", "/opt/lib/a.lua" }, { "lib/b.lua", "/opt/lib/b.lua" }, { "lib/sub/c.lua", "/opt/lib/sub/c.lua" } } },
    { "a nested folder (not a prefix match on library.lua)", "COPY lib/sub /x/", { { "lib/sub/c.lua", "/x/c.lua" } } },
    { "everything, in byte order", "COPY . /app/", {
      { "app.lua", "/app/app.lua" }, { "conf.json", "/app/conf.json" }, { "lib/a.lua", "/app/lib/a.lua" },
      { "lib/b.lua", "/app/lib/b.lua" }, { "lib/sub/c.lua", "/app/lib/sub/c.lua" },
      { "library.lua", "/app/library.lua" } } },
    { "several sources in order", "COPY conf.json app.lua /etc/x/",
      { { "conf.json", "/etc/x/conf.json" }, { "app.lua", "/etc/x/app.lua" } } },
    { "a file to the root", "COPY app.lua /", { { "app.lua", "/app.lua" } } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local want = {}
      for i, p in ipairs(c[3]) do want[i] = { from = p[1], to = p[2] } end
      assert.same(want, targets(c[2]))
    end)
  end

  it("puts a file inside a destination the image already has as a folder", function()
    local is_dir = function(p) return p == "/app" end
    assert.same({ { from = "app.lua", to = "/app/app.lua" } }, targets("COPY app.lua /app", is_dir))
    assert.same({ { from = "app.lua", to = "/srv" } }, targets("COPY app.lua /srv", is_dir))
  end)

  local missing = {
    { "a file", "COPY nope.lua /app/", '"nope.lua"' },
    { "a folder", "COPY nope/ /app/", '"nope"' },
    { "a prefix that is not a folder", "COPY li /app/", '"li"' },
    { "a file used as a folder", "COPY app.lua/x /app/", '"app.lua/x"' },
  }
  for _, c in ipairs(missing) do
    it("names the line when " .. c[1] .. " is missing", function()
      local out, err, code = targets(c[2])
      assert.is_nil(out)
      assert.equal("ENOTFOUND", code)
      assert.equal("Dockerfile line 2: COPY source " .. c[3] .. " is not among the uploaded files", err)
    end)
  end

  it("finds nothing to copy with . and no files", function()
    local step = steps_of(parse("FROM hersh\nCOPY . /app/"), "copy")[1]
    assert.is_nil(dockerfile.copy_targets(step, {}))
  end)
end)
