//! nextword's `com.microsoft::MatMulNBits` (bits = 4, block_size = 32).
//!
//! `Y [.., N] = A [.., K] · dequant(B)ᵀ (+ bias)`, where
//! * `B`: uint8 `[N, K/32, 16]`, two 4-bit codes per byte, low nibble first;
//! * `scales`: float `[N * K/32]` (any shape with that many elements);
//! * `zero_points` (input 3, optional): uint8 `[N * ceil(K/32 / 2)]`, 4-bit packed, low nibble
//!   first; absent, every zero point is 8;
//! * `g_idx` (input 4): rejected;
//! * `bias` (input 5, optional): float `[N]`.
//!
//! Parsing gives an [`Expansion`] that wires one of two typed ops:
//! * [`MatMulNBitsQ4`] when `B`, `scales` and `zero_points` are constants (initializers, or
//!   anything tract folded into a constant such as a `Reshape` of one): the weight is
//!   converted once into an `Arc<Q4Matrix>`, and the op only takes `A` (and the bias);
//! * [`MatMulNBitsUnpacked`] otherwise: it takes every input and converts the weight at
//!   each evaluation; `declutter` turns it into a `MatMulNBitsQ4` as soon as the weight
//!   inputs become constant.
//!
//! Both flatten `A`'s leading axes into `m` rows and call [`Q4Kernel::matmul`]; the kernel is
//! [`kernels::select()`](crate::kernels::select) at the time the op is built (see
//! [`set_kernel`](super::set_kernel) to change it).
//!
//! The node's `accuracy_level` attribute says how precise the compute must be, as in ONNX
//! Runtime: 4 allows int8 activations (one W4A8 pass); anything else (0 = unset, 1 = fp32,
//! 2 = fp16, 3 = bf16) asks for float precision, which the op gives with a second W4A8 pass
//! on the activations' quantization residual ([`kernels::matmul_two_pass`]).

use std::sync::Arc;

use tract_onnx::model::{optional_inputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use crate::kernels::{self, Q4Kernel, Q4Matrix, Shared};

/// The only quantization this op implements.
pub const BITS: usize = 4;
pub const BLOCK_SIZE: usize = 32;
/// The `accuracy_level` that allows int8 activations.
pub const ACCURACY_INT8: i64 = 4;

/// Bytes per block of `B` (32 codes, two per byte).
const BLOB: usize = BLOCK_SIZE / 2;

/// ONNX builder registered as `MatMulNBits` by [`super::register`].
pub fn mat_mul_nbits(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = MatMulNBits::from_node(node)
        .with_context(|| format!("MatMulNBits node {:?}", node.name))?;
    Ok((expand(op), vec![]))
}

/// The parsed node (inference-model side).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatMulNBits {
    pub k: usize,
    pub n: usize,
    pub accuracy_level: i64,
    /// Position of `zero_points` among the node's (non-empty) inputs.
    pub zp_input: Option<usize>,
    /// Position of `bias` among the node's (non-empty) inputs.
    pub bias_input: Option<usize>,
}

impl MatMulNBits {
    pub fn from_node(node: &NodeProto) -> TractResult<MatMulNBits> {
        let k: i64 = node.get_attr("K")?;
        let n: i64 = node.get_attr("N")?;
        let bits: i64 = node.get_attr_opt("bits")?.unwrap_or(4);
        let block_size: i64 = node.get_attr("block_size")?;
        let accuracy_level: i64 = node.get_attr_opt("accuracy_level")?.unwrap_or(0);
        ensure!(
            bits == BITS as i64,
            "MatMulNBits: only bits={BITS} is supported by nextword's op (got bits={bits})"
        );
        ensure!(
            block_size == BLOCK_SIZE as i64,
            "MatMulNBits: only block_size={BLOCK_SIZE} is supported by nextword's op (got block_size={block_size})"
        );
        ensure!(
            k > 0 && n > 0,
            "MatMulNBits: K and N must be positive (got K={k}, N={n})"
        );
        ensure!(
            k % BLOCK_SIZE as i64 == 0,
            "MatMulNBits: K must be a multiple of block_size={BLOCK_SIZE} (got K={k})"
        );
        ensure!(
            node.input.len() >= 3,
            "MatMulNBits: expected at least 3 inputs (A, B, scales)"
        );
        ensure!(
            node.input.len() <= 6,
            "MatMulNBits: expected at most 6 inputs, got {}",
            node.input.len()
        );
        let mut opt = optional_inputs(node).skip(3);
        let zp_input = opt.next().flatten();
        let g_idx = opt.next().flatten();
        let bias_input = opt.next().flatten();
        ensure!(
            g_idx.is_none(),
            "MatMulNBits: g_idx (act-order, input 4) is not supported"
        );
        Ok(MatMulNBits {
            k: k as usize,
            n: n as usize,
            accuracy_level,
            zp_input,
            bias_input,
        })
    }

