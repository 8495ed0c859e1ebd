//! `NextwordAttention`: scaled dot-product attention with an additive bias, one op for the
//! six ONNX nodes the export writes per layer (see [`super::fusion`]):
//!
//! `MatMul(Softmax(Add(Mul(MatMul(q, Transpose(k, [0, 1, 3, 2])), scale), bias)), v)`
//!
//! * `q`: f32 `[.., S, Dh]`; `k`: `[.., T, Dh]`; `v`: `[.., T, Dv]` (same leading axes);
//! * `bias`: f32, broadcast to `[.., S, T]` (0 where a query may attend, a large negative
//!   value where it may not);
//! * output `[.., S, Dv]`;
//! * with a `layer` attribute, a fifth input `past_kv` `[layers, 2, .., P, Dh]`: the keys
//!   are then `past_kv[layer, 0]` followed by `k`, the values `past_kv[layer, 1]` followed by
//!   `v`, read in place (what [`super::fusion`] makes of the export's cache plumbing).
//!
//! Why our own: a keystroke's attention is small (5 heads, a few dozen queries and keys),
//! and tract runs it as eight plan nodes per layer (two packings and two matmuls, a
//! transpose, a scale, an add and a softmax), each with a dispatch and an output allocation.
//! Here it is one pass per query row that also skips the keys its bias masks (a completion
//! tree's beams see the context and their own ancestors only).
//!
//! Masked keys: a key whose bias is below [`SKIP_BELOW`] is left out of the row. Its
//! softmax weight would be `exp(score + bias - max)`, which is exactly 0 in f32 for any score
//! under 1e8 in magnitude. A row whose keys are all masked is computed in full, as the
//! softmax of the unfused graph would.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::*;

use super::{broadcast_strides, f32_rules, wire_itself};

/// Biases below this mark masked keys (the export uses -1e9).
pub const SKIP_BELOW: f32 = -1e8;

/// ONNX builder registered as `NextwordAttention` (a node only [`super::fusion`] writes).
pub fn nextword_attention(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: f32 = node.get_attr("scale")?;
    let layer: Option<i64> = node.get_attr_opt("layer")?;
    let layer = match layer {
        Some(l) if l < 0 => bail!("NextwordAttention: negative layer {l}"),
        l => l.map(|l| l as usize),
    };
    Ok((expand(Attention { scale, layer }), vec![]))
}

/// The op; `scale` multiplies `q . k` before the bias is added. With `layer`, a fifth input
/// `past_kv` `[layers, 2, heads, P, Dh]` holds earlier keys and values: the keys are
/// `past_kv[layer, 0]` followed by `k`, the values `past_kv[layer, 1]` followed by `v` (read
/// in place: no concatenated copy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    pub scale: f32,
    pub layer: Option<usize>,
}

impl Attention {
    fn arity(&self) -> usize {
        4 + self.layer.is_some() as usize
    }
}

impl Eq for Attention {}

impl std::hash::Hash for Attention {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.scale.to_bits().hash(state);
        self.layer.hash(state)
    }
}

impl Expansion for Attention {
    fn name(&self) -> StaticName {
        "NextwordAttention".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        f32_rules(s, inputs, outputs, self.arity())?;
        s.equals(&inputs[0].rank, &inputs[1].rank)?;
        s.equals(&inputs[0].rank, &inputs[2].rank)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given_2(&inputs[0].shape, &inputs[2].shape, move |s, q, v| {
            let mut shape = q;
            if let (Some(last), Some(dv)) = (shape.last_mut(), v.last()) {
                *last = dv.clone();
            }
            s.equals(&outputs[0].shape, ShapeFactoid::from(shape))
        })
    }

    wire_itself!();
}

impl Op for Attention {
    fn name(&self) -> StaticName {
        "NextwordAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("scale={} layer={:?}", self.scale, self.layer)])
    }

    op_as_typed_op!();
}

/// The shapes of one call, checked.
struct Dims {
    /// Product of the leading axes (batch x heads).
    groups: usize,
    s: usize,
    /// Cached keys (0 without a cache input).
    p: usize,
    /// All keys: cached and new.
    t: usize,
    dh: usize,
    dv: usize,
}

