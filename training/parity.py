"""Run an exported nextword ONNX model with ONNX Runtime, step by step through its KV cache, and
compare with the PyTorch model: the check that export.py wrote the same arithmetic."""
import numpy as np
import onnxruntime as ort
import torch

from model import LM


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def causal_bias(s: int, p: int) -> np.ndarray:
    """attn_bias for s new tokens after p cached ones."""
    q = np.arange(s)[:, None] + p
    k = np.arange(p + s)[None, :]
    return np.where(k <= q, 0.0, -1e9).astype(np.float32)


def run_incremental(sess, cfg, ids, chunks):
    """Feed `ids` in chunks of the given sizes; returns the logits after each chunk."""
    past = np.zeros((cfg.n_layers, 2, cfg.n_heads, 0, cfg.head_dim), np.float32)
    out, pos = [], 0
    for c in chunks:
        x = np.array([ids[pos : pos + c]], np.int64)
        feeds = {"input_ids": x, "position_ids": np.arange(pos, pos + c, dtype=np.int64)[None],
                 "attn_bias": causal_bias(c, pos), "past_kv": past,
                 "logits_at": np.array([c - 1], np.int64)}
        logits, past = sess.run(["logits", "present_kv"], feeds)
        out.append(logits[0, -1])
        pos += c
    return out


@torch.no_grad()
def torch_logits(model: LM, ids, ends):
    full = model(torch.tensor([ids]))[0].numpy()
    return [full[e - 1] for e in ends]
