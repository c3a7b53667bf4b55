#!/usr/bin/env bash
# Deploys watcher-server to the Host at $HOST (default http://127.0.0.1:9000) and
# waits until it is Ready; prints program_id=... and proxy_url=...
source "$(dirname "$0")/../deploy-lib.sh"
deploy watcher-server main.lua "$@"
