#!/usr/bin/env bash
# Trust checks of CI beyond `cargo test` (which runs the signing, encryption, delta and soak
# tests): no networking code in the core and bindings, then, with NEXTWORD_FUZZ=1, a short
# fuzz run of every fuzz target (scripts/fuzz-ci.sh; installs nightly and cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/no-network.sh
if [ "${NEXTWORD_FUZZ:-0}" = 1 ]; then
  bash scripts/fuzz-ci.sh
fi
echo "trust checks: $(( $(date +%s) - t0 )) s"
