"""Peers on the same model file, one run, 1 thread, same token ids.

Runs, each in its own process (so that peak RSS is its own):
  nextword        `nextword bench-model --matmul nextword`  (our MatMulNBits op, through tract)
  tract_builtin   `nextword bench-model --matmul tract`     (tract's built-in MatMulNBits)
  onnxruntime     ONNX Runtime, the bundle's model with MatMulNBits accuracy_level=0 (fp32 compute)
  onnxruntime_acc4  ONNX Runtime, accuracy_level=4 (int8 activations, like ours)
  fp32            the fp32 model in ONNX Runtime: by default the 4-bit weights dequantized to an
                  fp32 graph (same weights, so it isolates the runtime's arithmetic); with
                  --fp32-onnx, any fp32 export (e.g. training/export.py --bits 32 of the checkpoint,
                  which also measures the 4-bit quantization's own effect).

For every peer: median 20-token forward, median decode step (1 token after a 20-token KV cache),
process peak RSS (VmHWM), and the top-5 next tokens after every position of held-out windows,
compared with the fp32 model's. Prints a table; --json prints one JSON line last; --plot writes
a latency CDF (PNG).

Also `peers.py ort-worker ...`: the ONNX Runtime side, run by the main process.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "training"))
PEERS = ["nextword", "tract_builtin", "onnxruntime", "onnxruntime_acc4", "fp32"]
CONTEXT = 20
TOP = 5


def vm_hwm_mb():
    """Peak resident set size of this process (Linux: VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- inputs and model variants

def make_inputs(bundle: Path, text_path: Path, max_windows: int):
    """Token ids shared by every peer: a 20-token context + the next token (timings), and
    20-token windows of the held-out text, each line opened by the start-of-text token."""
    from precision import text_ids, windows

    manifest = json.loads((bundle / "manifest.json").read_text())
    stream = text_ids(bundle / manifest["tokenizer"], manifest["bos_token"], text_path)
    if len(stream) < CONTEXT + 1:
        sys.exit(f"{text_path}: fewer than {CONTEXT + 1} tokens")
    return {"context": stream[:CONTEXT], "next": stream[CONTEXT], "windows": windows(stream, max_windows)}


def with_accuracy_level(src: Path, dst: Path, level: int):
    """The same model with every MatMulNBits node's accuracy_level attribute set to `level`
    (ONNX Runtime reads it per node; 0 = fp32 compute, 4 = int8 activations)."""
    import onnx
    from precision import matmul_nodes, set_accuracy_level

    m = onnx.load(str(src))
    for node in matmul_nodes(m):
        set_accuracy_level(node, level)
    onnx.save(m, str(dst))


def with_float_layers(bundle: Path, dst: Path, names: list[str]):
    """A copy of `bundle` in `dst` whose MatMulNBits nodes named in `names` carry
    accuracy_level 1 (float activations: nextword's two W4A8 passes); the others keep theirs. A
    name is a node's output without the export's numeric suffix (`l7_gate_up`, `logits`) or
    that without its layer too (`w_down`: every layer's). Returns the nodes changed."""
    import re
    import shutil

    import onnx
    from bundle import refresh_hashes
    from precision import FLOAT, matmul_nodes, set_accuracy_level, short_name

    shutil.copytree(bundle, dst)
    path = dst / json.loads((dst / "manifest.json").read_text())["model"]["file"]
    m = onnx.load(str(path))
    changed, used = [], set()
    for node in matmul_nodes(m):
        out = short_name(node)
        hits = {n for n in names if n in (out, re.sub(r"^l\d+_", "", out))}
        if hits:
            used |= hits
            set_accuracy_level(node, FLOAT)
            changed.append(out)
    if set(names) - used:
        sys.exit(f"--float-layers: no MatMulNBits node named {sorted(set(names) - used)}")
    onnx.save(m, str(path))
    refresh_hashes(dst)
    return changed


def dequantized_fp32(src: Path, dst: Path):
    """The 4-bit model as an fp32 graph: MatMulNBits -> MatMul with the dequantized weight,
    GatherBlockQuantized -> Gather of the dequantized table; all other nodes unchanged."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    arrays = {}

    producers = {o: n for n in m.graph.node for o in n.output}

    def arr(name):
        """An initializer, or a constant Reshape of one (how the export shapes the embedding)."""
        if name not in arrays:
            if name in inits:
                arrays[name] = numpy_helper.to_array(inits[name])
            else:
                node = producers[name]
                assert node.op_type == "Reshape", f"{name}: not a constant"
                arrays[name] = arr(node.input[0]).reshape(arr(node.input[1]))
        return arrays[name]

    def attrs(node):
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def dequant(q, scales, zero_points, rows, cols, block):
        """[rows, cols] f32 from 4-bit q (element 2i = low nibble of byte i), one scale per block."""
        q = np.asarray(q, np.uint8).reshape(rows, -1)
        nib = np.empty((rows, q.shape[1] * 2), np.float32)
        nib[:, 0::2] = q & 0x0F
        nib[:, 1::2] = q >> 4
        nib = nib[:, :cols].reshape(rows, -1, block)
        if zero_points is None:
            zp = np.full((rows, nib.shape[1], 1), 8, np.float32)
        else:
            zq = np.asarray(zero_points, np.uint8).reshape(rows, -1)
            z = np.empty((rows, zq.shape[1] * 2), np.float32)
            z[:, 0::2] = zq & 0x0F
            z[:, 1::2] = zq >> 4
            zp = z[:, :nib.shape[1], None]
        s = np.asarray(scales, np.float32).reshape(rows, -1, 1)
        return ((nib - zp) * s).reshape(rows, cols)

    nodes, new_inits = [], []
    for node in m.graph.node:
        a = attrs(node)
        if node.op_type == "MatMulNBits":
            assert a["bits"] == 4, "only 4-bit MatMulNBits"
            n, k, block = a["N"], a["K"], a["block_size"]
            zp = arr(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            w = dequant(arr(node.input[1]), arr(node.input[2]), zp, n, k, block)
            name = node.output[0] + "_w_fp32"
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), name))
            mm = helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)
            nodes.append(mm)
            if len(node.input) > 4 and node.input[4]:
                raise SystemExit("MatMulNBits with g_idx/bias is not supported by this converter")
        elif node.op_type == "GatherBlockQuantized":
            assert a.get("bits", 4) == 4 and a.get("gather_axis", 0) == 0 and a.get("quantize_axis", 1) == 1
            data = arr(node.input[0])
            rows = data.shape[0]
            cols = data.shape[1] * 2
            zp = arr(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            table = dequant(data, arr(node.input[2]), zp, rows, cols, a.get("block_size", 128))
            name = node.output[0] + "_table_fp32"
            new_inits.append(numpy_helper.from_array(table, name))
            nodes.append(helper.make_node("Gather", [name, node.input[1]], list(node.output), name=node.name, axis=0))
        else:
            nodes.append(node)
    # Drop what only fed the quantized ops (the Reshapes of the packed embedding).
    outputs = {o.name for o in m.graph.output}
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        live = [n for n in nodes if any(o in used for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    kept = [t for t in m.graph.initializer if t.name in used]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept + new_inits)
    onnx.save(m, str(dst))


# ---------------------------------------------------------------- ONNX Runtime worker

def ort_worker(model: Path, inputs_path: Path, iterations: int, manifest_path: Path):
    """Times one model in ONNX Runtime on 1 thread; prints the same JSON as `nextword bench-model`."""
    import numpy as np

    rss_after_imports = None
    import onnxruntime as ort

    rss_after_imports = vm_hwm_mb()
    info = json.loads(manifest_path.read_text())["model"]
    L, H, Dh = info["n_layers"], info["n_heads"], info["head_dim"]
    data = json.loads(inputs_path.read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t = time.perf_counter()
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3

    def feeds(ids, past, logits_at):
        s, p = len(ids), past.shape[3]
        bias = np.zeros((s, p + s), np.float32)
        for q in range(s):
            bias[q, p + q + 1:] = -1e9
        return {
            "input_ids": np.asarray([ids], np.int64),
            "position_ids": np.arange(p, p + s, dtype=np.int64)[None, :],
            "attn_bias": bias,
            "past_kv": past,
            "logits_at": np.asarray(logits_at, np.int64),
        }

    empty = np.zeros((L, 2, H, 0, Dh), np.float32)
    ctx = data["context"]
    f_feeds = feeds(ctx, empty, [len(ctx) - 1])
    _, present = sess.run(None, f_feeds)
    d_feeds = feeds([data["next"]], present, [0])
    fwd, dec = [], []
    for i in range(3 + max(1, iterations)):
        t = time.perf_counter()
        sess.run(None, f_feeds)
        f = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        sess.run(None, d_feeds)
        d = (time.perf_counter() - t) * 1e3
        if i >= 3:
            fwd.append(f)
            dec.append(d)
    top5 = []
    for w in data["windows"]:
        logits, _ = sess.run(None, feeds(w, empty, list(range(len(w)))))
        for row in logits[0]:
            # Largest first, ties by lower index (as `nextword bench-model`).
            order = np.lexsort((np.arange(row.size), -row.astype(np.float64)))
            top5.append([int(i) for i in order[:TOP]])
    print(json.dumps({
        "impl": "onnxruntime", "ort_version": ort.__version__, "threads": 1, "load_ms": load_ms,
        "forward20_ms": float(np.median(fwd)), "decode_ms": float(np.median(dec)),
        "forward20_samples_ms": fwd, "decode_samples_ms": dec,
        "peak_rss_mb": vm_hwm_mb(), "rss_before_load_mb": rss_after_imports, "top5": top5,
    }))


# ---------------------------------------------------------------- driver

def run_peer(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def merged(runs):
    """One peer's rounds as one result: all timing samples (medians over them), the largest
    peak RSS, the first round's top-5 lists."""
    import statistics

    out = dict(runs[0])
    for key in ("forward20", "decode"):
        samples = [v for r in runs for v in r[f"{key}_samples_ms"]]
        out[f"{key}_samples_ms"] = samples
        out[f"{key}_ms"] = statistics.median(samples)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


def agreement(ref, got):
    """Share of positions whose top-5 sets are identical, mean top-5 overlap, top-1 match."""
    n = len(ref)
    assert n == len(got) and n > 0, "peers saw different positions"
    same = sum(set(a) == set(b) for a, b in zip(ref, got)) / n
    overlap = sum(len(set(a) & set(b)) for a, b in zip(ref, got)) / (TOP * n)
    top1 = sum(a[0] == b[0] for a, b in zip(ref, got)) / n
    return same, overlap, top1


def cdf_plot(results, path: Path, host: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in [(axes[0], "forward20_samples_ms", "20-token forward"),
                           (axes[1], "decode_samples_ms", "decode step (after 20 tokens)")]:
        for peer in PEERS:
            xs = np.sort(results[peer][key])
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=peer)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of runs")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"models/en, 1 thread, {host}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results, agree, args, model, fp32_source, positions, float_layers):
    base_f, base_d = results["nextword"]["forward20_ms"], results["nextword"]["decode_ms"]
    lines = [
        f"models/en ({model.name}), 1 thread, {args.rounds} interleaved rounds x {args.iterations} runs each "
        f"(median); {positions} held-out "
        f"positions from {args.text.name}; fp32 = {fp32_source} (run by ONNX Runtime)",
        f"kernel: {results['nextword'].get('kernel')}; onnxruntime {results['onnxruntime'].get('ort_version')}",
    ]
    if float_layers:
        lines.append(f"nextword and tract_builtin: accuracy_level 1 also on {', '.join(float_layers)}")
    hdr = (f"{'peer':<17}{'forward20 ms':>13}{'x ours':>8}{'decode ms':>11}{'x ours':>8}"
           f"{'peak RSS MB':>13}{'(model)':>9}{'top5 same':>11}{'overlap':>9}{'top1':>7}")
    lines += [hdr, "-" * len(hdr)]
    for p in PEERS:
        r = results[p]
        same, overlap, top1 = agree[p]
        model_rss = r["peak_rss_mb"] - (r.get("rss_before_load_mb") or 0)
        lines.append(
            f"{p:<17}{r['forward20_ms']:>13.3f}{r['forward20_ms'] / base_f:>8.2f}{r['decode_ms']:>11.3f}"
            f"{r['decode_ms'] / base_d:>8.2f}{r['peak_rss_mb']:>13.1f}{model_rss:>9.1f}"
            f"{same:>11.1%}{overlap:>9.1%}{top1:>7.1%}")
    # What one run's share can tell apart: the binomial 95% half-width at nextword's share.
    share = agree["nextword"][0]
    half_width = 1.96 * (share * (1 - share) / positions) ** 0.5
    lines += [
        "x ours = peer time / nextword time (above 1: nextword is faster).",
        "peak RSS = process VmHWM; (model) = minus the process's peak before loading the model",
        "(Python + numpy + onnxruntime for the ONNX Runtime peers).",
        "top5 same = positions whose top-5 token set equals fp32's; overlap = mean shared top-5",
        "tokens; top1 = same first token.",
        f"top5 same at {positions} positions: +-{half_width:.1%} (binomial 95% interval of nextword's share).",
    ]
    return lines