    fn input_count(&self) -> usize {
        3 + self.zp_input.is_some() as usize + self.bias_input.is_some() as usize
    }
}

impl Expansion for MatMulNBits {
    fn name(&self) -> StaticName {
        "MatMulNBits".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "K={} N={} bits=4 block_size=32 zero_points={} bias={}",
            self.k,
            self.n,
            self.zp_input.is_some(),
            self.bias_input.is_some()
        )])
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.input_count())?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[1].datum_type, u8::datum_type())?;
        shape_rules(s, inputs, outputs, self.k, self.n, self.bias_input)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        ensure!(
            inputs.len() == self.input_count(),
            "MatMulNBits: expected {} inputs, got {}",
            self.input_count(),
            inputs.len()
        );
        let zp = self.zp_input.map(|i| inputs[i]);
        let bias = self.bias_input.map(|i| inputs[i]);
        wire_f32(prefix, model, inputs[0], bias, |model, a, bias| {
            let unpacked = MatMulNBitsUnpacked {
                k: self.k,
                n: self.n,
                has_zero_points: zp.is_some(),
                has_bias: bias.is_some(),
                two_pass: self.accuracy_level != ACCURACY_INT8,
                kernel: kernels::select(),
            };
            Ok(match unpacked.pack_from(model, inputs[1], inputs[2], zp)? {
                Some(packed) => {
                    let mut op_inputs = tvec![a];
                    op_inputs.extend(bias);
                    model.wire_node(prefix, packed, &op_inputs)?[0]
                }
                None => {
                    let mut op_inputs = tvec![a, inputs[1], inputs[2]];
                    op_inputs.extend(zp);
                    op_inputs.extend(bias);
                    model.wire_node(prefix, unpacked, &op_inputs)?[0]
                }
            })
        })
    }
}

/// Type and shape rules shared by the node forms: `Y [.., N]` from `A [.., K]` of the same
/// float type, and `bias` (input `bias`, if any) `[N]`.
pub(crate) fn shape_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    k: usize,
    n: usize,
    bias: Option<usize>,
) -> InferenceResult {
    s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
    s.given(&inputs[0].rank, move |s, rank| {
        let rank = rank as usize;
        s.equals(&outputs[0].rank, rank as i64)?;
        for ax in 0..rank.saturating_sub(1) {
            s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
        }
        if rank >= 1 {
            s.equals(&inputs[0].shape[rank - 1], k.to_dim())?;
            s.equals(&outputs[0].shape[rank - 1], n.to_dim())?;
        }
        Ok(())
    })?;
    if let Some(b) = bias {
        s.equals(&inputs[b].rank, 1i64)?;
        s.equals(&inputs[b].shape[0], n.to_dim())?;
    }
    Ok(())
}

