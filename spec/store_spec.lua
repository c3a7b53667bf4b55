-- hersh.store.open: SQLite for the Host's registry, as Lua sees it.
local sys = require "hersh.os"
local store = require "hersh.store"
local P = require "scripts.process"

describe("store", function()
  local dir, db

  before_each(function()
    dir = P.tmpdir()
    db = assert(store.open(dir .. "/test.db"))
    assert(db:exec [[
      CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, v);
      CREATE TABLE child (id INTEGER PRIMARY KEY, t_id INTEGER NOT NULL REFERENCES t(id));
    ]])
  end)

  after_each(function()
    db:close()
    sys.fs.remove_tree(dir)
  end)

  describe("db_open", function()
    it("gives a hersh.Database in WAL mode", function()
      assert.equal("hersh.Database (open)", tostring(db))
      assert.equal("wal", db:query("PRAGMA journal_mode")[1].journal_mode)
      assert.equal(2, db:query("PRAGMA synchronous")[1].synchronous)
      assert.equal(1, db:query("PRAGMA foreign_keys")[1].foreign_keys)
    end)

    it("fails with nil, err, code", function()
      local d, err, code = store.open(dir .. "/no/such/dir/x.db")
      assert.is_nil(d)
      assert.matches("unable to open", err)
      assert.equal("EIO", code)
    end)

    it("raises on a path that is not a string", function()
      assert.has_error(function() store.open({}) end)
    end)
  end)

  describe("exec", function()
    it("runs a schema script", function()
      assert.is_true(db:exec("CREATE TABLE IF NOT EXISTS a (x); CREATE INDEX IF NOT EXISTS a_x ON a (x);"))
      assert.is_true(db:exec("CREATE TABLE IF NOT EXISTS a (x);"))
    end)

    it("returns nil, err, ESQL for bad SQL", function()
      local ok, err, code = db:exec("CREATE TABLEE oops (x);")
      assert.is_nil(ok)
      assert.matches("syntax error", err)
      assert.equal("ESQL", code)
    end)
  end)

  describe("run and query", function()
    it("returns changes and the last rowid", function()
      assert.same({ 1, 1 }, { db:run("INSERT INTO t (name) VALUES (?)", "a") })
      assert.same({ 1, 2 }, { db:run("INSERT INTO t (name) VALUES (?)", "b") })
      local changes = db:run("UPDATE t SET v = ?", 7)
      assert.equal(2, changes)
      assert.equal(2, (db:run("DELETE FROM t WHERE v = ?", 7)))
    end)

    it("returns rows as tables keyed by column name", function()
      db:run("INSERT INTO t (name, v) VALUES (?, ?)", "a", 1)
      db:run("INSERT INTO t (name, v) VALUES (?, ?)", "b", 2)
      local rows = db:query("SELECT id, name, v AS value FROM t ORDER BY id")
      assert.same({ { id = 1, name = "a", value = 1 }, { id = 2, name = "b", value = 2 } }, rows)
      assert.same({}, db:query("SELECT * FROM t WHERE id = ?", 99))
    end)

    it("binds and reads back every Lua type", function()
      local bin = "h\195\169llo\0world\255"
      local cases = {
        { true, 1 }, { false, 0 },
        { 42, 42 }, { -7, -7 }, { math.maxinteger, math.maxinteger }, { math.mininteger, math.mininteger },
        { 3.25, 3.25 }, { 2.0, 2.0 }, { -0.5, -0.5 },
        { "text", "text" }, { "", "" }, { bin, bin },
      }
      for i, c in ipairs(cases) do
        db:run("INSERT INTO t (id, v) VALUES (?, ?)", i, c[1])
        local got = db:query("SELECT v, typeof(v) AS type FROM t WHERE id = ?", i)[1]
        assert.equal(c[2], got.v)
        assert.equal(math.type(c[2]), math.type(got.v))
      end
      db:run("INSERT INTO t (id, v) VALUES (?, ?)", 100, nil)
      local row = db:query("SELECT id, v FROM t WHERE id = ?", 100)[1]
      assert.same({ id = 100 }, row) -- NULL is a missing key
      assert.equal(1, #db:query("SELECT id FROM t WHERE v IS ?", nil))
      assert.equal("text", db:query("SELECT typeof(v) AS type FROM t WHERE id = 10")[1].type)
      assert.equal("integer", db:query("SELECT typeof(v) AS type FROM t WHERE id = 1")[1].type)
      assert.equal("real", db:query("SELECT typeof(v) AS type FROM t WHERE id = 8")[1].type)
    end)

    it("binds many parameters", function()
      local marks, args, sum = {}, {}, 0
      for i = 1, 40 do
        marks[i], args[i], sum = "?", i, sum + i
      end
      local rows = db:query("SELECT " .. table.concat(marks, " + ") .. " AS sum", table.unpack(args))
      assert.equal(sum, rows[1].sum)
    end)

    it("refuses tables, functions and other values as parameters", function()
      for _, bad in ipairs { {}, print, coroutine.create(print), db } do
        assert.has_error(function() db:run("INSERT INTO t (v) VALUES (?)", bad) end)
      end
      assert.same({}, db:query("SELECT * FROM t"))
    end)

    it("raises on the wrong number of parameters", function()
      assert.has_error(function() db:run("INSERT INTO t (name, v) VALUES (?, ?)", "a") end,
        "the statement takes 2 parameters, 1 given")
      assert.has_error(function() db:query("SELECT 1", 1) end)
    end)

    it("keeps an injection attempt in a parameter as data", function()
      local evil = "x'); DROP TABLE t; --"
      assert.same({ 1, 1 }, { db:run("INSERT INTO t (name) VALUES (?)", evil) })
      assert.equal(evil, db:query("SELECT name FROM t")[1].name)
      assert.same({}, db:query("SELECT * FROM t WHERE name = ?", "' OR '1'='1"))
      assert.same({}, db:query("SELECT * FROM t WHERE id = ?", "1 OR 1=1"))
      assert.equal(1, #db:query("SELECT * FROM t"))
    end)

    it("refuses a second statement in the text", function()
      local ok, err, code = db:run("INSERT INTO t (name) VALUES ('a'); DROP TABLE t")
      assert.is_nil(ok)
      assert.matches("one statement at a time", err)
      assert.equal("ESQL", code)
      assert.same({}, db:query("SELECT * FROM t"))
    end)

    it("returns nil, err, code on failures", function()
      db:run("INSERT INTO t (name) VALUES (?)", "a")
      local ok, err, code = db:run("INSERT INTO t (name) VALUES (?)", "a")
      assert.is_nil(ok)
      assert.equal("UNIQUE constraint failed: t.name", err)
      assert.equal("ECONSTRAINT", code)
      ok, err, code = db:run("INSERT INTO child (t_id) VALUES (?)", 999)
      assert.is_nil(ok)
      assert.matches("FOREIGN KEY", err)
      assert.equal("ECONSTRAINT", code)
      local rows
      rows, err, code = db:query("SELECT * FROM nowhere")
      assert.is_nil(rows)
      assert.equal("no such table: nowhere", err)
      assert.equal("ESQL", code)
      rows, err, code = db:query("SELEC 1")
      assert.is_nil(rows)
      assert.equal("ESQL", code)
    end)

    it("reports EBUSY when another connection holds the write lock", function()
      local other = assert(store.open(dir .. "/test.db"))
      assert(other:exec("PRAGMA busy_timeout = 50;"))
      local ok, err, code = db:transaction(function()
        db:run("INSERT INTO t (name) VALUES (?)", "mine")
        local r, e, c = other:run("INSERT INTO t (name) VALUES (?)", "theirs")
        assert.is_nil(r)
        assert.equal("EBUSY", c)
        assert.equal(0, #other:query("SELECT * FROM t")) -- readers see the last commit
        return nil, e, c
      end)
      assert.is_nil(ok)
      assert.matches("locked", err)
      assert.equal("EBUSY", code)
      assert.same({ 1, 1 }, { other:run("INSERT INTO t (name) VALUES (?)", "theirs") })
      other:close()
    end)
  end)

  describe("transaction", function()
    local function count() return db:query("SELECT count(*) AS n FROM t")[1].n end

    it("commits and returns fn's results", function()
      local a, b = db:transaction(function()
        db:run("INSERT INTO t (name) VALUES (?)", "a")
        db:run("INSERT INTO t (name) VALUES (?)", "b")
        return "done", 2
      end)
      assert.equal("done", a)
      assert.equal(2, b)
      assert.equal(2, count())
      assert.is_true(db:transaction(function() end))
    end)

    it("rolls back and re-raises when fn raises", function()
      local ok, err = pcall(db.transaction, db, function()
        db:run("INSERT INTO t (name) VALUES (?)", "a")
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.equal(0, count())
    end)

    it("rolls back when fn returns nil, err", function()
      local ok, err, code = db:transaction(function()
        db:run("INSERT INTO t (name) VALUES (?)", "a")
        return db:run("INSERT INTO t (name) VALUES (?)", "a")
      end)
      assert.is_nil(ok)
      assert.matches("UNIQUE", err)
      assert.equal("ECONSTRAINT", code)
      assert.equal(0, count())
      -- the database is usable again
      assert.is_true(db:transaction(function() db:run("INSERT INTO t (name) VALUES (?)", "b") end))
      assert.equal(1, count())
    end)

    it("does not nest", function()
      local inner = { db:transaction(function()
        return db:transaction(function() end)
      end) }
      assert.is_nil(inner[1])
      assert.equal("ESQL", inner[3])
    end)

    it("raises on a missing function", function()
      assert.has_error(function() db:transaction() end)
    end)
  end)

  describe("close", function()
    it("keeps what was committed for the next open", function()
      db:run("INSERT INTO t (name) VALUES (?)", "kept")
      assert.is_true(db:close())
      assert.is_true(db:close())
      assert.equal("hersh.Database (closed)", tostring(db))
      assert.has_error(function() db:query("SELECT 1") end, "the database is closed")
      db = assert(store.open(dir .. "/test.db"))
      assert.equal("kept", db:query("SELECT name FROM t")[1].name)
    end)

    it("rolls back an open transaction when closed inside it", function()
      assert.has_error(function()
        db:transaction(function()
          db:run("INSERT INTO t (name) VALUES (?)", "lost")
          db:close()
        end)
      end, "the database was closed inside its transaction")
      db = assert(store.open(dir .. "/test.db"))
      assert.same({}, db:query("SELECT * FROM t"))
    end)

    it("closes on garbage collection and at the end of a <close> scope", function()
      do
        local d <close> = assert(store.open(dir .. "/scoped.db"))
        d:exec("CREATE TABLE x (a);")
      end
      store.open(dir .. "/dropped.db")
      collectgarbage()
      collectgarbage()
      local d = assert(store.open(dir .. "/scoped.db"))
      assert.same({ 1, 1 }, { d:run("INSERT INTO x (a) VALUES (?)", 1) })
      d:close()
    end)
  end)
end)
