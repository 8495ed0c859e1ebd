"""Reference implementation of the nextword evaluation protocol.

The Rust CLI (`nextword eval`) implements the same protocol; when the two
disagree, this file is the reference.  Everything below is deliberately
simple and fully specified.

Input
-----
* A text file read as UTF-8, split on "\\n"; one trailing "\\r" per line is
  dropped (Rust: `str::lines()`).  `max_lines` keeps the first N lines of the
  file (empty lines count towards N; they contain no words).
* Each line is evaluated on its own: no context crosses a line break.

Words
-----
A word is a maximal match of (Unicode general categories, Rust-regex syntax)::

    C  = [\\p{L}\\p{N}]                                   # may start a part
    C2 = [\\p{L}\\p{N}\\p{Mn}\\p{Mc}--[\\x{FE00}-\\x{FE0F}\\x{E0100}-\\x{E01EF}]]
    WORD = C C2* (?: ['\\x{2019}] C C2* )*

i.e. runs of letters, digits and (non-initial) combining marks, where an
apostrophe (U+0027 or U+2019) *between* two such runs belongs to the word
("don't", "rock'n'roll", "o'clock") but a leading or trailing one does not
("'cause" -> "cause", "dogs'" -> "dogs").  Underscore, punctuation, symbols and
emoji (including variation selectors and ZWJ) separate words: "hello," ->
"hello"; "3rd" is one word; "émigré" is one word whether NFC or NFD.  Regexes
scan left to right, leftmost-longest as usual (Python `re.finditer`).
The classes are built from `unicodedata` at import (Python 3.11 = Unicode
14.0); newer Unicode tables elsewhere differ only on recently added
characters.

Comparison key
--------------
key(w) = w with U+2019 replaced by U+0027, then lowercased (`str.lower()`,
Rust `to_lowercase()`) only when ignore_case is set.  A suggestion s "is" the
target w iff key(s) == key(w).  Default: case-sensitive.

Lengths are counted in Unicode code points (Rust: `chars().count()`), and
w[:j] means the first j code points of the word as written in the line.

Metrics (suggest(text_before_cursor, 3) returns up to 3 whole words)
-------------------------------------------------------------------
For every word w (length L) of every line, with ctx = line[:start_of_w]
(exactly the original characters before the word, trailing space included):

* for j = 0, 1, ..., L-1: S_j = suggest(ctx + w[:j], 3);
  stop at the first j where key(w) is in {key(s) for s in S_j}.
* top-1 hit  : S_0[0] is w;  top-3 hit: w in S_0 (S_0 is reused, not re-asked).
* keystroke cost of w: j+1 if found at j (j letters typed + 1 tap),
  else L+1 (whole word typed + space/commit).
* KSR = 1 - sum(cost) / sum(L+1).  An oracle that always lists the target
  first scores top1 = top3 = 1 and KSR = 1 - N / sum(L+1).
* the context keeps the line's own spelling of earlier words (what the user
  typed or tapped is assumed to equal the text).

Latency: every suggest call made above is timed (wall clock, perf_counter);
p50/p95 are nearest-rank percentiles (sorted[ceil(p/100*n) - 1]) in ms.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import unicodedata
from typing import Callable, Iterable, Sequence

__all__ = [
    "WORD_RE",
    "START_CLASS",
    "CONT_CLASS",
    "words",
    "word_spans",
    "key",
    "load_lines",
    "evaluate",
    "percentile",
]


def _build_classes() -> tuple[str, str]:
    """Regex character classes (without brackets) for C and C2 above."""

    def ranges(pred) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        start = None
        for cp in range(sys.maxunicode + 2):
            ok = cp <= sys.maxunicode and pred(cp)
            if ok and start is None:
                start = cp
            elif not ok and start is not None:
                out.append((start, cp - 1))
                start = None
        return out

    cat = unicodedata.category
    cats = [cat(chr(i)) for i in range(sys.maxunicode + 1)]
    vs = set(range(0xFE00, 0xFE10)) | set(range(0xE0100, 0xE01F0))

    def start(cp: int) -> bool:
        return cats[cp][0] in "LN"

    def cont(cp: int) -> bool:
        c = cats[cp]
        return c[0] in "LN" or (c in ("Mn", "Mc") and cp not in vs)

    def fmt(rs: list[tuple[int, int]]) -> str:
        parts = []
        for a, b in rs:
            if a == b:
                parts.append("\\U%08x" % a)
            else:
                parts.append("\\U%08x-\\U%08x" % (a, b))
        return "".join(parts)

    return fmt(ranges(start)), fmt(ranges(cont))


START_CLASS, CONT_CLASS = _build_classes()
WORD_PATTERN = "[%s][%s]*(?:['\u2019][%s][%s]*)*" % (START_CLASS, CONT_CLASS, START_CLASS, CONT_CLASS)
WORD_RE = re.compile(WORD_PATTERN)


def word_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, word) for every word of the line, left to right."""
    return [(m.start(), m.end(), m.group()) for m in WORD_RE.finditer(line)]


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def key(w: str, ignore_case: bool = False) -> str:
    w = w.replace("\u2019", "'")
    return w.lower() if ignore_case else w


