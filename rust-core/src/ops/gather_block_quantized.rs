//! nextword's `com.microsoft::GatherBlockQuantized` (bits = 4, block_size = 32, gather axis
//! 0, quantized along the last axis): the token lookup of the tied 4-bit embedding.
//!
//! * `data`: uint8 `[rows, cols / 2]`, two 4-bit codes per byte, low nibble first (the
//!   layout of `MatMulNBits`' `B`, which is why the LM head can share the initializer); also
//!   `B`'s own shape `[rows, cols / 32, 16]` (see [`read_tables_in_place`]);
//! * `indices`: int32/int64, any shape; negative indices count from the end, as in ONNX;
//! * `scales`: float `[rows, cols / 32]`;
//! * `zero_points` (optional): uint8 `[rows, ceil(cols / 32 / 2)]`, 4-bit packed; absent, 8.
//!
//! Output `[indices.., cols]` = `(q - zp) * scale` of the selected rows, in the scales' type.
//!
//! tract-onnx's own lowering converts the table to its `Q4_0` format when the model is
//! loaded: a second copy of the table, built nibble by nibble (~10 ms of the bundled model's
//! load), with scales rounded to f16. This op keeps the table as a
//! [`Q4Matrix`](crate::kernels::Q4Matrix) reading the initializer in place and dequantizes
//! the selected rows exactly. Shapes it does not implement (other bits, block sizes or
//! axes) go to tract's lowering unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::matmul_nbits::{q4_matrix_from_tensors, BITS, BLOCK_SIZE};
use crate::kernels::Q4Matrix;

/// ONNX builder registered as `GatherBlockQuantized` by [`super::register`].
pub fn gather_block_quantized(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if !is_ours(node)? {
        return (super::builtin_builder("GatherBlockQuantized"))(ctx, node);
    }
    let has_zero_points = node.input.len() > 3 && !node.input[3].is_empty();
    Ok((expand(GatherBlockQuantized { has_zero_points }), vec![]))
}

/// Whether this op implements `node` (else tract's lowering gets it).
fn is_ours(node: &NodeProto) -> TractResult<bool> {
    let bits: i64 = node.get_attr_opt("bits")?.unwrap_or(4);
    let block_size: i64 = node.get_attr_opt("block_size")?.unwrap_or(128);
    let gather_axis: i64 = node.get_attr_opt("gather_axis")?.unwrap_or(0);
    let quantize_axis: i64 = node.get_attr_opt("quantize_axis")?.unwrap_or(1);
    Ok(bits == BITS as i64
        && block_size == BLOCK_SIZE as i64
        && gather_axis == 0
        && (quantize_axis == 1 || quantize_axis == -1))
}

/// The export reshapes the tied table for ONNX Runtime's `GatherBlockQuantized` (`B`'s
/// `[N, K / 32, 16]` to `[N, K / 2]`, its scales likewise), and tract folds each `Reshape` of
/// an initializer into a copy of it at every load (the bundled model's 1.3 MB table, ~2 ms).
/// This op reads the bytes in either shape, so each of its table inputs that is the output of
/// a `Reshape` of an initializer, read by nothing else, is pointed back at the initializer and
/// the `Reshape` dropped. Only for nodes this op implements (tract's lowering needs the
/// reshaped table); returns how many inputs were rewired.
pub fn read_tables_in_place(graph: &mut GraphProto) -> usize {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            *uses.entry(input.as_str()).or_default() += 1;
        }
        for output in &node.output {
            producer.insert(output.as_str(), i);
        }
    }
    for value in &graph.output {
        *uses.entry(value.name.as_str()).or_default() += 1;
    }
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut rewire = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type != "GatherBlockQuantized"
            || node.domain != "com.microsoft"
            || !is_ours(node).unwrap_or(false)
        {
            continue;
        }
        // data, scales, zero points
        for slot in [0, 2, 3] {
            let Some(value) = node.input.get(slot).map(String::as_str) else {
                continue;
            };
            let Some(&r) = producer.get(value) else {
                continue;
            };
            let reshape = &graph.node[r];
            if reshape.op_type == "Reshape"
                && reshape.domain.is_empty()
                && reshape.input.len() == 2
                && initializers.contains(reshape.input[0].as_str())
                && uses.get(value) == Some(&1)
            {
                rewire.push((i, slot, r, reshape.input[0].clone()));
            }
        }
    }
    let dropped: HashSet<usize> = rewire.iter().map(|&(_, _, r, _)| r).collect();
    for (i, slot, _, initializer) in &rewire {
        graph.node[*i].input[*slot] = initializer.clone();
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !dropped.contains(&(index - 1))
    });
    rewire.len()
}

/// The parsed node (inference-model side).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatherBlockQuantized {
    pub has_zero_points: bool,
}

/// The tensor of an input that is an initializer (a `Const` node), not a value that only
/// happens to be known while tract evaluates a node on its own.
fn initializer(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    if !model.node(outlet.node).op_is::<Const>() {
        return None;
    }
    model.outlet_fact(outlet).ok()?.konst.clone()
}

