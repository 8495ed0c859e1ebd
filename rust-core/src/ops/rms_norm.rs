//! `NextwordRmsNorm`: RMS normalization with its gain, one op for the six ONNX nodes the export
//! writes per norm (see [`super::fusion`]):
//!
//! `Mul(Div(x, Sqrt(Add(ReduceMean(Mul(x, x), axes [-1]), eps))), gain)`
//!
//! * `x`: f32 `[.., d]`; `gain`: f32 `[d]`; output like `x`:
//!   `y = x / sqrt(mean(x^2) + eps) * gain` along the last axis.
//!
//! Why our own: tract reads the six nodes and its optimizer rebuilds them into its RMS norm
//! and a separate multiply by the gain; seventeen norms make that 102 of the graph's nodes
//! to type and optimize at every load, and two plan nodes (two passes, one more output) per
//! norm at every call. The sum of squares runs in 16 lanes, which the compiler vectorizes
//! (tract's portable kernel, the one it picks on AVX2 machines, sums in order, one dependent add
//! per element: 2% of the 20-token forward).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{f32_rules, wire_itself};

/// ONNX builder registered as `NextwordRmsNorm` (a node only [`super::fusion`] writes).
pub fn nextword_rms_norm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let eps: f32 = node.get_attr("epsilon")?;
    ensure!(
        eps.is_finite() && eps >= 0.0,
        "NextwordRmsNorm: epsilon must be finite and not negative, got {eps}"
    );
    Ok((expand(RmsNorm { eps }), vec![]))
}

/// The op; `eps` is added to the mean square before the square root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNorm {
    pub eps: f32,
}

impl Eq for RmsNorm {}

impl std::hash::Hash for RmsNorm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.eps.to_bits().hash(state)
    }
}

impl Expansion for RmsNorm {
    fn name(&self) -> StaticName {
        "NextwordRmsNorm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, 2)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    wire_itself!();
}

impl Op for RmsNorm {
    fn name(&self) -> StaticName {
        "NextwordRmsNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("eps={}", self.eps)])
    }

    op_as_typed_op!();
}

impl EvalOp for RmsNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, gain) = args_2!(inputs);
        let d = gain.len();
        ensure!(
            gain.rank() == 1 && x.shape().last() == Some(&d) && d > 0,
            "NextwordRmsNorm: gain {:?} is not [d] for x {:?}",
            gain.shape(),
            x.shape()
        );
        let gain = gain.try_as_plain_ram()?;
        let gain = gain.as_slice::<f32>()?;
        // In place when this op holds the input's only reference (a copy otherwise).
        let mut y = x.into_tensor();
        {
            let mut view = y.try_as_plain_ram_mut()?;
            for row in view.as_slice_mut::<f32>()?.chunks_exact_mut(d) {
                normalize(row, gain, self.eps);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

/// `row * gain / sqrt(mean(row^2) + eps)`, in place.
fn normalize(row: &mut [f32], gain: &[f32], eps: f32) {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    let mean = (lanes.iter().sum::<f32>() + tail) / row.len() as f32;
    let inv_root = (mean + eps).sqrt().recip();
    for (v, g) in row.iter_mut().zip(gain) {
        *v = *v * inv_root * g;
    }
}

impl TypedOp for RmsNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2, "NextwordRmsNorm: expected 2 inputs");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::floats;
    use proptest::prelude::*;

    proptest! {
        /// The unfused graph's arithmetic, to float rounding (another summation order, and a
        /// multiply by the reciprocal square root where the graph divides by the root).
        #[test]
        fn matches_the_unfused_arithmetic(
            rows in 1usize..5, d in 1usize..40,
            values in proptest::collection::vec(-3f32..3.0, 5 * 40 + 40),
        ) {
            let x = Tensor::from_shape(&[1, rows, d], &values[..rows * d]).unwrap();
            let gain = Tensor::from_shape(&[d], &values[200..200 + d]).unwrap();
            let eps = 1e-5f32;
            let out = RmsNorm { eps }
                .eval(&EvalContext::out_of_plan(), tvec![x.clone().into(), gain.clone().into()])
                .unwrap();
            let (got, x, gain) = (floats(&out[0]), floats(&x), floats(&gain));
            for (r, row) in x.chunks_exact(d).enumerate() {
                let mean = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let root = (mean + eps).sqrt();
                for (i, v) in row.iter().enumerate() {
                    let want = v / root * gain[i];
                    let value = got[r * d + i];
                    let err = (value - want).abs();
                    prop_assert!(err <= 1e-5 * want.abs().max(1.0), "{} vs {}", value, want);
                }
            }
        }
    }

    #[test]
    fn rejects_a_gain_of_another_width() {
        let x = Tensor::zero::<f32>(&[1, 2, 8]).unwrap();
        let gain = Tensor::zero::<f32>(&[7]).unwrap();
        let err = RmsNorm { eps: 1e-5 }
            .eval(&EvalContext::out_of_plan(), tvec![x.into(), gain.into()])
            .unwrap_err();
        assert!(err.to_string().contains("gain"), "{err}");
    }
}
