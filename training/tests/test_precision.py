"""training/precision.py: the fake int8 rounding is the kernels', and the plan measures and
chooses float nodes as documented, on a tiny exported model."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import export
import precision
from model import LM, TINY


def kernels_rounding(x: np.ndarray) -> np.ndarray:
    """rust-core's act_scale + quantize_row_scalar, then dequantized, in NumPy."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    out = np.zeros_like(blocks)
    for i, b in enumerate(blocks):
        amax = np.float32(np.abs(b).max())
        if amax == 0:
            continue
        inv = np.float32(127) / amax
        q = np.clip(np.round(b * inv), -127, 127)  # np.round: half to even, like the kernels
        out[i] = q * (amax / np.float32(127))
    return out.reshape(x.shape)


def test_fake_int8_rounds_as_the_kernels_do():
    g = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    y = precision.fake_int8(g, "x", "t")
    g.node.append(helper.make_node("Identity", [y], ["y"]))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32) * rng.uniform(0.01, 30, (2, 3, 1)).astype(np.float32)
    x[0, 0, :32] = 0  # an all-zero block
    x[0, 1, :32] = np.arange(32) - 15.5  # amax 15.5 exactly
    x[0, 1, 5] = 15.5 * 2.5 / 127  # rounds to a tie: 2.5 -> 2 (half to even)
    x[1, 2, 32:] = 1e-3
    x[1, 2, 40] = -1e4  # one large value blurs the rest of its block
    got = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, kernels_rounding(x))
    assert np.all(got[0, 0, :32] == 0) and got[1, 2, 33] == 0


@pytest.fixture(scope="module")
def q4_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("q4") / "q.onnx"
    export.export(LM(TINY).eval(), path, 4)
    return onnx.load(str(path))


def calibration():
    rng = np.random.default_rng(2)
    return [list(rng.integers(1, TINY.vocab_size, size=precision.CONTEXT)) for _ in range(6)]


def test_plan_measures_every_node_and_stops_at_the_target(q4_model):
    names = {precision.short_name(n) for n in precision.matmul_nodes(q4_model)}
    none = precision.plan(q4_model, calibration(), target=0.0, log=lambda _: None)
    assert none["float"] == [] and len(none["steps"]) == 1
    assert set(none["sensitivity"]) == names
    # Every node's int8 rounding moves the logits, and all of them together more than any one.
    errors = [s["logit_rms_error"] for s in none["sensitivity"].values()]
    assert min(errors) > 0 and none["steps"][0]["logit_rms_error"] > max(errors)

    every = precision.plan(q4_model, calibration(), target=1.01, log=lambda _: None)
    assert sorted(every["float"]) == sorted(names)
    # Chosen by int8 error squared per multiply-add, largest first.
    ratio = [every["sensitivity"][k]["logit_rms_error"] ** 2 / every["sensitivity"][k]["multiply_adds"]
             for k in every["float"]]
    assert ratio == sorted(ratio, reverse=True)
    last = every["steps"][-1]
    assert last["logit_rms_error"] == 0 and last["top5_agreement"] == 1 and last["extra_multiply_adds"] == 1


def test_apply_sets_the_levels(q4_model):
    m = onnx.ModelProto()
    m.CopyFrom(q4_model)
    chosen = {"l0_w_down", "logits"}
    precision.apply(m, chosen)
    levels = {precision.short_name(n): precision.attr(n, "accuracy_level") for n in precision.matmul_nodes(m)}
    assert levels == {k: precision.FLOAT if k in chosen else precision.INT8 for k in levels}
