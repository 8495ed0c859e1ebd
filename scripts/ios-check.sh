#!/usr/bin/env bash
# iOS side of nextword, checked without a Mac: the committed Swift bindings, C header and module
# map equal what this workspace's uniffi-bindgen generates now; every .swift file of ios/ and
# sample-keyboard/ios/ parses (tree-sitter-swift, from PyPI). The aarch64-apple-ios check is
# skipped, saying why (see the last step). Building the XCFramework, compiling the Swift and running the keyboard
# need Xcode (ios/build-xcframework.sh, ios/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n---- %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "host build of nextword-ffi and uniffi-bindgen"
# The whole workspace with its tests, as test.sh's `cargo test --workspace` selects it: the
# same features, so its build is reused (`-p nextword-ffi` alone would rebuild tract).
cargo build --workspace --lib --bins --tests

step "generated Swift, header and module map match the committed ones"
cargo run -q -p uniffi-bindgen -- generate --no-format --library target/debug/libnextword_ffi.so \
  --language swift --out-dir "$work/generated"
drift=0
for file in NextWordFFI.swift NextWordFFIFFI.h NextWordFFIFFI.modulemap; do
  if ! diff -u "ios/Sources/NextWordFFI/$file" "$work/generated/$file" > "$work/drift.diff"; then
    head -40 "$work/drift.diff"
    drift=1
  fi
done
if [ "$drift" = 1 ]; then
  echo "Swift bindings are stale: run scripts/ios-generate.sh and commit ios/Sources/NextWordFFI" >&2
  exit 1
fi

step "every .swift file parses (tree-sitter-swift)"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check tree-sitter==0.26.1 tree-sitter-swift==0.7.4
cat > "$work/parse_swift.py" <<'PY'
import re
import sys
import tree_sitter
import tree_sitter_swift

# uniffi wraps attributes in `#if swift(>=5.8) @_documentation(visibility: private) #endif`:
# valid Swift that tree-sitter-swift cannot parse (a directive around an attribute alone).
# Exactly that block is blanked, keeping line numbers; nothing else is touched.
ATTRIBUTE_ONLY_IF = re.compile(
    rb"^[ \t]*#if swift\(>=5\.8\)\n[ \t]*@_documentation\(visibility: private\)\n[ \t]*#endif$",
    re.M,
)

parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
bad = 0
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        source = ATTRIBUTE_ONLY_IF.sub(lambda m: b"\n" * m.group(0).count(b"\n"), f.read())
    tree = parser.parse(source)
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            kind = "missing " + node.type if node.is_missing else "syntax error"
            problems.append(f"{path}:{node.start_point[0] + 1}:{node.start_point[1] + 1}: {kind}")
        elif node.has_error:
            stack.extend(node.children)
    bad += bool(problems)
    print("\n".join(problems) if problems else f"ok  {path}")
if len(sys.argv) < 2:
    sys.exit("no .swift files found")
sys.exit(1 if bad else 0)
PY
find ios sample-keyboard/ios -name '*.swift' -print0 | xargs -0 "$work/venv/bin/python" "$work/parse_swift.py"

# `cargo check -p nextword-ffi --target aarch64-apple-ios` cannot pass off macOS: the build
# script of `oslog` (the Apple logger of nextword-ffi) compiles a C shim against <os/log.h>
# from Apple's iOS SDK, which no registry here provides. (tract-linalg's assembly kernels do
# build with Debian's clang and SDKROOT pointing at an empty directory.) Reported, not hidden:
step "cross-compile check: nextword-ffi for aarch64-apple-ios"
echo "SKIPPED: needs Apple's iOS SDK (oslog's build script compiles against <os/log.h>); run ios/build-xcframework.sh on a Mac"