fn dims(q: &[usize], k: &[usize], v: &[usize], past: Option<&[usize]>) -> TractResult<Dims> {
    let r = q.len();
    ensure!(
        r >= 2 && k.len() == r && v.len() == r && q[..r - 2] == k[..r - 2] && k[..r - 1] == v[..r - 1],
        "NextwordAttention: q {q:?}, k {k:?}, v {v:?} are not [.., S, Dh], [.., T, Dh], [.., T, Dv]"
    );
    ensure!(
        q[r - 1] == k[r - 1],
        "NextwordAttention: q {q:?} and k {k:?} differ in head size"
    );
    let groups = q[..r - 2].iter().product();
    let p = match past {
        None => 0,
        Some(past) => {
            ensure!(
                past.len() == 5
                    && past[1] == 2
                    && past[2] == groups
                    && past[4] == k[r - 1]
                    && k[r - 1] == v[r - 1],
                "NextwordAttention: cache {past:?} is not [layers, 2, {groups}, P, {}]",
                k[r - 1]
            );
            past[3]
        }
    };
    Ok(Dims {
        groups,
        s: q[r - 2],
        p,
        t: p + k[r - 2],
        dh: q[r - 1],
        dv: v[r - 1],
    })
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.arity(),
            "NextwordAttention: expected {} inputs, got {}",
            self.arity(),
            inputs.len()
        );
        let past = inputs.get(4).cloned();
        let (q, k, v, bias) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let d = dims(
            q.shape(),
            k.shape(),
            v.shape(),
            past.as_ref().map(|p| p.shape()),
        )?;
        let layer = self.layer.unwrap_or(0);
        if let Some(past) = &past {
            ensure!(
                layer < past.shape()[0],
                "NextwordAttention: layer {layer} of a cache of {}",
                past.shape()[0]
            );
        }
        let mut out_shape: TVec<usize> = q.shape().into();
        *out_shape.last_mut().expect("rank >= 2") = d.dv;
        let mut scores_shape = out_shape.clone();
        *scores_shape.last_mut().expect("rank >= 2") = d.t;
        let bias_strides = broadcast_strides(bias.shape(), &scores_shape)
            .context("NextwordAttention: the bias does not broadcast to the scores")?;
        let mut out = Tensor::zero::<f32>(&out_shape)?;
        {
            let q = q.try_as_plain_ram()?;
            let k = k.try_as_plain_ram()?;
            let v = v.try_as_plain_ram()?;
            let bias = bias.try_as_plain_ram()?;
            let past_view = past.as_ref().map(|p| p.try_as_plain_ram()).transpose()?;
            let past_all = match &past_view {
                Some(view) => view.as_slice::<f32>()?,
                None => &[],
            };
            // This layer's cached keys, then values: [groups, P, Dh] each.
            let size = d.groups * d.p * d.dh;
            let cached = |kind: usize| &past_all[(layer * 2 + kind) * size..][..size];
            let mut out_view = out.try_as_plain_ram_mut()?;
            let tensors = Tensors {
                q: q.as_slice::<f32>()?,
                k: [cached(0), k.as_slice::<f32>()?],
                v: [cached(1), v.as_slice::<f32>()?],
                bias: bias.as_slice::<f32>()?,
                bias_strides: &bias_strides,
                shape: &scores_shape,
            };
            attend(self.scale, &d, &tensors, out_view.as_slice_mut::<f32>()?);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.arity(),
            "NextwordAttention: expected {} inputs",
            self.arity()
        );
        let (q, v) = (&inputs[0].shape, &inputs[2].shape);
        ensure!(
            q.rank() >= 2 && v.rank() == q.rank(),
            "NextwordAttention: q {q:?} and v {v:?} must have the same rank, at least 2"
        );
        let mut shape = q.to_tvec();
        *shape.last_mut().expect("rank >= 2") = v[v.rank() - 1].clone();
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

