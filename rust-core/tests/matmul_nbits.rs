//! nextword's `com.microsoft::MatMulNBits` (and tract's built-in, for comparison) against
//! onnxruntime, on the fixtures made by `tests/fixtures/make_matmul_nbits.py`.
//!
//! Tolerance. ORT runs the fixtures with accuracy_level=0 (f32 activations, f32 weights
//! dequantized from the exact 4-bit codes and f16-exact scales). nextword's kernels may
//! quantize activations to int8 per block of 32 (W4A8) and tract's built-in stores scales in
//! f16 and may accumulate differently, so an output element `y` must satisfy
//! `|y - y_ort| <= REL_TOL * max|y_ort| + ABS_TOL` per output tensor, with REL_TOL = 1% (the
//! int8 rounding of A contributes ~0.1-0.3% of the output range at K=64; the check is loose
//! enough for that and tight enough to catch any layout/zero-point/bias mistake, which moves
//! outputs by tens of percent).

use std::path::PathBuf;

use nextword_core::kernels;
use nextword_core::ops::preload::{self, ModelFile};
use nextword_core::ops::{
    count_nodes, gather_block_quantized, onnx_framework, payloads, set_kernel, GatherQ4, MatMulImpl,
};
use nextword_core::tract_onnx::pb;
use nextword_core::tract_onnx::prelude::*;
use serde_json::Value;

const REL_TOL: f32 = 0.01;
const ABS_TOL: f32 = 1e-4;

