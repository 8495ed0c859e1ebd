"""Train the nextword LM on a tokenized corpus, on CPU (bf16 autocast) or CUDA.

The learning-rate schedule runs on a token budget, or on a wall-clock budget when training
must fit a session (`--minutes`); validation loss is measured every `--eval-every` steps, the
best checkpoint is kept (early stopping after `--patience` evaluations without improvement),
and training resumes from `--resume` (a checkpoint written by this script).
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from model import LM, TINY, Config, checkpoint


def pack(tokenizer: Tokenizer, path: Path, cache: Path) -> np.ndarray:
    """Token ids of every line, each line preceded by <|bos|>, as one uint16 stream."""
    if cache.exists() and cache.stat().st_mtime > path.stat().st_mtime:
        return np.load(cache)
    bos = tokenizer.token_to_id("<|bos|>")
    lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    out = []
    for i in range(0, len(lines), 10000):
        for enc in tokenizer.encode_batch(lines[i : i + 10000], add_special_tokens=False):
            out.append(bos)
            out.extend(enc.ids)
    arr = np.asarray(out, dtype=np.uint16)
    np.save(cache, arr)
    return arr


def batches(data: np.ndarray, batch: int, seq: int, rng: np.random.Generator):
    while True:
        starts = rng.integers(0, len(data) - seq - 1, size=batch)
        x = np.stack([data[s : s + seq + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(x)


@torch.no_grad()
def val_loss(model, data: np.ndarray, seq: int, device, max_windows=200) -> float:
    model.eval()
    n = min(max_windows, (len(data) - 1) // seq)
    losses = []
    for i in range(0, n, 16):
        x = torch.from_numpy(
            np.stack([data[j * seq : j * seq + seq + 1] for j in range(i, min(n, i + 16))]).astype(np.int64)
        ).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()).item())
    model.train()
    return float(np.mean(losses))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--out", required=True, help="directory for checkpoints and the log")
    ap.add_argument("--tiny", action="store_true", help="tiny config, for tests and fixtures")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--tokens", type=float, default=0, help="token budget (0: use --minutes)")
    ap.add_argument("--minutes", type=float, default=0, help="wall-clock budget")
    ap.add_argument("--steps", type=int, default=0, help="step budget (tests)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(args.tokenizer)
    cfg = TINY if args.tiny else Config()
    cfg.vocab_size = tok.get_vocab_size()
    train = pack(tok, Path(args.train), out / "train_ids.npy")
    valid = pack(tok, Path(args.valid), out / "valid_ids.npy")
    print(f"train tokens {len(train):,}  valid tokens {len(valid):,}", flush=True)

    model = LM(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    log = {"config": json.loads(cfg.to_json()), "params": model.n_params(), "history": []}
    step, tokens_seen = 0, 0
    # Step at which the learning-rate warm-up starts: again on resuming without the optimizer's
    # state (a compact checkpoint), since fresh Adam moments at full rate would jolt the model.
    warmup_from = 0
    if args.resume:
        ck = torch.load(args.resume, map_location=device)
        model.load_state_dict({k: v.float() for k, v in ck["model"].items()})
        step, tokens_seen = ck["step"], ck["tokens_seen"]
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
        else:
            warmup_from = step
        log["history"] = ck.get("history", [])
    print(f"params {model.n_params():,}  device {device}", flush=True)

    rng = np.random.default_rng(args.seed + step)
    it = batches(train, args.batch, args.seq, rng)
    tok_per_step = args.batch * args.seq
    t0 = time.time()
    best, bad = float("inf"), 0

    def progress() -> float:
        if args.steps:
            return step / args.steps
        if args.tokens:
            return tokens_seen / args.tokens
        return (time.time() - t0) / 60 / args.minutes

    def save(path, with_opt):
        ck = checkpoint(model, step, tokens_seen, log["history"])
        if with_opt:
            ck["opt"] = opt.state_dict()
        torch.save(ck, path)

    model.train()
    while progress() < 1.0:
        p = progress()
        lr = args.lr * min(1.0, (step - warmup_from + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(it).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tok_per_step
        if step % 50 == 0:
            rate = tokens_seen / max(1e-9, time.time() - t0) * 3600 / 1e6
            print(f"step {step} tokens {tokens_seen:,} loss {loss.item():.4f} lr {lr:.2e} ({rate:.1f}M tok/h)", flush=True)
        if step % args.eval_every == 0 or progress() >= 1.0:
            vl = val_loss(model, valid, args.seq, device)
            log["history"].append({"step": step, "tokens": tokens_seen, "train_loss": loss.item(), "val_loss": vl,
                                   "minutes": (time.time() - t0) / 60})
            print(f"eval step {step} val_loss {vl:.4f} ppl {math.exp(vl):.1f}", flush=True)
            save(out / "last.pt", with_opt=True)
            if vl < best:
                best, bad = vl, 0
                save(out / "best.pt", with_opt=False)
            else:
                bad += 1
                if bad >= args.patience:
                    print("early stop: validation loss stopped improving", flush=True)
                    break
    log["tokens_seen"] = tokens_seen
    log["best_val_loss"] = best
    log["minutes"] = (time.time() - t0) / 60
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps({"best_val_loss": best, "tokens_seen": tokens_seen}), flush=True)


if __name__ == "__main__":
    main()
