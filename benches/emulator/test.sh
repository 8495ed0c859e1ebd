#!/usr/bin/env bash
# Tests benches/emulator/run.sh against fake-adb (no emulator here): the calls it makes, the
# pinning, the pulled JSON and the printed table, and its refusals (no device, unknown ABI,
# no Gradle). Needs a host `nextword` binary: $NEXTWORD_BIN, else target/debug/nextword.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${NEXTWORD_BIN:-target/debug/nextword}
[ -x "$bin" ] || cargo build -p nextword
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cp benches/emulator/fake-adb "$work/bin/adb"
export PATH="$work/bin:$PATH" FAKE_ADB_LOG="$work/adb.log" FAKE_ADB_ROOT="$work/device"
head -n 3 cli/src/replay.txt >"$work/replay.txt"
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "-- replay mode on a fake x86_64 device"
benches/emulator/run.sh --binary "$bin" --bundle models/fixture --replay "$work/replay.txt" \
  --core 0 --iterations 2 --out "$work/out" | tee "$work/table.txt"
grep -qx "push $bin /data/local/tmp/nextword/nextword" "$work/adb.log" || fail "binary not pushed"
grep -qx "push models/fixture/manifest.json /data/local/tmp/nextword/bundle/" "$work/adb.log" || fail "bundle not pushed"
grep -q "^shell cd /data/local/tmp/nextword && taskset 1 ./nextword bench --bundle /data/local/tmp/nextword/bundle --replay /data/local/tmp/nextword/replay.txt --iterations 2 --json" \
  "$work/adb.log" || fail "bench not run pinned to core 0"
grep -qx "pull /data/local/tmp/nextword/bench.json $work/out/bench.json" "$work/adb.log" || fail "JSON not pulled"
python3 - "$work/out/bench.json" "$work/replay.txt" <<'PY' || fail "pulled JSON"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for k in ["load_ms", "cold_start_ms", "keystroke_p50_ms", "keystroke_p95_ms", "keystroke_p99_ms",
          "keystroke_max_ms", "peak_rss_mb"]:
    assert isinstance(r[k], (int, float)) and r[k] > 0, k
assert set(r["forward20_ms"]) == {"nextword", "tract_builtin"}
typed = sum(len(l) for l in open(sys.argv[2]).read().splitlines() if l.strip())
assert r["keystrokes"] == typed, (r["keystrokes"], typed)
assert r["keystroke_p50_ms"] <= r["keystroke_p95_ms"] <= r["keystroke_p99_ms"] <= r["keystroke_max_ms"]
for kind in ["next_word", "in_word"]:
    p50, p95 = r[f"{kind}_keystroke_p50_ms"], r[f"{kind}_keystroke_p95_ms"]
    assert 0 < p50 <= p95 <= r["keystroke_max_ms"], (kind, p50, p95)
assert r["rss_anon_mb"] > 0 and r["rss_file_mb"] > 0
assert r["rss_anon_mb"] + r["rss_file_mb"] <= r["peak_rss_mb"] + 1
PY
grep -q "keystroke p50 / p95 / p99 / max" "$work/table.txt" || fail "table not printed"
grep -q "after a space / inside a word" "$work/table.txt" || fail "table lacks the keystroke kinds"
grep -q "pinned to core 0, x86_64" "$work/table.txt" || fail "table lacks the pinning"

expect_refusal() { # message, then the command
  local msg=$1; shift
  if "$@" >"$work/err.txt" 2>&1; then fail "accepted: $*"; fi
  grep -q "$msg" "$work/err.txt" || { cat "$work/err.txt"; fail "no '$msg' in the refusal"; }
}
echo "-- refusals"
FAKE_ADB_STATE=offline expect_refusal "no device ready" benches/emulator/run.sh --binary "$bin"
FAKE_ADB_ABI=armeabi-v7a expect_refusal "unsupported device ABI" benches/emulator/run.sh --binary "$bin"
FAKE_ADB_ABI=arm64-v8a expect_refusal "not found: build it" benches/emulator/run.sh --binary "$work/none"
if [ ! -d sample-keyboard/android ]; then
  expect_refusal "sample-keyboard/android not found" benches/emulator/run.sh instrumented
elif [ ! -x sample-keyboard/android/gradlew ] && ! command -v gradle >/dev/null; then
  expect_refusal "Gradle not available" benches/emulator/run.sh instrumented
fi
echo "emulator harness: all checks passed"
