"""Which MatMulNBits nodes of an exported model compute at float precision and which may take
int8 activations: measured on each model, not fixed.

A node's `accuracy_level` 4 lets the runtime round its input to int8 in blocks of 32 (nextword's
W4A8 kernels: one pass); 1 asks for float precision (nextword: a second pass on the rounding's
residual, twice the multiply-adds). How much int8 rounding moves the predictions depends on the
trained weights: keeping the LM head and the first two layers' `w_down` float gave 98.95% top-5
agreement with the float model on one release and 97.55% on the next. So this measures it:

1. each node alone at int8, every other one float: the RMS error it adds to the logits, against
   the all-float graph, on 20-token calibration windows (the core's context);
2. from every node at int8, nodes go float in decreasing order of that error squared per
   multiply-add they cost, until the top-5 next-token sets agree with the all-float graph's at
   `--target` of the calibration positions or more with 95% confidence (the binomial
   interval's lower end: at 16,000 positions, 98.0% needs a measured 98.22%), so that other
   text of the kind, such as the test split, most likely reaches the target too.

ONNX Runtime runs the variants. A node at int8 gets its input through nextword's activation
rounding written as ONNX ops (per block of 32: scale max|x| / 127, round half to even, clamp to
+-127) and computes in float, so the figures are those of nextword's kernels up to float
summation order, whatever rounding ONNX Runtime's own int8 path would use.

    python3 training/precision.py models/en --text training/build/corpus/valid.txt --apply
    nextword bundle sign models/en --key keys/nextword-dev.secret   # --apply drops the signature
"""
import argparse
import copy
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

CONTEXT = 20
BLOCK = 32
TOP = 5
FLOAT, INT8 = 1, 4
# 16,000 positions: the 95% interval at 98% is +-0.22 points.
CALIBRATION_WINDOWS = 800


def text_ids(tokenizer: Path, bos_token: str, text: Path) -> list[int]:
    """Token ids of every non-empty line of `text`, each opened by the start token."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    bos = tok.token_to_id(bos_token)
    ids = []
    for line in text.read_text(encoding="utf-8").splitlines():
        if line.strip():
            ids += [bos] + tok.encode(line, add_special_tokens=False).ids
    return ids


def windows(ids, count: int) -> list[list[int]]:
    """Up to `count` consecutive, non-overlapping windows of CONTEXT ids."""
    return [list(ids[i:i + CONTEXT]) for i in range(0, len(ids) - CONTEXT + 1, CONTEXT)][:count]


def short_name(node) -> str:
    """A MatMulNBits node's output name without the export's numeric suffix (`l7_w_down`)."""
    return re.sub(r"_\d+$", "", node.output[0])


def matmul_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type == "MatMulNBits"]


def attr(node, name):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def set_accuracy_level(node, level: int):
    for a in node.attribute:
        if a.name == "accuracy_level":
            a.i = level
            return
    node.attribute.append(helper.make_attribute("accuracy_level", level))


def fake_int8(graph, x: str, tag: str) -> str:
    """Appends to `graph` the ops that round `x` as nextword's kernels round a MatMulNBits input
    (`act_scale` and `quantize_row_*` in rust-core/src/kernels): per block of 32 values,
    inv = 127 / max|x|, q = round_half_even(x * inv) clamped to +-127, x' = q * (max|x| / 127);
    an all-zero block stays zero. Returns x' (float, same shape)."""
    def c(name, value):
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), f"{tag}_{name}"))
        return f"{tag}_{name}"

    def op(kind, inputs, **attrs):
        out = f"{tag}_{kind.lower()}{len(graph.node)}"
        graph.node.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    blocks = op("Reshape", [x, c("blocks", np.array([-1, BLOCK], np.int64))])
    amax = op("ReduceMax", [op("Abs", [blocks])], axes=[1], keepdims=1)
    # max|x| = 0: any finite inverse gives q = 0, as the kernels' scale 0 does.
    amax = op("Max", [amax, c("tiny", np.float32(1e-30))])
    q = op("Round", [op("Mul", [blocks, op("Div", [c("127", np.float32(127)), amax])])])
    q = op("Clip", [q, c("lo", np.float32(-127)), c("hi", np.float32(127))])
    deq = op("Mul", [q, op("Div", [amax, f"{tag}_127"])])
    return op("Reshape", [deq, op("Shape", [x])])


def variant(model, int8: set[str]) -> bytes:
    """`model` with the MatMulNBits nodes named in `int8` taking fake-int8 inputs, and every
    MatMulNBits computing in float (accuracy_level 0: ONNX Runtime dequantizes the weights)."""
    m = copy.deepcopy(model)
    for i, node in enumerate(matmul_nodes(m)):
        set_accuracy_level(node, 0)
        if short_name(node) in int8:
            node.input[0] = fake_int8(m.graph, node.input[0], f"fq{i}")
    # The appended ops come after their consumers: put the graph back in topological order.
    order, ready = [], {i.name for i in m.graph.input} | {t.name for t in m.graph.initializer}
    pending = list(m.graph.node)
    while pending:
        runnable = [n for n in pending if all(not i or i in ready for i in n.input)]
        if not runnable:
            raise ValueError("graph has a cycle or an input nothing produces")
        for n in runnable:
            order.append(n)
            ready.update(n.output)
        pending = [n for n in pending if n not in runnable]
    del m.graph.node[:]
    m.graph.node.extend(order)
    return m.SerializeToString()


