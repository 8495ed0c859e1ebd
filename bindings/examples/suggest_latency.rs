//! Time of one `suggest` call on one thread, in Rust, through the same `nextword_ffi::Predictor`
//! the Kotlin bindings call, to compare with the JVM figure of
//! `android/src/test/kotlin/io/nextword/SuggestLatencyBench.kt` (same texts, same order).
//!
//! cargo run --release -p nextword-ffi --example suggest_latency -- models/en

use std::time::Instant;

use nextword_ffi::{default_config, Predictor};

/// Keystrokes of one sentence: each call moves the context on by one character.
const SENTENCE: &str = "I will see you tomorrow at the station";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bundle = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/en".into());
    let predictor = Predictor::open(bundle, default_config())?;
    let keystrokes: Vec<String> = (1..=SENTENCE.len())
        .map(|n| SENTENCE[..n].to_string())
        .collect();

    // No suggestion asked for: the core returns at once, so this is the cost of the call alone.
    let empty = time_per_call(20_000, || {
        predictor
            .suggest("I will see you tom".into(), 0)
            .map(|_| ())
    })?;
    // The same text again and again: the core's context and word tree are cached, so this is
    // mostly the cost of the call itself.
    let repeated = time_per_call(2_000, || {
        predictor
            .suggest("I will see you tom".into(), 3)
            .map(|_| ())
    })?;
    // A sentence typed keystroke by keystroke, over and over.
    let mut i = 0;
    let typing = time_per_call(20 * keystrokes.len(), || {
        let text = keystrokes[i % keystrokes.len()].clone();
        i += 1;
        predictor.suggest(text, 3).map(|_| ())
    })?;
    println!("rust  max 0         : {:8.1} us/call", empty);
    println!("rust  repeated text : {:8.1} us/call", repeated);
    println!("rust  typing        : {:8.1} us/call", typing);
    Ok(())
}

/// Mean microseconds per call over `calls` calls, after a warm-up of a tenth as many.
fn time_per_call<E>(calls: usize, mut call: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..calls / 10 {
        call()?;
    }
    let start = Instant::now();
    for _ in 0..calls {
        call()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / calls as f64)
}