const MNB_OUTPUTS: [&str; 6] = [
    "y_plain",
    "y_zp",
    "y_bias",
    "y_zp_bias",
    "y3_plain",
    "y3_zp_bias",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_proto(name: &str) -> pb::ModelProto {
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    <pb::ModelProto as prost::Message>::decode(&bytes[..]).expect("fixture parses")
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture json");
    serde_json::from_str(&text).expect("fixture json parses")
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn f32_tensor(v: &Value) -> Tensor {
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_shape(&shape_of(v), &data).unwrap()
}

fn i64_tensor(v: &Value) -> Tensor {
    let data: Vec<i64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    Tensor::from_shape(&shape_of(v), &data).unwrap()
}

fn optimized(imp: MatMulImpl, file: &str) -> TypedModel {
    onnx_framework(imp)
        .model_for_path(fixture(file))
        .unwrap_or_else(|e| panic!("{imp}: loading {file}: {e:?}"))
        .into_optimized()
        .unwrap_or_else(|e| panic!("{imp}: optimizing {file}: {e:?}"))
}

/// Returns the largest |got - want| over the tensor, after asserting it is within tolerance.
fn check_close(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let got = got.cast_to::<f32>().unwrap();
    let got_view = got.try_as_plain_ram().unwrap();
    let got = got_view.as_slice::<f32>().unwrap();
    let want_view = want.try_as_plain_ram().unwrap();
    let want = want_view.as_slice::<f32>().unwrap();
    let range = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let tol = REL_TOL * range + ABS_TOL;
    let mut worst = (0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        assert!(
            d.is_finite(),
            "{what}: non-finite output at {i}: got {g}, want {w}"
        );
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: max |diff| {} at {} (got {}, want {}) exceeds tolerance {tol} (max|want| = {range})",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
    worst.0
}

fn mnb_inputs(case: &Value) -> TVec<TValue> {
    tvec![
        f32_tensor(&case["inputs"]["a2"]).into(),
        f32_tensor(&case["inputs"]["a3"]).into()
    ]
}

fn check_mnb_outputs(label: &str, case: &Value, outputs: &[TValue]) -> f32 {
    assert_eq!(outputs.len(), MNB_OUTPUTS.len());
    let mut worst = 0f32;
    for (name, got) in MNB_OUTPUTS.iter().zip(outputs) {
        let want = f32_tensor(&case["outputs"][name]);
        let what = format!("{label} case {} output {name}", case["name"]);
        worst = worst.max(check_close(&what, got, &want));
    }
    worst
}

/// Runs every case of matmul_nbits_expected.json through a plan of `model` (m = 1 and 20 on
/// the 2-D input, seq = 1 and 7 on the 3-D one; zero points and bias on and off).
fn check_matmul_nbits_model(label: &str, model: TypedModel) {
    let exp = expected("matmul_nbits_expected.json");
    let plan = TypedSimplePlan::new(model).unwrap();
    let mut worst = 0f32;
    for case in exp["cases"].as_array().unwrap() {
        let outputs = plan
            .run(mnb_inputs(case))
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        worst = worst.max(check_mnb_outputs(label, case, &outputs));
    }
    eprintln!("{label}: max |diff| vs onnxruntime = {worst}");
}

#[test]
fn nextword_matches_onnxruntime() {
    let model = optimized(MatMulImpl::Nextword, "matmul_nbits.onnx");
    // Every node got its weight converted at optimization time: nothing is left unpacked.
    assert_eq!(count_nodes(&model), (6, 0), "{model}");
    check_matmul_nbits_model(&format!("nextword[{}]", kernels::select().name()), model);
}

#[test]
fn every_kernel_matches_onnxruntime() {
    for kernel in kernels::available() {
        let mut model = optimized(MatMulImpl::Nextword, "matmul_nbits.onnx");
        assert_eq!(set_kernel(&mut model, kernel), 6);
        check_matmul_nbits_model(&format!("nextword[{}]", kernel.name()), model);
    }
}

#[test]
fn tract_builtin_matches_onnxruntime() {
    let model = optimized(MatMulImpl::TractBuiltin, "matmul_nbits.onnx");
    assert_eq!(count_nodes(&model), (0, 0));
    check_matmul_nbits_model("tract-builtin", model);
}

/// `ops::preload` moves the weights of the nodes whose initializers nothing else reads (here
/// `mnb_zp` and `mnb_bias`; the other four share theirs) out of the protobuf: both forms give
/// ONNX Runtime's outputs, and the moved initializers are gone from the graph.
#[test]
fn preloaded_weights_match_onnxruntime() {
    let mut proto = fixture_proto("matmul_nbits.onnx");
    let graph = proto.graph.as_mut().unwrap();
    let preloaded = preload::preload(graph, ModelFile::default());
    assert_eq!(preloaded.nodes, 2);
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for moved in ["zp_B", "zp_scales", "zp_zp", "bias_B", "bias_scales"] {
        assert!(!names.contains(&moved), "{moved} still in the graph");
    }
    assert!(names.contains(&"bias_bias") && names.contains(&"plain_B"));
    check_preloaded(&proto, preloaded, "nextword-preloaded");
}

/// Reads `proto`, whose weights `preloaded` holds, withdraws them once tract has the graph,
/// and checks the optimized model (all six nodes packed) against ONNX Runtime's outputs.
fn check_preloaded(proto: &pb::ModelProto, preloaded: preload::Preloaded, label: &str) {
    let model = onnx_framework(MatMulImpl::Nextword)
        .model_for_proto_model(proto)
        .unwrap();
    drop(preloaded);
    let model = model.into_optimized().unwrap();
    assert_eq!(count_nodes(&model), (6, 0));
    check_matmul_nbits_model(label, model);
}

/// The same with every initializer payload left in the file's buffer by `ops::payloads` (as
/// a bundle loads, there only the large ones): the weights preload takes are repacked there,
/// the others (the shared ones, the bias) are given back to the graph; same outputs.
#[test]
fn weights_repacked_in_the_file_match_onnxruntime() {
    let file = std::fs::read(fixture("matmul_nbits.onnx")).expect("fixture");
    let stripped = payloads::strip(&file, 1).unwrap();
    let mut proto = <pb::ModelProto as prost::Message>::decode(stripped.bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    assert!(graph.initializer.iter().all(|t| t.raw_data.is_empty()));
    let preloaded = preload::preload(
        graph,
        ModelFile {
            bytes: file,
            payloads: stripped.payloads,
        },
    );
    assert_eq!(preloaded.nodes, 2);
    let kept = fixture_proto("matmul_nbits.onnx")
        .graph
        .unwrap()
        .initializer;
    for t in &graph.initializer {
        let want = kept.iter().find(|k| k.name == t.name).unwrap();
        assert_eq!(t.raw_data, want.raw_data, "{} given back", t.name);
    }
    check_preloaded(&proto, preloaded, "nextword-repacked-in-file");
}

/// A weight that is also listed as a graph input (as older exports do) is left to tract.
#[test]
fn weights_listed_as_graph_inputs_stay() {
    let mut proto = fixture_proto("matmul_nbits.onnx");
    let graph = proto.graph.as_mut().unwrap();
    graph.input.push(pb::ValueInfoProto {
        name: "zp_B".into(),
        ..Default::default()
    });
    let preloaded = preload::preload(graph, ModelFile::default());
    assert_eq!(preloaded.nodes, 1);
    assert!(graph.initializer.iter().any(|t| t.name == "zp_B"));
}

/// A graph that names the preloaded op without weights preloaded for it (a crafted file, or
/// a parse after the weights were withdrawn) is refused with an error, not a panic.
#[test]
fn preloaded_op_without_weights_is_refused() {
    let mut proto = fixture_proto("matmul_nbits.onnx");
    drop(preload::preload(
        proto.graph.as_mut().unwrap(),
        ModelFile::default(),
    ));
    let err = onnx_framework(MatMulImpl::Nextword)
        .model_for_proto_model(&proto)
        .expect_err("no weights to build the op from");
    assert!(
        format!("{err:?}").contains("no preloaded weights"),
        "{err:?}"
    );
}

#[test]
fn nextword_without_optimization() {
    // into_typed + declutter only, i.e. before codegen.
    let model = onnx_framework(MatMulImpl::Nextword)
        .model_for_path(fixture("matmul_nbits.onnx"))
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap();
    assert_eq!(count_nodes(&model), (6, 0));
    check_matmul_nbits_model("nextword-decluttered", model);
}

#[test]
fn simple_state_with_varying_lengths() {
    // One state reused across runs whose symbolic lengths (m, s) change, as the LM does
    // between prefill and decode steps.
    let exp = expected("matmul_nbits_expected.json");
    let cases = exp["cases"].as_array().unwrap();
    for imp in MatMulImpl::ALL {
        let plan = TypedSimplePlan::new(optimized(imp, "matmul_nbits.onnx")).unwrap();
        let mut state = TypedSimpleState::new(&plan).unwrap();
        for case in cases.iter().chain(cases.iter().rev()) {
            let outputs = state.run(mnb_inputs(case)).unwrap();
            check_mnb_outputs(&format!("{imp} (SimpleState)"), case, &outputs);
        }
    }
}

#[test]
fn optimized_model_keeps_symbolic_lengths() {
    let model = optimized(MatMulImpl::Nextword, "matmul_nbits.onnx");
    for (ix, outlet) in model.output_outlets().unwrap().iter().enumerate() {
        let fact = model.outlet_fact(*outlet).unwrap();
        assert!(
            fact.shape.as_concrete().is_none(),
            "output {ix} should have a symbolic length, got {fact:?}"
        );
        assert_eq!(fact.shape.last().unwrap(), &48.to_dim());
    }
}

#[test]
fn nextword_rejects_other_block_sizes() {
    // block_size=16 is valid for ORT (and tract's built-in lowers it to a plain f32 matmul);
    // ours supports 32 only and must say so rather than compute garbage.
    let err = onnx_framework(MatMulImpl::Nextword)
        .model_for_path(fixture("matmul_nbits_block16.onnx"))
        .and_then(|m| m.into_optimized())
        .expect_err("block_size=16 must be rejected");
    let msg = format!("{err:?}");
    assert!(
        msg.contains("block_size=32") && msg.contains("block_size=16"),
        "{msg}"
    );
    assert!(msg.contains("mnb_b16"), "error should name the node: {msg}");

    let builtin = optimized(MatMulImpl::TractBuiltin, "matmul_nbits_block16.onnx");
    assert_eq!(count_nodes(&builtin), (0, 0));
}

/// The tied 4-bit embedding: one initializer read by GatherBlockQuantized through Reshape
/// nodes and by the LM-head MatMulNBits.
#[test]
fn tied_embedding_gather_block_quantized() {
    let exp = expected("gather_block_quantized_tied_expected.json");
    for imp in MatMulImpl::ALL {
        let model = optimized(imp, "gather_block_quantized_tied.onnx");
        let expected_nodes = if imp == MatMulImpl::Nextword {
            (1, 0)
        } else {
            (0, 0)
        };
        assert_eq!(count_nodes(&model), expected_nodes, "{imp}");
        let gathers = model
            .nodes()
            .iter()
            .filter(|n| n.op_is::<GatherQ4>())
            .count();
        assert_eq!(
            gathers,
            (imp == MatMulImpl::Nextword) as usize,
            "{imp}: GatherQ4 nodes"
        );
        if std::env::var_os("NEXTWORD_DUMP_MODEL").is_some() {
            for node in model.nodes() {
                eprintln!(
                    "{imp}: #{} {} {} {:?}",
                    node.id,
                    node.name,
                    node.op.name(),
                    node.op.info()
                );
            }
        }
        let plan = TypedSimplePlan::new(model).unwrap();
        let mut worst = 0f32;
        for case in exp["cases"].as_array().unwrap() {
            let ids = i64_tensor(&case["inputs"]["ids"]);
            let outputs = plan
                .run(tvec![ids.into()])
                .unwrap_or_else(|e| panic!("{imp}: {e:?}"));
            for (name, got) in ["emb", "logits"].iter().zip(&outputs) {
                let want = f32_tensor(&case["outputs"][name]);
                let what = format!("{imp} tied case {} output {name}", case["name"]);
                let d = check_close(&what, got, &want);
                if *name == "emb" {
                    // The embedding is a pure dequantization: exact up to f32 rounding.
                    assert!(d <= 1e-6, "{what}: dequantized embedding off by {d}");
                }
                worst = worst.max(d);
            }
        }
        eprintln!("{imp} tied embedding: max |diff| vs onnxruntime = {worst}");
    }
}

/// The tied table read in place (`read_tables_in_place`, as the predictor loads the model):
/// the export's `Reshape`s of it are gone, and the lookup and LM head still match ONNX
/// Runtime, the lookup exactly.
#[test]
fn tied_embedding_read_in_place() {
    let exp = expected("gather_block_quantized_tied_expected.json");
    let mut proto = fixture_proto("gather_block_quantized_tied.onnx");
    let graph = proto.graph.as_mut().unwrap();
    let reshapes = |g: &pb::GraphProto| g.node.iter().filter(|n| n.op_type == "Reshape").count();
    let before = reshapes(graph);
    // The table, its scales and its zero points.
    assert_eq!(gather_block_quantized::read_tables_in_place(graph), 3);
    assert_eq!(reshapes(graph), before - 3);
    let model = onnx_framework(MatMulImpl::Nextword)
        .model_for_proto_model(&proto)
        .unwrap()
        .into_optimized()
        .unwrap();
    let plan = TypedSimplePlan::new(model).unwrap();
    for case in exp["cases"].as_array().unwrap() {
        let outputs = plan
            .run(tvec![i64_tensor(&case["inputs"]["ids"]).into()])
            .unwrap();
        for (name, got) in ["emb", "logits"].iter().zip(&outputs) {
            let what = format!("read in place, case {} output {name}", case["name"]);
            let d = check_close(&what, got, &f32_tensor(&case["outputs"][name]));
            assert!(*name != "emb" || d <= 1e-6, "{what}: off by {d}");
        }
    }
}

/// nextword's GatherBlockQuantized takes ONNX's negative indices (from the end) and refuses
/// an index past the table with an error, not a panic.
#[test]
fn gather_block_quantized_indices() {
    let model = optimized(MatMulImpl::Nextword, "gather_block_quantized_tied.onnx");
    let rows = model
        .nodes()
        .iter()
        .find_map(|n| n.op_as::<GatherQ4>())
        .expect("a GatherQ4 node")
        .table
        .n() as i64;
    let plan = TypedSimplePlan::new(model).unwrap();
    let emb = |id: i64| -> Result<Vec<f32>, String> {
        let ids = Tensor::from_shape(&[1, 1], &[id]).unwrap();
        let out = plan.run(tvec![ids.into()]).map_err(|e| format!("{e:?}"))?;
        let view = out[0].try_as_plain_ram().unwrap();
        Ok(view.as_slice::<f32>().unwrap().to_vec())
    };
    assert_eq!(emb(-1).unwrap(), emb(rows - 1).unwrap());
    assert_eq!(emb(-rows).unwrap(), emb(0).unwrap());
    assert_ne!(emb(0).unwrap(), emb(1).unwrap());
    for bad in [rows, -rows - 1, i64::MAX, i64::MIN] {
        let err = emb(bad).expect_err("index out of range");
        assert!(err.contains("out of range"), "{bad}: {err}");
    }
}
