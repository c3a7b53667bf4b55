-- SHA-256, from the C core (src/lua/lsha256.c): hex(s), digest(s), and a streaming
-- new():update(s):hex(). Build ids hash whole uploads on the loop thread.
return require("hersh.os").sha256
