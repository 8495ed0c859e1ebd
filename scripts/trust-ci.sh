#!/usr/bin/env bash
# Trust checks of CI beyond `cargo test` (which runs the signing, encryption, delta and soak
# tests): no networking code in the core and bindings. (The fuzz targets run in their own CI
# step: scripts/fuzz-ci.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/no-network.sh
echo "trust checks: $(( $(date +%s) - t0 )) s"
