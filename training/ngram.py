"""Interpolated modified Kneser-Ney word n-gram baseline (default 4-gram).

Pure Python + numpy (no KN package on PyPI installs without compiling and
also does fast top-k completion, so it is written here).

Model
-----
* Text is split into words with the evaluation protocol's word regex
  (evalproto.WORD_RE; U+2019 is first normalised to "'").  Counts are on
  lowercased words.  Each line, and each sentence inside a line (after a run
  of . ! ? followed by whitespace, a closing quote/bracket or the end), starts
  with <s>; there is no </s> (the model never predicts the end).
* Vocabulary: lowercased words with count >= min_count (default 2), at most
  max_vocab of them; everything else is <unk> (kept in the counts, never
  suggested).  Word ids are in sorted (code point) order of the lowercased
  word, so a typed prefix is a contiguous id range (sorted vocab + bisect).
* Interpolated modified KN (Chen & Goodman) with three discounts per order
  estimated from counts-of-counts; highest order uses raw counts, lower orders
  continuation counts N1+(. h w) except n-grams starting with <s> (raw counts,
  as in KenLM); the unigram distribution is interpolated with uniform over the
  vocabulary (+ <unk>).  An unseen history backs off with weight 1.
* Display casing: the most frequent spelling of a word among its
  non-sentence-initial occurrences (lowercase if it was only ever seen
  sentence-initially); next-word suggestions at the start of a line/sentence
  are capitalised; completions follow the case of the typed prefix (first
  letter upper -> capitalised, >= 2 letters all upper -> all caps).

suggest(text_before_cursor, k)
------------------------------
If the text ends inside a word (a word, optionally followed by an
apostrophe, touching the end), that is the typed prefix: only words starting
with it (case-insensitively) are ranked, by the interpolated probability
given the words before it.  Otherwise the next word is predicted.  The top-k
is exact: P(w|h) = Gamma * P1(w) + sparse terms from the histories' blocks, so
the words not in any block are ranked by P1 alone.

CLI:  python3 training/ngram.py --train FILE --eval FILE [--eval FILE2 ...]
          [--ignore-case] [--json] [--max-lines N]
"""

from __future__ import annotations

import bisect
import json
import os
import re
import sys
import time
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evalproto  # noqa: E402

BITS = 21  # bits per word id in packed history keys (3 ids -> 63 bits)
MAX_IDS = 1 << BITS
_BOUNDARY = r"[.!?]+(?=[\s\"')\]]|$)"
# findall -> the word, or "" for a sentence boundary / newline
TOK_RE = re.compile("(%s)|%s|\n" % (evalproto.WORD_PATTERN, _BOUNDARY))
# first word of each sentence (for the display-casing statistics)
INIT_RE = re.compile(
    "(?:\n|[.!?](?=[\\s\"')\\]]))[^%s\n]*?(%s)" % (evalproto.START_CLASS, evalproto.WORD_PATTERN)
)
PARTIAL_RE = re.compile("(?:%s)'?$" % evalproto.WORD_PATTERN)
DENSE_MAX = 20000  # prefix ranges up to this size are scored densely


def _norm(text: str) -> str:
    return text.replace("\u2019", "'")


def _capitalize(w: str) -> str:
    if not w:
        return w
    u = w[0].upper()
    return (u if len(u) == 1 else w[0]) + w[1:]


def _pack(cols: Sequence[np.ndarray]) -> np.ndarray:
    k = cols[0].astype(np.int64)
    for c in cols[1:]:
        k = (k << BITS) | c.astype(np.int64)
    return k


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Start indices of runs of equal (keys...) in sorted arrays."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new)


