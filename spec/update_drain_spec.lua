-- An update in place while the old process drains, end to end: a real `hersh host`, a
-- hersh counter in the bubblewrap sandbox whose cleanup takes two seconds, real HTTP
-- over loopback (scripts.host_harness). Every wait is bounded; nothing asserts how
-- long anything took.
--
-- Both processes serve the program's listening socket during the swap. Once the old
-- one is told to stop, its watcher refuses messages (409 "watcher stopped") while its
-- cleanup runs: a connection it still accepted then, or a connection the proxy had
-- pooled to it, would get that 409. Fresh connections keep coming, straight to the
-- port and through the Host's proxy (its C fast path and its Lua route), each sending
-- a message: not one may fail.
local H = require "scripts.host_harness"
local P = H.P
local cjson = require "cjson"

-- The counter of host_spec, its cleanup waiting two seconds, `hersh run` driving the
-- loop (the script does not call hersh.run() itself).
local function slow_cleanup_v(n)
  local main = H.MAIN_LUA:gsub('print%("Boot: " %.%. boots%)', 'print("Boot: " .. boots .. " of version ' .. n .. '")', 1)
  main = main:gsub("\nassert%(w:start%(%)%)\nhersh%.run%(%)\n?$",
    '\nw:cleanup(function() hersh.sleep(2) print("cleaned up version ' .. n .. '") end)\nassert(w:start())\n')
  assert(main:find("w:cleanup", 1, true), "the fixture's main.lua changed: adapt slow_cleanup_v")
  return main
end

local function body(n, extra)
  local b = { dockerfile = H.DOCKERFILE, src_files = { ["main.lua"] = slow_cleanup_v(n) } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- The load: one thread per way in, each POSTing a message on a fresh connection, one
-- after the other, until STOPFILE exists (at most 600 s). The Lua route is reached with
-- more query parameters than the fast path takes (src/http/proxy_route.c: it falls back
-- to Lua for what it is not sure of). Prints {"ok": {way: n}, "errors": n, "first_errors": [...]}:
-- an error is any status but 200, a refused or reset connection, a timeout.
local CLIENT = [==[
import http.client, json, os, sys, threading, time
port, host_port, name, stopfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
many = "&".join("a%d=%d" % (i, i) for i in range(70))
ways = {
    "direct": (port, "/watcher/message"),
    "proxy": (host_port, "/programs/%s/proxy/watcher/message" % name),
    "proxy-lua": (host_port, "/programs/%s/proxy/watcher/message?%s" % (name, many)),
}
counts = {"ok": {w: 0 for w in ways}, "errors": 0, "first_errors": []}
lock = threading.Lock()
end = time.monotonic() + 600

def client(way):
    p, path = ways[way]
    while not os.path.exists(stopfile) and time.monotonic() < end:
        err = None
        try:
            conn = http.client.HTTPConnection("127.0.0.1", p, timeout=30)
            conn.request("POST", path, body=json.dumps({"content": way}),
                         headers={"Content-Type": "application/json", "Connection": "close"})
            res = conn.getresponse()
            text = res.read()
            conn.close()
            if res.status != 200:
                err = "status %d %s" % (res.status, text[:200].decode(errors="replace"))
        except (OSError, http.client.HTTPException) as e:
            err = "%s: %s" % (type(e).__name__, e)
        with lock:
            if err is None:
                counts["ok"][way] += 1
            else:
                counts["errors"] += 1
                if len(counts["first_errors"]) < 10:
                    counts["first_errors"].append("%.3f %s: %s" % (time.time(), way, err))

threads = [threading.Thread(target=client, args=(w,)) for w in ways]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
]==]

describe("update in place while the old process drains", function()
  it("answers no fresh connection 409 from the old process, straight or through the proxy", function()
    local h = H.test_host()
    local id = H.create(h, H.counter_body("alice", { name = "drainer", src_files = body(1).src_files })).program_id
    local rec = H.start_ready(h, id)
    local dir = P.tmpdir()
    P.defer(function() H.sh("rm -rf " .. P.quote(dir)) end)
    P.write(dir .. "/client.py", CLIENT)
    local stopfile = dir .. "/stop"
    local load = P.start{ "python3", dir .. "/client.py", tostring(rec.publish_port), tostring(h.port), "drainer",
      stopfile }
    P.defer(function() P.stop(load) end)
    for v = 2, 4 do
      local old_pid = H.view(h, id).pid
      H.ok_json(H.call(h, "PUT", "/programs/drainer", body(v)), 202, "PUT " .. v)
      H.wait_record(h, id, function(r) return r.revision == v and r.state == "Ready" end,
        "Ready at revision " .. v, H.WAIT * 2)
      -- the load goes on through the old process's whole drain (its cleanup's 2 s)
      assert.is_true(H.gone(old_pid), "the old process " .. tostring(old_pid) .. " never exited")
      assert.is_true(H.wait_log(h, id, "cleaned up version " .. (v - 1)), "version " .. (v - 1) .. " never drained")
    end
    P.write(stopfile, "")
    assert.is_true(P.wait_exit(load, 60) ~= nil, "the load client did not stop")
    local result = cjson.decode(P.stdout(load))
    assert.equal(0, result.errors, P.stdout(load))
    for way, n in pairs(result.ok) do assert.is_true(n > 0, way .. " sent nothing: " .. P.stdout(load)) end
    assert.equal(4, H.view(h, id).revision)
  end)
end)
