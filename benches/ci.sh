#!/usr/bin/env bash
# CI step of benches/: every criterion bench runs once in criterion's test mode (correctness
# of the harness, no timing), and the emulator harness is tested against fake-adb.
# No speed is asserted here: the figures come from the bench commands in benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p nextword-benches --benches
cargo build -p nextword
bash benches/emulator/test.sh
