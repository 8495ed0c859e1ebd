//! Concurrency and memory soak: one `Predictor` hammered from 8 threads for a bounded time.
//!
//! Checks no panic, no deadlock (a watchdog bounds every thread), answers equal (up to float
//! rounding of scores) to a single-threaded reference, and resident memory flat: after a
//! warm-up pass, RSS may not grow by more than [`RSS_GROWTH_BOUND_MIB`] over the run (Linux only; elsewhere the check is
//! skipped with a message).
//!
//! Defaults suit CI (10 s each, the fixture bundle). Longer runs:
//! `NEXTWORD_SOAK_SECS=300 NEXTWORD_SOAK_BUNDLE=models/en cargo test --release -p nextword-core --test soak -- --nocapture`

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nextword_core::{Config, Predictor, Suggestion};

const THREADS: usize = 8;
/// Allowed RSS growth between the end of the warm-up and the end of the run.
const RSS_GROWTH_BOUND_MIB: f64 = 32.0;

/// Texts the threads type: next-word and completion positions, odd inputs included.
const INPUTS: &[&str] = &[
    "I will see you ",
    "I will see you tom",
    "the ",
    "Thank you for the ",
    "how are y",
    "",
    " ",
    "😀 ",
    "a\u{0}b ",
    "We went to the park and then we ",
    "quickly the red c",
    "I",
    "ℌ𝔢𝔩𝔩𝔬 wor",
];

fn soak_seconds() -> u64 {
    std::env::var("NEXTWORD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

fn bundle() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var("NEXTWORD_SOAK_BUNDLE") {
        Ok(b) => root.join(b),
        Err(_) => root.join("models/fixture"),
    }
}

/// Resident set size in MiB from /proc/self/status, where there is one.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs `work(thread, iteration)` on THREADS threads until `duration` has passed; fails if a
/// thread panics or has not finished well after the deadline (a deadlock).
fn hammer(duration: Duration, work: impl Fn(usize, usize) + Send + Sync + 'static) -> usize {
    let work = Arc::new(work);
    let calls = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let (done_tx, done_rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (work, calls, done_tx) = (work.clone(), calls.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while Instant::now() < deadline {
                    work(t, i);
                    i += 1;
                }
                calls.fetch_add(i, Ordering::Relaxed);
                let _ = done_tx.send(t);
            })
        })
        .collect();
    drop(done_tx);
    let watchdog = deadline + Duration::from_secs(60);
    for _ in 0..THREADS {
        let left = watchdog.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(_) => {}
            // Every sender is gone: a thread panicked; join below reports it.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("a thread did not finish 60 s after the deadline: deadlock")
            }
        }
    }
    for h in handles {
        h.join().expect("no thread panics");
    }
    calls.load(Ordering::Relaxed)
}

fn check_rss(start: Option<f64>, end: Option<f64>, what: &str) {
    match (start, end) {
        (Some(start), Some(end)) => {
            println!("{what}: RSS after warm-up {start:.1} MiB, at the end {end:.1} MiB");
            assert!(
                end - start <= RSS_GROWTH_BOUND_MIB,
                "{what}: RSS grew {:.1} MiB (bound {RSS_GROWTH_BOUND_MIB} MiB)",
                end - start
            );
        }
        _ => println!("{what}: no /proc/self/status here, RSS check skipped"),
    }
}

/// Same words, kinds and order; scores equal up to float rounding (a cached context and a fresh
/// forward pass sum in different orders).
fn same_answers(got: &[Suggestion], want: &[Suggestion]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.text == w.text
                && g.kind == w.kind
                && (g.score - w.score).abs() <= 1e-3 * w.score.abs().max(1e-6)
        })
}

#[test]
fn eight_threads_get_the_single_threaded_answers_with_flat_memory() {
    let p = Arc::new(Predictor::open(bundle(), Config::default()).expect("bundle opens"));
    let reference: Arc<Vec<Vec<Suggestion>>> = Arc::new(
        INPUTS
            .iter()
            .map(|t| p.suggest(t, 5).expect("suggest"))
            .collect(),
    );
    // Warm-up: every thread through every input once, so allocator arenas and caches exist.
    let warm = {
        let (p, reference) = (p.clone(), reference.clone());
        move |t: usize, i: usize| {
            let k = (t * 7 + i) % INPUTS.len();
            let got = p.suggest(INPUTS[k], 5).unwrap();
            assert!(
                same_answers(&got, &reference[k]),
                "{:?}: {got:?} vs {:?}",
                INPUTS[k],
                reference[k]
            );
        }
    };
    hammer(Duration::from_secs(1), warm.clone());
    let start = rss_mib();
    let t = Instant::now();
    let calls = hammer(Duration::from_secs(soak_seconds()), warm);
    let end = rss_mib();
    println!(
        "soak: {calls} suggest calls from {THREADS} threads in {:.1} s, all equal to the reference",
        t.elapsed().as_secs_f64()
    );
    check_rss(start, end, "suggest soak");
}

#[test]
fn eight_threads_suggest_while_learning_and_blocking() {
    let user = tempfile::tempdir().unwrap();
    let config = Config {
        user_dir: Some(user.path().to_path_buf()),
        ..Config::default()
    };
    let p = Arc::new(Predictor::open(bundle(), config).expect("bundle opens"));
    let words = ["zorblax", "quintessa", "flumph", "tomorrow"];
    let work = {
        let p = p.clone();
        move |t: usize, i: usize| {
            let word = words[(t + i) % words.len()];
            match t {
                // Two writers: learning, adding, removing, blocking, unblocking.
                0 => {
                    p.learn(&format!("I will see {word} soon. ")).unwrap();
                }
                1 => {
                    let op = match i % 4 {
                        0 => p.add_word(word),
                        1 => p.block_word(word),
                        2 => p.unblock_word(word),
                        _ => p.remove_word(word),
                    };
                    op.unwrap();
                }
                // Six readers: answers change as words are learned, but stay well formed.
                _ => {
                    let text = INPUTS[(t * 5 + i) % INPUTS.len()];
                    let got = p.suggest(text, 5).unwrap();
                    assert!(got.len() <= 5);
                    for s in got {
                        assert!(!s.text.is_empty() && s.score.is_finite(), "{s:?}");
                    }
                }
            }
        }
    };
    hammer(Duration::from_secs(1), work.clone());
    let start = rss_mib();
    let t = Instant::now();
    let calls = hammer(Duration::from_secs(soak_seconds()), work);
    let end = rss_mib();
    println!(
        "learning soak: {calls} calls (2 writer threads, 6 suggest threads) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    check_rss(start, end, "learning soak");
}
