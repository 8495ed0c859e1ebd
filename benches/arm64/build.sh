#!/usr/bin/env bash
# Static (musl) builds of the nextword CLI, for Android devices/emulators and for qemu:
#
#   benches/arm64/build.sh [TRIPLE...] [-- CARGO ARGS]
#
# TRIPLE: aarch64-unknown-linux-musl (default) and/or x86_64-unknown-linux-musl. The binary
# lands in target/TRIPLE/release/nextword. Extra cargo arguments (e.g. `--bench kernels
# --no-run -p nextword-benches`) replace the default `build --release -p nextword`.
# Installs the Rust targets and, for aarch64, the Debian cross assembler/linker if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

triples=() cargo_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; cargo_args=("$@"); break; fi
  triples+=("$1"); shift
done
[ ${#triples[@]} -gt 0 ] || triples=(aarch64-unknown-linux-musl)
[ ${#cargo_args[@]} -gt 0 ] || cargo_args=(build --release -p nextword)

for triple in "${triples[@]}"; do
  case "$triple" in
    aarch64-unknown-linux-musl)
      if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
        apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu >/dev/null
      fi
      # tract-linalg assembles its arm64 kernels with the C compiler; rustc links with it and
      # its own musl start files and libc (self-contained), so the binary is fully static.
      export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc ;;
    x86_64-unknown-linux-musl)
      export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-cc} ;;
    *) echo "build.sh: unsupported target $triple" >&2; exit 2 ;;
  esac
  rustup target add "$triple" >/dev/null 2>&1
  cargo "${cargo_args[0]}" --target "$triple" "${cargo_args[@]:1}"
done
