# STOPPER_MAIN=stubborn: the main process ignores SIGTERM too.
# Waiting on a background sleep lets a trap run at once.
nap() { sleep 0.2 & wait $!; }
export -f nap

# A child in the program's process group.
( trap 'echo > /state/child-term; exit 0' TERM; while :; do nap; done ) &
# A daemon: a session of its own, its parent gone.
setsid bash -c '( trap "echo > /state/daemon-term; exit 0" TERM; while :; do nap; done ) & exit 0'
# A daemon that ignores SIGTERM (sleep inherits the ignored signal).
setsid bash -c '( trap "" TERM; exec sleep 600 ) & exit 0'

if [ "$STOPPER_MAIN" = stubborn ]; then
  trap '' TERM
else
  # Polite: leaves once the others have had their SIGTERM (or after 5 s).
  trap 'echo > /state/main-term; for i in $(seq 50); do [ -e /state/daemon-term ] && [ -e /state/child-term ] && exit 0; sleep 0.1; done; exit 0' TERM
fi
echo > /state/started
echo "stopper: started"
while :; do nap; done
