//! `MatMulNBits` weights taken out of the model file instead of copied into tract.
//!
//! tract's ONNX reader copies every initializer into a tensor of its own while the decoded
//! protobuf still holds it. For the bundled model that is ~6 MB of packed 4-bit weights held
//! twice while a bundle opens, and the copies are made after the file's buffer is freed, in
//! heap memory the allocator then keeps (`nextword bench`: 21.1 MB of private memory after
//! a replay, 17.2 MB without the copies). So before tract reads the graph, [`preload`] builds
//! each `MatMulNBits` node's [`Q4Matrix`] from its initializers' bytes when nothing else reads
//! those initializers, removes them from the graph and rewrites the node into a
//! `NextwordMatMulQ4` whose inputs are the activations (and bias) only. Payloads that the
//! decoder skipped ([`super::payloads`]) are repacked for the kernel where they lie in the
//! file's buffer, which keeps only them once the others are given back to the graph; weights
//! the decoder copied move out of the protobuf; the scales are converted to f32. tract's
//! builder for that op ([`nextword_matmul_q4`]) takes the matrix from the [`Preloaded`] set of
//! the parse running on this thread (tract's op builders are plain functions: a thread-local
//! is how they can be handed something that is not in the graph).
//!
//! Anything unusual (a shared initializer such as the tied embedding, weights not in
//! `raw_data`, a size that does not match `K`/`N`) leaves the node as it is, for the generic
//! `MatMulNBits` path to convert or to refuse with its own error.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

use super::matmul_nbits::{self, MatMulNBits, MatMulNBitsQ4, ACCURACY_INT8, BLOCK_SIZE};
use super::payloads::Payloads;
use crate::kernels::{self, Layout, Q4Matrix};

/// The op type [`preload`] gives the nodes it took the weights of.
pub const OP_TYPE: &str = "NextwordMatMulQ4";

thread_local! {
    /// The matrices of the parse running on this thread, by the node's output (exports often
    /// leave nodes unnamed; a value has one producer).
    static PRELOADED: RefCell<HashMap<String, Arc<Q4Matrix>>> = RefCell::new(HashMap::new());
}

/// The matrices [`preload`] made, offered to this thread's `NextwordMatMulQ4` builders until
/// dropped (drop it once tract has read the graph).
#[must_use = "the preloaded weights are withdrawn when this is dropped"]
#[derive(Debug)]
pub struct Preloaded {
    /// How many nodes were rewritten.
    pub nodes: usize,
}

impl Drop for Preloaded {
    fn drop(&mut self) {
        PRELOADED.with(|p| p.borrow_mut().clear());
    }
}

/// The model file's bytes and the initializer payloads [`payloads::strip`] left in them
/// (empty for a graph decoded as usual).
#[derive(Debug, Default)]
pub struct ModelFile {
    pub bytes: Vec<u8>,
    pub payloads: Payloads,
}

