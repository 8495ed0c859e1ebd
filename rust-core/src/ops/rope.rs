//! `NextwordRope`: rotary position embedding, "rotate half" form, one op for the seven ONNX
//! nodes the export writes per layer (see [`super::fusion`]):
//!
//! `Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, h..2h)), Slice(x, 0..h)), sin))`
//!
//! * `x`: f32 `[.., 2h]`; `cos`, `sin`: f32, broadcast to `x`'s shape;
//! * output, like `x`: `y[i] = x[i] cos[i] - x[i + h] sin[i]` for `i < h`,
//!   `y[i] = x[i] cos[i] + x[i - h] sin[i]` for `i >= h`.
//!
//! Why our own: tract runs the pattern as a dozen plan nodes per layer (it splits the
//! slices through the queries and keys), each with a dispatch and an output allocation.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{broadcast_strides, f32_rules, wire_itself, MAX_ATTR_SIZE};

/// ONNX builder registered as `NextwordRope` (a node only [`super::fusion`] writes).
pub fn nextword_rope(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let half: i64 = node.get_attr("half")?;
    ensure!(
        (1..=MAX_ATTR_SIZE).contains(&half),
        "NextwordRope: half must be in 1..={MAX_ATTR_SIZE}, got {half}"
    );
    Ok((
        expand(Rope {
            half: half as usize,
        }),
        vec![],
    ))
}

/// The op; `half` is half the last axis of `x` (the export's slice point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rope {
    pub half: usize,
}

impl Expansion for Rope {
    fn name(&self) -> StaticName {
        "NextwordRope".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, 3)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    wire_itself!();
}

impl Op for Rope {
    fn name(&self) -> StaticName {
        "NextwordRope".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("half={}", self.half)])
    }

    op_as_typed_op!();
}

