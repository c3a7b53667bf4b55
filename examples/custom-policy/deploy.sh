#!/usr/bin/env bash
# Deploys the flaky worker to the Host at $HOST (default http://127.0.0.1:9000),
# which should run with --policy examples/custom-policy/policy.lua. Waits until it
# is Ready; prints program_id=... and proxy_url=...
# Broken from the start, so the Host's policy shows (it never stays Ready: no wait):
#   WAIT_SECONDS=0 ./deploy.sh --env BROKEN=1
source "$(dirname "$0")/../deploy-lib.sh"
deploy custom-policy main.lua "$@"
