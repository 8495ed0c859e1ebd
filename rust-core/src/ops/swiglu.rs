//! `NextwordSwiGlu`: the SwiGLU gate of the feed-forward block, one op for the five ONNX nodes
//! the export writes per layer (see [`super::fusion`]):
//!
//! `Mul(Mul(a, Sigmoid(a)), b)` with `a = Slice(x, 0..f)`, `b = Slice(x, f..2f)` on the last axis
//!
//! * `x`: f32 `[.., 2f]` (the fused gate and up projections); output f32 `[.., f]`:
//!   `y = silu(a) * b`, `silu(a) = a * sigmoid(a)`.
//!
//! Why our own: tract runs the pattern as two slices (two copies), its SiLU and a multiply,
//! four plan nodes per layer, and types and optimizes the five nodes at every load. The SiLU
//! is tract's own kernel (`tract_linalg`'s `Silu`), so the arithmetic is the one tract's plan
//! ran.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::tract_linalg::routines::Func;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{f32_rules, wire_itself, MAX_ATTR_SIZE};

/// ONNX builder registered as `NextwordSwiGlu` (a node only [`super::fusion`] writes).
pub fn nextword_swiglu(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let half: i64 = node.get_attr("half")?;
    ensure!(
        (1..=MAX_ATTR_SIZE).contains(&half),
        "NextwordSwiGlu: half must be in 1..={MAX_ATTR_SIZE}, got {half}"
    );
    Ok((
        expand(SwiGlu {
            half: half as usize,
        }),
        vec![],
    ))
}

/// The op; `half` is the width of the output (half the last axis of `x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwiGlu {
    pub half: usize,
}

impl Expansion for SwiGlu {
    fn name(&self) -> StaticName {
        "NextwordSwiGlu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, 1)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        let half = self.half;
        s.given(&inputs[0].rank, move |s, rank| {
            let last = rank as usize - 1;
            for axis in 0..last {
                s.equals(&inputs[0].shape[axis], &outputs[0].shape[axis])?;
            }
            s.equals(&inputs[0].shape[last], (2 * half).to_dim())?;
            s.equals(&outputs[0].shape[last], half.to_dim())
        })
    }

    wire_itself!();
}

impl Op for SwiGlu {
    fn name(&self) -> StaticName {
        "NextwordSwiGlu".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("half={}", self.half)])
    }

    op_as_typed_op!();
}

impl EvalOp for SwiGlu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let f = self.half;
        let shape = x.shape();
        ensure!(
            shape.last() == Some(&(2 * f)),
            "NextwordSwiGlu: the last axis of x {shape:?} is not 2 x {f}"
        );
        let mut out_shape: TVec<usize> = shape.into();
        *out_shape.last_mut().expect("checked above") = f;
        let mut out = Tensor::zero::<f32>(&out_shape)?;
        {
            let x = x.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut view = out.try_as_plain_ram_mut()?;
            let out = view.as_slice_mut::<f32>()?;
            for (y, x) in out.chunks_exact_mut(f).zip(x.chunks_exact(2 * f)) {
                y.copy_from_slice(&x[..f]);
            }
            Func::Silu.ew_f32()?.run(out)?;
            for (y, x) in out.chunks_exact_mut(f).zip(x.chunks_exact(2 * f)) {
                for (y, b) in y.iter_mut().zip(&x[f..]) {
                    *y *= b;
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for SwiGlu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "NextwordSwiGlu: expected 1 input");
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        let last = shape.last_mut().context("NextwordSwiGlu: x is a scalar")?;
        ensure!(
            *last == (2 * self.half).to_dim(),
            "NextwordSwiGlu: the last axis of x is {last}, not 2 x {}",
            self.half
        );
        *last = self.half.to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::floats;
    use proptest::prelude::*;

    proptest! {
        /// `silu(a) * b` with the exact sigmoid, to the rounding of tract's SiLU kernel.
        #[test]
        fn matches_the_unfused_arithmetic(
            rows in 1usize..5, f in 1usize..40,
            values in proptest::collection::vec(-8f32..8.0, 5 * 80),
        ) {
            let x = Tensor::from_shape(&[1, rows, 2 * f], &values[..rows * 2 * f]).unwrap();
            let out = SwiGlu { half: f }
                .eval(&EvalContext::out_of_plan(), tvec![x.clone().into()])
                .unwrap();
            prop_assert_eq!(out[0].shape(), &[1, rows, f]);
            let (got, x) = (floats(&out[0]), floats(&x));
            for (r, row) in x.chunks_exact(2 * f).enumerate() {
                for i in 0..f {
                    let (a, b) = (row[i] as f64, row[f + i] as f64);
                    let want = a / (1.0 + (-a).exp()) * b;
                    let value = got[r * f + i] as f64;
                    let err = (value - want).abs();
                    prop_assert!(err <= 1e-5 * want.abs().max(1.0), "{} vs {}", value, want);
                }
            }
        }
    }

    #[test]
    fn rejects_an_input_of_another_width() {
        let x = Tensor::zero::<f32>(&[1, 2, 7]).unwrap();
        let err = SwiGlu { half: 4 }
            .eval(&EvalContext::out_of_plan(), tvec![x.into()])
            .unwrap_err();
        assert!(err.to_string().contains("last axis"), "{err}");
    }
}
