//! The language model as tract runs it: one optimized plan of the bundle's ONNX graph, called
//! with new tokens and a KV cache (see `training/export.py` for the graph's interface).

use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::bundle::ModelInfo;
use crate::error::{Error, Result};
use crate::ops::preload::{self, ModelFile};
use crate::ops::{fusion, gather_block_quantized, onnx_framework, payloads, MatMulImpl};

/// Added to the attention scores a query must not see.
pub(crate) const MASKED: f32 = -1e9;

/// Keys and values of every token the model has seen: `[layers, 2, heads, len, head_dim]`.
#[derive(Clone, Debug)]
pub(crate) struct KvCache {
    tensor: Arc<Tensor>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.tensor.shape()[3]
    }

    /// The cache of the first `len` tokens.
    pub fn truncated(&self, len: usize) -> TractResult<KvCache> {
        if len == self.len() {
            return Ok(self.clone());
        }
        Ok(KvCache {
            tensor: Arc::new(self.tensor.slice(3, 0, len)?),
        })
    }

    /// The cache of the first `len` tokens followed by the tokens at `slots`, in that order.
    pub fn gathered(&self, len: usize, slots: &[usize]) -> TractResult<KvCache> {
        let mut parts = vec![self.tensor.slice(3, 0, len)?];
        for &slot in slots {
            parts.push(self.tensor.slice(3, slot, slot + 1)?);
        }
        Ok(KvCache {
            tensor: Arc::new(Tensor::stack_tensors(3, &parts)?),
        })
    }
}

/// One call of the model: `ids` follow the `past` tokens; `positions[i]` is the position of
/// `ids[i]`; `bias` is `[ids.len(), past.len() + ids.len()]` row-major (0 = may attend,
/// [`MASKED`] = may not); logits come back after each token listed in `logits_at`.
pub(crate) struct Step<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [usize],
    pub bias: &'a [f32],
    pub logits_at: &'a [usize],
}

pub(crate) struct LanguageModel {
    plan: Arc<TypedRunnableModel>,
    /// Run states kept between calls (one per concurrent caller): a fresh state per call
    /// costs allocations and constant copies on every keystroke.
    idle_states: Mutex<Vec<TypedSimpleState>>,
    info: ModelInfo,
    vocab_size: usize,
    matmul: MatMulImpl,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("info", &self.info)
            .field("matmul", &self.matmul)
            .finish()
    }
}

