#!/usr/bin/env bash
# CI step of benches/: every criterion bench runs once in criterion's test mode (correctness
# of the harness, no timing), the emulator harness is tested against fake-adb, and peers.py's
# model rewrites on the fixture bundle.
# No speed is asserted here: the figures come from the bench commands in benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# `--workspace`: the same package selection as test.sh's `cargo test --workspace`, so Cargo
# unifies the same dependency features and reuses its build (`-p nextword-benches` alone
# resolves other features and rebuilds tract). The emulator test uses that build's
# target/debug/nextword.
cargo test --workspace --benches
bash benches/emulator/test.sh
python3 -m pytest -q benches/test_peers.py
