#!/usr/bin/env bash
# Android side of nextword, on the JVM: builds the host libnextword_ffi.so, checks that the
# committed Kotlin bindings are what this uniffi generates, runs the JUnit tests of the
# library (android/) and compiles the sample keyboard (sample-keyboard/android/) with its
# Robolectric tests with Maven, and checks that nextword-ffi compiles for aarch64-linux-android.
# Installs what it needs: the Rust target, and Maven's artifacts from Maven Central.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n---- %s\n' "$*"; }
MVN=(mvn -B --no-transfer-progress)

step "host build of nextword-ffi and uniffi-bindgen"
# The whole workspace with its tests, as test.sh's `cargo test --workspace` selects it: the
# same features, so its build is reused (`-p nextword-ffi` alone would rebuild tract).
cargo build --workspace --lib --bins --tests

step "generated Kotlin bindings match the committed ones"
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
cargo run -q -p uniffi-bindgen -- generate --no-format --library target/debug/libnextword_ffi.so \
  --language kotlin --out-dir "$generated"
committed=android/src/main/kotlin/io/nextword/ffi/nextword.kt
if ! diff -u "$committed" "$generated/io/nextword/ffi/nextword.kt" > "$generated/drift.diff"; then
  head -40 "$generated/drift.diff"
  echo "Kotlin bindings are stale: run scripts/android-generate.sh and commit $committed" >&2
  exit 1
fi

step "android/: JUnit tests of the bindings and the Kotlin layer (JNA, host library)"
"${MVN[@]}" -f android/pom.xml install

# Compiled (main and tests) against the Android framework classes; the Robolectric tests are not
# run here: Robolectric needs androidx.test:monitor at run time, which only Google's Maven serves.
step "sample-keyboard/android/: the keyboard and its Robolectric tests compile"
"${MVN[@]}" -f sample-keyboard/android/pom.xml test-compile

step "cross-compile check: nextword-ffi for aarch64-linux-android"
# No NDK here: tract-linalg's build script assembles its aarch64 kernels with Debian's aarch64
# gcc instead of the NDK's clang (nothing is linked by `cargo check`).
if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu >/dev/null
fi
rustup target add aarch64-linux-android >/dev/null
CC_aarch64_linux_android=aarch64-linux-gnu-gcc cargo check -p nextword-ffi --target aarch64-linux-android