def load_lines(path: str, max_lines: int | None = None) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline does not open another line
    lines = [l[:-1] if l.endswith("\r") else l for l in lines]
    if max_lines is not None:
        lines = lines[:max_lines]
    return lines


def percentile(sorted_vals: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    n = len(sorted_vals)
    if n == 0:
        return 0.0
    r = max(1, math.ceil(p / 100.0 * n))
    return float(sorted_vals[min(r, n) - 1])


SuggestFn = Callable[[str, int], Sequence[str]]


def evaluate(suggest_fn: SuggestFn, lines: Iterable[str], ignore_case: bool = False, k: int = 3) -> dict:
    """Run the protocol; returns words, top1, top3, ksr, p50_ms, p95_ms (+ raw sums)."""
    n_words = top1 = top3 = 0
    cost_sum = 0
    full_sum = 0
    lat: list[float] = []
    clock = time.perf_counter
    for line in lines:
        for start, _end, w in word_spans(line):
            ctx = line[:start]
            target = key(w, ignore_case)
            L = len(w)
            cost = L + 1
            for j in range(L):
                t0 = clock()
                sug = suggest_fn(ctx + w[:j], k)
                lat.append(clock() - t0)
                keys = [key(s, ignore_case) for s in list(sug)[:k]]
                if j == 0:
                    if keys and keys[0] == target:
                        top1 += 1
                    if target in keys:
                        top3 += 1
                if target in keys:
                    cost = j + 1
                    break
            n_words += 1
            cost_sum += cost
            full_sum += L + 1
    lat.sort()
    return {
        "words": n_words,
        "top1": top1 / n_words if n_words else 0.0,
        "top3": top3 / n_words if n_words else 0.0,
        "ksr": 1.0 - cost_sum / full_sum if full_sum else 0.0,
        "p50_ms": percentile(lat, 50) * 1000.0,
        "p95_ms": percentile(lat, 95) * 1000.0,
        "calls": len(lat),
        "keystrokes": cost_sum,
        "keystrokes_no_prediction": full_sum,
    }


def format_metrics(name: str, m: dict) -> str:
    return (
        f"{name}: words={m['words']} top1={m['top1']:.4f} top3={m['top3']:.4f} "
        f"ksr={m['ksr']:.4f} p50={m['p50_ms']:.3f}ms p95={m['p95_ms']:.3f}ms calls={m['calls']}"
    )


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Print the protocol's word split of each line of a file (debug aid).")
    ap.add_argument("file")
    ap.add_argument("--max-lines", type=int)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    for line in load_lines(a.file, a.max_lines):
        ws = words(line)
        print(json.dumps(ws, ensure_ascii=False) if a.json else " | ".join(ws))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