/// Wires `matmul(model, a, bias)` on f32: `a` (any float type) and `bias` are cast to f32
/// first and the result back to `a`'s type, as the kernels work in f32.
pub(crate) fn wire_f32(
    prefix: &str,
    model: &mut TypedModel,
    a: OutletId,
    bias: Option<OutletId>,
    matmul: impl FnOnce(&mut TypedModel, OutletId, Option<OutletId>) -> TractResult<OutletId>,
) -> TractResult<TVec<OutletId>> {
    let dt = model.outlet_fact(a)?.datum_type;
    ensure!(
        dt.is_float(),
        "MatMulNBits: A must be a float tensor, got {dt:?}"
    );
    let mut a = a;
    if dt != f32::datum_type() {
        a = model.wire_node(format!("{prefix}.cast_a"), cast(f32::datum_type()), &[a])?[0];
    }
    let bias = match bias {
        Some(b) if model.outlet_fact(b)?.datum_type != f32::datum_type() => {
            Some(model.wire_node(format!("{prefix}.cast_bias"), cast(f32::datum_type()), &[b])?[0])
        }
        other => other,
    };
    let y = matmul(model, a, bias)?;
    if dt != f32::datum_type() {
        Ok(tvec!(
            model.wire_node(format!("{prefix}.cast_y"), cast(dt), &[y])?[0]
        ))
    } else {
        Ok(tvec!(y))
    }
}

/// A constant tensor's elements, read in place: the kernels use the model's own weight
/// tensors rather than a copy (which held the weights twice while the model loaded).
struct TensorSlice<T> {
    /// Keeps the elements alive; a tensor behind an `Arc` is never mutated or moved.
    _tensor: Arc<Tensor>,
    ptr: *const T,
    len: usize,
}

// SAFETY: the slice is read-only data owned by `_tensor` (an `Arc<Tensor>`, Send + Sync), and
// `T` is a plain `Datum` (u8 or f32).
unsafe impl<T: Datum> Send for TensorSlice<T> {}
unsafe impl<T: Datum> Sync for TensorSlice<T> {}

impl<T: Datum> TensorSlice<T> {
    /// `None` unless `t` holds `T`s in plain memory. The slice is resolved once here: the
    /// kernels ask for rows of it thousands of times per model call.
    fn new(t: Arc<Tensor>) -> Option<Self> {
        let (ptr, len) = {
            let elements = t.as_plain_ram()?.as_slice::<T>().ok()?;
            (elements.as_ptr(), elements.len())
        };
        Some(TensorSlice {
            _tensor: t,
            ptr,
            len,
        })
    }
}

