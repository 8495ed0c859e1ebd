#!/usr/bin/env bash
# Keystroke latency on an Android emulator or device, through adb.
#
#   benches/emulator/run.sh [replay] [options]   push the static `nextword` binary + bundle,
#       run `nextword bench --replay` pinned to one core (taskset), pull the JSON, print the table
#   benches/emulator/run.sh instrumented          run the sample IME's instrumented tests
#       (Gradle `connectedAndroidTest` in sample-keyboard/android) on the connected device
#
# Options (replay mode):
#   --serial S     adb device serial (default: $ANDROID_SERIAL, else the only device)
#   --binary PATH  nextword built for the device (default: target/<triple>/release/nextword,
#                  triple from the device ABI: arm64-v8a -> aarch64-unknown-linux-musl,
#                  x86_64 -> x86_64-unknown-linux-musl; build with benches/arm64/build.sh)
#   --bundle DIR   model bundle (default: models/en)
#   --replay FILE  text to type (default: the CLI's built-in sample)
#   --core N       CPU core to pin to (default: the highest-numbered core, often a big one)
#   --out DIR      where the pulled JSON goes (default: target/emulator)
#   --iterations N 20-token forward repetitions (default: 30)
# adb is $ADB if set, else `adb` on PATH. Exit status: 0 ok, 2 usage/setup error, else the
# failing command's.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADB=${ADB:-adb}
DEVICE_DIR=/data/local/tmp/nextword
mode=replay
case "${1:-}" in replay|instrumented) mode=$1; shift ;; esac
serial=${ANDROID_SERIAL:-} binary= bundle=models/en replay= core= out=target/emulator iterations=30
while [ $# -gt 0 ]; do
  case "$1" in
    --serial) serial=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --replay) replay=$2; shift 2 ;;
    --core) core=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --iterations) iterations=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "run.sh: $*" >&2; exit 2; }
command -v "$ADB" >/dev/null || die "adb not found (set ADB or put it on PATH)"
adb() { if [ -n "$serial" ]; then command "$ADB" -s "$serial" "$@"; else command "$ADB" "$@"; fi; }
state=$(adb get-state 2>/dev/null | tr -d '\r') || true
[ "$state" = device ] || die "no device ready (adb get-state: '${state:-nothing}')"

if [ "$mode" = instrumented ]; then
  project=sample-keyboard/android
  [ -d "$project" ] || die "$project not found"
  if [ -x "$project/gradlew" ]; then gradle=./gradlew
  elif command -v gradle >/dev/null; then gradle=gradle
  else die "Gradle not available (no $project/gradlew, no gradle on PATH)"; fi
  [ -z "$serial" ] || export ANDROID_SERIAL=$serial
  (cd "$project" && "$gradle" --no-daemon connectedAndroidTest)
  echo "instrumented tests passed; reports under $project/*/build/reports/androidTests"
  exit 0
fi

abi=$(adb shell getprop ro.product.cpu.abi | tr -d '\r')
case "$abi" in
  arm64-v8a) triple=aarch64-unknown-linux-musl ;;
  x86_64) triple=x86_64-unknown-linux-musl ;;
  *) die "unsupported device ABI '$abi' (arm64-v8a or x86_64)" ;;
esac
binary=${binary:-target/$triple/release/nextword}
[ -f "$binary" ] || die "$binary not found: build it with benches/arm64/build.sh $triple"
[ -f "$bundle/manifest.json" ] || die "$bundle is not a bundle (no manifest.json)"
if [ -z "$core" ]; then
  cores=$(adb shell nproc | tr -d '\r')
  [[ "$cores" =~ ^[0-9]+$ ]] || die "could not read the device's core count ('$cores')"
  core=$((cores - 1))
fi
[[ "$core" =~ ^[0-9]+$ ]] || die "--core must be a number"
mask=$(printf '%x' $((1 << core)))

echo "device: ${serial:-default} ($abi), binary $binary, bundle $bundle, pinned to core $core"
adb shell rm -rf "$DEVICE_DIR"
adb shell mkdir -p "$DEVICE_DIR/bundle"
adb push "$binary" "$DEVICE_DIR/nextword" >/dev/null
for f in "$bundle"/*; do adb push "$f" "$DEVICE_DIR/bundle/" >/dev/null; done
adb shell chmod 755 "$DEVICE_DIR/nextword"
replay_arg=
if [ -n "$replay" ]; then
  adb push "$replay" "$DEVICE_DIR/replay.txt" >/dev/null
  replay_arg="--replay $DEVICE_DIR/replay.txt"
fi
adb shell "cd $DEVICE_DIR && taskset $mask ./nextword bench --bundle $DEVICE_DIR/bundle $replay_arg --iterations $iterations --json > $DEVICE_DIR/bench.json"
mkdir -p "$out"
adb pull "$DEVICE_DIR/bench.json" "$out/bench.json" >/dev/null
python3 - "$out/bench.json" "$abi" "$core" <<'PY'
import json, sys
path, abi, core = sys.argv[1:]
r = json.loads(open(path).read().strip().splitlines()[-1])
fw = r["forward20_ms"]
rows = [
    ("cold start (open -> first suggestion)", f"{r['cold_start_ms']:.1f} ms"),
    ("load", f"{r['load_ms']:.1f} ms"),
    (f"keystroke p50 / p95 / p99 / max ({r['keystrokes']})",
     f"{r['keystroke_p50_ms']:.2f} / {r['keystroke_p95_ms']:.2f} / {r['keystroke_p99_ms']:.2f} / {r['keystroke_max_ms']:.2f} ms"),
    ("  after a space / inside a word: p50, p95",
     f"{r['next_word_keystroke_p50_ms']:.2f}, {r['next_word_keystroke_p95_ms']:.2f} / "
     f"{r['in_word_keystroke_p50_ms']:.2f}, {r['in_word_keystroke_p95_ms']:.2f} ms"),
    ("20-token forward nextword / tract built-in",
     f"{fw['nextword']:.2f} / {fw['tract_builtin']:.2f} ms ({fw['tract_builtin'] / fw['nextword']:.2f}x)"),
    ("peak RSS", "n/a" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.1f} MB"),
    ("  after typing: private (heap) / file-mapped (code)",
     "n/a" if r.get("rss_anon_mb") is None or r.get("rss_file_mb") is None
     else f"{r['rss_anon_mb']:.1f} / {r['rss_file_mb']:.1f} MB"),
    ("kernel, threads", f"{r['kernel']}, {r['threads']} (pinned to core {core}, {abi})"),
]
w = max(len(k) for k, _ in rows)
for k, v in rows:
    print(f"{k:<{w}}  {v}")
print(f"JSON: {path}")
PY
