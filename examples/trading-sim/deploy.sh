#!/usr/bin/env bash
# Deploys trading-sim to the Host at $HOST (default http://127.0.0.1:9000) and waits
# until it is Ready; prints program_id=... and proxy_url=...
# Another price path: ./deploy.sh --env SEED=7
source "$(dirname "$0")/../deploy-lib.sh"
deploy trading-sim main.lua market.lua trader.lua commands.lua "$@"
