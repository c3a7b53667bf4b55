-- A script that makes no watcher: `hersh run` has nothing to drive and exits 0.
print("no watcher here")
