#!/usr/bin/env bash
# Cross-compiles nextword-core for aarch64-unknown-linux-gnu and runs its tests under
# qemu-aarch64 (-cpu max: NEON + dotprod), once per kernel: the unit tests (kernels against the
# scalar reference), the predictor and MatMulNBits tests; the platform-independent soak, trust
# and personal integration tests run on the host only. Emulated time is not phone time:
# this checks correctness, not speed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu >/dev/null
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null
for kernel in neon dotprod; do
  echo "-- NEXTWORD_KERNEL=$kernel"
  NEXTWORD_KERNEL=$kernel cargo test -p nextword-core --target aarch64-unknown-linux-gnu \
    --lib --test predictor --test matmul_nbits
done