impl EvalOp for Rope {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, cos, sin) = args_3!(inputs);
        let h = self.half;
        let shape = x.shape();
        ensure!(
            shape.last() == Some(&(2 * h)),
            "NextwordRope: the last axis of x {shape:?} is not 2 x {h}"
        );
        let cos_strides = broadcast_strides(cos.shape(), shape).context("NextwordRope: cos")?;
        let sin_strides = broadcast_strides(sin.shape(), shape).context("NextwordRope: sin")?;
        let mut out = Tensor::zero::<f32>(shape)?;
        {
            let x = x.try_as_plain_ram()?;
            let cos = cos.try_as_plain_ram()?;
            let sin = sin.try_as_plain_ram()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let (x, cos, sin) = (
                x.as_slice::<f32>()?,
                cos.as_slice::<f32>()?,
                sin.as_slice::<f32>()?,
            );
            let out = out_view.as_slice_mut::<f32>()?;
            let rank = shape.len();
            let (cos_last, sin_last) = (cos_strides[rank - 1], sin_strides[rank - 1]);
            let mut index = vec![0usize; rank - 1];
            for (row, (x, y)) in x
                .chunks_exact(2 * h)
                .zip(out.chunks_exact_mut(2 * h))
                .enumerate()
            {
                let mut rest = row;
                for axis in (0..rank - 1).rev() {
                    index[axis] = rest % shape[axis];
                    rest /= shape[axis];
                }
                let offset = |strides: &[usize]| -> usize {
                    (0..rank - 1).map(|a| index[a] * strides[a]).sum()
                };
                let (c0, s0) = (offset(&cos_strides), offset(&sin_strides));
                rotate(x, y, (&cos[c0..], cos_last), (&sin[s0..], sin_last));
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// One row: `y[i] = x[i] cos[i] - x[i + h] sin[i]` for `i < h`, `x[i] cos[i] + x[i - h]
/// sin[i]` for `i >= h`, `h` half the row; cos and sin given as (values from the row's first,
/// step between elements).
pub(crate) fn rotate(x: &[f32], y: &mut [f32], cos: (&[f32], usize), sin: (&[f32], usize)) {
    let h = x.len() / 2;
    let ((cos, cos_step), (sin, sin_step)) = (cos, sin);
    if cos_step == 1 && sin_step == 1 {
        // The export's layout: contiguous rows, a loop the compiler vectorizes.
        let (c, s) = (&cos[..2 * h], &sin[..2 * h]);
        let (x_lo, x_hi) = x.split_at(h);
        let (y_lo, y_hi) = y.split_at_mut(h);
        for i in 0..h {
            y_lo[i] = x_lo[i] * c[i] + -x_hi[i] * s[i];
            y_hi[i] = x_hi[i] * c[h + i] + x_lo[i] * s[h + i];
        }
        return;
    }
    let c = |i: usize| cos[i * cos_step];
    let s = |i: usize| sin[i * sin_step];
    for i in 0..h {
        y[i] = x[i] * c(i) + -x[i + h] * s(i);
        y[i + h] = x[i + h] * c(i + h) + x[i] * s(i + h);
    }
}

impl TypedOp for Rope {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "NextwordRope: expected 3 inputs");
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
        /// Bit-identical to the unfused graph's arithmetic (same products, same order of
        /// the one addition), with cos/sin broadcast over the heads as the export does.
        #[test]
        fn matches_the_unfused_arithmetic(
            heads in 1usize..4, s in 1usize..6, h in 1usize..9,
            values in proptest::collection::vec(-3f32..3.0, 3 * 4 * 6 * 16),
        ) {
            let d = 2 * h;
            let n = heads * s * d;
            let x = Tensor::from_shape(&[1, heads, s, d], &values[..n]).unwrap();
            let cos = Tensor::from_shape(&[1, 1, s, d], &values[n..n + s * d]).unwrap();
            let sin = Tensor::from_shape(&[1, 1, s, d], &values[2 * n..2 * n + s * d]).unwrap();
            let out = Rope { half: h }
                .eval(&EvalContext::out_of_plan(), tvec![x.clone().into(), cos.clone().into(), sin.clone().into()])
                .unwrap();
            let got = floats(&out[0]);
            let (x, cos, sin) = (floats(&x), floats(&cos), floats(&sin));
            for head in 0..heads {
                for p in 0..s {
                    let base = (head * s + p) * d;
                    for i in 0..d {
                        let rot = if i < h { -x[base + i + h] } else { x[base + i - h] };
                        let want = x[base + i] * cos[p * d + i] + rot * sin[p * d + i];
                        prop_assert_eq!(got[base + i].to_bits(), want.to_bits());
                    }
                }
            }
        }
    }

    /// cos and sin broadcast along the last axis (a layout the export does not write) take
    /// the strided path, with the same arithmetic as the contiguous one.
    #[test]
    fn broadcast_angles_match_materialized_ones() {
        let (s, d) = (3, 8);
        let x: Vec<f32> = (0..2 * s * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_shape(&[1, 2, s, d], &x).unwrap();
        let per_position = |f: fn(f32) -> f32| -> (Tensor, Tensor) {
            let one: Vec<f32> = (0..s).map(|p| f(p as f32)).collect();
            let full: Vec<f32> = one.iter().flat_map(|&v| [v; 8]).collect();
            (
                Tensor::from_shape(&[1, 1, s, 1], &one).unwrap(),
                Tensor::from_shape(&[1, 1, s, d], &full).unwrap(),
            )
        };
        let ((cos_b, cos_f), (sin_b, sin_f)) = (per_position(f32::cos), per_position(f32::sin));
        let run = |cos: Tensor, sin: Tensor| {
            let out = Rope { half: d / 2 }
                .eval(
                    &EvalContext::out_of_plan(),
                    tvec![x.clone().into(), cos.into(), sin.into()],
                )
                .unwrap();
            floats(&out[0])
        };
        let (strided, contiguous) = (run(cos_b, sin_b), run(cos_f, sin_f));
        assert_eq!(strided.len(), 2 * s * d);
        for (a, b) in strided.iter().zip(&contiguous) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn rejects_an_odd_last_axis() {
        let x = Tensor::zero::<f32>(&[1, 2, 3, 7]).unwrap();
        let cs = Tensor::zero::<f32>(&[1, 1, 3, 7]).unwrap();
        let err = Rope { half: 3 }
            .eval(
                &EvalContext::out_of_plan(),
                tvec![x.into(), cs.clone().into(), cs.into()],
            )
            .unwrap_err();
        assert!(err.to_string().contains("last axis"), "{err}");
    }
}