impl LanguageModel {
    /// Parses and optimizes the ONNX model in `bytes`.
    ///
    /// Peak memory is what an iOS keyboard extension is killed for, so the weights exist in
    /// one form at a time where it can be helped. With nextword's op the layers' packed
    /// weights are never copied: the decoder skips them (`ops::payloads`), they are repacked
    /// for the kernels where they lie in the file's buffer, whose other bytes are then
    /// released (`ops::preload`); the tied embedding is copied into tract's tensor, which the
    /// lookup reads in place, and once more into the LM head's matrix in the kernel's layout.
    /// The protobuf is freed once tract has read it.
    pub fn load(
        bytes: Vec<u8>,
        info: &ModelInfo,
        vocab_size: usize,
        matmul: MatMulImpl,
    ) -> Result<Self> {
        let t = std::time::Instant::now();
        let onnx = onnx_framework(matmul);
        // The decoder gets the file without its large initializer payloads (no copy of the
        // weights: `ops::payloads`), from `Bytes` so that what it keeps is copied once.
        let stripped = payloads::strip(&bytes, payloads::MIN_PAYLOAD)
            .map_err(|e| Error::InvalidModel(format!("not an ONNX protobuf: {e}")))?;
        let mut proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes::Bytes::from(
            stripped.bytes,
        ))
        .map_err(|e| Error::InvalidModel(format!("not an ONNX protobuf: {e}")))?;
        log::debug!("protobuf decoded in {:?}", t.elapsed());
        let mut file = ModelFile {
            bytes,
            payloads: stripped.payloads,
        };
        let mut preloaded = None;
        if let Some(graph) = proto.graph.as_mut() {
            let t = std::time::Instant::now();
            if matmul == MatMulImpl::Nextword {
                let taken = preload::preload(graph, file);
                log::debug!(
                    "weights of {} MatMulNBits nodes repacked in the file's buffer in {:?}",
                    taken.nodes,
                    t.elapsed()
                );
                preloaded = Some(taken);
            } else {
                file.payloads.restore(&file.bytes, graph);
                drop(file);
            }
            let t = std::time::Instant::now();
            let fused = fusion::fuse(graph);
            log::debug!(
                "fused {} attention, {} rope ({} with the q/k/v split), {} RMS norm, {} \
                 SwiGLU and {} residual add patterns in {:?}",
                fused.attention,
                fused.rope,
                fused.qkv_rope,
                fused.rms_norm,
                fused.swiglu,
                fused.residual_add,
                t.elapsed()
            );
            if matmul == MatMulImpl::Nextword {
                let tables = gather_block_quantized::read_tables_in_place(graph);
                log::debug!("{tables} embedding table inputs read in place");
            }
        }
        let t = std::time::Instant::now();
        let mut model = onnx.model_for_proto_model(&proto).map_err(Error::model)?;
        log::debug!("parsed in {:?}", t.elapsed());
        drop(preloaded);
        drop(proto);
        let s = model.symbols.sym("S");
        let p = model.symbols.sym("P");
        let r = model.symbols.sym("R");
        let (l, h, d) = (info.n_layers, info.n_heads, info.head_dim);
        let s_dim = TDim::from(s.clone());
        let t_dim = TDim::from(p.clone()) + TDim::from(s.clone());
        let facts: [InferenceFact; 5] = [
            i64::fact([1.to_dim(), s_dim.clone()]).into(),
            i64::fact([1.to_dim(), s_dim.clone()]).into(),
            f32::fact([s_dim, t_dim]).into(),
            f32::fact([l.to_dim(), 2.to_dim(), h.to_dim(), p.into(), d.to_dim()]).into(),
            i64::fact([TDim::from(r)]).into(),
        ];
        if model.inputs.len() != facts.len() || model.outputs.len() != 2 {
            return Err(Error::InvalidModel(format!(
                "expected 5 inputs and 2 outputs (a nextword LM export), found {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        for (i, f) in facts.into_iter().enumerate() {
            model.set_input_fact(i, f).map_err(Error::model)?;
        }
        let t = std::time::Instant::now();
        let typed = model.into_typed().map_err(Error::model)?;
        log::debug!("typed in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let typed = typed.into_optimized().map_err(Error::model)?;
        log::debug!("optimized in {:?}", t.elapsed());
        let logits = typed.output_fact(0).map_err(Error::model)?;
        let found_vocab = logits.shape.last().and_then(|d| d.to_usize().ok());
        if found_vocab != Some(vocab_size) {
            return Err(Error::VocabMismatch {
                tokenizer: vocab_size,
                model: found_vocab.unwrap_or(0),
            });
        }
        let t = std::time::Instant::now();
        let plan = typed.into_runnable().map_err(Error::model)?;
        log::debug!("plan built in {:?}", t.elapsed());
        Ok(LanguageModel {
            plan,
            idle_states: Mutex::new(Vec::new()),
            info: info.clone(),
            vocab_size,
            matmul,
        })
    }

    pub fn empty_cache(&self) -> KvCache {
        let i = &self.info;
        KvCache {
            tensor: Arc::new(
                Tensor::zero::<f32>(&[i.n_layers, 2, i.n_heads, 0, i.head_dim])
                    .expect("zero-sized"),
            ),
        }
    }

    /// The optimized plan's nodes by operator name, most frequent first: each node costs a
    /// dispatch and an output allocation per call, whatever its size.
    pub fn plan_ops(&self) -> Vec<(String, usize)> {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for node in self.plan.model().nodes() {
            *counts.entry(node.op().name().to_string()).or_default() += 1;
        }
        let mut ops: Vec<(String, usize)> = counts.into_iter().collect();
        ops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ops
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Runs one step; returns the logits after each `logits_at` token (concatenated, `vocab`
    /// floats each) and the cache extended with `ids`.
    pub fn run(&self, past: &KvCache, step: &Step) -> Result<(Vec<f32>, KvCache)> {
        let s = step.ids.len();
        let t = past.len() + s;
        let positions_ok = step.positions.iter().all(|&p| p < self.info.max_positions);
        if s == 0 || step.positions.len() != s || step.bias.len() != s * t || !positions_ok {
            return Err(Error::InvalidInput(format!(
                "malformed model step: {s} tokens, cache {}",
                past.len()
            )));
        }
        if step.logits_at.iter().any(|&i| i >= s) {
            return Err(Error::InvalidInput(
                "logits asked after a token not in the step".into(),
            ));
        }
        let ids: Vec<i64> = step.ids.iter().map(|&i| i as i64).collect();
        let pos: Vec<i64> = step.positions.iter().map(|&p| p as i64).collect();
        let at: Vec<i64> = step.logits_at.iter().map(|&i| i as i64).collect();
        let inputs = tvec![
            tensor1(&ids)
                .into_shape(&[1, s])
                .map_err(Error::inference)?
                .into_tvalue(),
            tensor1(&pos)
                .into_shape(&[1, s])
                .map_err(Error::inference)?
                .into_tvalue(),
            tensor1(step.bias)
                .into_shape(&[s, t])
                .map_err(Error::inference)?
                .into_tvalue(),
            TValue::from_const(past.tensor.clone()),
            tensor1(&at).into_tvalue(),
        ];
        let t0 = std::time::Instant::now();
        let idle = self
            .idle_states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut state = match idle {
            Some(state) => state,
            None => TypedSimpleState::new(&self.plan).map_err(Error::inference)?,
        };
        let mut out = state.run(inputs).map_err(Error::inference)?;
        self.idle_states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(state);
        log::trace!(
            "model call: {s} tokens after {} in {:?}",
            past.len(),
            t0.elapsed()
        );
        let present = out.pop().expect("two outputs").into_arc_tensor();
        let logits = out.pop().expect("two outputs");
        let logits = logits
            .try_as_plain_ram()
            .and_then(|v| Ok(v.as_slice::<f32>()?.to_vec()))
            .map_err(Error::inference)?;
        debug_assert_eq!(logits.len(), step.logits_at.len() * self.vocab_size);
        Ok((logits, KvCache { tensor: present }))
    }
}
