//! ONNX operators nextword implements itself, registered into tract-onnx's op registry.
//!
//! The decoder LM is exported with `com.microsoft::MatMulNBits` (4-bit, block 32) for its
//! linear layers. tract-onnx ships its own lowering of that op (to a `Q4_0` block-quant
//! `EinSum`); [`MatMulImpl::Nextword`] replaces it with [`matmul_nbits`], which keeps the weight
//! as a [`Q4Matrix`](crate::kernels::Q4Matrix) and runs it through nextword's
//! [`Q4Kernel`](crate::kernels::Q4Kernel)s, and `com.microsoft::GatherBlockQuantized` (the tied
//! embedding's lookup) with [`gather_block_quantized`], which reads the same table in place.
//! [`MatMulImpl::TractBuiltin`] keeps tract's lowerings of both, for comparison.
//!
//! ```no_run
//! use nextword_core::ops::{onnx_framework, MatMulImpl};
//! use nextword_core::tract_onnx::prelude::*;
//! let model = onnx_framework(MatMulImpl::Nextword)
//!     .model_for_path("model.onnx")?
//!     .into_optimized()?
//!     .into_runnable()?;
//! # Ok::<(), TractError>(())
//! ```

pub mod attention;
pub mod fusion;
pub mod gather_block_quantized;
pub mod kv_present;
pub mod matmul_nbits;
pub mod payloads;
pub mod preload;
pub mod qkv_rope;
pub mod residual_add;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::{Datum, TractResult, TypedModel};
use tract_onnx::tract_hir::infer::InferenceOp;
use tract_onnx::tract_hir::internal::{
    check_input_arity, check_output_arity, InferenceResult, Solver, TensorProxy,
};
use tract_onnx::Onnx;

use crate::kernels::{Layout, Q4Kernel};

pub use gather_block_quantized::GatherQ4;
pub use matmul_nbits::{MatMulNBitsQ4, MatMulNBitsUnpacked};

/// Which implementation of `com.microsoft::MatMulNBits` a loaded model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatMulImpl {
    /// nextword's op: the weight stays a `Q4Matrix`, multiplied by a nextword `Q4Kernel`
    /// (`kernels::select()` at model build time; see [`set_kernel`]).
    #[default]
    Nextword,
    /// tract-onnx's built-in lowering (a `Q4_0` block-quant `EinSum`).
    TractBuiltin,
}

impl MatMulImpl {
    pub const ALL: [MatMulImpl; 2] = [MatMulImpl::Nextword, MatMulImpl::TractBuiltin];

    pub fn name(self) -> &'static str {
        match self {
            MatMulImpl::Nextword => "nextword",
            MatMulImpl::TractBuiltin => "tract",
        }
    }
}

impl fmt::Display for MatMulImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatMulImpl {
    type Err = String;
    /// Accepts `nextword` and `tract` (also `tract-builtin`, `builtin`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nextword" | "ours" => Ok(MatMulImpl::Nextword),
            "tract" | "tract-builtin" | "tract_builtin" | "builtin" => Ok(MatMulImpl::TractBuiltin),
            other => Err(format!(
                "unknown MatMulNBits implementation {other:?} (expected \"nextword\" or \"tract\")"
            )),
        }
    }
}

/// A tract-onnx framework (`tract_onnx::onnx()`) whose `MatMulNBits` is `imp`.
pub fn onnx_framework(imp: MatMulImpl) -> Onnx {
    let mut onnx = tract_onnx::onnx();
    register(&mut onnx, imp);
    onnx
}

/// Points the `MatMulNBits` and `GatherBlockQuantized` entries of an existing framework's
/// registry at `imp` (the 4-bit embedding lookup goes with the 4-bit matmul: tract's lowering
/// of it repacks the table, ours reads it in place), and adds the ops [`fusion`] writes.
pub fn register(onnx: &mut Onnx, imp: MatMulImpl) {
    onnx.op_register
        .insert("NextwordAttention", attention::nextword_attention);
    onnx.op_register.insert("NextwordRope", rope::nextword_rope);
    onnx.op_register
        .insert("NextwordKvPresent", kv_present::nextword_kv_present);
    onnx.op_register
        .insert("NextwordRmsNorm", rms_norm::nextword_rms_norm);
    onnx.op_register
        .insert("NextwordSwiGlu", swiglu::nextword_swiglu);
    onnx.op_register
        .insert("NextwordQkvRope", qkv_rope::nextword_qkv_rope);
    onnx.op_register
        .insert("NextwordResidualAdd", residual_add::nextword_residual_add);
    match imp {
        MatMulImpl::Nextword => {
            onnx.op_register
                .insert("MatMulNBits", matmul_nbits::mat_mul_nbits);
            onnx.op_register
                .insert(preload::OP_TYPE, preload::nextword_matmul_q4);
            onnx.op_register.insert(
                "GatherBlockQuantized",
                gather_block_quantized::gather_block_quantized,
            );
        }
        MatMulImpl::TractBuiltin => {
            for op in ["MatMulNBits", "GatherBlockQuantized"] {
                onnx.op_register.insert(op, builtin_builder(op));
            }
        }
    }
}