impl<T: Datum> AsRef<[T]> for TensorSlice<T> {
    fn as_ref(&self) -> &[T] {
        // SAFETY: `ptr`/`len` came from the tensor's storage, which `_tensor` keeps alive and
        // unchanged for as long as `self` exists.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Converts the ONNX weight tensors into a `Q4Matrix`, checking types and sizes. The
/// matrix keeps references to `b` and to f32 `scales` instead of copying them.
pub fn q4_matrix_from_tensors(
    n: usize,
    k: usize,
    b: &Arc<Tensor>,
    scales: &Arc<Tensor>,
    zero_points: Option<&Tensor>,
) -> TractResult<Q4Matrix> {
    let blocks = k / BLOCK_SIZE;
    ensure!(
        b.datum_type() == u8::datum_type(),
        "MatMulNBits: B must be uint8, got {:?}",
        b.datum_type()
    );
    ensure!(
        b.len() == n * blocks * BLOB && b.shape().first() == Some(&n),
        "MatMulNBits: B has shape {:?}, expected [{n}, {blocks}, {BLOB}] for N={n} K={k}",
        b.shape()
    );
    ensure!(
        scales.datum_type().is_float(),
        "MatMulNBits: scales must be float, got {:?}",
        scales.datum_type()
    );
    ensure!(
        scales.len() == n * blocks,
        "MatMulNBits: scales has shape {:?} ({} values), expected N*K/32 = {}",
        scales.shape(),
        scales.len(),
        n * blocks
    );
    let scales: Shared<f32> = match TensorSlice::<f32>::new(scales.clone()) {
        Some(s) => Arc::new(s),
        None => Arc::new(
            scales
                .cast_to::<f32>()?
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .to_vec(),
        ),
    };
    let b: Shared<u8> = match TensorSlice::<u8>::new(b.clone()) {
        Some(b) => Arc::new(b),
        None => Arc::new(b.try_as_plain_ram()?.as_slice::<u8>()?.to_vec()),
    };
    let zp_view = match zero_points {
        Some(zp) => {
            ensure!(
                zp.datum_type() == u8::datum_type(),
                "MatMulNBits: only uint8 (4-bit packed) zero_points are supported, got {:?}",
                zp.datum_type()
            );
            let expected = n * blocks.div_ceil(2);
            ensure!(
                zp.len() == expected,
                "MatMulNBits: zero_points has shape {:?} ({} values), expected N*ceil(K/32/2) = {expected}",
                zp.shape(),
                zp.len()
            );
            Some(zp.try_as_plain_ram()?)
        }
        None => None,
    };
    let zp_slice = match &zp_view {
        Some(v) => Some(v.as_slice::<u8>()?),
        None => None,
    };
    Q4Matrix::from_shared(n, k, b, scales, zp_slice)
        .map_err(|e| format_err!("MatMulNBits: converting the weight (N={n}, K={k}): {e}"))
}

/// `out[m, n] = a[m, k] · wᵀ (+ bias)`, `a` of any rank with `k` last; `two_pass`: float
/// precision activations (see the module doc).
fn run_q4(
    kernel: &dyn Q4Kernel,
    w: &Q4Matrix,
    a: &Tensor,
    bias: Option<&Tensor>,
    two_pass: bool,
) -> TractResult<Tensor> {
    let (n, k) = (w.n(), w.k());
    ensure!(
        a.datum_type() == f32::datum_type(),
        "MatMulNBits: A must be f32 at runtime, got {:?}",
        a.datum_type()
    );
    let shape = a.shape();
    ensure!(
        shape.last() == Some(&k),
        "MatMulNBits: A has shape {shape:?}, its last axis must be K={k}"
    );
    let m: usize = shape[..shape.len() - 1].iter().product();
    let mut out_shape: TVec<usize> = shape[..shape.len() - 1].into();
    out_shape.push(n);
    // SAFETY: f32 has no invalid bit patterns, and every element is written before the tensor
    // is read: each kernel writes all `m x n` outputs (`check_matmul_args` holds it to that
    // length), and `m == 0` leaves an empty tensor. (Zeroing first: the LM head's output alone
    // is 20 x 8,192 floats per 20-token forward.)
    let mut out = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
    {
        let a_view = a.try_as_plain_ram()?;
        let x = a_view.as_slice::<f32>()?;
        let mut out_view = out.try_as_plain_ram_mut()?;
        let y = out_view.as_slice_mut::<f32>()?;
        if m > 0 {
            if two_pass {
                kernels::matmul_two_pass(kernel, x, m, w, y);
            } else {
                kernel.matmul(x, m, w, y);
            }
        }
        if let Some(bias) = bias {
            ensure!(
                bias.datum_type() == f32::datum_type() && bias.len() == n,
                "MatMulNBits: bias must be f32 [{n}], got {:?} {:?}",
                bias.datum_type(),
                bias.shape()
            );
            let bias_view = bias.try_as_plain_ram()?;
            let bias = bias_view.as_slice::<f32>()?;
            for row in y.chunks_exact_mut(n) {
                for (y, b) in row.iter_mut().zip(bias) {
                    *y += b;
                }
            }
        }
    }
    Ok(out)
}

fn output_fact(
    k: usize,
    n: usize,
    a: &TypedFact,
    bias: Option<&TypedFact>,
) -> TractResult<TypedFact> {
    ensure!(
        a.datum_type == f32::datum_type(),
        "MatMulNBits: A must be f32, got {:?}",
        a.datum_type
    );
    ensure!(a.rank() >= 1, "MatMulNBits: A must have at least one axis");
    let last = &a.shape[a.rank() - 1];
    if let Ok(last) = last.to_usize() {
        ensure!(
            last == k,
            "MatMulNBits: A has shape {:?}, its last axis must be K={k}",
            a.shape
        );
    }
    if let Some(bias) = bias {
        ensure!(
            bias.datum_type == f32::datum_type() && bias.rank() == 1,
            "MatMulNBits: bias must be f32 [N], got {bias:?}"
        );
        if let Ok(len) = bias.shape[0].to_usize() {
            ensure!(
                len == n,
                "MatMulNBits: bias has {len} values, expected N={n}"
            );
        }
    }
    let mut shape: TVec<TDim> = a.shape.to_tvec();
    shape[a.rank() - 1] = n.to_dim();
    Ok(f32::fact(shape))
}

fn axes_mapping_for(rank: usize, has_bias: bool) -> TractResult<AxesMapping> {
    // Leading axes of A go through to Y; K is contracted; N comes from the weight (and bias).
    let lead: String = ('a'..='z')
        .filter(|c| *c != 'k' && *c != 'n')
        .take(rank - 1)
        .collect();
    let mut ins = vec![format!("{lead}k")];
    if has_bias {
        ins.push("n".to_string());
    }
    AxesMapping::from_strs(&ins[..], &[format!("{lead}n")])
}

/// The runtime op: a pre-converted 4-bit weight. Inputs: `A` f32 `[.., K]`, then `bias` f32
/// `[N]` if `has_bias`. Output: f32 `[.., N]`.
#[derive(Clone)]
pub struct MatMulNBitsQ4 {
    pub weights: Arc<Q4Matrix>,
    pub kernel: &'static dyn Q4Kernel,
    pub has_bias: bool,
    /// Float-precision activations (`accuracy_level` other than 4): two W4A8 passes.
    pub two_pass: bool,
}

impl std::fmt::Debug for MatMulNBitsQ4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatMulNBitsQ4")
            .field("n", &self.weights.n())
            .field("k", &self.weights.k())
            .field("kernel", &self.kernel.name())
            .field("has_bias", &self.has_bias)
            .field("two_pass", &self.two_pass)
            .finish()
    }
}

