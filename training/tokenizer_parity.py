"""Write the token ids Python's `tokenizers` gives for tricky strings, for each bundle's
tokenizer, to rust-core/tests/fixtures/tokenizer_ids.json; the Rust tests check that the Rust
crate produces the very same ids (and `tests/test_pipeline.py` that this file is current)."""
import json
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "rust-core" / "tests" / "fixtures" / "tokenizer_ids.json"
BUNDLES = ["models/fixture", "models/en"]
CASES = [
    "I will see you tomorrow",
    "don't worry, it's fine!",
    "  leading and trailing spaces  ",
    "Tabs\tand\nnewlines\r\n",
    "émigré naïve café Zoë",
    "e\u0301migre\u0301 (decomposed)",
    "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧",
    "Привет, как дела? 你好 مرحبا",
    "numbers 3.14159 and 1,000,000 and 2026-11-26",
    "URLs like https://example.com/a?b=c&d",
    "MiXeD CaSe and ALLCAPS",
    "curly ‘quotes’ and “double” — dashes…",
    "\u0000control\u0007chars\u001b",
    "",
    " ",
    "a" * 300,
]


def current():
    out = {}
    for b in BUNDLES:
        path = ROOT / b / "tokenizer.json"
        if path.exists():
            tok = Tokenizer.from_file(str(path))
            out[b] = [{"text": c, "ids": tok.encode(c, add_special_tokens=False).ids} for c in CASES]
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(current(), ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {OUT}")
