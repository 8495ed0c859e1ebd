import shutil
from pathlib import Path

import bundle

ROOT = Path(__file__).resolve().parents[2]


def test_refresh_of_the_bundled_model_changes_nothing(tmp_path):
    # The same manifest bytes back: refresh writes what make_bundle wrote.
    out = tmp_path / "en"
    shutil.copytree(ROOT / "models" / "en", out)
    before = (out / "manifest.json").read_bytes()
    bundle.refresh_hashes(out)
    assert (out / "manifest.json").read_bytes() == before


def test_refresh_rehashes_an_edited_file_and_drops_the_stale_signature(tmp_path):
    out = tmp_path / "en"
    shutil.copytree(ROOT / "models" / "en", out)
    assert (out / "manifest.sig").exists()
    (out / "MODEL_CARD.md").write_text("edited\n")
    manifest = bundle.refresh_hashes(out)
    assert manifest["files"]["MODEL_CARD.md"] == bundle.sha256(out / "MODEL_CARD.md")
    assert manifest["files"]["model.onnx"] == bundle.sha256(out / "model.onnx")
    assert not (out / "manifest.sig").exists()
