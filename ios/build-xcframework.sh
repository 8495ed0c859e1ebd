#!/usr/bin/env bash
# Builds ios/NextWord.xcframework: libnextword_ffi.a for iOS devices (arm64) and for the
# simulator (arm64 + x86_64 in one lipo'd library), each with the uniffi C header and the
# NextWordFFIFFI module map. Needs macOS with Xcode (xcodebuild, lipo) and rustup.
# Also regenerates the Swift bindings into Sources/NextWordFFI (commit them if they changed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)" != Darwin ] || ! command -v xcodebuild >/dev/null; then
  echo "build-xcframework.sh needs macOS with Xcode (xcodebuild, lipo)" >&2
  exit 1
fi

# The oldest iOS the package supports (Package.swift: .iOS(.v15)).
export IPHONEOS_DEPLOYMENT_TARGET=15.0
# Keyboard extensions may only use extension-safe APIs; the linker enforces it when the
# extension is linked (APPLICATION_EXTENSION_API_ONLY=YES). A static library has no link step of
# its own, so the flag below is recorded here for the record and takes effect only for a
# dylib build; the library uses no UIApplication/NSExtension API either way.
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-application_extension"

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}"
for target in "${targets[@]}"; do
  cargo build -p nextword-ffi --release --lib --target "$target"
done

out=ios/build
rm -rf "$out" ios/NextWord.xcframework
mkdir -p "$out/headers" "$out/ios-sim"

# Swift, header and module map from the host-independent metadata of the device library.
cargo run -q -p uniffi-bindgen -- generate --no-format \
  --library target/aarch64-apple-ios/release/libnextword_ffi.a \
  --language swift --out-dir "$out/generated"
cp "$out/generated/NextWordFFI.swift" ios/Sources/NextWordFFI/NextWordFFI.swift
cp "$out/generated/NextWordFFIFFI.h" "$out/headers/"
# Inside an XCFramework the module map must be named module.modulemap.
cp "$out/generated/NextWordFFIFFI.modulemap" "$out/headers/module.modulemap"

lipo -create \
  target/aarch64-apple-ios-sim/release/libnextword_ffi.a \
  target/x86_64-apple-ios/release/libnextword_ffi.a \
  -output "$out/ios-sim/libnextword_ffi.a"

xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libnextword_ffi.a -headers "$out/headers" \
  -library "$out/ios-sim/libnextword_ffi.a" -headers "$out/headers" \
  -output ios/NextWord.xcframework

echo "built ios/NextWord.xcframework"