impl PartialEq for MatMulNBitsQ4 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && self.kernel.name() == other.kernel.name()
            && self.has_bias == other.has_bias
            && self.two_pass == other.two_pass
    }
}
impl Eq for MatMulNBitsQ4 {}

impl Op for MatMulNBitsQ4 {
    fn name(&self) -> StaticName {
        "NextwordMatMulNBits".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "N={} K={} kernel={} bias={} two_pass={}",
            self.weights.n(),
            self.weights.k(),
            self.kernel.name(),
            self.has_bias,
            self.two_pass
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for MatMulNBitsQ4 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1 + self.has_bias as usize,
            "MatMulNBits: expected {} inputs, got {}",
            1 + self.has_bias as usize,
            inputs.len()
        );
        let bias = if self.has_bias {
            Some(&*inputs[1])
        } else {
            None
        };
        let y = run_q4(self.kernel, &self.weights, &inputs[0], bias, self.two_pass)?;
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for MatMulNBitsQ4 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 + self.has_bias as usize,
            "MatMulNBits: wrong input count"
        );
        let bias = if self.has_bias { Some(inputs[1]) } else { None };
        Ok(tvec!(output_fact(
            self.weights.k(),
            self.weights.n(),
            inputs[0],
            bias
        )?))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        _outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        axes_mapping_for(inputs[0].rank(), self.has_bias)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let m: TDim = inputs[0].shape.iter().take(inputs[0].rank() - 1).product();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            m * self.weights.n() * self.weights.k()
        )))
    }

    as_op!();
}

/// The op before its weight is constant. Inputs: `A` f32, `B` u8, `scales`, then
/// `zero_points` u8 if `has_zero_points`, then `bias` f32 if `has_bias`. Converts the weight
/// at every evaluation; declutters into [`MatMulNBitsQ4`] once `B`/`scales`/`zero_points` are
/// constants.
#[derive(Clone)]
pub struct MatMulNBitsUnpacked {
    pub k: usize,
    pub n: usize,
    pub has_zero_points: bool,
    pub has_bias: bool,
    /// Float-precision activations (`accuracy_level` other than 4): two W4A8 passes.
    pub two_pass: bool,
    pub kernel: &'static dyn Q4Kernel,
}

