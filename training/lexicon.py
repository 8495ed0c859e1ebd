#!/usr/bin/env python3
"""Word list for the core's typo-tolerant completion, derived from the training corpus.

The model's vocabulary holds BPE pieces, not words, so the core needs a list of real words to
propose corrections from. This takes the most frequent words of train.txt (words as
`evalproto.py` counts them), each in its most frequent casing, and writes them one per line,
most frequent first, to rust-core/data/lexicon-en.txt (outside the model bundle: it does not
change with a retrained model, and the core embeds it).

    python3 training/lexicon.py [--corpus training/build/corpus/train.txt] [--size 20000]
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from evalproto import WORD_RE  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def build(lines, size: int, min_count: int = 3) -> list[str]:
    forms: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in lines:
        for w in WORD_RE.findall(line):
            if any(c.isalpha() for c in w) and len(w) <= 40:
                forms[w.lower()][w] += 1
    totals = {k: sum(c.values()) for k, c in forms.items()}
    keys = sorted((k for k, n in totals.items() if n >= min_count), key=lambda k: (-totals[k], k))
    # Most frequent casing; ties go to the lower-case form.
    return [max(forms[k].items(), key=lambda kv: (kv[1], kv[0] == k))[0] for k in keys[:size]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=pathlib.Path, default=ROOT / "training/build/corpus/train.txt")
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "rust-core/data/lexicon-en.txt")
    args = ap.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        words = build(f, args.size)
    args.out.write_text("\n".join(words) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(words)} words")


if __name__ == "__main__":
    main()
