-- The default recovery policy: data plus one function. A watcher's policy is a copy
-- of these fields with its own overrides, and may bring its own `decide`.
local recovery = {
  min_failures = 3,        -- from this many consecutive failures on: WaitRecover
  max_failures = 6,        -- at this many: Crashed
  base_delay = 5,          -- seconds, doubled for each failure past min_failures
  max_delay = 300,         -- cap of that doubling
  light_delays = { 15, 30, 60 }, -- retry delays below min_failures; the last repeats
}

-- After the n-th consecutive failure (err is its text): what to do, and after how
-- long. Without a policy table, this module's own data applies.
function recovery.decide(n, err, policy)
  local _ = err
  policy = policy or recovery
  if n >= policy.max_failures then
    return { action = "crash", delay = 0 }
  end
  if n >= policy.min_failures then
    local delay = policy.base_delay * 2 ^ (n - policy.min_failures)
    return { action = "recover", delay = math.min(delay, policy.max_delay) }
  end
  local delays = policy.light_delays
  local delay = #delays > 0 and delays[math.min(n, #delays)] or 0
  return { action = "retry", delay = delay }
end

return recovery
