#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a short time (FUZZ_SECONDS each, default 15) and prints the
# exec counts. test.sh (CI) runs it; the instrumented release build takes ~11 min on 2 cores.
# Installs what it needs: the nightly toolchain and cargo-fuzz. Seeds the corpora with real
# inputs (a signed pack, a real delta, a manifest and its signature, a user store) so the
# fuzzer starts past the format checks. A crash fails the script and leaves the input
# in fuzz/artifacts/<target>/: turn it into a regression test before fixing.
#   FUZZ_SECONDS=300 FUZZ_NICE=10 scripts/fuzz-ci.sh          # a longer run
#   FUZZ_TARGETS="suggest pack_loader" scripts/fuzz-ci.sh     # some targets only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${FUZZ_SECONDS:-15}
targets=${FUZZ_TARGETS:-"manifest pack_loader suggest delta_apply user_store model_strip"}
nice_level=${FUZZ_NICE:-0}
t0=$(date +%s)

rustup toolchain list | grep -q '^nightly' \
  || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
echo "fuzz: toolchain ready in $(( $(date +%s) - t0 )) s"

# ---- seed corpora ----
corpus="$root/fuzz/corpus"
mkdir -p "$corpus"/{manifest,pack_loader,suggest,delta_apply,user_store,model_strip}
cp models/fixture/model.onnx "$corpus/model_strip/fixture.onnx"
# The CLI as test.sh builds it (the same package selection, so nothing is rebuilt).
cargo build -q --workspace --lib --bins --tests
nextword() { "$root/target/debug/nextword" "$@"; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fixture=models/fixture
nextword bundle pack "$fixture" -o "$corpus/pack_loader/fixture.tar" >/dev/null
# A second version of the fixture: some weight bytes changed, re-signed with the dev key.
cp -r "$fixture" "$work/v2"
python3 - "$work/v2" <<'PY'
import hashlib, json, sys, pathlib
d = pathlib.Path(sys.argv[1])
model = bytearray((d / "model.onnx").read_bytes())
mid = len(model) // 2
model[mid:mid + 64] = bytes((b + 1) % 256 for b in model[mid:mid + 64])
(d / "model.onnx").write_bytes(model)
m = json.loads((d / "manifest.json").read_text())
m["model_id"] += "-v2"
m["files"]["model.onnx"] = hashlib.sha256(model).hexdigest()
(d / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
PY
nextword bundle sign "$work/v2" --key keys/nextword-dev.secret >/dev/null
nextword bundle diff "$fixture" "$work/v2" -o "$corpus/delta_apply/fixture-v2.delta" >/dev/null
python3 - "$fixture" "$corpus" <<'PY'
import json, struct, sys, pathlib
fixture, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
manifest = (fixture / "manifest.json").read_bytes()
sig = (fixture / "manifest.sig").read_bytes()
# manifest target: 2-byte split position, then manifest, then signature.
(corpus / "manifest" / "signed").write_bytes(struct.pack("<H", len(manifest) + 2) + manifest + sig)
for i, text in enumerate(["I will see you ", "how are y", "😀 ", "the quick brown fox jumps ov"]):
    (corpus / "suggest" / f"text{i}").write_text(text)
snapshot = json.dumps({"format": "nextword-user-store", "v": 1, "seq": 2, "data": {}}).encode()
journal = b'{"v":1,"seq":3,"op":{"add":{"word":"zorblax"}}}\n'
(corpus / "user_store" / "store").write_bytes(snapshot + b"\xff" + journal)
PY

# ---- build and run ----
cd fuzz
tb=$(date +%s)
if [ -z "${FUZZ_TARGETS:-}" ]; then
  # No name: one cargo call builds every target, compiling and linking them in parallel.
  nice -n "$nice_level" cargo +nightly fuzz build -O
else
  for t in $targets; do # a named target per call
    nice -n "$nice_level" cargo +nightly fuzz build -O "$t"
  done
fi
echo "fuzz: targets built in $(( $(date +%s) - tb )) s"
summary=""
status=0
for t in $targets; do
  log="$work/$t.log"
  if nice -n "$nice_level" cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$t)"; status=1
    tail -40 "$log"
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  summary+=$(printf '%-12s %10s execs in %ss  %s' "$t" "${runs:-?}" "$seconds" "$result")$'\n'
done
echo; echo "fuzz summary:"; printf '%s' "$summary"
echo "fuzz: total $(( $(date +%s) - t0 )) s"
# On CI the instrumented build (~3 GB) is not needed after this run: free the disk for the
# steps that follow.
if [ "${CI:-}" = true ]; then rm -rf "$root/fuzz/target"; fi
exit $status
