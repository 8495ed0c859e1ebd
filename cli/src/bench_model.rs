//! `nextword bench-model`: the model alone (no tokenizer, no word search) on token ids given
//! in a JSON file, so that other runtimes can be timed and checked on exactly the same inputs
//! (`benches/peers.sh` runs this once per MatMulNBits implementation, each in its own process
//! so that peak RSS is per implementation).
//!
//! Input: `{"context": [20 ids], "next": id, "windows": [[ids], ...]}`. Output: load time,
//! every 20-token forward and decode-step time, the top 5 next tokens after every position
//! of every window, peak RSS.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use nextword_core::{MatMulImpl, ModelRunner};
use serde::Deserialize;
use serde_json::json;

use crate::bench::{median, ms, peak_rss_mb};

#[derive(Deserialize)]
struct Inputs {
    /// The context of the forward and decode timings.
    context: Vec<u32>,
    /// The token decoded after `context`.
    next: u32,
    /// Held-out windows: the top 5 next tokens after each of their positions are reported.
    windows: Vec<Vec<u32>>,
}

const TOP: usize = 5;
const WARMUP: usize = 3;

pub fn run(bundle: &Path, matmul: MatMulImpl, inputs: &Path, iterations: usize) -> Result<()> {
    let raw = std::fs::read(inputs).with_context(|| format!("reading {}", inputs.display()))?;
    let inputs: Inputs = serde_json::from_slice(&raw)
        .with_context(|| format!("parsing {} (token ids JSON)", inputs.display()))?;
    ensure!(!inputs.context.is_empty(), "`context` is empty");
    let rss_before_load_mb = peak_rss_mb();
    let t = Instant::now();
    let runner = ModelRunner::open(bundle, matmul)
        .with_context(|| format!("opening {}", bundle.display()))?;
    let load_ms = ms(t);
    let vocab = runner.vocab_size();
    ensure!(
        inputs
            .windows
            .iter()
            .flatten()
            .chain(&inputs.context)
            .chain([&inputs.next])
            .all(|&id| (id as usize) < vocab),
        "token id out of the model's vocabulary ({vocab})"
    );
    let empty = runner.empty_cache();
    let last = [inputs.context.len() - 1];
    let (_, cache) = runner.forward(&empty, &inputs.context, &last)?;
    let (mut forward_ms, mut decode_ms) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + iterations.max(1) {
        let t = Instant::now();
        runner.forward(&empty, &inputs.context, &last)?;
        let f = ms(t);
        let t = Instant::now();
        runner.decode(&cache, inputs.next)?;
        let d = ms(t);
        if i >= WARMUP {
            forward_ms.push(f);
            decode_ms.push(d);
        }
    }
    let mut top5 = Vec::new();
    for window in inputs.windows.iter().filter(|w| !w.is_empty()) {
        let at: Vec<usize> = (0..window.len()).collect();
        let (logits, _) = runner.forward(&empty, window, &at)?;
        top5.extend(logits.chunks_exact(vocab).map(top_ids));
    }
    let kernel = match matmul {
        MatMulImpl::Nextword => nextword_core::kernels::select().name(),
        MatMulImpl::TractBuiltin => "tract",
    };
    println!(
        "{}",
        json!({
            "impl": matmul.name(), "kernel": kernel, "threads": 1, "load_ms": load_ms,
            "forward20_ms": median(&mut forward_ms.clone()), "decode_ms": median(&mut decode_ms.clone()),
            "forward20_samples_ms": forward_ms, "decode_samples_ms": decode_ms,
            "peak_rss_mb": peak_rss_mb(), "rss_before_load_mb": rss_before_load_mb,
            "top5": top5,
        })
    );
    Ok(())
}

/// Indices of the `TOP` largest logits, largest first (ties: lower index first).
fn top_ids(logits: &[f32]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    // A new vector: the sorted one keeps its whole capacity (32 KB for 8,192 logits), which
    // the bench's peak RSS counted once per held-out position.
    idx[..TOP.min(idx.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ids_ranks_largest_first_with_stable_ties() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0, 0.0, 2.5, -7.0];
        assert_eq!(top_ids(&logits), vec![1, 3, 6, 4, 0]);
    }

    #[test]
    fn top_ids_holds_only_the_top() {
        // One is kept per held-out position: a vocabulary-sized buffer each was ~64 MB of the
        // bench's peak RSS at 2,000 positions.
        let logits: Vec<f32> = (0..8192).map(|i| (i % 97) as f32).collect();
        let top = top_ids(&logits);
        assert_eq!(top, vec![96, 193, 290, 387, 484]);
        assert!(top.capacity() < 64, "capacity {}", top.capacity());
    }
}