/// A constant of `model` holding the same elements as `t` (in any shape), if there is one,
/// else `t`. A tied embedding reaches this op through a `Reshape` of the LM head's weight,
/// which tract folds into a copy: reading the LM head's own tensor instead lets that copy
/// be dropped (1.3 MB for the bundled model's table).
fn shared_copy(model: &TypedModel, t: Arc<Tensor>) -> Arc<Tensor> {
    fn bytes(x: &Tensor) -> Option<&[u8]> {
        x.as_plain_ram_storage().map(|s| s.as_bytes())
    }
    let Some(want) = bytes(&t) else {
        return t;
    };
    let same = model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .map(|c| c.val())
        .find(|c| {
            !Arc::ptr_eq(c, &t)
                && c.datum_type() == t.datum_type()
                && c.len() == t.len()
                && bytes(c) == Some(want)
        })
        .cloned();
    same.unwrap_or(t)
}

impl Expansion for GatherBlockQuantized {
    fn name(&self) -> StaticName {
        "GatherBlockQuantized".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3 + self.has_zero_points as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, u8::datum_type())?;
        s.equals(&inputs[2].datum_type, &outputs[0].datum_type)?;
        s.given_2(
            &inputs[0].shape,
            &inputs[1].shape,
            move |s, data, indices| {
                let mut shape: TVec<TDim> = indices;
                // Two codes per byte of a row: `[rows, cols / 2]` or `[rows, cols / 32, 16]`.
                let row_bytes = data.iter().skip(1).fold(TDim::from(2), |a, d| a * d);
                shape.push(row_bytes);
                s.equals(&outputs[0].shape, ShapeFactoid::from(shape))
            },
        )
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        ensure!(
            inputs.len() == 3 + self.has_zero_points as usize,
            "GatherBlockQuantized: expected {} inputs, got {}",
            3 + self.has_zero_points as usize,
            inputs.len()
        );
        let constant = |i: usize| {
            initializer(model, inputs[i]).ok_or_else(|| {
                format_err!(
                    "GatherBlockQuantized: nextword's op needs a constant table, scales and \
                     zero points (input {i} is computed at run time)"
                )
            })
        };
        let (data, scales) = (constant(0)?, constant(2)?);
        let zero_points = if self.has_zero_points {
            Some(constant(3)?)
        } else {
            None
        };
        ensure!(
            data.rank() == 2 || (data.rank() == 3 && data.shape()[2] * 2 == BLOCK_SIZE),
            "GatherBlockQuantized: the table must be [rows, cols / 2] or [rows, cols / 32, 16], \
             got {:?}",
            data.shape()
        );
        let (rows, cols) = (
            data.shape()[0],
            data.shape()[1..].iter().product::<usize>() * 2,
        );
        ensure!(
            cols.is_multiple_of(BLOCK_SIZE) && scales.len() * BLOCK_SIZE == rows * cols,
            "GatherBlockQuantized: table {:?} and scales {:?} do not make blocks of {BLOCK_SIZE}",
            data.shape(),
            scales.shape()
        );
        let (data, scales) = (shared_copy(model, data), shared_copy(model, scales));
        let table = q4_matrix_from_tensors(rows, cols, &data, &scales, zero_points.as_deref())
            .context("GatherBlockQuantized: reading the table")?;
        let out_dt = scales.datum_type();
        let mut y = model.wire_node(
            prefix,
            GatherQ4 {
                table: Arc::new(table),
            },
            &[inputs[1]],
        )?[0];
        if out_dt != f32::datum_type() {
            y = model.wire_node(format!("{prefix}.cast"), cast(out_dt), &[y])?[0];
        }
        Ok(tvec!(y))
    }
}

/// The runtime op: selected rows of a constant 4-bit table, dequantized. Input: indices
/// (i32 or i64, any shape). Output: f32 `[indices.., K]`.
#[derive(Clone)]
pub struct GatherQ4 {
    pub table: Arc<Q4Matrix>,
}

impl std::fmt::Debug for GatherQ4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatherQ4")
            .field("rows", &self.table.n())
            .field("cols", &self.table.k())
            .finish()
    }
}

impl PartialEq for GatherQ4 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.table, &other.table)
    }
}
impl Eq for GatherQ4 {}

impl Op for GatherQ4 {
    fn name(&self) -> StaticName {
        "NextwordGatherQ4".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "rows={} cols={}",
            self.table.n(),
            self.table.k()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for GatherQ4 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1,
            "GatherBlockQuantized: expected 1 input, got {}",
            inputs.len()
        );
        let indices = inputs[0].cast_to::<i64>()?;
        let (rows, cols) = (self.table.n(), self.table.k());
        let mut shape: TVec<usize> = indices.shape().into();
        shape.push(cols);
        let mut out = Tensor::zero::<f32>(&shape)?;
        {
            let indices_view = indices.try_as_plain_ram()?;
            let indices = indices_view.as_slice::<i64>()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let out = out_view.as_slice_mut::<f32>()?;
            for (&i, row) in indices.iter().zip(out.chunks_exact_mut(cols)) {
                let r = if i < 0 { i + rows as i64 } else { i };
                ensure!(
                    (0..rows as i64).contains(&r),
                    "GatherBlockQuantized: index {i} out of range for {rows} rows"
                );
                self.table.dequantize_row_into(r as usize, row);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for GatherQ4 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "GatherBlockQuantized: wrong input count");
        ensure!(
            inputs[0].datum_type.is_integer(),
            "GatherBlockQuantized: indices must be integers, got {:?}",
            inputs[0].datum_type
        );
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        shape.push(self.table.k().to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}
