"""How often each token ends a word in the training text: the bundle's `word_ends.bin`.

The core's word search scores a word as P(its tokens) x P(a word ends after them); the second
factor comes from a model call on the word's last token. For most whole-word tokens (" the",
" still", " going") the training text says the word ends there nearly every time, so the core
can take that rate instead of the call (see ARCHITECTURE.md, one keystroke): one model row less per such
candidate on a keystroke.

    python3 training/word_ends.py --tokenizer T.json --train train.txt --out word_ends.bin
    python3 training/word_ends.py --train train.txt --bundle models/en   # add it to a bundle

Format: one byte per token id (the tokenizer's whole vocabulary, in id order): `round(254 * p)`
where p is the share of the token's occurrences in the text followed by a token that is not a
word continuation (a new word, punctuation, a space, the end of the line), or 255 where the token
occurs fewer than `MIN_COUNT` times (no estimate: the core asks the model).
"""
import argparse
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

MIN_COUNT = 20
UNKNOWN = 255


def is_word_char(c: str) -> bool:
    # The core's `text::is_word_char`.
    return c.isalnum() or c in "'\u2019"


def continuations(tok: Tokenizer) -> np.ndarray:
    """True for tokens the core classifies as word continuations (word chars, no leading space)."""
    out = np.zeros(tok.get_vocab_size(), dtype=bool)
    special = {a.content for a in tok.get_added_tokens_decoder().values()}
    for t in range(len(out)):
        s = tok.decode([t], skip_special_tokens=False)
        out[t] = tok.id_to_token(t) not in special and "\ufffd" not in s and bool(s) and not s.startswith(" ") and all(
            is_word_char(c) for c in s)
    return out


def word_end_table(tok: Tokenizer, lines, batch=20000) -> np.ndarray:
    cont = continuations(tok)
    v = tok.get_vocab_size()
    seen = np.zeros(v, dtype=np.int64)
    ended = np.zeros(v, dtype=np.int64)
    for i in range(0, len(lines), batch):
        for enc in tok.encode_batch(lines[i : i + batch]):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if len(ids) == 0:
                continue
            # The line's last token ends its word too.
            ends = np.ones(len(ids), dtype=np.int64)
            ends[:-1] = ~cont[ids[1:]]
            np.add.at(seen, ids, 1)
            np.add.at(ended, ids, ends)
    table = np.full(v, UNKNOWN, dtype=np.uint8)
    known = seen >= MIN_COUNT
    table[known] = np.round(254 * ended[known] / seen[known]).astype(np.uint8)
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="training text, one line per example")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the bundle's)")
    ap.add_argument("--out", help="where to write the table")
    ap.add_argument("--bundle", help="write the table into this bundle and list it in its manifest")
    a = ap.parse_args()
    if not (a.out or a.bundle) or (a.bundle is None and a.tokenizer is None):
        ap.error("give --out with --tokenizer, or --bundle")
    tok = Tokenizer.from_file(a.tokenizer or str(Path(a.bundle) / "tokenizer.json"))
    lines = Path(a.train).read_text(encoding="utf-8").splitlines()
    table = word_end_table(tok, lines)
    out = Path(a.out) if a.out else Path(a.bundle) / "word_ends.bin"
    out.write_bytes(table.tobytes())
    known = table != UNKNOWN
    print(f"{out}: {known.sum()} of {len(table)} tokens with an estimate, "
          f"{(table[known] >= 249).sum()} ending their word >= 98% of the time")
    if a.bundle:
        from bundle import refresh_hashes, write_manifest

        manifest_path = Path(a.bundle) / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["word_ends"] = out.name
        manifest["files"][out.name] = ""
        write_manifest(Path(a.bundle), manifest)
        refresh_hashes(Path(a.bundle))


if __name__ == "__main__":
    main()
