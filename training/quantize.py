"""4-bit block quantization in the MatMulNBits layout, with an activation-weighted scale search.

For each block of 32 weights of one output row, the scale is chosen among clipped candidates
(absmax/7 shrunk by up to 30%, and absmax/8 using the -8 code) to minimise the error of the
layer's *output*, approximated by sum_k E[x_k^2] (w_k - dequant(w_k))^2 where E[x_k^2] are the
input channel's second moments measured on calibration text (uniform when none are given).
"""
import numpy as np
import torch

from model import LINEARS

BLOCK = 32
RATIOS = np.linspace(0.70, 1.0, 16)


def quantize_q4(w: np.ndarray, importance=None):
    """w: [N, K] float (torch Linear layout). Returns (packed u8 [N, K/32, 16], scales f32 [N*K/32],
    relative weighted error)."""
    n, k = w.shape
    assert k % BLOCK == 0, "K must be a multiple of 32"
    wb = w.reshape(n, k // BLOCK, BLOCK).astype(np.float64)
    imp = np.ones(k) if importance is None else np.maximum(importance, 1e-8)
    ib = np.broadcast_to(imp.reshape(1, k // BLOCK, BLOCK), wb.shape)
    absmax = np.abs(wb).max(-1, keepdims=True)
    absmax = np.where(absmax == 0, 1e-12, absmax)
    best_err = np.full(absmax.shape, np.inf)
    best_s = absmax / 7
    cands = [absmax * r / 7 for r in RATIOS] + [absmax * r / 8 for r in RATIOS]
    for s in cands:
        q = np.clip(np.round(wb / s), -8, 7)
        err = ((wb - q * s) ** 2 * ib).sum(-1, keepdims=True)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s)
    q = (np.clip(np.round(wb / best_s), -8, 7) + 8).astype(np.uint8)  # codes 0..15, zero point 8
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    rel = float(best_err.sum() / ((wb**2) * ib).sum())
    return packed, best_s.reshape(-1).astype(np.float32), rel


def dequantize_q4(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    n, nb, _ = packed.shape
    q = np.empty((n, nb, BLOCK), np.float32)
    q[..., 0::2] = packed & 0xF
    q[..., 1::2] = packed >> 4
    return ((q - 8) * scales.reshape(n, nb, 1)).reshape(n, nb * BLOCK)


@torch.no_grad()
def activation_stats(model, tokenizer_path, text_path, max_lines=2000, seq=64):
    """E[x^2] per input channel of every linear layer (and of the LM head), keyed like export.py."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    bos = tok.token_to_id("<|bos|>")
    lines = [l for l in open(text_path, encoding="utf-8").read().splitlines() if l.strip()][:max_lines]
    ids = []
    for e in tok.encode_batch(lines, add_special_tokens=False):
        ids += [bos] + e.ids
    sums, counts, hooks = {}, {}, []

    def hook(key):
        def f(_m, inp, _out):
            x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
            sums[key] = sums.get(key, 0) + (x**2).sum(0).numpy()
            counts[key] = counts.get(key, 0) + x.shape[0]
        return f

    for l, blk in enumerate(model.blocks):
        for nm in LINEARS:
            hooks.append(getattr(blk, nm).register_forward_hook(hook(f"l{l}_{nm}")))
    hooks.append(model.norm.register_forward_hook(lambda _m, _i, out: _acc_head(out)))

    def _acc_head(out):
        x = out.detach().float().reshape(-1, out.shape[-1])
        sums["lm_head"] = sums.get("lm_head", 0) + (x**2).sum(0).numpy()
        counts["lm_head"] = counts.get("lm_head", 0) + x.shape[0]

    arr = np.array(ids[: (len(ids) // seq) * seq], dtype=np.int64).reshape(-1, seq)
    for i in range(0, len(arr), 16):
        model(torch.from_numpy(arr[i : i + 16]))
    for h in hooks:
        h.remove()
    return {k: sums[k] / counts[k] for k in sums}
