//! The bundled English model (models/en) on 1 thread: the 20-token context forward and one
//! KV-cache decode step (after a 20-token context), with nextword's MatMulNBits and with
//! tract's built-in one, and a full keystroke (`Predictor::suggest`) while replaying the
//! CLI's sample text character by character.
//!
//!     cargo bench -p nextword-benches --bench model

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use nextword_core::{Config, MatMulImpl, ModelRunner, Predictor};

const REPLAY: &str = include_str!("../../cli/src/replay.txt");
const CONTEXT_TOKENS: usize = 20;

fn bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/en")
}

/// The first 20 tokens of the sample text, and the token that follows them.
fn context_ids() -> (Vec<u32>, u32) {
    let p = Predictor::open(bundle(), Config::default()).expect("models/en opens");
    let mut ids = p.tokenize(REPLAY).expect("sample tokenizes");
    assert!(ids.len() > CONTEXT_TOKENS, "sample text too short");
    ids.truncate(CONTEXT_TOKENS + 1);
    let next = ids.pop().expect("21 tokens");
    (ids, next)
}

fn forward_and_decode(c: &mut Criterion) {
    let (ids, next) = context_ids();
    let last = [ids.len() - 1];
    for imp in MatMulImpl::ALL {
        let runner = ModelRunner::open(bundle(), imp).expect("models/en opens");
        let empty = runner.empty_cache();
        c.bench_function(&format!("forward20/{imp}"), |b| {
            b.iter(|| runner.forward(&empty, black_box(&ids), &last).unwrap())
        });
        let (_, cache) = runner.forward(&empty, &ids, &last).unwrap();
        c.bench_function(&format!("decode_step_after20/{imp}"), |b| {
            b.iter(|| runner.decode(&cache, black_box(next)).unwrap())
        });
    }
}

/// One iteration = one keystroke of the replay: the text typed so far on the current line
/// goes to `suggest`, as a keyboard would send it; the replay wraps around.
fn keystroke(c: &mut Criterion) {
    let p = Predictor::open(bundle(), Config::default()).expect("models/en opens");
    let prefixes: Vec<&str> = REPLAY
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|line| {
            line.char_indices()
                .map(move |(i, ch)| &line[..i + ch.len_utf8()])
        })
        .collect();
    let mut next = 0;
    c.bench_function("keystroke/replay", |b| {
        b.iter(|| {
            let typed = prefixes[next];
            next = (next + 1) % prefixes.len();
            p.suggest(black_box(typed), 3).unwrap()
        })
    });
}

criterion_group!(benches, forward_and_decode, keystroke);
criterion_main!(benches);