struct Tensors<'a> {
    q: &'a [f32],
    /// Cached keys `[groups, P, Dh]` (empty without a cache), new keys `[groups, T - P, Dh]`.
    k: [&'a [f32]; 2],
    /// The same for values.
    v: [&'a [f32]; 2],
    bias: &'a [f32],
    /// The bias's strides along the scores' axes (0 where it is broadcast).
    bias_strides: &'a [usize],
    /// The scores' shape, `[.., S, T]`.
    shape: &'a [usize],
}

/// Runs the best variant of [`attend_with`] for this CPU: with FMA where the CPU has it
/// (`f32::mul_add` is a libm call without it; every aarch64 CPU has it).
fn attend(scale: f32, d: &Dims, x: &Tensors, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { attend_avx2_fma(scale, d, x, out) };
    }
    attend_with::<{ cfg!(target_arch = "aarch64") }>(scale, d, x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2_fma(scale: f32, d: &Dims, x: &Tensors, out: &mut [f32]) {
    attend_with::<true>(scale, d, x, out)
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `a . b` in eight lanes (the compiler keeps them in one vector register).
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] = fmadd::<FMA>(x[i], y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn attend_with<const FMA: bool>(scale: f32, d: &Dims, x: &Tensors, out: &mut [f32]) {
    let rank = x.shape.len();
    let mut weights = vec![0f32; d.t];
    let mut index = vec![0usize; rank - 2];
    for g in 0..d.groups {
        // The bias offset of group g: its multi-index over the leading axes times the strides.
        let mut rest = g;
        for axis in (0..rank - 2).rev() {
            index[axis] = rest % x.shape[axis];
            rest /= x.shape[axis];
        }
        let bias_group: usize = (0..rank - 2).map(|a| index[a] * x.bias_strides[a]).sum();
        let n = d.t - d.p;
        let key = |t: usize| -> &[f32] {
            let (part, row) = if t < d.p {
                (x.k[0], g * d.p + t)
            } else {
                (x.k[1], g * n + t - d.p)
            };
            &part[row * d.dh..][..d.dh]
        };
        let value = |t: usize| -> &[f32] {
            let (part, row) = if t < d.p {
                (x.v[0], g * d.p + t)
            } else {
                (x.v[1], g * n + t - d.p)
            };
            &part[row * d.dv..][..d.dv]
        };
        for s in 0..d.s {
            let query = &x.q[(g * d.s + s) * d.dh..(g * d.s + s + 1) * d.dh];
            let bias_row = bias_group + s * x.bias_strides[rank - 2];
            let bias = |t: usize| x.bias[bias_row + t * x.bias_strides[rank - 1]];
            let all_masked = (0..d.t).all(|t| bias(t) < SKIP_BELOW);
            let mut max = f32::NEG_INFINITY;
            for (t, w) in weights.iter_mut().enumerate() {
                let b = bias(t);
                *w = if b < SKIP_BELOW && !all_masked {
                    f32::NEG_INFINITY
                } else {
                    dot::<FMA>(query, key(t)) * scale + b
                };
                max = max.max(*w);
            }
            let mut sum = 0f32;
            for w in weights.iter_mut() {
                *w = (*w - max).exp();
                sum += *w;
            }
            let row = &mut out[(g * d.s + s) * d.dv..(g * d.s + s + 1) * d.dv];
            for (t, &w) in weights.iter().enumerate() {
                if w == 0.0 {
                    continue;
                }
                for (o, &x) in row.iter_mut().zip(value(t)) {
                    *o = fmadd::<FMA>(w, x, *o);
                }
            }
            let inv = 1.0 / sum;
            for o in row.iter_mut() {
                *o *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::floats;
    use proptest::prelude::*;

    /// The unfused graph's arithmetic, naively: scores, softmax over all keys, weighted sum.
    fn reference(scale: f32, q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Vec<f32> {
        let d = dims(q.shape(), k.shape(), v.shape(), None).unwrap();
        let r = q.rank();
        let mut scores_shape: TVec<usize> = q.shape().into();
        scores_shape[r - 1] = d.t;
        let bias = bias.broadcast_to_shape(&scores_shape).unwrap();
        let (q, k, v, b) = (floats(q), floats(k), floats(v), floats(&bias));
        let mut out = vec![0f32; d.groups * d.s * d.dv];
        for g in 0..d.groups {
            for s in 0..d.s {
                let row = g * d.s + s;
                let scores: Vec<f64> = (0..d.t)
                    .map(|t| {
                        let dot: f64 = (0..d.dh)
                            .map(|i| q[row * d.dh + i] as f64 * k[(g * d.t + t) * d.dh + i] as f64)
                            .sum();
                        // Added in f32, as the unfused graph does: a fully masked row
                        // is then uniform there and here.
                        ((dot * scale as f64) as f32 + b[row * d.t + t]) as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for j in 0..d.dv {
                    let y: f64 = (0..d.t)
                        .map(|t| e[t] / sum * v[(g * d.t + t) * d.dv + j] as f64)
                        .sum();
                    out[row * d.dv + j] = y as f32;
                }
            }
        }
        out
    }

    fn run(scale: f32, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Vec<f32> {
        let out = Attention { scale, layer: None }
            .eval(
                &EvalContext::out_of_plan(),
                tvec![q.into(), k.into(), v.into(), bias.into()],
            )
            .unwrap();
        floats(&out[0]).to_vec()
    }

    fn tensor(shape: &[usize], values: &[f32]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_shape(shape, &values[..n]).unwrap()
    }

    proptest! {
        /// Against the naive float graph, with masks like a completion tree's (a random
        /// subset of keys per query, sometimes none) and bias shapes [S, T] and [1, H, S, T].
        #[test]
        fn matches_the_unfused_arithmetic(
            h in 1usize..4, s in 1usize..7, t in 1usize..12, dh in 1usize..20,
            values in proptest::collection::vec(-2f32..2.0, 4 * 7 * 12 * 20 * 3),
            masked in proptest::collection::vec(any::<bool>(), 4 * 7 * 12),
            per_head in any::<bool>(),
        ) {
            let q = tensor(&[1, h, s, dh], &values);
            let k = tensor(&[1, h, t, dh], &values[1000..]);
            let v = tensor(&[1, h, t, dh], &values[3000..]);
            let bias_shape: Vec<usize> = if per_head { vec![1, h, s, t] } else { vec![s, t] };
            let n: usize = bias_shape.iter().product();
            let b: Vec<f32> = masked[..n].iter().map(|&m| if m { -1e9 } else { 0.0 }).collect();
            let bias = tensor(&bias_shape, &b);
            let want = reference(0.125, &q, &k, &v, &bias);
            let got = run(0.125, q, k, v, bias);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let q = Tensor::zero::<f32>(&[1, 2, 3, 8]).unwrap();
        let k = Tensor::zero::<f32>(&[1, 2, 4, 6]).unwrap();
        let v = Tensor::zero::<f32>(&[1, 2, 4, 8]).unwrap();
        let bias = Tensor::zero::<f32>(&[3, 4]).unwrap();
        let err = Attention {
            scale: 1.0,
            layer: None,
        }
        .eval(
            &EvalContext::out_of_plan(),
            tvec![q.into(), k.into(), v.into(), bias.into()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("head size"), "{err}");
    }
}
