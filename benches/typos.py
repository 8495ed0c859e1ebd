"""Typo correction quality: how often the word meant is among the 3 suggestions after typing it
with one typo.

For a sample of the words of a text (3+ lowercase letters, one in four, fixed seed), types the
line up to the word, then the word with one slip a touch typist makes (two letters swapped, a
neighbouring key, a letter left out, a letter doubled; never the first letter), and asks
`nextword complete` for 3 suggestions. Typos that leave a prefix of some listed word get no
corrections from the core (the word may still be being typed): they count as misses unless the
model completes them.

    python3 benches/typos.py [--text benches/heldout.txt] [--cases 250] [--nextword target/release/nextword]
"""
import argparse
import json
import random
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = [("qwertyuiop", 0.5), ("asdfghjkl", 0.75), ("zxcvbnm", 1.25)]
POS = {c: (x + off, y) for y, (row, off) in enumerate(ROWS) for x, c in enumerate(row)}


def neighbours(c):
    if c not in POS:
        return []
    (x, y) = POS[c]
    return [d for d, (u, v) in POS.items() if d != c and ((x - u) ** 2 + (y - v) ** 2) ** 0.5 <= 1.25]


def with_typo(w, rng):
    i = rng.randrange(1, len(w))
    kind = rng.choice(["swap", "neighbour", "omit", "double"])
    if kind == "swap" and i < len(w) - 1 and w[i] != w[i + 1]:
        return w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    if kind == "neighbour" and neighbours(w[i]):
        return w[:i] + rng.choice(neighbours(w[i])) + w[i + 1 :]
    if kind == "omit" and len(w) > 3:
        return w[:i] + w[i + 1 :]
    return w[:i] + w[i] + w[i:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", type=Path, default=REPO / "benches/heldout.txt")
    ap.add_argument("--cases", type=int, default=250)
    ap.add_argument("--nextword", type=Path, default=REPO / "target/release/nextword")
    ap.add_argument("--bundle", type=Path, default=REPO / "models/en")
    a = ap.parse_args()
    rng = random.Random(7)
    cases = []
    for line in a.text.read_text(encoding="utf-8").splitlines():
        for m in re.finditer(r"[a-z]{3,}", line):
            if rng.random() < 0.25:
                cases.append((line[: m.start()], m.group(), with_typo(m.group(), rng)))
    cases = cases[: a.cases]
    hits = 0
    for context, word, typed in cases:
        out = subprocess.run([str(a.nextword), "complete", context + typed, "--max", "3", "--json",
                              "--bundle", str(a.bundle)], capture_output=True, text=True, check=True).stdout
        hits += word in [s["text"].lower() for s in json.loads(out)["suggestions"]]
    print(f"{a.text.name}: {len(cases)} words typed with one typo; the word meant among 3 suggestions: "
          f"{hits / len(cases):.1%}")


if __name__ == "__main__":
    main()
