-- The dashboard's static files, under /ui: those of the repository's ui/ in a build
-- tree, of share/hersh/ui once installed (HERSH_UI_DIR overrides both). They are served
-- without the token (the page must load before it can ask for one); every API call the
-- page makes needs it. The deep links /ui/, /ui/programs, /ui/programs/{id} and
-- /ui/programs/{id}/watcher answer index.html (the page routes on its own path).
--
-- A file is served only when its path is a clean relative one (paths.check_relative:
-- no "..", NUL, control byte or backslash), no segment is hidden (".git"), the real
-- path of the file is exactly the folder's plus that path (no symlink on the way, so
-- nothing outside ui/ is reachable), it is a regular file, and its extension is a
-- known static type (so ui/CONTRACT.md and stray files are not served).
local sys = require "hersh.os"
local paths = require "host.paths"
local sha256 = require "host.sha256"

local ui = {}

ui.PREFIX = "/ui"

local TYPES = {
  html = "text/html; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", css = "text/css; charset=utf-8",
  json = "application/json", svg = "image/svg+xml", png = "image/png",
  ico = "image/x-icon", woff2 = "font/woff2", txt = "text/plain; charset=utf-8",
}

-- For a static app that loads nothing from elsewhere: its own scripts, styles and
-- calls only, never framed (clickjacking), no type sniffing.
local SECURITY = {
  ["Content-Security-Policy"] = "default-src 'self'; object-src 'none'; base-uri 'none'; "
    .. "form-action 'self'; frame-ancestors 'none'",
  ["X-Content-Type-Options"] = "nosniff",
  ["X-Frame-Options"] = "DENY",
  ["Referrer-Policy"] = "no-referrer",
  -- Revalidated on every load (ETag): a Host updated in place never serves a stale page.
  ["Cache-Control"] = "no-cache",
}

-- Whether the Host's router sends the path here: the very paths httpd.serve lets
-- through without the token (public_prefix), so no API route is ever public.
function ui.owns(path)
  return path == ui.PREFIX or path:sub(1, #ui.PREFIX + 1) == ui.PREFIX .. "/"
end

local function dirname(p)
  return p:match("^(.*)/[^/]+$")
end

-- The folder of the files: HERSH_UI_DIR, share/hersh/ui under the prefix the Lua
-- modules are installed in, or ui/ beside a source tree's lua/. nil when none holds
-- an index.html.
local function find_root()
  local init = package.searchpath("hersh", package.path)
  local lua = init and init:match("^(.*)/hersh/init%.lua$")
  local prefix = lua and lua:match("^(.*)/share/lua/5%.4$")
  local env = os.getenv("HERSH_UI_DIR")
  local candidates = { env ~= "" and env or nil, prefix and prefix .. "/share/hersh/ui", lua and dirname(lua) .. "/ui" }
  for i = 1, 3 do
    local dir = candidates[i] and sys.fs.realpath(candidates[i])
    local st = dir and sys.fs.stat(dir .. "/index.html")
    if st and st.type == "file" then return dir end
  end
  return nil
end

local root -- found at the first request that needs it

-- The file the path after /ui/ names: "index.html" for the page's own routes.
local function file_of(rel)
  if rel == "" or rel == "programs" or rel:match("^programs/[^/]+$") or rel:match("^programs/[^/]+/watcher$") then
    return "index.html"
  end
  return rel
end

-- The answer to a request under /ui: status, body, headers; or nil, status, message
-- for an error (the API sends it as its JSON errors).
function ui.answer(method, path, if_none_match)
  if method ~= "GET" and method ~= "HEAD" then return nil, 405, "the dashboard's files answer GET and HEAD only" end
  local rel = path:sub(#ui.PREFIX + 2)
  local clean, err = ".", nil
  if rel ~= "" then clean, err = paths.check_relative(rel, { dir = true }) end
  if not clean then return nil, 400, "bad dashboard path " .. paths.quote(rel) .. ": " .. err end
  local file = file_of(clean == "." and "" or clean)
  local ext = file:match("%.(%w+)$")
  if ("/" .. file):find("/%.") or not TYPES[ext] then
    return nil, 404, "no dashboard file " .. paths.quote(rel)
  end
  root = root or find_root()
  if not root then
    return nil, 404, "the dashboard's files are not installed (no ui/index.html found; see docs/ui.md)"
  end
  local full = root .. "/" .. file
  local st = sys.fs.stat(full)
  if sys.fs.realpath(full) ~= full or not st or st.type ~= "file" then
    return nil, 404, "no dashboard file " .. paths.quote(rel)
  end
  local body
  body, err = sys.fs.read_file(full)
  if not body then return nil, 404, "cannot read dashboard file " .. paths.quote(rel) .. ": " .. tostring(err) end
  local headers = { ["Content-Type"] = TYPES[ext], ETag = '"' .. sha256.hex(body) .. '"' }
  for k, v in pairs(SECURITY) do headers[k] = v end
  if if_none_match then
    for tag in if_none_match:gmatch("[^,%s]+") do
      if tag == "*" or tag:gsub("^W/", "") == headers.ETag then return 304, "", headers end
    end
  end
  return 200, body, headers
end

return ui
