"""Assemble a nextword model bundle: model.onnx + tokenizer.json (+ word_ends.bin) + manifest.json.

The manifest carries everything the core checks before it runs anything: the format version,
the model's shape, the vocabulary size the tokenizer must match, and the SHA-256 of every file
(but the manifest and its signature `manifest.sig`, which `nextword bundle sign` writes after).

    python3 training/bundle.py --onnx M.onnx --tokenizer T.json --out DIR --model-id ID
    python3 training/bundle.py --refresh DIR   # after editing a listed file (model card, data card)
"""
import argparse
import hashlib
import json
import shutil
from pathlib import Path

import onnx

FORMAT_VERSION = 1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bundle(onnx_path: Path, tokenizer_path: Path, out: Path, model_id: str, language="en",
                context_tokens=20, extra_files=(), word_ends=None):
    """`word_ends`: the word-end table (training/word_ends.py), shipped as word_ends.bin."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out / "model.onnx")
    shutil.copyfile(tokenizer_path, out / "tokenizer.json")
    if word_ends:
        shutil.copyfile(word_ends, out / "word_ends.bin")
    for f in extra_files:
        shutil.copyfile(f, out / Path(f).name)
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    props = {p.key: p.value for p in m.metadata_props}
    cfg = json.loads(props["config"])
    tok = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = len(tok["model"]["vocab"]) + sum(1 for t in tok["added_tokens"] if t["content"] not in tok["model"]["vocab"])
    if vocab != cfg["vocab_size"]:
        raise SystemExit(f"tokenizer has {vocab} tokens but the model {cfg['vocab_size']}")
    d, ff, L, V = cfg["d_model"], cfg["d_ff"], cfg["n_layers"], cfg["vocab_size"]
    params = V * d + L * (4 * d * d + 3 * d * ff + 2 * d) + d
    # The signature signs the manifest, so it cannot be listed in it.
    files = sorted(p.name for p in out.iterdir() if p.name not in ("manifest.json", "manifest.sig"))
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "language": language,
        "vocab_size": V,
        "context_tokens": context_tokens,
        "bos_token": "<|bos|>",
        "model": {
            "file": "model.onnx",
            "bits": int(props["bits"]),
            "parameters": params,
            "d_model": d,
            "n_layers": L,
            "n_heads": cfg["n_heads"],
            "head_dim": d // cfg["n_heads"],
            "max_positions": cfg["max_positions"],
        },
        "tokenizer": "tokenizer.json",
        **({"word_ends": "word_ends.bin"} if word_ends else {}),
        "files": {f: sha256(out / f) for f in files},
    }
    write_manifest(out, manifest)
    return manifest


def refresh_hashes(out: Path) -> dict:
    """Recomputes the hash of every file the manifest of bundle `out` lists, the rest unchanged."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = {f: sha256(out / f) for f in manifest["files"]}
    write_manifest(out, manifest)
    return manifest


def write_manifest(out: Path, manifest: dict):
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    stale_signature = out / "manifest.sig"
    if stale_signature.exists():
        # It signed the previous manifest; sign again with `nextword bundle sign`.
        stale_signature.unlink()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refresh", metavar="DIR", help="only recompute the hashes in DIR's manifest")
    ap.add_argument("--onnx")
    ap.add_argument("--tokenizer")
    ap.add_argument("--out")
    ap.add_argument("--model-id")
    ap.add_argument("--word-ends", help="the word-end table (training/word_ends.py)")
    ap.add_argument("--extra", nargs="*", default=[], help="more files to ship in the bundle")
    a = ap.parse_args()
    if a.refresh:
        manifest = refresh_hashes(Path(a.refresh))
    elif a.onnx and a.tokenizer and a.out and a.model_id:
        manifest = make_bundle(Path(a.onnx), Path(a.tokenizer), Path(a.out), a.model_id, extra_files=a.extra,
                               word_ends=a.word_ends)
    else:
        ap.error("give --refresh DIR, or --onnx, --tokenizer, --out and --model-id")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
