"""Turn a 4-bit bundle model (export.py's ONNX) back into a training checkpoint, to continue
training a released model when its float checkpoint was not kept.

The weights come back as their 4-bit dequantized values (the export's GPTQ quantization
keeps the relative error at a few percent); a few hundred steps of further training absorb that.
The optimizer state is not in the ONNX file, so training restarts its warm-up.

    python3 warmstart.py --onnx ../models/en/model.onnx --log train_log.json --out build/warm.pt
"""
import argparse
import json
import re

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from model import LINEAR_GROUPS, LM, Config, checkpoint
from quantize import dequantize_q4


def state_dict_from_onnx(path):
    m = onnx.load(str(path))
    cfg = Config.from_dict(json.loads({p.key: p.value for p in m.metadata_props}["config"]))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    # export.py names initializers "<key>_<serial>"; strip the serial to find a key.
    by_key = {re.sub(r"_\d+$", "", n): a for n, a in inits.items()}

    def deq(key):  # packed [N, K/32, 16] as quantize.quantize_q4 returned it
        return dequantize_q4(by_key[key + "_q4"], by_key[key + "_scales"])

    sd = {"embed.weight": deq("embed")}
    shapes = {k: v.shape for k, v in LM(cfg).state_dict().items()}
    for l in range(cfg.n_layers):
        for group, parts in LINEAR_GROUPS.items():
            # A group's node stacks its parts' rows in order: split them back.
            rows = deq(f"l{l}_{group}")
            for part in parts:
                n = shapes[f"blocks.{l}.{part}.weight"][0]
                sd[f"blocks.{l}.{part}.weight"], rows = rows[:n], rows[n:]
    # RMSNorm gains are the [d_model] float constants multiplied in, in graph order:
    # attn_norm and ffn_norm of each layer, then the final norm.
    gains = []
    for node in m.graph.node:
        if node.op_type == "Mul":
            for inp in node.input:
                a = inits.get(inp)
                if a is not None and a.dtype == np.float32 and a.shape == (cfg.d_model,):
                    gains.append(a)
    if len(gains) != 2 * cfg.n_layers + 1:
        raise SystemExit(f"expected {2 * cfg.n_layers + 1} RMSNorm gains, found {len(gains)}")
    for l in range(cfg.n_layers):
        sd[f"blocks.{l}.attn_norm.weight"] = gains[2 * l]
        sd[f"blocks.{l}.ffn_norm.weight"] = gains[2 * l + 1]
    sd["norm.weight"] = gains[-1]
    return cfg, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default=None,
                    help="the released model's train_log.json: its tokens seen and loss history carry on")
    a = ap.parse_args()
    log = json.load(open(a.log)) if a.log else {"tokens_seen": 0, "history": []}
    cfg, sd = state_dict_from_onnx(a.onnx)
    model = LM(cfg)
    model.load_state_dict(sd)  # strict: every parameter must come from the file
    torch.save(checkpoint(model, 0, log["tokens_seen"], log["history"]), a.out)
    print(f"{a.out}: {model.n_params():,} parameters from {a.onnx}")


if __name__ == "__main__":
    main()