impl std::fmt::Debug for MatMulNBitsUnpacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatMulNBitsUnpacked")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("has_zero_points", &self.has_zero_points)
            .field("has_bias", &self.has_bias)
            .field("two_pass", &self.two_pass)
            .field("kernel", &self.kernel.name())
            .finish()
    }
}

impl PartialEq for MatMulNBitsUnpacked {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.n == other.n
            && self.has_zero_points == other.has_zero_points
            && self.has_bias == other.has_bias
            && self.two_pass == other.two_pass
            && self.kernel.name() == other.kernel.name()
    }
}
impl Eq for MatMulNBitsUnpacked {}

impl MatMulNBitsUnpacked {
    fn input_count(&self) -> usize {
        3 + self.has_zero_points as usize + self.has_bias as usize
    }

    /// The packed op, if the weight inputs of `model` are all constant.
    fn pack_from(
        &self,
        model: &TypedModel,
        b: OutletId,
        scales: OutletId,
        zp: Option<OutletId>,
    ) -> TractResult<Option<MatMulNBitsQ4>> {
        let Some(b) = model.outlet_fact(b)?.konst.clone() else {
            return Ok(None);
        };
        let Some(scales) = model.outlet_fact(scales)?.konst.clone() else {
            return Ok(None);
        };
        let zp = match zp {
            Some(zp) => match model.outlet_fact(zp)?.konst.clone() {
                Some(zp) => Some(zp),
                None => return Ok(None),
            },
            None => None,
        };
        // In the kernel's layout: a copy for a matrix the graph shares (the tied LM head, which
        // the embedding lookup reads in place), 1.6 MB for the bundled model's, which the AVX2
        // kernel then reads at 0.6x the time of the file's order: a tenth of a decode step.
        let weights = q4_matrix_from_tensors(self.n, self.k, &b, &scales, zp.as_deref())?
            .into_layout(self.kernel.layout());
        Ok(Some(MatMulNBitsQ4 {
            weights: Arc::new(weights),
            kernel: self.kernel,
            has_bias: self.has_bias,
            two_pass: self.two_pass,
        }))
    }
}

impl Op for MatMulNBitsUnpacked {
    fn name(&self) -> StaticName {
        "NextwordMatMulNBitsUnpacked".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for MatMulNBitsUnpacked {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.input_count(),
            "MatMulNBits: expected {} inputs, got {}",
            self.input_count(),
            inputs.len()
        );
        let zp = if self.has_zero_points {
            Some(&*inputs[3])
        } else {
            None
        };
        let bias = if self.has_bias {
            Some(&*inputs[inputs.len() - 1])
        } else {
            None
        };
        let (b, scales) = (inputs[1].clone(), inputs[2].clone());
        let w = q4_matrix_from_tensors(
            self.n,
            self.k,
            &b.into_arc_tensor(),
            &scales.into_arc_tensor(),
            zp,
        )?;
        Ok(tvec!(run_q4(
            self.kernel,
            &w,
            &inputs[0],
            bias,
            self.two_pass
        )?
        .into_tvalue()))
    }
}

