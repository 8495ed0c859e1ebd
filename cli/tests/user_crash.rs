//! Crash safety of the user's store: `nextword user learn -` is killed with SIGKILL at random
//! points, 200 times over the same store, and after every kill the store must open cleanly and
//! hold every line the writer acknowledged. Across the runs the journal passes its compaction
//! threshold several times, so kills also land in the middle of snapshot rewrites.

#![cfg(unix)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nextword_core::personal::{Personal, PersonalConfig};

const KILLS: usize = 200;
const LINES_PER_RUN: usize = 40;

/// xorshift64*: enough randomness for kill timing, seeded from the clock and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn config(dir: &std::path::Path) -> PersonalConfig {
    PersonalConfig {
        user_dir: Some(dir.to_path_buf()),
        incognito: false,
        block_offensive: false,
        typo_correction: false,
    }
}

#[test]
fn killed_writer_never_loses_acknowledged_words_nor_corrupts_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut killed_mid_run = 0;
    let started = Instant::now();
    for run in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nextword"))
            .args(["user", "learn", "-", "--user-dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let words: Vec<String> = (0..LINES_PER_RUN).map(|i| format!("w{run}x{i}")).collect();
        let text: String = words.iter().map(|w| format!("{w} common\n")).collect();
        // Written from a thread: a killed child closes the pipe under the writer.
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("learned ") {
                    let _ = tx.send(n.parse::<usize>().unwrap());
                }
            }
        });
        thread::sleep(Duration::from_micros(rng.below(40_000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        feeder.join().unwrap();
        reader.join().unwrap();
        let acked = rx.try_iter().max().unwrap_or(0);
        if status.code().is_none() && acked < LINES_PER_RUN {
            killed_mid_run += 1;
        }
        acknowledged.extend(words[..acked].iter().cloned());

        let personal = Personal::open(&config(dir.path()), "").unwrap();
        assert!(
            personal.open_problem().is_none(),
            "run {run} (seed {seed}): {:?}",
            personal.open_problem()
        );
        let learned: HashSet<String> = personal
            .learned_words()
            .into_iter()
            .map(|w| w.word)
            .collect();
        let lost: Vec<&String> = acknowledged.difference(&learned).collect();
        assert!(lost.is_empty(), "run {run} (seed {seed}): lost {lost:?}");
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.contains("corrupt") || name.contains("unsupported")
            })
            .count();
        assert_eq!(aside, 0, "run {run} (seed {seed}): a file was set aside");
    }
    println!(
        "{KILLS} kills ({killed_mid_run} mid-run), {} words acknowledged, {:.1} s",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_mid_run >= KILLS / 4,
        "most kills should land while writing: {killed_mid_run}"
    );
    assert!(
        acknowledged.len() > 2 * 256,
        "the journal should compact several times"
    );
}
