#!/usr/bin/env bash
# Regenerates the committed Kotlin bindings (android/src/main/kotlin/io/nextword/ffi/) with the
# uniffi version locked in Cargo.lock. Run after changing bindings/src; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
# The workspace with its tests, as test.sh builds it: the same features, so that build is reused.
cargo build --workspace --lib --bins --tests
cargo run -q -p uniffi-bindgen -- generate --no-format --library target/debug/libnextword_ffi.so \
  --language kotlin --out-dir android/src/main/kotlin
