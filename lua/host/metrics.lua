-- A small registry of counters, gauges and histograms with labels, written out in the
-- Prometheus text exposition format (version 0.0.4): HELP and TYPE lines, label values
-- escaped, histograms as cumulative _bucket series ending in le="+Inf", _sum, _count.
local metrics = {}

metrics.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

local Registry = {}
Registry.__index = Registry

local Family = {}
Family.__index = Family

function metrics.registry()
  return setmetatable({ families = {} }, Registry)
end

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"

-- A family: name, help, type and the names of its labels; a caller's bad name raises.
function Registry:add(kind, name, help, label_names, buckets)
  assert(name:match(NAME), "bad metric name " .. name)
  for _, l in ipairs(label_names or {}) do assert(l:match(LABEL) and l ~= "le", "bad label name " .. l) end
  local f = setmetatable({ kind = kind, name = name, help = help, labels = label_names or {},
    buckets = buckets, series = {}, keys = {} }, Family)
  self.families[#self.families + 1] = f
  if #f.labels == 0 then f:get() end -- one series, there from the start at 0
  return f
end

function Registry:counter(name, help, label_names) return self:add("counter", name, help, label_names) end
function Registry:gauge(name, help, label_names) return self:add("gauge", name, help, label_names) end

-- Buckets: increasing upper bounds in seconds (or any unit); +Inf is added.
function Registry:histogram(name, help, label_names, buckets)
  for i = 2, #buckets do assert(buckets[i] > buckets[i - 1], "histogram buckets must increase") end
  return self:add("histogram", name, help, label_names, buckets)
end

local function escape(value)
  return (tostring(value):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if math.type(v) == "integer" or (v == math.floor(v) and math.abs(v) < 2 ^ 53) then
    return string.format("%d", v)
  end
  local short = string.format("%.15g", v)
  return tonumber(short) == v and short or string.format("%.17g", v)
end

-- The series of these label values (a table by label name), made at first use.
function Family:get(values)
  local parts = {}
  for i, l in ipairs(self.labels) do
    local v = values and values[l]
    assert(v ~= nil, "metric " .. self.name .. " needs label " .. l)
    parts[i] = l .. '="' .. escape(v) .. '"'
  end
  local key = table.concat(parts, ",")
  local s = self.series[key]
  if not s then
    s = { value = 0, sum = 0, count = 0 }
    if self.buckets then
      s.counts = {}
      for i = 1, #self.buckets do s.counts[i] = 0 end
    end
    self.series[key] = s
    self.keys[#self.keys + 1] = key
  end
  return s
end

function Family:inc(values, n)
  local s = self:get(values)
  s.value = s.value + (n or 1)
end

function Family:set(values, v)
  self:get(values).value = v
end

function Family:observe(values, v)
  local s = self:get(values)
  s.sum, s.count = s.sum + v, s.count + 1
  for i, bound in ipairs(self.buckets) do
    if v <= bound then s.counts[i] = s.counts[i] + 1 end
  end
end

-- Forgets every series (gauges filled anew at each scrape).
function Family:clear()
  self.series, self.keys = {}, {}
end

local function labels(key, extra)
  if extra then key = key == "" and extra or key .. "," .. extra end
  return key == "" and "" or "{" .. key .. "}"
end

function Family:write(out)
  local help = self.help:gsub("\\", "\\\\"):gsub("\n", "\\n")
  out[#out + 1] = "# HELP " .. self.name .. " " .. help .. "\n# TYPE " .. self.name .. " " .. self.kind .. "\n"
  for _, key in ipairs(self.keys) do
    local s = self.series[key]
    if self.kind == "histogram" then
      for i, bound in ipairs(self.buckets) do
        out[#out + 1] = self.name .. "_bucket" .. labels(key, 'le="' .. number(bound) .. '"') .. " "
          .. s.counts[i] .. "\n"
      end
      out[#out + 1] = self.name .. "_bucket" .. labels(key, 'le="+Inf"') .. " " .. s.count .. "\n"
      out[#out + 1] = self.name .. "_sum" .. labels(key) .. " " .. number(s.sum) .. "\n"
      out[#out + 1] = self.name .. "_count" .. labels(key) .. " " .. s.count .. "\n"
    else
      out[#out + 1] = self.name .. labels(key) .. " " .. number(s.value) .. "\n"
    end
  end
end

-- The exposition text of every family, in the order they were added.
function Registry:render()
  local out = {}
  for _, f in ipairs(self.families) do f:write(out) end
  return table.concat(out)
end

return metrics
