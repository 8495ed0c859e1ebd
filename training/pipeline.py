"""One command from raw text to a shipped bundle:

    corpus -> tokenizer -> train -> 4-bit export (+ fp32 reference) -> quantization report
           -> precision plan (which nodes keep float activations) -> word-end table
           -> bundle (models/<name>)

`--tiny` runs the same steps on a tiny corpus and model in well under a minute: that is how the
test fixture bundle (models/fixture) is made and how CI tests the pipeline. Each step skips work
whose output exists unless `--force` is given, so an interrupted run resumes.
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def sh(*args):
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=HERE)


def quant_report(fp32_path, q4_path, valid_ids, cfg, windows=64, seq=64):
    """Perplexity of the fp32 and 4-bit exports (ONNX Runtime, activations int8 in MatMulNBits as
    accuracy_level 4 asks) and how often the 4-bit model's top-1 / top-5 agree with fp32's."""
    import parity

    sessions = {k: parity.ort_session(p) for k, p in (("fp32", fp32_path), ("q4", q4_path))}
    nll = {k: 0.0 for k in sessions}
    agree1 = agree5 = n = 0
    past = np.zeros((cfg["n_layers"], 2, cfg["n_heads"], 0, cfg["d_model"] // cfg["n_heads"]), np.float32)
    for w in range(min(windows, (len(valid_ids) - 1) // seq)):
        x = valid_ids[w * seq : w * seq + seq + 1].astype(np.int64)
        feeds = {"input_ids": x[None, :-1], "position_ids": np.arange(seq, dtype=np.int64)[None],
                 "attn_bias": parity.causal_bias(seq, 0), "past_kv": past,
                 "logits_at": np.arange(seq, dtype=np.int64)}
        out = {k: s.run(["logits"], feeds)[0][0] for k, s in sessions.items()}
        for k, lg in out.items():
            lg = lg - lg.max(-1, keepdims=True)
            lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
            nll[k] += -lp[np.arange(seq), x[1:]].sum()
        top_f = np.argsort(-out["fp32"], -1)[:, :5]
        top_q = np.argsort(-out["q4"], -1)[:, :5]
        agree1 += int((top_f[:, 0] == top_q[:, 0]).sum())
        agree5 += sum(len(set(a) & set(b)) for a, b in zip(top_f, top_q)) / 5
        n += seq
    ppl = {k: math.exp(v / n) for k, v in nll.items()}
    return {"tokens": n, "ppl_fp32": ppl["fp32"], "ppl_q4": ppl["q4"],
            "ppl_increase": ppl["q4"] / ppl["fp32"] - 1, "top1_agreement": agree1 / n, "top5_agreement": agree5 / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--work", default=None, help="working directory (default training/build[/tiny])")
    ap.add_argument("--out", default=None, help="bundle directory (default models/en, or models/fixture)")
    ap.add_argument("--minutes", type=float, default=120, help="training wall-clock budget")
    ap.add_argument("--resume", default=None, help="checkpoint to continue training from "
                    "(training/checkpoints/nextword-en.pt continues the bundled model)")
    ap.add_argument("--tokenizer", default=None,
                    help="use this tokenizer instead of training one (the resumed model's: models/en/tokenizer.json)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (train.py's default if unset)")
    ap.add_argument("--skip-train", action="store_true", help="bundle the existing best checkpoint")
    ap.add_argument("--vocab-size", type=int, default=None)
    ap.add_argument("--precision-target", type=float, default=0.98,
                    help="top-5 agreement with all-float activations that training/precision.py keeps "
                    "(the lower end of its 95%% interval on the validation split)")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()

    work = Path(a.work) if a.work else HERE / "build" / ("tiny" if a.tiny else "")
    out = Path(a.out) if a.out else ROOT / "models" / ("fixture" if a.tiny else "en")
    corpus = work / "corpus"
    run = work / "run"
    tok = work / "tok" / "tokenizer.json"
    vocab = a.vocab_size or (512 if a.tiny else 8192)
    tiny = ["--tiny"] if a.tiny else []

    if a.force or not (corpus / "train.txt").exists():
        sh(sys.executable, "corpus.py", "--out", corpus, "--cache", HERE / "build" / "cache", *tiny)
    if a.tokenizer:
        tok.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.tokenizer, tok)
    elif a.force or not tok.exists():
        sh(sys.executable, "tokenizer.py", "--train", corpus / "train.txt", "--vocab-size", vocab, "--out", tok)
    if not a.skip_train and (a.force or a.resume or not (run / "best.pt").exists()):
        budget = ["--steps", "300", "--eval-every", "100", "--batch", "16"] if a.tiny else ["--minutes", a.minutes]
        resume = ["--resume", a.resume] if a.resume else []
        lr = ["--lr", a.lr] if a.lr else []
        sh(sys.executable, "train.py", "--tokenizer", tok, "--train", corpus / "train.txt", "--valid",
           corpus / "valid.txt", "--out", run, *tiny, *budget, *resume, *lr)
    best = run / "best.pt"
    sh(sys.executable, "export.py", "--checkpoint", best, "--out", run / "model_fp32.onnx", "--bits", "32")
    sh(sys.executable, "export.py", "--checkpoint", best, "--out", run / "model_q4.onnx", "--bits", "4",
       "--calib", corpus / "train.txt", "--tokenizer", tok)
    import onnx

    q4 = onnx.load(str(run / "model_q4.onnx"))
    cfg = json.loads({p.key: p.value for p in q4.metadata_props}["config"])
    report = quant_report(run / "model_fp32.onnx", run / "model_q4.onnx", np.load(run / "valid_ids.npy"), cfg)
    print(json.dumps(report, indent=1))
    (run / "quant_report.json").write_text(json.dumps(report, indent=1))
    import precision

    # Which nodes keep float activations, measured on the conversational validation split
    # (the keyboard's kind of text; the test split stays unseen).
    calib = precision.windows(precision.text_ids(tok, "<|bos|>", corpus / "valid_conversational.txt"),
                              60 if a.tiny else precision.CALIBRATION_WINDOWS)
    plan = precision.plan(q4, calib, a.precision_target)
    precision.apply(q4, set(plan["float"]))
    onnx.save(q4, str(run / "model_q4.onnx"))
    precision_report = {"text": "valid_conversational.txt", **plan}
    (run / "precision_report.json").write_text(json.dumps(precision_report, indent=1) + "\n")
    sh(sys.executable, "word_ends.py", "--train", corpus / "train.txt", "--tokenizer", tok,
       "--out", run / "word_ends.bin")
    from bundle import make_bundle

    model_id = "nextword-fixture-tiny" if a.tiny else "nextword-en-12m-q4"
    manifest = make_bundle(run / "model_q4.onnx", tok, out, model_id, word_ends=run / "word_ends.bin")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"bundle {out}: {size / 1e6:.2f} MB, {manifest['model']['parameters']:,} parameters")


if __name__ == "__main__":
    main()
