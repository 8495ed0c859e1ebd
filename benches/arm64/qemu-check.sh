#!/usr/bin/env bash
# The static aarch64 build under qemu-aarch64 (-cpu max: NEON + dotprod):
#  1. correctness: `predict` / `complete` JSON of a few texts, with each aarch64 kernel
#     (scalar, neon, dotprod): the same words in the same order as the x86_64 host build, and
#     scores within 5% relative of x86_64's and of the aarch64 scalar kernel's. Not closer:
#     the kernels differ in float summation order and tract's own f32 ops (softmax, exp) have
#     per-architecture code, and a last-bit difference can flip the int8 rounding of an
#     activation in the next layer (measured: up to 3% on a 0.0014 score, 1.9% between the
#     NEON and scalar kernels). Each kernel's exactness is tested by its property tests;
#  2. with --timings: the criterion kernel bench, cross-built, run briefly under qemu, printed
#     relative to the scalar kernel. Emulated time is NOT phone time: qemu turns each NEON/SDOT
#     instruction into host code of very different cost, so only use it to spot gross
#     regressions (a kernel slower than scalar), never as a speed claim.
set -euo pipefail
cd "$(dirname "$0")/../.."
timings=0
[ "${1:-}" = --timings ] && timings=1
triple=aarch64-unknown-linux-musl
command -v qemu-aarch64 >/dev/null || { apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null; }
benches/arm64/build.sh "$triple"
cargo build --release -p nextword
arm=target/$triple/release/nextword
file "$arm" 2>/dev/null | grep -q "statically linked" || echo "warning: $arm is not reported as statically linked" >&2

texts_predict=("I will see you" "Thank you so much for" "Can you pick up some" "The president of the")
texts_complete=("see you tom" "I think I left my ph" "Are you com" "Happy birth")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_all() { # $1 = label, rest = command prefix
  local label=$1; shift
  for t in "${texts_predict[@]}"; do "$@" predict "$t" --json; done >"$work/$label.json"
  for t in "${texts_complete[@]}"; do "$@" complete "$t" --json; done >>"$work/$label.json"
}
run_all x86 target/release/nextword
for kernel in scalar neon dotprod; do
  NEXTWORD_KERNEL=$kernel run_all "arm-$kernel" qemu-aarch64 -cpu max "$arm"
done
python3 - "$work" "${texts_predict[@]}" "${texts_complete[@]}" <<'PY'
import json, sys
from pathlib import Path
work, texts = Path(sys.argv[1]), sys.argv[2:]
load = lambda n: [json.loads(l)["suggestions"] for l in (work / f"{n}.json").read_text().splitlines()]
x86 = load("x86")
arm_scalar = load("arm-scalar")
rel = lambda a, b: abs(a - b) / max(abs(a), 1e-12)
bad = 0
worst = {"x86": 0.0, "arm-scalar": 0.0}
for kernel in ["scalar", "neon", "dotprod"]:
    arm = load(f"arm-{kernel}")
    for text, a, ref, b in zip(texts, x86, arm_scalar, arm):
        same_words = [s["text"] for s in a] == [s["text"] for s in b]
        d_x86 = max((rel(s["score"], t["score"]) for s, t in zip(a, b)), default=0.0)
        d_arm = max((rel(s["score"], t["score"]) for s, t in zip(ref, b)), default=0.0)
        worst["x86"] = max(worst["x86"], d_x86)
        worst["arm-scalar"] = max(worst["arm-scalar"], d_arm)
        ok = same_words and d_arm <= 5e-2 and d_x86 <= 5e-2
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {kernel:<8} {text!r:<28} x86 {[s['text'] for s in a]}  arm {[s['text'] for s in b]}"
              f"  score diff vs x86 {d_x86:.1e}, vs arm scalar {d_arm:.1e}")
print(f"aarch64 vs x86_64: {3 * len(texts) - bad}/{3 * len(texts)} suggestion lists pass; largest relative score"
      f" difference vs x86_64 {worst['x86']:.1e}, vs the aarch64 scalar kernel {worst['arm-scalar']:.1e}")
sys.exit(1 if bad else 0)
PY

if [ "$timings" = 1 ]; then
  benches/arm64/build.sh "$triple" -- bench -p nextword-benches --bench kernels --no-run
  bench_bin=$(ls -t target/$triple/release/deps/kernels-* | grep -v '\.d$' | head -n1)
  export CRITERION_HOME="$work/criterion"
  for kernel in scalar neon dotprod; do
    qemu-aarch64 -cpu max "$bench_bin" --bench --warm-up-time 0.3 --measurement-time 1 --noplot "/$kernel/" \
      >"$work/bench-$kernel.txt" 2>&1
  done
  python3 - "$CRITERION_HOME" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
times = {}
for est in root.glob("*/*/*/new/estimates.json"):
    # <group>/<kernel>/<N x K>/new/estimates.json
    group = f"{est.parents[3].name} {est.parents[1].name}"
    kernel = est.parents[2].name
    times.setdefault(group, {})[kernel] = json.loads(est.read_text())["median"]["point_estimate"] / 1e3
print("kernel time under qemu-aarch64 -cpu max (emulated; NOT phone time), median us and x vs scalar")
print(f"{'layer_rows NxK':<26}" + "".join(f"{k:>20}" for k in ["scalar", "neon", "dotprod"]))
for group in sorted(times):
    t = times[group]
    cells = "".join(f"{t[k]:>11.1f} ({t['scalar'] / t[k]:>5.2f}x)" if k in t else f"{'-':>20}" for k in ["scalar", "neon", "dotprod"])
    print(f"{group:<26}{cells}")
PY
fi