/// A matrix's packed weights in the model file's buffer, repacked there (their home once the
/// model is loaded: no copy of them is made).
struct FileSlice {
    file: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl AsRef<[u8]> for FileSlice {
    fn as_ref(&self) -> &[u8] {
        &self.file[self.range.clone()]
    }
}

/// A node's matrix before the file's buffer is shared: its weights already in the kernel's
/// layout, in the file or in the initializer's own bytes.
struct Pending {
    output: String,
    n: usize,
    k: usize,
    weights: Weights,
}

enum Weights {
    /// Repacked in place in the file's buffer; MatMulNBits' scales and zero points.
    InFile {
        range: Range<usize>,
        scales: Vec<f32>,
        zero_points: Option<Vec<u8>>,
    },
    /// A matrix of their own (bytes the decoder gave the initializer, or rows that `layout`
    /// pads).
    Ready(Q4Matrix),
}

/// Rewrites the `MatMulNBits` nodes of `graph` whose weights it can take (see the module
/// doc), and gives the initializers left in the graph their payloads from `file` back.
pub fn preload(graph: &mut GraphProto, file: ModelFile) -> Preloaded {
    let ModelFile {
        bytes: mut file,
        mut payloads,
    } = file;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| &n.input) {
        *uses.entry(name.clone()).or_default() += 1;
    }
    // A graph input or output of the same name is a use too (older exports list their
    // initializers as inputs): such weights stay where tract expects them.
    for value in graph.input.iter().chain(&graph.output) {
        *uses.entry(value.name.clone()).or_default() += 1;
    }
    let index: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let layout = kernels::select().layout();
    // Each matrix's weights are copied here on their way to `layout`.
    let mut scratch = Vec::new();
    let mut pending = Vec::new();
    let mut taken = HashSet::new();
    for node in &mut graph.node {
        let Some(output) = node.output.first().filter(|o| !o.is_empty()).cloned() else {
            continue;
        };
        if node.op_type != "MatMulNBits"
            || node.domain != "com.microsoft"
            || pending.iter().any(|p: &Pending| p.output == output)
        {
            continue;
        }
        // Only initializers that this node alone reads.
        let sole = |slot: usize| {
            let name = node.input.get(slot).filter(|n| !n.is_empty())?;
            (uses.get(name) == Some(&1)).then(|| index.get(name).copied())?
        };
        let (Some(b), Some(scales)) = (sole(1), sole(2)) else {
            continue;
        };
        let has_zp = node.input.get(3).is_some_and(|n| !n.is_empty());
        let zp = sole(3);
        if has_zp && zp.is_none() {
            continue;
        }
        let mut inits = Initializers {
            protos: &mut graph.initializer,
            file: &mut file,
            payloads: &payloads,
        };
        let Some(matrix) = take_matrix(
            node,
            &mut inits,
            [b, scales],
            zp,
            layout,
            &mut scratch,
            output,
        ) else {
            continue;
        };
        for i in [Some(b), Some(scales), zp].into_iter().flatten() {
            payloads.take(i);
        }
        pending.push(matrix);
        taken.extend(node.input[1..=2 + has_zp as usize].iter().cloned());
        let bias = node.input.get(5).filter(|n| !n.is_empty()).cloned();
        node.input.truncate(1);
        node.input.extend(bias);
        node.op_type = OP_TYPE.into();
        node.domain.clear();
    }
    payloads.restore(&file, graph);
    graph.initializer.retain(|t| !taken.contains(&t.name));
    let nodes = pending.len();
    PRELOADED.with(|p| *p.borrow_mut() = matrices(pending, file, layout));
    Preloaded { nodes }
}

/// The pending matrices, those whose weights are in `file` sharing it; the file's other bytes
/// (what the decoder or [`Payloads::restore`] copied) are released first.
fn matrices(
    mut pending: Vec<Pending>,
    mut file: Vec<u8>,
    layout: Layout,
) -> HashMap<String, Arc<Q4Matrix>> {
    // The weights moved to the front in file order, then the rest cut off: the buffer shrinks
    // where it is (the allocator remaps it); nothing is copied but the weights moved.
    let start = |p: &Pending| match &p.weights {
        Weights::InFile { range, .. } => range.start,
        Weights::Ready(_) => usize::MAX,
    };
    pending.sort_by_key(start);
    let mut end = 0;
    for p in &mut pending {
        if let Weights::InFile { range, .. } = &mut p.weights {
            file.copy_within(range.clone(), end);
            *range = end..end + range.len();
            end = range.end;
        }
    }
    file.truncate(end);
    file.shrink_to_fit();
    let file = Arc::new(file);
    pending
        .into_iter()
        .filter_map(|p| {
            let matrix = match p.weights {
                Weights::Ready(matrix) => matrix,
                Weights::InFile {
                    range,
                    scales,
                    zero_points,
                } => {
                    let weights = Arc::new(FileSlice {
                        file: file.clone(),
                        range,
                    });
                    // Sizes were checked when the weights were taken: not expected to fail
                    // (the node would then be refused for want of weights).
                    Q4Matrix::from_shared_in(
                        p.n,
                        p.k,
                        weights,
                        layout,
                        &scales,
                        zero_points.as_deref(),
                    )
                    .ok()?
                }
            };
            Some((p.output, Arc::new(matrix)))
        })
        .collect()
}

/// The graph's initializers, the bytes of those whose payload stayed in the file read there.
struct Initializers<'a> {
    protos: &'a mut [TensorProto],
    file: &'a mut Vec<u8>,
    payloads: &'a Payloads,
}

impl Initializers<'_> {
    fn bytes(&self, i: usize) -> &[u8] {
        match self.payloads.range(i) {
            Some(range) => &self.file[range],
            None => &self.protos[i].raw_data,
        }
    }
}