/// The largest size a fused op takes from its node's attributes (a row width, a head count):
/// far above any model this SDK runs, and small enough that no shape arithmetic on it
/// overflows, whatever a tampered model asks for.
pub(crate) const MAX_ATTR_SIZE: i64 = 1 << 20;

/// The strides (in elements) of a dense tensor of shape `from` read as if broadcast to `to`
/// (ONNX multidirectional broadcasting: shapes aligned on their last axes, 0 along axes
/// where `from` has 1 or lacks the axis).
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> TractResult<Vec<usize>> {
    tract_onnx::tract_hir::internal::ensure!(
        from.len() <= to.len(),
        "shape {from:?} has more axes than {to:?}"
    );
    let mut strides = vec![0; to.len()];
    let mut stride = 1;
    for (axis, &dim) in from.iter().enumerate().rev() {
        let target = to.len() - from.len() + axis;
        tract_onnx::tract_hir::internal::ensure!(
            dim == to[target] || dim == 1,
            "shape {from:?} does not broadcast to {to:?}"
        );
        if dim != 1 {
            strides[target] = stride;
        }
        stride *= dim;
    }
    Ok(strides)
}

/// The inference rules every fused op shares: `arity` inputs, one output, all f32.
pub(crate) fn f32_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    arity: usize,
) -> InferenceResult {
    check_input_arity(inputs, arity)?;
    check_output_arity(outputs, 1)?;
    for input in inputs {
        s.equals(&input.datum_type, f32::datum_type())?;
    }
    s.equals(&outputs[0].datum_type, f32::datum_type())
}

/// `Expansion::wire` of a fused op that is its own typed op (it expands to itself).
macro_rules! wire_itself {
    () => {
        fn wire(
            &self,
            prefix: &str,
            model: &mut TypedModel,
            inputs: &[OutletId],
        ) -> TractResult<TVec<OutletId>> {
            model.wire_node(prefix, *self, inputs)
        }
    };
}
use wire_itself;

#[cfg(test)]
/// A plain f32 tensor's values.
pub(crate) fn floats(t: &tract_onnx::prelude::Tensor) -> Vec<f32> {
    t.try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

/// What tract-onnx's registry maps an op name to.
type OpBuilder =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract-onnx's own builder for `op` (private to tract-onnx: taken from a pristine registry).
fn builtin_builder(op: &str) -> OpBuilder {
    *tract_onnx::onnx()
        .op_register
        .0
        .get(op)
        .unwrap_or_else(|| panic!("tract-onnx registers {op}"))
}

/// Switches every nextword `MatMulNBits` node of a typed (e.g. optimized) model to `kernel`,
/// repacking weights held in another kernel's layout into `kernel`'s (those in MatMulNBits'
/// own layout stay: every kernel reads it). Returns how many nodes were changed. Call it
/// before building the plan.
pub fn set_kernel(model: &mut TypedModel, kernel: &'static dyn Q4Kernel) -> usize {
    let mut count = 0;
    for node in model.nodes_mut() {
        if let Some(op) = node.op_as_mut::<MatMulNBitsQ4>() {
            let layout = op.weights.layout();
            if layout != kernel.layout() && layout != Layout::RowBlocks {
                op.weights = Arc::new((*op.weights).clone().into_layout(kernel.layout()));
            }
            op.kernel = kernel;
            count += 1;
        } else if let Some(op) = node.op_as_mut::<MatMulNBitsUnpacked>() {
            op.kernel = kernel;
            count += 1;
        }
    }
    count
}

/// How many nextword `MatMulNBits` nodes a typed model holds, as (packed, unpacked).
/// An optimized model whose weights are initializers should have only packed ones.
pub fn count_nodes(model: &TypedModel) -> (usize, usize) {
    let packed = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<MatMulNBitsQ4>())
        .count();
    let unpacked = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<MatMulNBitsUnpacked>())
        .count();
    (packed, unpacked)
}
