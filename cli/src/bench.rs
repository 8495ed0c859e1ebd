//! `nextword bench`: latency and memory on one thread, the figures a keyboard developer asks
//! for first. Our `MatMulNBits` and tract's built-in run the same file in the same process,
//! interleaved, so their ratio is fair on a noisy machine.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use nextword_core::{Config, MatMulImpl, Predictor};
use serde_json::json;

const SAMPLE: &str = include_str!("replay.txt");
const FORWARD_TOKENS: usize = 20;

pub fn run(bundle: &Path, replay: Option<&Path>, iterations: usize, as_json: bool) -> Result<()> {
    let text = match replay {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => SAMPLE.to_string(),
    };
    // Phase 1: our op alone, as an app would run it: load, first suggestion, typing.
    let t = Instant::now();
    let ours = Predictor::open(bundle, Config::default())
        .with_context(|| format!("opening {}", bundle.display()))?;
    let load_ms = ms(t);
    let t = Instant::now();
    ours.suggest("", 3)?;
    let first_ms = ms(t);
    // Keystrokes after a space (the next word: a fresh word search) cost more than those
    // inside a word (mostly the tree the previous keystroke decoded): both kinds are kept
    // apart too, so a change to one shows.
    let (mut keystrokes, mut next_word, mut in_word) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        for (i, c) in line.char_indices() {
            let typed = &line[..i + c.len_utf8()];
            let t = Instant::now();
            ours.suggest(typed, 3)?;
            let elapsed = ms(t);
            keystrokes.push(elapsed);
            if c.is_whitespace() {
                next_word.push(elapsed);
            } else {
                in_word.push(elapsed);
            }
        }
    }
    let peak_rss_mb = peak_rss_mb();
    let (rss_anon_mb, rss_file_mb) = (status_mb("RssAnon:"), status_mb("RssFile:"));
    // Phase 2: the 20-token forward with both implementations, interleaved.
    let builtin = Predictor::open(
        bundle,
        Config {
            matmul: MatMulImpl::TractBuiltin,
            ..Config::default()
        },
    )?;
    let mut ids = ours.tokenize(&text)?;
    ids.truncate(FORWARD_TOKENS);
    anyhow::ensure!(
        ids.len() == FORWARD_TOKENS,
        "replay text shorter than {FORWARD_TOKENS} tokens"
    );
    let (mut f_ours, mut f_builtin) = (Vec::new(), Vec::new());
    for _ in 0..iterations.max(1) {
        let t = Instant::now();
        ours.next_token_logprobs(&ids)?;
        f_ours.push(ms(t));
        let t = Instant::now();
        builtin.next_token_logprobs(&ids)?;
        f_builtin.push(ms(t));
    }
    let (fo, fb) = (median(&mut f_ours), median(&mut f_builtin));
    for v in [&mut keystrokes, &mut next_word, &mut in_word] {
        v.sort_by(f64::total_cmp);
    }
    let p = |q: f64| pct(&keystrokes, q);
    let kernel = nextword_core::kernels::select().name();
    if as_json {
        println!(
            "{}",
            json!({"load_ms": load_ms, "first_suggestion_ms": first_ms, "cold_start_ms": load_ms + first_ms,
                   "forward20_ms": {"nextword": fo, "tract_builtin": fb},
                   "keystroke_p50_ms": p(50.0), "keystroke_p95_ms": p(95.0), "keystroke_p99_ms": p(99.0),
                   "keystroke_max_ms": keystrokes.last().copied().unwrap_or(0.0), "keystrokes": keystrokes.len(),
                   "next_word_keystroke_p50_ms": pct(&next_word, 50.0), "next_word_keystroke_p95_ms": pct(&next_word, 95.0),
                   "in_word_keystroke_p50_ms": pct(&in_word, 50.0), "in_word_keystroke_p95_ms": pct(&in_word, 95.0),
                   "peak_rss_mb": peak_rss_mb, "rss_anon_mb": rss_anon_mb, "rss_file_mb": rss_file_mb, "kernel": kernel, "threads": 1})
        );
    } else {
        println!("bundle                 {}", bundle.display());
        println!("kernel                 {kernel} (1 thread)");
        println!("load                   {load_ms:.1} ms   first suggestion {first_ms:.1} ms");
        println!(
            "20-token forward       nextword {fo:.2} ms   tract built-in {fb:.2} ms   ({:.2}x)",
            fb / fo
        );
        println!(
            "keystroke ({:>5})      p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            keystrokes.len(),
            p(50.0),
            p(95.0),
            p(99.0),
            keystrokes.last().copied().unwrap_or(0.0)
        );
        for (name, v) in [("after a space", &next_word), ("inside a word", &in_word)] {
            println!(
                "  {name} ({:>5}) p50 {:.2} ms   p95 {:.2} ms",
                v.len(),
                pct(v, 50.0),
                pct(v, 95.0)
            );
        }
        match peak_rss_mb {
            Some(mb) => println!(
                "peak RSS               {mb:.1} MB (before the comparison model was loaded)"
            ),
            None => println!("peak RSS               not available on this OS"),
        }
        if let (Some(anon), Some(file)) = (rss_anon_mb, rss_file_mb) {
            println!(
                "  after typing: {anon:.1} MB private (heap), {file:.1} MB mapped from files \
                 (code: clean pages, which iOS's extension memory limit does not count)"
            );
        }
    }
    Ok(())
}

pub(crate) fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Peak resident set size of this process (Linux and Android: VmHWM).
pub(crate) fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// A kB figure of `/proc/self/status` (Linux and Android), in MB.
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
