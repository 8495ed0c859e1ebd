"""Export a trained nextword LM to ONNX with a KV cache, in fp32 or 4-bit.

The attention bias and positions are inputs so that the core can also decode a tree of
completion beams in one call (each beam token attends to the context and its own ancestors).

The graph is written node by node (no tracing) so its interface is exactly what the Rust core
expects and every op is one that tract and ONNX Runtime both run:

  inputs   input_ids    int64 [1, S]            new tokens
           position_ids int64 [1, S]            their positions (past length + 0..S)
           attn_bias    f32   [S, P+S]          0 where a query may attend, -1e9 elsewhere
           past_kv      f32   [L, 2, H, P, Dh]  keys and values of the P tokens already seen
           logits_at    int64 [R]               which of the new tokens to compute logits after
  outputs  logits       f32   [1, R, V]         next-token logits after each of those tokens
           present_kv   f32   [L, 2, H, P+S, Dh]

Linear layers that read the same input are one node: a layer's q/k/v projections, and its
gate/up projections (a runtime pays per node, and W4A8 quantizes each node's input once: on the
bundled model this took the graph tract runs from 524 to 460 nodes and a decode step from
12.6M to 11.6M instructions (AVX2 kernel, callgrind), with bit-identical outputs).

In 4-bit mode every linear node is a `com.microsoft::MatMulNBits` node (bits 4, block 32,
symmetric: no zero points; accuracy_level 4, int8 activations allowed, except 1 for the LM head:
`training/precision.py` then measures which other nodes need float precision), and the tied
embedding is stored once, 4-bit,
shared by the LM head (MatMulNBits) and the token lookup (`com.microsoft::GatherBlockQuantized`).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from model import LINEAR_GROUPS, LM, Config, rope_tables
import quantize

BLOCK = 32


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base="c"):
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def op(self, op_type, inputs, base=None, domain=None, n_out=1, **attrs):
        outs = [self.name(base or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


def export(model: LM, out_path: Path, bits: int, calib=None):
    cfg = model.cfg
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    L, H, Dh, D, V = cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.d_model, cfg.vocab_size
    g = Graph()
    i64 = lambda *v: g.const(np.array(v, dtype=np.int64), "i")
    report = {}

    def linear(x, l, group):
        """x [.., in] times layer l's weights of `group` (model.LINEAR_GROUPS: the layers that read
        the same input), stacked along out in one node, which costs the runtime one call and one
        activation quantization instead of several. Each part is quantized on its own (the same
        as separate nodes: the rows of MatMulNBits are independent)."""
        key = f"l{l}_{group}"
        ws = [sd[f"blocks.{l}.{part}.weight"] for part in LINEAR_GROUPS[group]]
        if bits == 32:
            return g.op("MatMul", [x, g.const(np.concatenate(ws, axis=0).T.copy(), key)], key)
        parts = []
        for wi, part in zip(ws, LINEAR_GROUPS[group]):
            packed, scales, err = quantize.quantize_q4(wi, None if calib is None else calib.get(key))
            report[f"l{l}_{part}"] = err
            parts.append((packed, scales))
        packed = np.concatenate([p for p, _ in parts], axis=0)
        scales = np.concatenate([s for _, s in parts], axis=0)
        n, k = sum(w.shape[0] for w in ws), ws[0].shape[1]
        return g.op("MatMulNBits", [x, g.const(packed, key + "_q4"), g.const(scales, key + "_scales")],
                    key, domain="com.microsoft", K=k, N=n, bits=4, block_size=BLOCK,
                    accuracy_level=4)

    def rmsnorm(x, w):
        sq = g.op("Mul", [x, x])
        ms = g.op("ReduceMean", [sq], axes=[-1], keepdims=1)
        r = g.op("Sqrt", [g.op("Add", [ms, g.const(np.array(cfg.norm_eps, np.float32))])])
        return g.op("Mul", [g.op("Div", [x, r]), g.const(w.astype(np.float32))])

    cos, sin = (t.numpy() for t in rope_tables(cfg))
    cos_t, sin_t = g.const(cos, "rope_cos"), g.const(sin, "rope_sin")
    cos_q = g.op("Unsqueeze", [g.op("Gather", [cos_t, "position_ids"]), i64(1)])  # [1,1,S,Dh]
    sin_q = g.op("Unsqueeze", [g.op("Gather", [sin_t, "position_ids"]), i64(1)])

    def rope(x):  # x [1,heads,S,Dh]
        lo = g.op("Slice", [x, i64(0), i64(Dh // 2), i64(-1)])
        hi = g.op("Slice", [x, i64(Dh // 2), i64(Dh), i64(-1)])
        rot = g.op("Concat", [g.op("Neg", [hi]), lo], axis=-1)
        return g.op("Add", [g.op("Mul", [x, cos_q]), g.op("Mul", [rot, sin_q])])

    emb = sd["embed.weight"]
    if bits == 32:
        x = g.op("Gather", [g.const(emb, "embed"), "input_ids"])
        head_w = g.const(emb.T.copy(), "lm_head")
    else:
        packed, scales, err = quantize.quantize_q4(emb, None if calib is None else calib.get("lm_head"))
        report["embed"] = err
        q4, sc = g.const(packed, "embed_q4"), g.const(scales, "embed_scales")
        data = g.op("Reshape", [q4, i64(V, D // 2)])
        scl = g.op("Reshape", [sc, i64(V, D // BLOCK)])
        x = g.op("GatherBlockQuantized", [data, "input_ids", scl], "embed", domain="com.microsoft",
                 bits=4, block_size=BLOCK, gather_axis=0, quantize_axis=1)
    presents = []
    scale = np.array(1.0 / np.sqrt(Dh), np.float32)
    for l in range(L):
        p = f"blocks.{l}."
        y = rmsnorm(x, sd[p + "attn_norm.weight"])
        qkv = linear(y, l, "qkv")
        heads = g.op("Transpose", [g.op("Reshape", [qkv, i64(1, -1, 3 * H, Dh)])], perm=[0, 2, 1, 3])  # [1,3H,S,Dh]
        qk = rope(g.op("Slice", [heads, i64(0), i64(2 * H), i64(1)]))  # queries and keys, rotated at once
        q = g.op("Slice", [qk, i64(0), i64(H), i64(1)])
        k = g.op("Slice", [qk, i64(H), i64(2 * H), i64(1)])
        v = g.op("Slice", [heads, i64(2 * H), i64(3 * H), i64(1)])
        new_kv = g.op("Concat", [k, v], axis=0)  # [2,H,S,Dh]: this step's keys and values
        past = g.op("Squeeze", [g.op("Slice", ["past_kv", i64(l), i64(l + 1), i64(0)]), i64(0)])  # [2,H,P,Dh]
        kv_all = g.op("Concat", [past, new_kv], axis=2)  # [2,H,P+S,Dh]
        presents.append(g.op("Unsqueeze", [kv_all, i64(0)]))
        k_all = g.op("Slice", [kv_all, i64(0), i64(1), i64(0)])  # [1,H,P+S,Dh]
        v_all = g.op("Slice", [kv_all, i64(1), i64(2), i64(0)])
        kt = g.op("Transpose", [k_all], perm=[0, 1, 3, 2])
        s = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, kt]), g.const(scale)]), "attn_bias"])
        a = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v_all])  # [1,H,S,Dh]
        a = g.op("Reshape", [g.op("Transpose", [a], perm=[0, 2, 1, 3]), i64(1, -1, D)])
        x = g.op("Add", [x, linear(a, l, "wo")])
        y = rmsnorm(x, sd[p + "ffn_norm.weight"])
        gate_up = linear(y, l, "gate_up")
        gate = g.op("Slice", [gate_up, i64(0), i64(cfg.d_ff), i64(-1)])
        up = g.op("Slice", [gate_up, i64(cfg.d_ff), i64(2 * cfg.d_ff), i64(-1)])
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        x = g.op("Add", [x, linear(act, l, "w_down")])
    g.op("Concat", presents, axis=0)
    g.nodes[-1].output[0] = "present_kv"
    last = g.op("Gather", [x, "logits_at"], axis=1)  # [1, R, D]
    last = rmsnorm(last, sd["norm.weight"])
    if bits == 32:
        g.nodes.append(helper.make_node("MatMul", [last, head_w], ["logits"]))
    else:
        # accuracy_level 1 (fp32 compute) for the LM head: near-equal logits decide the
        # ranking, and its int8 rounding alone moves the logits more than any other node's
        # (training/precision_report.json). nextword runs it as two W4A8 passes, ONNX Runtime
        # dequantizes. The other nodes start at 4; training/precision.py raises those that
        # need it, measured on each model.
        g.nodes.append(helper.make_node("MatMulNBits", [last, q4, sc], ["logits"], domain="com.microsoft",
                                        K=D, N=V, bits=4, block_size=BLOCK, accuracy_level=1))

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "S"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "S"]),
        helper.make_tensor_value_info("attn_bias", TensorProto.FLOAT, ["S", "T"]),
        helper.make_tensor_value_info("past_kv", TensorProto.FLOAT, [L, 2, H, "P", Dh]),
        helper.make_tensor_value_info("logits_at", TensorProto.INT64, ["R"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "R", V]),
        helper.make_tensor_value_info("present_kv", TensorProto.FLOAT, [L, 2, H, "T", Dh]),
    ]
    graph = helper.make_graph(g.nodes, "nextword_lm", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    m = helper.make_model(graph, opset_imports=opsets, producer_name="nextword-training")
    m.ir_version = 8
    meta = {"config": cfg.to_json(), "bits": str(bits), "block_size": str(BLOCK)}
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out_path))
    return report


def load_checkpoint(path) -> LM:
    ck = torch.load(path, map_location="cpu")
    model = LM(Config.from_dict(ck["config"]))
    model.load_state_dict({k: v.float() for k, v in ck["model"].items()})
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", type=int, choices=[4, 32], default=4)
    ap.add_argument("--calib", default=None, help="text file for the layers' input covariance (GPTQ)")
    ap.add_argument("--tokenizer", default=None, help="needed with --calib")
    args = ap.parse_args()
    model = load_checkpoint(args.checkpoint)
    calib = None
    if args.calib:
        calib = quantize.activation_stats(model, args.tokenizer, args.calib)
    report = export(model, Path(args.out), args.bits, calib)
    if report:
        print(json.dumps({"mean_rel_err": float(np.mean(list(report.values())))}))


if __name__ == "__main__":
    main()