README_BEGIN, README_END = "<!-- peers:begin -->", "<!-- peers:end -->"


def update_readme(path: Path, lines, host, command):
    """Replaces the README's peers section (between the markers) with this run's table."""
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        sys.exit(f"{path}: no {README_BEGIN} ... {README_END} section")
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    section = "\n".join([
        README_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {host} ({cpu}, "
        f"{os.cpu_count()} logical CPUs, shared with other work) with `{command}`:",
        "", "```", *lines, "```", README_END])
    head, rest = text.split(README_BEGIN, 1)
    path.write_text(head + section + rest.split(README_END, 1)[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("ort-worker")
    w.add_argument("--model", type=Path, required=True)
    w.add_argument("--inputs", type=Path, required=True)
    w.add_argument("--manifest", type=Path, required=True)
    w.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--nextword", type=Path, required=False, help="the nextword CLI binary")
    ap.add_argument("--bundle", type=Path, default=REPO / "models/en")
    ap.add_argument("--text", type=Path, default=REPO / "benches/agreement.txt", help="held-out text")
    ap.add_argument("--fp32-onnx", type=Path, help="an fp32 export to use instead of the dequantized model")
    ap.add_argument("--iterations", type=int, default=30, help="timed runs per peer and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every peer, interleaved")
    ap.add_argument("--max-windows", type=int, default=2000, help="held-out windows of 20 tokens")
    ap.add_argument("--float-layers", help="comma-separated MatMulNBits nodes (l7_gate_up, or w_down for "
                    "every layer's) that nextword and tract_builtin run at accuracy_level 1 (float "
                    "activations) in a copy of the bundle: what more precision costs and buys")
    ap.add_argument("--json", action="store_true", help="print one JSON line last")
    ap.add_argument("--plot", type=Path, help="write a latency CDF (PNG) here")
    ap.add_argument("--save", type=Path, help="write all results (with samples) here as JSON")
    ap.add_argument("--readme", type=Path, help="rewrite this README's peers section with the table")
    args = ap.parse_args()
    if args.cmd == "ort-worker":
        return ort_worker(args.model, args.inputs, args.iterations, args.manifest)
    if args.nextword is None:
        ap.error("--nextword BINARY is required")

    manifest_path = args.bundle / "manifest.json"
    model = args.bundle / json.loads(manifest_path.read_text())["model"]["file"]
    env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="nextword-peers-") as tmp:
        tmp = Path(tmp)
        # The held-out windows are only scored in the first round (the second file has none).
        data = make_inputs(args.bundle, args.text, args.max_windows)
        inputs, timing_only = tmp / "inputs.json", tmp / "inputs-timing.json"
        inputs.write_text(json.dumps(data))
        timing_only.write_text(json.dumps(dict(data, windows=[])))
        acc0, acc4, fp32 = tmp / "acc0.onnx", tmp / "acc4.onnx", tmp / "fp32.onnx"
        with_accuracy_level(model, acc0, 0)
        with_accuracy_level(model, acc4, 4)
        if args.fp32_onnx:
            fp32 = args.fp32_onnx
            fp32_source = f"fp32 export {args.fp32_onnx.name}"
        else:
            dequantized_fp32(model, fp32)
            fp32_source = "4-bit weights dequantized to fp32"
        bundle, float_layers = args.bundle, None
        if args.float_layers:
            bundle = tmp / "bundle"
            float_layers = with_float_layers(args.bundle, bundle, args.float_layers.split(","))

        def command(peer, inp):
            nw = [str(args.nextword), "bench-model", "--bundle", str(bundle), "--inputs", str(inp),
                  "--iterations", str(args.iterations), "--json", "--matmul"]
            worker = [sys.executable, str(Path(__file__).resolve()), "ort-worker", "--inputs", str(inp),
                      "--manifest", str(manifest_path), "--iterations", str(args.iterations), "--model"]
            return {
                "nextword": nw + ["nextword"],
                "tract_builtin": nw + ["tract"],
                "onnxruntime": worker + [str(acc0)],
                "onnxruntime_acc4": worker + [str(acc4)],
                "fp32": worker + [str(fp32)],
            }[peer]

        # Rounds, each peer once per round in a rotated order, so that a slow spell of this
        # shared machine falls on every peer rather than on one: the ratios are what the run
        # is for.
        runs = {p: [] for p in PEERS}
        for rnd in range(args.rounds):
            for p in PEERS[rnd % len(PEERS):] + PEERS[:rnd % len(PEERS)]:
                runs[p].append(run_peer(command(p, inputs if rnd == 0 else timing_only), env))
        results = {p: merged(runs[p]) for p in PEERS}
    ref = results["fp32"]["top5"]
    agree = {p: agreement(ref, results[p]["top5"]) for p in PEERS}
    host = os.uname().nodename if not os.environ.get("CI") else "CI"
    positions = len(ref)

    lines = table(results, agree, args, model, fp32_source, positions, float_layers)
    print("\n".join(lines))
    if args.readme:
        update_readme(args.readme, lines, host, os.environ.get("PEERS_COMMAND") or "python3 " + " ".join(sys.argv))
        print(f"table written to {args.readme}")
    if args.plot:
        cdf_plot(results, args.plot, host)
        print(f"plot: {args.plot}")
    summary = {
        "forward20_ms": {p: results[p]["forward20_ms"] for p in PEERS},
        "decode_ms": {p: results[p]["decode_ms"] for p in PEERS},
        "peak_rss_mb": {p: results[p]["peak_rss_mb"] for p in PEERS},
        "top5_agreement": {p: agree[p][0] for p in PEERS},
    }
    if args.save:
        args.save.write_text(json.dumps({
            "summary": summary, "fp32_source": fp32_source, "positions": positions, "float_layers": float_layers,
            "top5_overlap": {p: agree[p][1] for p in PEERS}, "top1_agreement": {p: agree[p][2] for p in PEERS},
            "peers": {p: {k: v for k, v in results[p].items() if k != "top5"} for p in PEERS},
        }, indent=1))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
