#!/usr/bin/env bash
# Regenerates the committed Swift bindings, C header and module map (ios/Sources/NextWordFFI/)
# with the uniffi version locked in Cargo.lock. Run after changing bindings/src; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
# The workspace with its tests, as test.sh builds it: the same features, so that build is reused.
cargo build --workspace --lib --bins --tests
cargo run -q -p uniffi-bindgen -- generate --no-format --library target/debug/libnextword_ffi.so \
  --language swift --out-dir ios/Sources/NextWordFFI
