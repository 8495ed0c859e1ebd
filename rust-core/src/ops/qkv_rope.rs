//! `NextwordQkvRope`: a layer's fused q/k/v projection split into heads, with the rotary
//! embedding applied to the queries and keys; one op for what the export writes around the
//! rotation (after [`super::fusion`] made the rotation a [`NextwordRope`](super::rope)):
//!
//! ```text
//! t = Transpose(Reshape(qkv, [1, -1, 3H, Dh]), perm [0, 2, 1, 3])
//! r = NextwordRope(Slice(t, 0, 2H, axis 1), cos, sin)
//! q = Slice(r, 0, H, axis 1), k = Slice(r, H, 2H, axis 1), v = Slice(t, 2H, 3H, axis 1)
//! ```
//!
//! * `qkv`: f32 `[1, S, 3 H Dh]`; `cos`, `sin`: f32, broadcast to `[1, H, S, Dh]`;
//! * outputs `q`, `k`, `v`: f32 `[1, H, S, Dh]`, `q` and `k` rotated with the arithmetic of
//!   [`NextwordRope`](super::rope).
//!
//! Why our own: tract runs the pattern as seven plan nodes per layer (a reshape, a transpose
//! copy, four slice copies and the rotation) and types them at every load; this writes each
//! output once, in one pass.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::rope::rotate;
use super::{broadcast_strides, MAX_ATTR_SIZE};

