-- Holds 1 MiB strings (each written, so resident) until HOG_MB MiB are held.
local total = tonumber(os.getenv("HOG_MB")) or 512
local held = {}
print("hog-start " .. total)
io.stdout:flush()
for i = 1, total do
  held[i] = string.rep(string.char(65 + i % 26), 1024 * 1024)
  if i % 8 == 0 then
    print("hog-at " .. i)
    io.stdout:flush()
  end
end
print("hog-survived " .. #held)
io.stdout:flush()