class Runner:
    """All-position logits of the calibration windows for one variant of the model."""

    def __init__(self, model, wins: list[list[int]]):
        self.model, self.wins = model, wins
        cfg = json.loads({p.key: p.value for p in model.metadata_props}["config"])
        head_dim = cfg["d_model"] // cfg["n_heads"]
        self.past = np.zeros((cfg["n_layers"], 2, cfg["n_heads"], 0, head_dim), np.float32)
        q = np.arange(CONTEXT)
        self.bias = np.where(q[None, :] <= q[:, None], 0.0, -1e9).astype(np.float32)

    def logits(self, int8: set[str]):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(variant(self.model, int8), so, providers=["CPUExecutionProvider"])
        for w in self.wins:
            feeds = {"input_ids": np.array([w], np.int64),
                     "position_ids": np.arange(CONTEXT, dtype=np.int64)[None],
                     "attn_bias": self.bias, "past_kv": self.past,
                     "logits_at": np.arange(CONTEXT, dtype=np.int64)}
            yield sess.run(["logits"], feeds)[0][0]


def top_sets(logits: np.ndarray) -> list[frozenset]:
    return [frozenset(r) for r in np.argpartition(-logits, TOP, axis=-1)[:, :TOP].tolist()]


def compare(runner: Runner, int8: set[str], ref, windows_used=None):
    """(RMS logit error, share of positions with the reference's top-5 set) of a variant. `ref`:
    per window, the reference's logits (None past the windows the error is measured on: all
    the calibration's logits would take half a gigabyte) and top-5 sets."""
    sq = values = same = positions = 0
    for got, (want, want_top) in zip(runner.logits(int8), ref[:windows_used]):
        if want is not None:
            sq += float(((got - want) ** 2).sum())
            values += got.size
        same += sum(a == b for a, b in zip(top_sets(got), want_top))
        positions += len(want_top)
    return (sq / values) ** 0.5, same / positions


def plan(model, wins: list[list[int]], target: float, sensitivity_windows: int = 100, log=print):
    """The float nodes (a list, in the order chosen) and the measurements that chose them: the
    logit errors on the first `sensitivity_windows` windows, the agreements on all of them."""
    runner = Runner(model, wins)
    ref = [(lg if i < sensitivity_windows else None, top_sets(lg))
           for i, lg in enumerate(runner.logits(set()))]
    nodes = {short_name(n): attr(n, "K") * attr(n, "N") for n in matmul_nodes(model)}
    error = {}
    for name in nodes:
        error[name], _ = compare(runner, {name}, ref, sensitivity_windows)
        log(f"  {name:<14} alone at int8: logit RMS error {error[name]:.5f}, "
            f"{nodes[name] / 1e3:.0f}k multiply-adds per token")
    order = sorted(nodes, key=lambda k: error[k] ** 2 / nodes[k], reverse=True)
    chosen, steps = [], []
    positions = len(wins) * CONTEXT
    while True:
        err, agree = compare(runner, set(nodes) - set(chosen), ref)
        low = agree - 1.96 * (agree * (1 - agree) / positions) ** 0.5
        extra = sum(nodes[k] for k in chosen) / sum(nodes.values())
        steps.append({"float": list(chosen), "logit_rms_error": err, "top5_agreement": agree,
                      "top5_agreement_low": low, "extra_multiply_adds": extra})
        log(f"float {len(chosen):2d} ({', '.join(chosen) or 'none'}): error {err:.5f}, "
            f"top-5 agreement {agree:.2%} (95%: >= {low:.2%}), multiply-adds +{extra:.1%}")
        if low >= target or len(chosen) == len(order):
            break
        chosen.append(order[len(chosen)])
    return {"target": target, "positions": positions, "float": chosen,
            "sensitivity": {k: {"logit_rms_error": error[k], "multiply_adds": nodes[k]} for k in order},
            "steps": steps}


def apply(model, float_nodes):
    """Sets accuracy_level 1 on the MatMulNBits nodes named in `float_nodes`, 4 on the others."""
    for node in matmul_nodes(model):
        set_accuracy_level(node, FLOAT if short_name(node) in float_nodes else INT8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="bundle directory (its manifest names the model)")
    ap.add_argument("--text", type=Path, required=True,
                    help="calibration text, one line per context (the validation split, never the test text)")
    ap.add_argument("--windows", type=int, default=CALIBRATION_WINDOWS, help="20-token calibration windows")
    ap.add_argument("--target", type=float, default=0.98,
                    help="top-5 agreement to reach (the lower end of its 95%% interval)")
    ap.add_argument("--apply", action="store_true",
                    help="write the accuracy levels into the bundle and refresh its hashes")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    a = ap.parse_args()

    manifest = json.loads((a.bundle / "manifest.json").read_text())
    path = a.bundle / manifest["model"]["file"]
    model = onnx.load(str(path))
    wins = windows(text_ids(a.bundle / manifest["tokenizer"], manifest["bos_token"], a.text), a.windows)
    if len(wins) < a.windows:
        sys.exit(f"{a.text}: only {len(wins)} windows of {CONTEXT} tokens (asked {a.windows})")
    result = {"text": a.text.name, **plan(model, wins, a.target)}
    if result["steps"][-1]["top5_agreement_low"] < a.target:
        print(f"target {a.target:.2%} not reached even with every node float", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    if a.apply:
        from bundle import refresh_hashes

        apply(model, set(result["float"]))
        onnx.save(model, str(path))
        refresh_hashes(a.bundle)
        print(f"{path}: float precision for {', '.join(result['float'])}; hashes refreshed, "
              "sign the manifest again")


if __name__ == "__main__":
    main()
