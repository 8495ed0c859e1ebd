"""The training pipeline on tiny data: tokenizer, a few training steps, 4-bit quantization,
ONNX export with KV cache, and parity between PyTorch and ONNX Runtime."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import export
import parity
import quantize
import tokenizer_parity
import warmstart
from model import LM, TINY

HERE = Path(__file__).resolve().parent.parent

WORDS = "the a cat dog sat ran on under mat house big small red quickly I you we see will tomorrow".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("corpus")
    for name, n in (("train.txt", 3000), ("valid.txt", 200)):
        lines = [" ".join(rng.choice(WORDS, size=rng.integers(4, 12))).capitalize() + "." for _ in range(n)]
        (d / name).write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return LM(TINY).eval()


def test_tokenizer_marks_word_starts_and_never_fails(corpus, tmp_path):
    out = tmp_path / "tok.json"
    subprocess.run([sys.executable, "tokenizer.py", "--train", corpus / "train.txt", "--vocab-size", "300",
                    "--out", out], check=True, cwd=HERE)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out))
    enc = tok.encode("the cat sat", add_special_tokens=False)
    # Each word's first piece, and only it, carries the word-start mark.
    starts = [i for i, t in enumerate(enc.tokens) if t.startswith("Ġ")]
    assert len(starts) == 3 and starts[0] == 0
    for text in ["😀 Привет", "\x00\x07", "zzzqqq"]:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids).strip() == text.strip()
    assert tok.token_to_id("<|bos|>") is not None


def test_training_steps_reduce_loss_and_checkpoint_resumes(corpus, tmp_path):
    tok = tmp_path / "tok.json"
    subprocess.run([sys.executable, "tokenizer.py", "--train", corpus / "train.txt", "--vocab-size", "300",
                    "--out", tok], check=True, cwd=HERE)
    run = tmp_path / "run"
    args = [sys.executable, "train.py", "--tokenizer", tok, "--train", corpus / "train.txt", "--valid",
            corpus / "valid.txt", "--out", run, "--tiny", "--batch", "8", "--eval-every", "20", "--threads", "1"]
    subprocess.run(args + ["--steps", "40"], check=True, cwd=HERE)
    log = json.loads((run / "train_log.json").read_text())
    hist = log["history"]
    assert hist[-1]["val_loss"] < np.log(300)  # better than uniform
    subprocess.run(args + ["--steps", "60", "--resume", run / "last.pt"], check=True, cwd=HERE)
    log2 = json.loads((run / "train_log.json").read_text())
    assert log2["tokens_seen"] == 60 * 8 * 64


def test_fp32_export_matches_torch_through_kv_cache(tiny_model, tmp_path):
    export.export(tiny_model, tmp_path / "m.onnx", 32)
    ids = list(np.random.default_rng(1).integers(1, TINY.vocab_size, size=14))
    chunks = [6, 1, 4, 1, 2]
    ref = parity.torch_logits(tiny_model, ids, np.cumsum(chunks))
    got = parity.run_incremental(parity.ort_session(tmp_path / "m.onnx"), TINY, ids, chunks)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_q4_export_is_the_dequantized_model(tiny_model, tmp_path):
    export.export(tiny_model, tmp_path / "q.onnx", 4)
    fake = LM(TINY).eval()
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for k, v in sd.items():
        if v.ndim == 2:
            p, s, _ = quantize.quantize_q4(v.numpy())
            sd[k] = torch.from_numpy(quantize.dequantize_q4(p, s))
    fake.load_state_dict(sd)
    ids = list(np.random.default_rng(2).integers(1, TINY.vocab_size, size=10))
    chunks = [5, 1, 1, 3]
    ref = parity.torch_logits(fake, ids, np.cumsum(chunks))
    got = parity.run_incremental(parity.ort_session(tmp_path / "q.onnx"), TINY, ids, chunks)
    scale = max(float(np.abs(r).max()) for r in ref)
    for a, b in zip(ref, got):
        # ORT's accuracy_level 4 quantizes activations to int8: a small, bounded difference.
        assert float(np.abs(a - b).max()) < 0.02 * scale


def test_warmstart_reads_back_every_weight_of_a_q4_export(tmp_path):
    torch.manual_seed(5)
    model = LM(TINY).eval()
    with torch.no_grad():
        for name, v in model.named_parameters():
            if name.endswith("norm.weight"):
                v.uniform_(0.5, 1.5)  # distinct gains, so their order is checked too
    export.export(model, tmp_path / "q.onnx", 4)
    cfg, sd = warmstart.state_dict_from_onnx(tmp_path / "q.onnx")
    ref = model.state_dict()
    assert set(sd) == set(ref)
    for k, v in ref.items():
        want = v.numpy()
        if v.ndim == 2:  # the fused nodes split back into each layer's dequantized rows
            p, s, _ = quantize.quantize_q4(want)
            want = quantize.dequantize_q4(p, s)
        np.testing.assert_array_equal(sd[k].numpy(), want, err_msg=k)


def test_quantizer_roundtrip_and_scale_search():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    packed, scales, rel = quantize.quantize_q4(w)
    assert packed.shape == (64, 3, 16) and scales.shape == (64 * 3,)
    deq = quantize.dequantize_q4(packed, scales)
    assert np.mean((w - deq) ** 2) / np.mean(w**2) == pytest.approx(rel, rel=1e-6)
    # The search never does worse than plain absmax/7 rounding.
    s0 = np.abs(w.reshape(64, 3, 32)).max(-1, keepdims=True) / 7
    plain = (np.clip(np.round(w.reshape(64, 3, 32) / s0), -8, 7) * s0).reshape(64, 96)
    assert np.mean((w - deq) ** 2) <= np.mean((w - plain) ** 2)
    assert rel < 0.02


def test_gptq_lowers_the_layer_output_error():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    # Correlated input channels, as a real layer sees them: here rounding errors can cancel.
    x = rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 64)) + 0.1 * rng.standard_normal((2000, 64))
    h = x.T @ x / len(x)
    out_err = lambda p, s: float(np.sum(((w - quantize.dequantize_q4(p, s)) @ x.T) ** 2))
    p_rtn, s_rtn, _ = quantize.quantize_q4(w)
    p_gptq, s_gptq, rel = quantize.quantize_q4(w, h)
    assert out_err(p_gptq, s_gptq) < 0.7 * out_err(p_rtn, s_rtn)
    assert rel == pytest.approx(out_err(p_gptq, s_gptq) / float(np.sum((w @ x.T) ** 2)), rel=1e-6)


def test_tokenizer_parity_file_is_current():
    path = tokenizer_parity.OUT
    assert json.loads(path.read_text()) == tokenizer_parity.current(), "run training/tokenizer_parity.py"
