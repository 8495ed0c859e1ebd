//! `NextwordKvPresent`: the extended KV cache in one copy, for the per-layer nodes the
//! export writes to build it (see [`super::fusion`]).
//!
//! * inputs: `past_kv` f32 `[layers, 2, heads, P, Dh]`, then per layer its new keys and
//!   values, `[1, heads, S, Dh]` each (`2 x layers` inputs);
//! * output `present_kv` `[layers, 2, heads, P + S, Dh]`: each layer's cached keys followed by
//!   its new ones, the same for values.
//!
//! Why our own: the export slices each layer out of the cache, appends the new keys and
//! values, then stacks the layers again; tract runs that as six nodes per layer and copies
//! the cache about four times per call. The attention reads the cache in place
//! ([`Attention`](super::attention::Attention) with a `layer`), so this op is its only copy.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{f32_rules, wire_itself};

/// ONNX builder registered as `NextwordKvPresent` (a node only [`super::fusion`] writes).
pub fn nextword_kv_present(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let layers = node.input.len().saturating_sub(1) / 2;
    ensure!(
        layers > 0 && node.input.len() == 1 + 2 * layers,
        "NextwordKvPresent: expected the cache and two inputs per layer, got {} inputs",
        node.input.len()
    );
    Ok((expand(KvPresent { layers }), vec![]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvPresent {
    pub layers: usize,
}

/// The output shape for a cache of shape `past` and new keys of shape `new`.
fn present_shape<D: DimLike>(past: &[D], new: &[D]) -> TractResult<TVec<D>> {
    ensure!(
        past.len() == 5
            && new.len() == 4
            && new[0].is_one()
            && past[2] == new[1]
            && past[4] == new[3],
        "NextwordKvPresent: cache {past:?} and new keys {new:?} are not [L, 2, H, P, Dh] and \
         [1, H, S, Dh]"
    );
    let mut shape: TVec<D> = past.into();
    shape[3] = past[3].clone() + new[2].clone();
    Ok(shape)
}

impl Expansion for KvPresent {
    fn name(&self) -> StaticName {
        "NextwordKvPresent".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, 1 + 2 * self.layers)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, past, new| {
            let shape = present_shape(&past, &new)?;
            s.equals(&outputs[0].shape, ShapeFactoid::from(shape))
        })
    }

    wire_itself!();
}

impl Op for KvPresent {
    fn name(&self) -> StaticName {
        "NextwordKvPresent".into()
    }

    op_as_typed_op!();
}

impl EvalOp for KvPresent {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1 + 2 * self.layers,
            "NextwordKvPresent: expected {} inputs, got {}",
            1 + 2 * self.layers,
            inputs.len()
        );
        let past = &inputs[0];
        let shape = present_shape(past.shape(), inputs[1].shape())?;
        ensure!(
            shape[0] == self.layers && inputs[1..].iter().all(|x| x.shape() == inputs[1].shape()),
            "NextwordKvPresent: {} layers of new keys and values for a cache {:?}",
            self.layers,
            past.shape()
        );
        let (heads, p, dh) = (shape[2], past.shape()[3], shape[4]);
        let s = shape[3] - p;
        // SAFETY: f32 has no invalid bit patterns, and the loop below writes every element:
        // each (layer, kind, head) run is filled by its P cached and S new rows.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let past = past.try_as_plain_ram()?;
            let past = past.as_slice::<f32>()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let out = out_view.as_slice_mut::<f32>()?;
            // One (layer, kind, head) run at a time: its P cached rows, then its S new ones.
            for (run, dst) in out.chunks_exact_mut((p + s) * dh).enumerate() {
                let new = inputs[1 + run / heads].try_as_plain_ram()?;
                let new = new.as_slice::<f32>()?;
                let head = run % heads;
                dst[..p * dh].copy_from_slice(&past[run * p * dh..][..p * dh]);
                dst[p * dh..].copy_from_slice(&new[head * s * dh..][..s * dh]);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for KvPresent {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 + 2 * self.layers,
            "NextwordKvPresent: expected {} inputs",
            1 + 2 * self.layers
        );
        Ok(tvec!(f32::fact(present_shape(
            &inputs[0].shape.to_tvec(),
            &inputs[1].shape.to_tvec()
        )?)))
    }

    as_op!();
}