def _discounts(adj: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from counts of counts (Chen & Goodman), clamped to [0, i]."""
    n = [int(np.count_nonzero(adj == i)) for i in range(1, 5)]
    d = np.array([0.0, 0.5, 1.0, 1.5])
    if n[0] > 0 and n[1] > 0:
        y = n[0] / (n[0] + 2.0 * n[1])
        d[1] = 1.0 - 2.0 * y * n[1] / n[0]
        if n[2] > 0:
            d[2] = 2.0 - 3.0 * y * n[2] / n[1]
            if n[3] > 0:
                d[3] = 3.0 - 4.0 * y * n[3] / n[2]
    for i in range(1, 4):
        if not np.isfinite(d[i]) or d[i] <= 0.0:
            d[i] = 0.5 * i
        d[i] = min(d[i], float(i))
    return d


class _Order:
    """One order n >= 2: histories (packed n-1 ids) -> block of (word, A)."""

    __slots__ = ("n", "hkeys", "hoff", "gamma", "w", "a", "disc")

    def __init__(self, n, hk, w, adj):
        self.n = n
        starts = _runs(hk)
        self.hkeys = hk[starts]
        self.hoff = np.append(starts, len(hk)).astype(np.int64)
        tot = np.add.reduceat(adj, starts).astype(np.float64)
        d = _discounts(adj)
        self.disc = d
        n1 = np.add.reduceat((adj == 1).astype(np.int64), starts)
        n2 = np.add.reduceat((adj == 2).astype(np.int64), starts)
        n3 = np.add.reduceat((adj >= 3).astype(np.int64), starts)
        self.gamma = (d[1] * n1 + d[2] * n2 + d[3] * n3) / tot
        lens = np.diff(self.hoff)
        self.a = (adj - d[np.minimum(adj, 3)]) / np.repeat(tot, lens)
        self.w = w.astype(np.int32)

    def find(self, key: int):
        i = int(np.searchsorted(self.hkeys, key))
        if i < len(self.hkeys) and int(self.hkeys[i]) == key:
            return int(self.hoff[i]), int(self.hoff[i + 1]), float(self.gamma[i])
        return None


class KNModel:
    def __init__(self, order: int = 4, min_count: int = 2, max_vocab: int | None = None):
        assert 1 <= order <= 4
        self.order = order
        self.min_count = min_count
        self.max_vocab = min(max_vocab or MAX_IDS - 2, MAX_IDS - 2)
        self.stats: dict = {}

    # ------------------------------------------------------------ training
    def train_file(self, path: str, max_lines: int | None = None) -> "KNModel":
        with open(path, encoding="utf-8") as f:
            if max_lines is None:
                text = f.read()
            else:
                text = "".join(line for _, line in zip(range(max_lines), f))
        return self.train_text(text)

    def train_lines(self, lines: Iterable[str]) -> "KNModel":
        return self.train_text("\n".join(lines))

    def train_text(self, text: str) -> "KNModel":
        t0 = time.perf_counter()
        text = _norm(text).replace("\r\n", "\n")
        chunks = []
        lines = text.split("\n")
        step = 20000
        for i in range(0, len(lines), step):
            chunks.append("\n" + "\n".join(lines[i : i + step]))
        del lines, text
        # pass 1: spellings and sentence-initial spellings
        surf: Counter = Counter()
        init: Counter = Counter()
        for ch in chunks:
            surf.update(TOK_RE.findall(ch))
            init.update(INIT_RE.findall(ch))
        surf.pop("", None)
        low: Counter = Counter()
        for s, c in surf.items():
            low[s.lower()] += c
        vocab = [w for w, c in low.items() if c >= self.min_count]
        if len(vocab) > self.max_vocab:
            vocab = sorted(vocab, key=lambda w: (-low[w], w))[: self.max_vocab]
        vocab.sort()
        self.words: list[str] = vocab
        V = self.V = len(vocab)
        self.UNK, self.BOS = V, V + 1
        self.ids = {w: i for i, w in enumerate(vocab)}
        best: dict[str, tuple[int, str]] = {}
        for s, c in surf.items():
            l = s.lower()
            if l in self.ids:
                mid = c - init.get(s, 0)
                if mid > 0 and (l not in best or (mid, s) > best[l]):
                    best[l] = (mid, s)
        self.display = [best[w][1] if w in best else w for w in vocab]
        # pass 2: ids
        m = {s: self.ids.get(s.lower(), self.UNK) for s in surf}
        m[""] = self.BOS
        parts = [np.array([m[t] for t in TOK_RE.findall(ch)], dtype=np.int32) for ch in chunks]
        del chunks, surf, init, m
        T = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        del parts
        isb = T == self.BOS
        drop = isb & np.append(isb[1:], True)  # BOS followed by BOS or at the end
        T = T[~drop]
        self.stats.update(tokens=int(np.count_nonzero(T != self.BOS)), vocab=V,
                          oov=int(np.count_nonzero(T == self.UNK)))
        self._build(T)
        self.stats["train_s"] = round(time.perf_counter() - t0, 2)
        return self

    def _build(self, T: np.ndarray) -> None:
        N = self.order
        V, BOS = self.V, self.BOS
        cs = np.concatenate([[0], np.cumsum(T == BOS)])
        M = len(T)
        raw = {}  # n -> (hk, w, count), sorted by (hk, w)
        for n in range(2, N + 1):
            if M < n:
                raw[n] = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
                continue
            i = np.arange(M - n + 1)
            i = i[cs[i + n] - cs[i + 1] == 0]  # no <s> after the first position
            hk = _pack([T[i + j] for j in range(n - 1)])
            w = T[i + n - 1]
            del i
            o = np.lexsort((w, hk))
            hk, w = hk[o], w[o]
            del o
            st = _runs(hk, w)
            cnt = np.diff(np.append(st, len(hk)))
            raw[n] = (hk[st], w[st], cnt)
            del hk, w
        self.orders: dict[int, _Order] = {}
        cont_src = None  # unique (n+1)-grams, for continuation counts of order n
        for n in range(N, 1, -1):
            hk, w, cnt = raw.pop(n)
            adj = cnt.astype(np.int64)
            if cont_src is not None:
                shk = cont_src[0] & ((1 << (BITS * (n - 1))) - 1)
                sw = cont_src[1]
                o = np.lexsort((sw, shk))
                shk, sw = shk[o], sw[o]
                st = _runs(shk, sw)
                cc = np.diff(np.append(st, len(shk)))
                notbos = (hk >> (BITS * (n - 2))) != BOS
                assert int(notbos.sum()) == len(st)
                assert np.array_equal(hk[notbos], shk[st]) and np.array_equal(w[notbos], sw[st])
                adj[notbos] = cc
            self.orders[n] = _Order(n, hk, w, adj)
            cont_src = (hk, w)
        # unigrams: continuation counts (number of bigram types ending in w)
        if cont_src is not None and len(cont_src[1]):
            c1 = np.bincount(cont_src[1], minlength=V + 2)[: V + 1].astype(np.int64)
        else:  # order 1: raw counts
            c1 = np.bincount(T[T != BOS], minlength=V + 1)[: V + 1].astype(np.int64)
        d = _discounts(c1)
        tot = float(c1.sum()) or 1.0
        g0 = float((d[1] * (c1 == 1).sum() + d[2] * (c1 == 2).sum() + d[3] * (c1 >= 3).sum()) / tot)
        if c1.sum() == 0:
            g0 = 1.0
        self.p1 = np.maximum(c1 - d[np.minimum(c1, 3)], 0.0) / tot + g0 / (V + 1)
        self.disc1 = d
        self.ord1 = np.argsort(-self.p1[:V], kind="stable").astype(np.int32)
        self._mask = np.zeros(V + 1, dtype=bool)
        self.stats["ngrams"] = {1: V + 1, **{n: int(len(o.w)) for n, o in self.orders.items()}}

    # ------------------------------------------------------------ scoring
    def _hist_ids(self, words: Sequence[str]) -> list[int]:
        ids = [self.ids.get(w.lower(), self.UNK) for w in words[-(self.order - 1):]] if self.order > 1 else []
        if len(words) < self.order - 1:
            ids = [self.BOS] + ids
        return ids

    def _chain(self, hist: list[int]):
        """[(order, start, end, weight)], Gamma, from the longest history down."""
        found = []
        for n in range(min(self.order, len(hist) + 1), 1, -1):
            key = 0
            for i in hist[len(hist) - n + 1 :]:
                key = (key << BITS) | i
            f = self.orders[n].find(key)
            if f is not None:
                found.append((n, f[0], f[1], f[2]))
        out, weight = [], 1.0
        for n, s, e, g in found:
            out.append((n, s, e, weight))
            weight *= g
        return out, weight

    def probs(self, history: Sequence[str]) -> np.ndarray:
        """Dense P(. | history words) over ids 0..V (V = <unk>); sums to 1."""
        chain, G = self._chain(self._hist_ids(list(history)))
        p = G * self.p1
        for n, s, e, wt in chain:
            o = self.orders[n]
            p[o.w[s:e]] += wt * o.a[s:e]
        return p

    def prob(self, word: str, history: Sequence[str]) -> float:
        return float(self.probs(history)[self.ids.get(word.lower(), self.UNK)])

    def _topk(self, hist: list[int], lo: int, hi: int, k: int) -> list[int]:
        if hi <= lo or k <= 0:
            return []
        chain, G = self._chain(hist)
        blocks = []
        for n, s, e, wt in chain:
            o = self.orders[n]
            ws = o.w[s:e]
            if lo > 0 or hi < self.V + 1:
                a, b = np.searchsorted(ws, (lo, hi))
                blocks.append((ws[a:b], o.a[s + a : s + b], wt))
            else:
                blocks.append((ws, o.a[s:e], wt))
        if hi - lo <= DENSE_MAX:
            sc = G * self.p1[lo:hi]
            for ids, a, wt in blocks:
                sc[ids - lo] += wt * a
            if len(sc) > k:
                cand = np.argpartition(-sc, k - 1)[:k]
            else:
                cand = np.arange(len(sc))
            order = sorted(cand.tolist(), key=lambda i: (-sc[i], i))
            return [i + lo for i in order[:k]]
        # sparse: block words scored fully, the rest by P1 (global frequency order)
        blocks = [b for b in blocks if len(b[0])]
        if blocks:
            allids = np.concatenate([b[0] for b in blocks])
            vals = np.concatenate([b[1] * b[2] for b in blocks])
            u, inv = np.unique(allids, return_inverse=True)
            sc = np.bincount(inv, weights=vals, minlength=len(u)) + G * self.p1[u]
            if len(u) > k:
                top = np.argpartition(-sc, k - 1)[:k]
                u, sc = u[top], sc[top]
        else:
            u, sc = np.zeros(0, dtype=np.int64), np.zeros(0)
        cands = list(zip((-sc).tolist(), u.tolist()))
        mask = self._mask
        mask[u] = True
        need, pos, ord1 = k, 0, self.ord1
        while need > 0 and pos < len(ord1):
            ch = ord1[pos : pos + 256]
            sel = ch[(ch >= lo) & (ch < hi) & ~mask[ch]][:need]
            cands.extend((-G * float(self.p1[i]), int(i)) for i in sel)
            need -= len(sel)
            pos += 256
        mask[u] = False
        cands.sort()
        return [i for _, i in cands[:k]]

    def suggest(self, text: str, k: int = 3) -> list[str]:
        text = _norm(text)
        line = text[text.rfind("\n") + 1 :]
        tail = line[-128:]
        m = PARTIAL_RE.search(tail)
        prefix = ""
        before = line
        if m:
            prefix = m.group()
            before = line[: len(line) - len(tail) + m.start()]
        toks = TOK_RE.findall(before)
        try:
            last = len(toks) - 1 - toks[::-1].index("")
        except ValueError:
            last = -1
        seg = toks[last + 1 :]
        hist = self._hist_ids(seg)
        if prefix:
            pl = prefix.lower()
            lo = bisect.bisect_left(self.words, pl)
            hi = bisect.bisect_left(self.words, pl + "\U0010ffff", lo)
        else:
            lo, hi = 0, self.V
        ids = self._topk(hist, lo, hi, k)
        out = [self.display[i] for i in ids]
        if prefix:
            if prefix[0].isupper():
                if len(prefix) >= 2 and prefix.isupper():
                    out = [w.upper() for w in out]
                else:
                    out = [_capitalize(w) for w in out]
        elif not seg:
            out = [_capitalize(w) for w in out]
        return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval", action="append", default=[])
    ap.add_argument("--ignore-case", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--max-lines", type=int, help="evaluate only the first N lines of each eval file")
    ap.add_argument("--max-train-lines", type=int)
    ap.add_argument("--order", type=int, default=4)
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--max-vocab", type=int)
    a = ap.parse_args(argv)
    model = KNModel(order=a.order, min_count=a.min_count, max_vocab=a.max_vocab)
    model.train_file(a.train, a.max_train_lines)
    if not a.json:
        print(f"trained {a.order}-gram on {a.train}: {json.dumps(model.stats)}", flush=True)
    results = {}
    for path in a.eval:
        t0 = time.perf_counter()
        r = evalproto.evaluate(model.suggest, evalproto.load_lines(path, a.max_lines), a.ignore_case)
        r["eval_s"] = round(time.perf_counter() - t0, 2)
        results[path] = r
        if not a.json:
            print(evalproto.format_metrics(path, r) + f" eval_s={r['eval_s']}", flush=True)
    if a.json:
        print(json.dumps({"model": {"order": a.order, "ignore_case": a.ignore_case, **model.stats},
                          "eval": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