/// The node's matrix, its packed weights (initializer `b`) repacked into `layout` where they are
/// (the file's buffer, or moved out of the initializer); `None` (nothing changed) unless the
/// node and its initializers are as the generic path would accept them.
fn take_matrix(
    node: &NodeProto,
    inits: &mut Initializers,
    [b, scales]: [usize; 2],
    zp: Option<usize>,
    layout: Layout,
    scratch: &mut Vec<u8>,
    output: String,
) -> Option<Pending> {
    let spec = MatMulNBits::from_node(node).ok()?;
    let blocks = spec.n.checked_mul(spec.k / BLOCK_SIZE)?;
    let raw = |i: usize, dt: DataType, len: usize| {
        (inits.protos[i].data_type == dt as i32 && inits.bytes(i).len() == len).then_some(())
    };
    raw(b, DataType::Uint8, blocks.checked_mul(BLOCK_SIZE / 2)?)?;
    raw(scales, DataType::Float, blocks.checked_mul(4)?)?;
    if let Some(zp) = zp {
        raw(
            zp,
            DataType::Uint8,
            spec.n * (spec.k / BLOCK_SIZE).div_ceil(2),
        )?;
    }
    let scale_values: Vec<f32> = inits
        .bytes(scales)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let zero_points = zp.map(|i| inits.bytes(i).to_vec());
    let weights = match inits.payloads.range(b) {
        Some(range) => {
            let in_file = &mut inits.file[range.clone()];
            if Q4Matrix::repack_in_place(spec.n, spec.k, in_file, layout, scratch) {
                Weights::InFile {
                    range,
                    scales: scale_values,
                    zero_points,
                }
            } else {
                // Rows the layout pads: a matrix of their own.
                let own = Arc::new(in_file.to_vec());
                let matrix = Q4Matrix::from_shared(
                    spec.n,
                    spec.k,
                    own,
                    Arc::new(scale_values),
                    zero_points.as_deref(),
                )
                .ok()?;
                Weights::Ready(matrix.into_layout(layout))
            }
        }
        None => {
            let own = Arc::new(std::mem::take(&mut inits.protos[b].raw_data));
            match Q4Matrix::from_shared(
                spec.n,
                spec.k,
                own.clone(),
                Arc::new(scale_values),
                zero_points.as_deref(),
            ) {
                // Repacked now that the bytes are ours (the moved buffer is released as soon
                // as it is).
                Ok(matrix) => {
                    drop(own);
                    Weights::Ready(matrix.into_layout(layout))
                }
                Err(_) => {
                    // Sizes were checked above, so this is not expected; give the bytes back
                    // to the graph for the generic path to report.
                    if let Ok(bytes) = Arc::try_unwrap(own) {
                        inits.protos[b].raw_data = bytes;
                    }
                    return None;
                }
            }
        }
    };
    Some(Pending {
        output,
        n: spec.n,
        k: spec.k,
        weights,
    })
}

/// ONNX builder registered as `NextwordMatMulQ4` (our `MatMulImpl` only).
pub fn nextword_matmul_q4(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let output = node.output.first().map_or("", String::as_str);
    let weights = PRELOADED
        .with(|p| p.borrow().get(output).cloned())
        .with_context(|| {
            format!(
                "{OP_TYPE} node {:?} ({output:?}): no preloaded weights (the op only exists \
                 while nextword loads a model)",
                node.name
            )
        })?;
    let accuracy_level: i64 = node.get_attr_opt("accuracy_level")?.unwrap_or(0);
    ensure!(
        matches!(node.input.len(), 1 | 2),
        "{OP_TYPE} node {:?}: expected 1 or 2 inputs, got {}",
        node.name,
        node.input.len()
    );
    Ok((
        expand(PreloadedMatMul {
            weights,
            has_bias: node.input.len() == 2,
            two_pass: accuracy_level != ACCURACY_INT8,
        }),
        vec![],
    ))
}

/// The parsed node: [`MatMulNBitsQ4`] with its matrix already made.
#[derive(Debug, Clone)]
struct PreloadedMatMul {
    weights: Arc<Q4Matrix>,
    has_bias: bool,
    two_pass: bool,
}

impl Expansion for PreloadedMatMul {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "K={} N={} bias={}",
            self.weights.k(),
            self.weights.n(),
            self.has_bias
        )])
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1 + self.has_bias as usize)?;
        check_output_arity(outputs, 1)?;
        let bias = self.has_bias.then_some(1);
        matmul_nbits::shape_rules(s, inputs, outputs, self.weights.k(), self.weights.n(), bias)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let bias = self.has_bias.then(|| inputs[1]);
        matmul_nbits::wire_f32(prefix, model, inputs[0], bias, |model, a, bias| {
            let op = MatMulNBitsQ4 {
                weights: self.weights.clone(),
                kernel: kernels::select(),
                has_bias: bias.is_some(),
                two_pass: self.two_pass,
            };
            let mut op_inputs = tvec![a];
            op_inputs.extend(bias);
            Ok(model.wire_node(prefix, op, &op_inputs)?[0])
        })
    }
}
