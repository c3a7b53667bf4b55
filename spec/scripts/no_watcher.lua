-- A script that makes no watcher: `hersh run` has nothing to drive and exits 0.
-- It prints its arguments, arg[0] first, one a line.
print("no watcher here")
for i = 0, #arg do print(i .. "=" .. arg[i]) end