/// ONNX builder registered as `NextwordQkvRope` (a node only [`super::fusion`] writes).
pub fn nextword_qkv_rope(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let heads: i64 = node.get_attr("heads")?;
    let head_dim: i64 = node.get_attr("head_dim")?;
    ensure!(
        (1..=MAX_ATTR_SIZE).contains(&heads)
            && (1..=MAX_ATTR_SIZE).contains(&head_dim)
            && head_dim % 2 == 0,
        "NextwordQkvRope: heads {heads} and head_dim {head_dim} must be in 1..={MAX_ATTR_SIZE}, \
         head_dim even"
    );
    Ok((
        expand(QkvRope {
            heads: heads as usize,
            head_dim: head_dim as usize,
        }),
        vec![],
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QkvRope {
    pub heads: usize,
    pub head_dim: usize,
}

impl QkvRope {
    fn width(&self) -> usize {
        3 * self.heads * self.head_dim
    }
}

impl Expansion for QkvRope {
    fn name(&self) -> StaticName {
        "NextwordQkvRope".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(3)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 3)?;
        for x in inputs.iter().chain(outputs) {
            s.equals(&x.datum_type, f32::datum_type())?;
        }
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[0].shape[0], 1.to_dim())?;
        s.equals(&inputs[0].shape[2], self.width().to_dim())?;
        for out in outputs {
            s.equals(&out.rank, 4)?;
            s.equals(&out.shape[0], 1.to_dim())?;
            s.equals(&out.shape[1], self.heads.to_dim())?;
            s.equals(&out.shape[2], &inputs[0].shape[1])?;
            s.equals(&out.shape[3], self.head_dim.to_dim())?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, *self, inputs)
    }
}

impl Op for QkvRope {
    fn name(&self) -> StaticName {
        "NextwordQkvRope".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "heads={} head_dim={}",
            self.heads, self.head_dim
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QkvRope {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (qkv, cos, sin) = args_3!(inputs);
        let (heads, dh) = (self.heads, self.head_dim);
        let shape = qkv.shape();
        ensure!(
            shape.len() == 3 && shape[0] == 1 && shape[2] == self.width(),
            "NextwordQkvRope: qkv {shape:?} is not [1, S, {}]",
            self.width()
        );
        let s = shape[1];
        let out_shape = [1, heads, s, dh];
        let cos_strides =
            broadcast_strides(cos.shape(), &out_shape).context("NextwordQkvRope: cos")?;
        let sin_strides =
            broadcast_strides(sin.shape(), &out_shape).context("NextwordQkvRope: sin")?;
        let qkv = qkv.try_as_plain_ram()?;
        let qkv = qkv.as_slice::<f32>()?;
        let cos = cos.try_as_plain_ram()?;
        let cos = cos.as_slice::<f32>()?;
        let sin = sin.try_as_plain_ram()?;
        let sin = sin.as_slice::<f32>()?;
        let mut outputs = TVec::new();
        // q, k, v in turn: the heads of each are consecutive in a qkv row.
        for kind in 0..3 {
            let mut out = Tensor::zero::<f32>(&out_shape)?;
            {
                let mut view = out.try_as_plain_ram_mut()?;
                let y = view.as_slice_mut::<f32>()?;
                for head in 0..heads {
                    for pos in 0..s {
                        let x = &qkv[pos * self.width() + (kind * heads + head) * dh..][..dh];
                        let y = &mut y[(head * s + pos) * dh..][..dh];
                        if kind == 2 {
                            y.copy_from_slice(x);
                            continue;
                        }
                        let at = |strides: &[usize]| head * strides[1] + pos * strides[2];
                        let (c0, s0) = (at(&cos_strides), at(&sin_strides));
                        rotate(
                            x,
                            y,
                            (&cos[c0..], cos_strides[3]),
                            (&sin[s0..], sin_strides[3]),
                        );
                    }
                }
            }
            outputs.push(out.into_tvalue());
        }
        Ok(outputs)
    }
}

impl TypedOp for QkvRope {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "NextwordQkvRope: expected 3 inputs");
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 3 && shape[2] == self.width().to_dim(),
            "NextwordQkvRope: qkv {shape:?} is not [1, S, {}]",
            self.width()
        );
        let out = f32::fact([
            1.to_dim(),
            self.heads.to_dim(),
            shape[1].clone(),
            self.head_dim.to_dim(),
        ]);
        Ok(tvec!(out.clone(), out.clone(), out))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::floats;
    use crate::ops::rope::Rope;

    /// The same outputs, bit for bit, as the split and the rotation done apart: heads taken
    /// from a `[1, S, 3 H Dh]` row by hand, then [`Rope`] on the queries and keys.
    #[test]
    fn matches_the_split_then_the_rotation() {
        let (heads, s, dh) = (3, 4, 8);
        let width = 3 * heads * dh;
        let qkv: Vec<f32> = (0..s * width).map(|i| (i as f32 * 0.731).sin()).collect();
        let angles: Vec<f32> = (0..s * dh).map(|i| i as f32 * 0.1).collect();
        let cos = Tensor::from_shape(
            &[1, 1, s, dh],
            &angles.iter().map(|a| a.cos()).collect::<Vec<_>>(),
        )
        .unwrap();
        let sin = Tensor::from_shape(
            &[1, 1, s, dh],
            &angles.iter().map(|a| a.sin()).collect::<Vec<_>>(),
        )
        .unwrap();
        let op = QkvRope {
            heads,
            head_dim: dh,
        };
        let got = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec![
                    Tensor::from_shape(&[1, s, width], &qkv).unwrap().into(),
                    cos.clone().into(),
                    sin.clone().into()
                ],
            )
            .unwrap();
        for kind in 0..3 {
            // Heads of this kind, `[1, heads, s, dh]`.
            let mut split = vec![0f32; heads * s * dh];
            for head in 0..heads {
                for pos in 0..s {
                    let from = pos * width + (kind * heads + head) * dh;
                    split[(head * s + pos) * dh..][..dh].copy_from_slice(&qkv[from..][..dh]);
                }
            }
            let split = Tensor::from_shape(&[1, heads, s, dh], &split).unwrap();
            let want = if kind == 2 {
                split
            } else {
                Rope { half: dh / 2 }
                    .eval(
                        &EvalContext::out_of_plan(),
                        tvec![split.into(), cos.clone().into(), sin.clone().into()],
                    )
                    .unwrap()
                    .remove(0)
                    .into_tensor()
            };
            assert_eq!(got[kind].shape(), &[1, heads, s, dh]);
            let (got, want) = (floats(&got[kind]), floats(&want));
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{kind}"
            );
        }
    }

    #[test]
    fn rejects_a_row_of_another_width() {
        let qkv = Tensor::zero::<f32>(&[1, 2, 50]).unwrap();
        let cs = Tensor::zero::<f32>(&[1, 1, 2, 8]).unwrap();
        let err = QkvRope {
            heads: 2,
            head_dim: 8,
        }
        .eval(
            &EvalContext::out_of_plan(),
            tvec![qkv.into(), cs.clone().into(), cs.into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not [1, S, 48]"), "{err}");
    }
}
