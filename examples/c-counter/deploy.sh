#!/usr/bin/env bash
# Deploys c-counter to the Host at $HOST (default http://127.0.0.1:9000): the Host
# compiles counter.c (the RUN step of the Dockerfile) and starts it. Waits until it
# is Ready; prints program_id=... and proxy_url=...
source "$(dirname "$0")/../deploy-lib.sh"
deploy c-counter counter.c "$@"
