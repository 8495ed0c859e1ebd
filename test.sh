#!/usr/bin/env bash
# All of nextword's tests: formatting, lints, Rust tests (host), a short run of every fuzz
# target, Python pipeline tests, and the core's tests on aarch64 under qemu (NEON and dotprod
# kernels). Installs what it needs. NEXTWORD_SKIP_FUZZ=1 / NEXTWORD_SKIP_AARCH64=1 skip the
# two slowest steps for a quick local run (CI runs everything).
set -euo pipefail
cd "$(dirname "$0")"

# Each step prints how long the one before took and the disk space left, so a slow or failed
# CI run says where its time and space went.
start=$(date +%s); last=$start; last_name=""
step() {
  local now; now=$(date +%s)
  [ -z "$last_name" ] || printf '\n---- %s: %d s, %s free on disk\n' "$last_name" $((now - last)) \
    "$(df -h --output=avail . | tail -1 | tr -d ' ')"
  last=$now; last_name=$*
  printf '\n==== %s\n' "$*"
}

step "toolchain"
rustup component add rustfmt clippy >/dev/null
# No pip cache: torch and its CUDA libraries are ~5 GB installed; a cached copy would double that.
python3 -m pip install --quiet --no-cache-dir -r training/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (x86_64)"
cargo test --workspace

step "trust: no networking code in core and bindings (scripts/trust-ci.sh)"
bash scripts/trust-ci.sh

if [ "${NEXTWORD_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz: every cargo-fuzz target for 15 s (scripts/fuzz-ci.sh; nightly, ~11 min build)"
  bash scripts/fuzz-ci.sh
fi

step "pytest (training pipeline)"
(cd training && python3 -m pytest -q tests)

step "benches: criterion benches once (test mode), emulator harness vs fake adb"
bash benches/ci.sh

if [ "${NEXTWORD_SKIP_AARCH64:-0}" != 1 ]; then
  step "aarch64 under qemu: core tests with NEON and dotprod kernels"
  bash scripts/aarch64-test.sh
fi

step "Android on the JVM: bindings drift, JUnit (JNA), sample keyboard compiles, aarch64-linux-android check"
bash scripts/android-test.sh

step "iOS without a Mac: Swift bindings drift, every .swift parses, aarch64-apple-ios check"
bash scripts/ios-check.sh
step "done"
echo "all tests passed in $(( $(date +%s) - start )) s"
