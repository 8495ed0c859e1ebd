#!/usr/bin/env bash
# Peers on the same model file (models/en), one run, 1 thread, same token ids: nextword's
# MatMulNBits, tract's built-in, ONNX Runtime (accuracy_level 0 and 4) and the fp32 model.
# Prints one table of ratios (20-token forward, decode step, peak RSS) and top-5 agreement
# with fp32 on held-out text (benches/agreement.txt); with --json, one JSON line last.
#
#   benches/peers.sh                  table
#   benches/peers.sh --json           table, then {"forward20_ms":{..},"decode_ms":{..},...}
#   benches/peers.sh --update-readme  also rewrites benches/README.md's table and the plot
#   benches/peers.sh --fp32-onnx F    compare with an fp32 export (training/export.py --bits 32)
# Other options go to benches/peers.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
  if [ "$a" = --update-readme ]; then
    args+=(--readme benches/README.md --plot benches/peers-latency-cdf.png)
  else
    args+=("$a")
  fi
done

python3 -c 'import onnx, onnxruntime, tokenizers, numpy, matplotlib' 2>/dev/null ||
  python3 -m pip install --quiet --no-cache-dir -r training/requirements.txt >&2
cargo build --release -p nextword >&2
PEERS_COMMAND="benches/peers.sh $*" exec python3 benches/peers.py --nextword target/release/nextword "${args[@]}"
