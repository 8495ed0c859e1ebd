"""peers.py's model rewrites, on the fixture bundle (the timed runs need minutes and ONNX Runtime:
`benches/peers.sh`)."""
import hashlib
import json
from pathlib import Path

import onnx
import pytest

import peers
from precision import attr, matmul_nodes, short_name

FIXTURE = peers.REPO / "models" / "fixture"


def levels(model: Path) -> dict:
    m = onnx.load(str(model))
    return {short_name(n): attr(n, "accuracy_level") for n in matmul_nodes(m)}


def test_float_layers_rewrites_only_the_named_nodes_and_rehashes(tmp_path):
    before = levels(FIXTURE / "model.onnx")
    changed = peers.with_float_layers(FIXTURE, tmp_path / "b", ["w_down", "l1_wo"])
    assert sorted(changed) == ["l0_w_down", "l1_w_down", "l1_wo"]
    after = levels(tmp_path / "b" / "model.onnx")
    for name, level in after.items():
        assert level == (1 if name in changed else before[name]), name
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "b" / name).read_bytes()).hexdigest() == digest, name
    assert not (tmp_path / "b" / "manifest.sig").exists()


def test_float_layers_rejects_unknown_names(tmp_path):
    with pytest.raises(SystemExit, match="no MatMulNBits node named"):
        peers.with_float_layers(FIXTURE, tmp_path / "b", ["w_down", "attention"])
