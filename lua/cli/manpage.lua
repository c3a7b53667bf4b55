-- hersh(1) in roff, made from cli.args's table (the same text --help prints), at build.
local args = require "cli.args"

local manpage = {}

-- Text safe in roff: backslashes doubled, a leading dot or quote escaped.
local function roff(text)
  return (text:gsub("\\", "\\e"):gsub("^([.'])", "\\&%1"):gsub("\n([.'])", "\n\\&%1"):gsub("%-", "\\-"))
end

local function usage_of(c)
  local parts = { "\\fBhersh " .. c.name .. "\\fR" }
  for _, o in ipairs(args.options(c)) do
    parts[#parts + 1] = "[\\fB" .. roff(o[1]) .. "\\fR" .. (o[2] and " \\fI" .. roff(o[2]) .. "\\fR" or "") .. "]"
  end
  for _, a in ipairs(c.arguments or {}) do
    parts[#parts + 1] = (a.optional or a.many) and "[\\fI" .. a[1] .. "\\fR" .. (a.many and "...]" or "]")
      or "\\fI" .. a[1] .. "\\fR"
  end
  return table.concat(parts, " ")
end

function manpage.render()
  local out = {
    '.TH HERSH 1 "" "hersh" "User Commands"',
    ".SH NAME", "hersh \\- " .. roff(args.SUMMARY),
    ".SH SYNOPSIS", "\\fBhersh\\fR \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]",
    ".SH DESCRIPTION",
    roff("One executable: `hersh run` runs a Lua script's watchers, `hersh host` serves the Host's REST API, "
      .. "and the other commands are a client of that API. Every command takes -h, --help."),
    ".SH COMMANDS",
  }
  for _, c in ipairs(args.COMMANDS) do
    out[#out + 1] = ".SS " .. c.name
    out[#out + 1] = usage_of(c)
    out[#out + 1] = ".PP"
    out[#out + 1] = roff(c.summary) .. "."
    for _, a in ipairs(c.arguments or {}) do
      out[#out + 1] = ".TP"
      out[#out + 1] = "\\fI" .. a[1] .. "\\fR"
      out[#out + 1] = roff(a[2])
    end
    for _, o in ipairs(args.options(c)) do
      out[#out + 1] = ".TP"
      out[#out + 1] = (o.short and "\\fB" .. roff(o.short) .. "\\fR, " or "") .. "\\fB" .. roff(o[1]) .. "\\fR"
        .. (o[2] and " \\fI" .. roff(o[2]) .. "\\fR" or "")
      out[#out + 1] = roff(o[3])
    end
  end
  out[#out + 1] = ".SH ENVIRONMENT"
  out[#out + 1] = ".TP\n\\fBHERSH_HOST\\fR\nthe Host's URL when \\fB\\-\\-host\\fR is not given."
  out[#out + 1] = ".TP\n\\fBHERSH_TOKEN_FILE\\fR\nthe token file when \\fB\\-\\-token\\-file\\fR is not given."
  out[#out + 1] = ".TP\n\\fBNO_COLOR\\fR\nno colour even on a terminal."
  out[#out + 1] = ".SH EXIT STATUS"
  for _, e in ipairs(args.EXIT_TEXT) do
    out[#out + 1] = ".TP\n\\fB" .. e[1] .. "\\fR\n" .. roff(e[2])
  end
  out[#out + 1] = ".SH SEE ALSO"
  out[#out + 1] = "docs/cli.md, docs/host-api.md"
  return table.concat(out, "\n") .. "\n"
end

return manpage
