"""Plot a training run's loss curve (train_log.json written by train.py) to a PNG."""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    log = json.load(open(a.log))
    h = log["history"]
    tokens = [x["tokens"] / 1e6 for x in h]
    plt.figure(figsize=(6, 3.5))
    plt.plot(tokens, [x["train_loss"] for x in h], label="train (batch)")
    plt.plot(tokens, [x["val_loss"] for x in h], label="validation")
    plt.xlabel("tokens seen (millions)")
    plt.ylabel("cross-entropy (nats/token)")
    # A resumed run's log carries the earlier phases' history but only its own minutes.
    plt.title(f"{log['params'] / 1e6:.1f}M parameters, {log['tokens_seen'] / 1e6:.1f}M tokens (last phase {log['minutes']:.0f} min)")
    plt.legend()
    plt.grid(alpha=0.3)
    plt.tight_layout()
    plt.savefig(a.out, dpi=100)


if __name__ == "__main__":
    main()