impl TypedOp for MatMulNBitsUnpacked {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.input_count(),
            "MatMulNBits: wrong input count"
        );
        ensure!(
            inputs[1].datum_type == u8::datum_type(),
            "MatMulNBits: B must be uint8, got {:?}",
            inputs[1].datum_type
        );
        let bias = if self.has_bias {
            Some(inputs[inputs.len() - 1])
        } else {
            None
        };
        Ok(tvec!(output_fact(self.k, self.n, inputs[0], bias)?))
    }

    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let zp = if self.has_zero_points {
            Some(node.inputs[3])
        } else {
            None
        };
        let Some(packed) = self
            .pack_from(model, node.inputs[1], node.inputs[2], zp)
            .with_context(|| format!("MatMulNBits node {:?}", node.name))?
        else {
            return Ok(None);
        };
        let mut inputs = tvec![node.inputs[0]];
        if self.has_bias {
            inputs.push(node.inputs[node.inputs.len() - 1]);
        }
        Ok(Some(TypedModelPatch::replace_single_op(
            model, node, &inputs, packed,
        )?))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let m: TDim = inputs[0].shape.iter().take(inputs[0].rank() - 1).product();
        Ok(tvec!((Cost::FMA(f32::datum_type()), m * self.n * self.k)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::AttributeProto;

    fn int_attr(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i,
            ..Default::default()
        }
    }

    fn node(inputs: &[&str], k: i64, n: i64, bits: i64, block_size: i64) -> NodeProto {
        NodeProto {
            name: "mnb".into(),
            op_type: "MatMulNBits".into(),
            domain: "com.microsoft".into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute: vec![
                int_attr("K", k),
                int_attr("N", n),
                int_attr("bits", bits),
                int_attr("block_size", block_size),
            ],
            ..Default::default()
        }
    }

    fn err_of(node: &NodeProto) -> String {
        format!(
            "{:?}",
            MatMulNBits::from_node(node).expect_err("should be rejected")
        )
    }

    #[test]
    fn parses_optional_inputs() {
        let op = MatMulNBits::from_node(&node(&["a", "b", "s"], 64, 8, 4, 32)).unwrap();
        assert_eq!(
            (op.k, op.n, op.zp_input, op.bias_input),
            (64, 8, None, None)
        );
        let op = MatMulNBits::from_node(&node(&["a", "b", "s", "z"], 64, 8, 4, 32)).unwrap();
        assert_eq!((op.zp_input, op.bias_input), (Some(3), None));
        let op =
            MatMulNBits::from_node(&node(&["a", "b", "s", "", "", "bias"], 64, 8, 4, 32)).unwrap();
        assert_eq!((op.zp_input, op.bias_input), (None, Some(3)));
        let op =
            MatMulNBits::from_node(&node(&["a", "b", "s", "z", "", "bias"], 64, 8, 4, 32)).unwrap();
        assert_eq!((op.zp_input, op.bias_input), (Some(3), Some(4)));
    }

    #[test]
    fn rejects_unsupported_attributes() {
        assert!(err_of(&node(&["a", "b", "s"], 64, 8, 8, 32)).contains("bits=8"));
        assert!(err_of(&node(&["a", "b", "s"], 64, 8, 2, 32)).contains("bits=2"));
        assert!(err_of(&node(&["a", "b", "s"], 64, 8, 4, 128)).contains("block_size=128"));
        assert!(err_of(&node(&["a", "b", "s"], 48, 8, 4, 32)).contains("multiple"));
        assert!(err_of(&node(&["a", "b", "s"], 0, 8, 4, 32)).contains("positive"));
        assert!(err_of(&node(&["a", "b", "s", "", "g"], 64, 8, 4, 32)).contains("g_idx"));
        assert!(err_of(&node(&["a", "b"], 64, 8, 4, 32)).contains("at least 3"));
    }

    /// Deterministic weights: B [n, k/32, 16], scales [n*k/32], zero points packed.
    fn weights(n: usize, k: usize) -> (Arc<Tensor>, Arc<Tensor>, Tensor) {
        let blocks = k / 32;
        let b: Vec<u8> = (0..n * blocks * 16).map(|i| (i * 37 + 11) as u8).collect();
        let scales: Vec<f32> = (0..n * blocks)
            .map(|i| 0.01 + (i % 7) as f32 * 0.005)
            .collect();
        let zp: Vec<u8> = (0..n * blocks.div_ceil(2))
            .map(|i| (i * 29 + 3) as u8)
            .collect();
        (
            Tensor::from_shape(&[n, blocks, 16], &b)
                .unwrap()
                .into_arc_tensor(),
            Tensor::from_shape(&[n * blocks], &scales)
                .unwrap()
                .into_arc_tensor(),
            Tensor::from_shape(&[n * blocks.div_ceil(2)], &zp).unwrap(),
        )
    }

    fn reference(a: &[f32], m: usize, w: &Q4Matrix, bias: Option<&[f32]>) -> Vec<f32> {
        let (n, k) = (w.n(), w.k());
        let deq = w.dequantize();
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let dot: f32 = (0..k).map(|i| a[r * k + i] * deq[c * k + i]).sum();
                y[r * n + c] = dot + bias.map(|b| b[c]).unwrap_or(0.);
            }
        }
        y
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        let range = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 0.01 * range + 1e-4,
                "got {g}, want {w} (range {range})"
            );
        }
    }

    /// The unpacked op evaluates on runtime weights and declutters into the packed one when
    /// they are constants; both agree with the dequantized reference, over a symbolic seq.
    #[test]
    fn unpacked_declutters_into_packed() -> TractResult<()> {
        let (n, k) = (24, 96);
        let (b, scales, zp) = weights(n, k);
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 1.).collect();
        let mut model = TypedModel::default();
        let s = model.symbols.sym("S");
        let a = model.add_source("a", f32::fact(dims![1, s, k]))?;
        let b_w = model.add_const("b", b.clone())?;
        let s_w = model.add_const("scales", scales.clone())?;
        let z_w = model.add_const("zp", zp.clone())?;
        let bias_w = model.add_const("bias", Tensor::from_shape(&[n], &bias)?)?;
        let op = MatMulNBitsUnpacked {
            k,
            n,
            has_zero_points: true,
            has_bias: true,
            two_pass: false,
            kernel: kernels::select(),
        };
        let y = model.wire_node("mnb", op, &[a, b_w, s_w, z_w, bias_w])?;
        model.select_output_outlets(&y)?;
        assert_eq!(super::super::count_nodes(&model), (0, 1));
        let optimized = model.clone().into_optimized()?;
        assert_eq!(super::super::count_nodes(&optimized), (1, 0));

        let w = q4_matrix_from_tensors(n, k, &b, &scales, Some(&zp))?;
        for m in [1usize, 5] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 13 % 31) as f32 - 15.) / 8.)
                .collect();
            let want = reference(&x, m, &w, Some(&bias));
            for candidate in [model.clone(), optimized.clone()] {
                let out =
                    SimplePlan::new(candidate)?
                        .run(tvec![Tensor::from_shape(&[1, m, k], &x)?.into_tvalue()])?;
                assert_eq!(out[0].shape(), &[1, m, n]);
                let view = out[0].try_as_plain_ram()?;
                assert_close(view.as_slice::<f32>()?, &want);
            }
        }
        Ok(())
    }

    #[test]
    fn weight_shape_errors_are_reported() {
        let (n, k) = (8, 64);
        let (b, scales, zp) = weights(n, k);
        let short_scales = Tensor::from_shape(&[3], &[1f32, 2., 3.])
            .unwrap()
            .into_arc_tensor();
        let err = q4_matrix_from_tensors(n, k, &b, &short_scales, None)
            .err()
            .unwrap();
        assert!(format!("{err:?}").contains("scales"), "{err:?}");
        let err = q4_matrix_from_tensors(n + 1, k, &b, &scales, None)
            .err()
            .unwrap();
        assert!(format!("{err:?}").contains("B has shape"), "{err:?}");
        let bad_zp = Tensor::from_shape(&[2], &[0u8, 1]).unwrap();
        let err = q4_matrix_from_tensors(n, k, &b, &scales, Some(&bad_zp))
            .err()
            .unwrap();
        assert!(format!("{err:?}").contains("zero_points"), "{err:?}");
        assert!(q4_matrix_from_tensors(n, k, &b, &scales, Some(&zp)).is_ok());
    }

    #[test]
    fn packed_eval_rejects_wrong_k() -> TractResult<()> {
        let (b, scales, _) = weights(8, 64);
        let op = MatMulNBitsQ4 {
            weights: Arc::new(q4_matrix_from_tensors(8, 64, &b, &scales, None)?),
            kernel: kernels::select(),
            has_bias: false,
            two_pass: false,
        };
        let err = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec![Tensor::zero::<f32>(&[2, 32])?.into_tvalue()],
            )
            .err()
            .unwrap();
        assert!(format!("{err:?}").contains("K=64"), "{err:?}");
        let err = op.output_facts(&[&f32::fact([2usize, 32])]).err().unwrap();
        assert!(format!("{err:?}").contains("K=64"), "{err:?}");
        Ok(())
    }
}
