"""Evaluate bundles with `nextword eval` and the Kneser-Ney 4-gram baseline on the same texts,
with the same protocol, and print the table the model card carries."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def nextword_eval(binary, bundle, text, max_lines):
    out = subprocess.run([binary, "eval", "--bundle", bundle, "--text", text, "--max-lines", str(max_lines), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", required=True, help="the training text (for the baseline)")
    ap.add_argument("--text", nargs="+", required=True, help="evaluation texts")
    ap.add_argument("--bundle", nargs="+", required=True, help="NAME=DIR bundles to evaluate")
    ap.add_argument("--max-lines", type=int, default=1000)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "nextword"))
    ap.add_argument("--out", required=True, help="JSON results")
    a = ap.parse_args()
    results = {}
    for spec in a.bundle:
        name, bundle = spec.split("=", 1)
        for t in a.text:
            r = nextword_eval(a.binary, bundle, t, a.max_lines)
            results.setdefault(Path(t).name, {})[name] = r
            print(name, Path(t).name, r, flush=True)
    kn = subprocess.run([sys.executable, str(HERE / "ngram.py"), "--train", a.train, "--max-lines", str(a.max_lines),
                         "--json", *sum((["--eval", t] for t in a.text), [])],
                        check=True, capture_output=True, text=True).stdout
    for t, r in json.loads(kn)["eval"].items():
        results[Path(t).name]["kn4"] = r
        print("kn4", Path(t).name, r, flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print("\n| text | system | words | top-1 | top-3 | KSR | p50 ms | p95 ms |\n|---|---|---|---|---|---|---|---|")
    for t, systems in results.items():
        for name, r in systems.items():
            print(f"| {t} | {name} | {r['words']} | {r['top1']:.3f} | {r['top3']:.3f} | {r['ksr']:.3f} | "
                  f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} |")


if __name__ == "__main__":
    main()
