//! `NextwordResidualAdd`: `a + b` for two f32 tensors of the same shape, the residual
//! connections of the export (`x + Attention(..)`, `x + FeedForward(..)`, two per layer; see
//! [`super::fusion`]).
//!
//! Why our own: tract 0.23 evaluates `Add` through `BinMiniOp::eval_in_a`, a closure call per
//! element under `par_chunks_mut`: 4.6% of a 20-token forward by perf. This is the same sum
//! of the same two floats (so the same bits) in a loop the compiler vectorizes, written into
//! `a`'s buffer when the plan holds no other reference to it.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{f32_rules, wire_itself};

/// ONNX builder registered as `NextwordResidualAdd` (a node only [`super::fusion`] writes).
pub fn nextword_residual_add(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ResidualAdd), vec![]))
}

/// The op: two inputs of one shape, their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResidualAdd;

impl Expansion for ResidualAdd {
    fn name(&self) -> StaticName {
        "NextwordResidualAdd".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, 2)?;
        s.equals(&inputs[0].shape, &inputs[1].shape)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    wire_itself!();
}

impl Op for ResidualAdd {
    fn name(&self) -> StaticName {
        "NextwordResidualAdd".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ResidualAdd {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        ensure!(
            a.shape() == b.shape(),
            "NextwordResidualAdd: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        );
        let mut sum = a.into_tensor();
        {
            let b = b.try_as_plain_ram()?;
            let b = b.as_slice::<f32>()?;
            let mut view = sum.try_as_plain_ram_mut()?;
            for (s, b) in view.as_slice_mut::<f32>()?.iter_mut().zip(b) {
                *s += b;
            }
        }
        Ok(tvec!(sum.into_tvalue()))
    }
}

impl TypedOp for ResidualAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2, "NextwordResidualAdd: expected 2 inputs");
        ensure!(
            inputs[0].shape == inputs[1].shape,
            "NextwordResidualAdd: shapes {:?} and {:?} differ",
            inputs[0].shape,
            inputs[1].shape
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::floats;

    #[test]
    fn adds_elementwise() {
        let a = Tensor::from_shape(&[1, 2, 3], &[1f32, 2., 3., 4., 5., 6.]).unwrap();
        let b = Tensor::from_shape(&[1, 2, 3], &[0.5f32, -2., 1e-8, 4e8, -5., 0.25]).unwrap();
        let want: Vec<f32> = floats(&a)
            .iter()
            .zip(floats(&b))
            .map(|(a, b)| a + b)
            .collect();
        let out = ResidualAdd
            .eval(&EvalContext::out_of_plan(), tvec![a.into(), b.into()])
            .unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 3]);
        assert_eq!(floats(&out[0]), want);
    }

    #[test]
    fn rejects_inputs_of_different_shapes() {
        let a = Tensor::zero::<f32>(&[1, 2, 3]).unwrap();
        let b = Tensor::zero::<f32>(&[1, 1, 3]).unwrap();
        let err = ResidualAdd
            .eval(&EvalContext::out_of_plan(), tvec![a.into(), b.into()])
            .unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    }
}
