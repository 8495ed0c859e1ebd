"""4-bit block quantization in the MatMulNBits layout: GPTQ with a per-block scale search.

Given the layer's input Hessian H = E[x x^T] measured on calibration text, the weights are
quantized one input column at a time (GPTQ, Frantar et al. 2022): the rounding error of a column
is pushed onto the columns not yet quantized through the Cholesky factor of H^-1, so the layer's
*output* error E||(W - Q) x||^2 is what gets minimised, not the weights' own error. The scale of
each block of 32 weights of one output row is chosen when GPTQ reaches the block, among clipped
candidates (absmax/7 shrunk by up to 30%, and absmax/8 using the -8 code), by the block's error
weighted by diag(H). Without calibration data it is the same scale search with uniform weights and
plain rounding.
"""
import numpy as np
import torch

from model import LINEAR_GROUPS

BLOCK = 32
RATIOS = np.linspace(0.70, 1.0, 16)


# Added to H's diagonal, as a fraction of its mean, so that H is invertible (GPTQ's default).
DAMP = 0.01


def block_scales(wb: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """Per-row scale of one block: wb [N, 32], importance [32] -> [N, 1]."""
    absmax = np.abs(wb).max(-1, keepdims=True)
    absmax = np.where(absmax == 0, 1e-12, absmax)
    best_err = np.full(absmax.shape, np.inf)
    best_s = absmax / 7
    for s in [absmax * r / 7 for r in RATIOS] + [absmax * r / 8 for r in RATIOS]:
        err = ((wb - np.clip(np.round(wb / s), -8, 7) * s) ** 2 * importance).sum(-1, keepdims=True)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s)
    return best_s


def quantize_q4(w: np.ndarray, hessian=None):
    """w: [N, K] float (torch Linear layout); hessian: [K, K] E[x x^T] of the layer's input, or None.
    Returns (packed u8 [N, K/32, 16], scales f32 [N*K/32], relative output error
    tr((W-Q) H (W-Q)^T) / tr(W H W^T), with H = I when no Hessian is given)."""
    n, k = w.shape
    assert k % BLOCK == 0, "K must be a multiple of 32"
    w0 = w.astype(np.float64)
    h0 = np.eye(k) if hessian is None else hessian.astype(np.float64)
    W, H = w0.copy(), h0.copy()
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    imp = np.diag(H).copy()
    H[np.diag_indices(k)] += DAMP * imp.mean()
    # Upper Cholesky factor of H^-1: row i holds how column i's error spreads over columns > i
    # (diagonal when H = I: no spreading, plain rounding).
    hinv = np.linalg.cholesky(np.linalg.inv(H)).T
    codes = np.empty((n, k), np.uint8)
    scales = np.empty((n, k // BLOCK))
    for b in range(k // BLOCK):
        lo, hi = b * BLOCK, (b + 1) * BLOCK
        s = block_scales(W[:, lo:hi], imp[lo:hi])
        scales[:, b] = s[:, 0]
        err_block = np.empty((n, BLOCK))
        for i in range(lo, hi):
            q = np.clip(np.round(W[:, i] / s[:, 0]), -8, 7)
            codes[:, i] = (q + 8).astype(np.uint8)  # codes 0..15, zero point 8
            e = (W[:, i] - q * s[:, 0]) / hinv[i, i]
            W[:, i:hi] -= np.outer(e, hinv[i, i:hi])
            err_block[:, i - lo] = e
        W[:, hi:] -= err_block @ hinv[lo:hi, hi:]
    cb = codes.reshape(n, k // BLOCK, BLOCK)
    packed = (cb[..., 0::2] | (cb[..., 1::2] << 4)).astype(np.uint8)
    scales = scales.astype(np.float32)
    d = w0 - dequantize_q4(packed, scales.reshape(-1))
    rel = float(((d @ h0) * d).sum() / ((w0 @ h0) * w0).sum())
    return packed, scales.reshape(-1), rel


def dequantize_q4(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    n, nb, _ = packed.shape
    q = np.empty((n, nb, BLOCK), np.float32)
    q[..., 0::2] = packed & 0xF
    q[..., 1::2] = packed >> 4
    return ((q - 8) * scales.reshape(n, nb, 1)).reshape(n, nb * BLOCK)


@torch.no_grad()
def activation_stats(model, tokenizer_path, text_path, max_lines=2000, seq=64):
    """E[x x^T] of the input of every linear node (and of the LM head), keyed like export.py:
    one per group of layers that read the same input."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    bos = tok.token_to_id("<|bos|>")
    lines = [l for l in open(text_path, encoding="utf-8").read().splitlines() if l.strip()][:max_lines]
    ids = []
    for e in tok.encode_batch(lines, add_special_tokens=False):
        ids += [bos] + e.ids
    sums, counts, hooks = {}, {}, []

    def accumulate(key, x):
        x = x.detach().double().reshape(-1, x.shape[-1])
        sums[key] = sums.get(key, 0) + (x.T @ x).numpy()
        counts[key] = counts.get(key, 0) + x.shape[0]

    for l, blk in enumerate(model.blocks):
        for group, parts in LINEAR_GROUPS.items():
            key = f"l{l}_{group}"
            hooks.append(getattr(blk, parts[0]).register_forward_hook(
                lambda _m, inp, _out, key=key: accumulate(key, inp[0])))
    # The LM head reads the final norm's output.
    hooks.append(model.norm.register_forward_hook(lambda _m, _inp, out: accumulate("lm_head", out)))

    arr = np.array(ids[: (len(ids) // seq) * seq], dtype=np.int64).reshape(-1, seq)
    for i in range(0, len(arr), 16):
        model(torch.from_numpy(arr[i : i + 16]))
    for h in hooks:
        h.remove()
    return {k: sums[k] / counts[k] for k in sums}
