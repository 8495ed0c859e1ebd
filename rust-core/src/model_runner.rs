//! The bundle's language model on its own, without tokenizer or word search: the causal
//! forward pass and the KV-cache decode step that the benchmarks (`benches/`, `nextword
//! bench-model`) time and compare against other runtimes on the same token ids.
//! Suggestions go through [`crate::Predictor`]; this is a measuring instrument.

use std::path::Path;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::lm::{KvCache, LanguageModel, Step, MASKED};
use crate::ops::MatMulImpl;

/// Keys and values of the tokens a [`ModelRunner`] has seen (cheap to clone: shared).
#[derive(Clone, Debug)]
pub struct ModelCache(KvCache);

impl ModelCache {
    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// One loaded language model, with the `MatMulNBits` implementation chosen at open time.
#[derive(Debug)]
pub struct ModelRunner {
    lm: LanguageModel,
    max_positions: usize,
}

impl ModelRunner {
    /// Opens and verifies a bundle, then loads its model with `matmul`.
    pub fn open(bundle_dir: impl AsRef<Path>, matmul: MatMulImpl) -> Result<ModelRunner> {
        ModelRunner::from_bundle(Bundle::open(bundle_dir)?, matmul)
    }

    pub fn from_bundle(bundle: Bundle, matmul: MatMulImpl) -> Result<ModelRunner> {
        let m = &bundle.manifest;
        let lm = LanguageModel::load(bundle.model_bytes, &m.model, m.vocab_size, matmul)?;
        Ok(ModelRunner {
            lm,
            max_positions: m.model.max_positions,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.lm.vocab_size()
    }

    /// A cache with no tokens.
    pub fn empty_cache(&self) -> ModelCache {
        ModelCache(self.lm.empty_cache())
    }

    /// Causal forward of `ids` after the tokens of `past`. Returns the logits after each
    /// token index listed in `logits_at` (`vocab_size` floats each, concatenated) and the
    /// cache extended with `ids`.
    pub fn forward(
        &self,
        past: &ModelCache,
        ids: &[u32],
        logits_at: &[usize],
    ) -> Result<(Vec<f32>, ModelCache)> {
        let p = past.len();
        let s = ids.len();
        if s == 0 || p + s > self.max_positions {
            return Err(Error::InvalidInput(format!(
                "{s} new tokens after {p}: not within 1..={} positions",
                self.max_positions
            )));
        }
        let positions: Vec<usize> = (p..p + s).collect();
        let mut bias = vec![0f32; s * (p + s)];
        for q in 0..s {
            for k in p + q + 1..p + s {
                bias[q * (p + s) + k] = MASKED;
            }
        }
        let (logits, cache) = self.lm.run(
            &past.0,
            &Step {
                ids,
                positions: &positions,
                bias: &bias,
                logits_at,
            },
        )?;
        Ok((logits, ModelCache(cache)))
    }

    /// One decode step: the token `id` after `past`, logits after it.
    pub fn decode(&self, past: &ModelCache, id: u32) -> Result<(Vec<f32>, ModelCache)> {
        self.forward(past, &[id], &[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture")
    }

    /// A decode step after a cached prefix gives the logits of the full forward at that
    /// position, for both MatMulNBits implementations.
    #[test]
    fn decode_after_cache_matches_full_forward() {
        for imp in MatMulImpl::ALL {
            let r = ModelRunner::open(fixture(), imp).unwrap();
            let ids: Vec<u32> = (1..9).collect();
            let v = r.vocab_size();
            let (full, cache) = r.forward(&r.empty_cache(), &ids, &[6, 7]).unwrap();
            assert_eq!(full.len(), 2 * v);
            assert_eq!(cache.len(), 8);
            let (_, prefix) = r.forward(&r.empty_cache(), &ids[..7], &[6]).unwrap();
            let (step, extended) = r.decode(&prefix, ids[7]).unwrap();
            assert_eq!(extended.len(), 8);
            let max_diff = step
                .iter()
                .zip(&full[v..])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_diff < 1e-3, "{imp}: decode differs by {max_diff}");
        }
    }

    #[test]
    fn rejects_empty_and_too_long_inputs() {
        let r = ModelRunner::open(fixture(), MatMulImpl::Nextword).unwrap();
        assert!(matches!(
            r.forward(&r.empty_cache(), &[], &[]),
            Err(Error::InvalidInput(_))
        ));
        let long = vec![1u32; r.max_positions + 1];
        assert!(matches!(
            r.forward(&r.empty_cache(), &long, &[0]),
            Err(Error::InvalidInput(_))
        ));
    }
}
