//! `nextword eval`: the evaluation protocol of `training/evalproto.py` (the reference; its
//! docstring is the specification), run on the Rust predictor.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result};
use nextword_core::Predictor;
use regex::Regex;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    pub words: usize,
    pub top1: f64,
    pub top3: f64,
    pub ksr: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub calls: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "words {}  top-1 {:.1}%  top-3 {:.1}%  keystroke savings {:.1}%  suggest p50 {:.2} ms  p95 {:.2} ms  ({} calls)",
            self.words,
            self.top1 * 100.0,
            self.top3 * 100.0,
            self.ksr * 100.0,
            self.p50_ms,
            self.p95_ms,
            self.calls
        )
    }
}

/// Words as the protocol counts them: letters, digits and inner combining marks, with an
/// apostrophe only between two such runs.
pub fn word_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let c2 = r"[\p{L}\p{N}\p{Mn}\p{Mc}--[\x{FE00}-\x{FE0F}\x{E0100}-\x{E01EF}]]";
        Regex::new(&format!(
            r"[\p{{L}}\p{{N}}]{c2}*(?:['\x{{2019}}][\p{{L}}\p{{N}}]{c2}*)*"
        ))
        .expect("valid regex")
    })
}

fn key(w: &str, ignore_case: bool) -> String {
    let w = w.replace('\u{2019}', "'");
    if ignore_case {
        w.to_lowercase()
    } else {
        w
    }
}

/// Runs the protocol with any suggestion function (the predictor in the CLI, oracles in tests).
pub fn evaluate<F>(lines: &[&str], ignore_case: bool, mut suggest: F) -> Result<Report>
where
    F: FnMut(&str) -> Result<Vec<String>>,
{
    let (mut words, mut top1, mut top3, mut cost, mut total) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut times = Vec::new();
    for line in lines {
        for m in word_re().find_iter(line) {
            let w = m.as_str();
            let target = key(w, ignore_case);
            let len = w.chars().count();
            let ctx = &line[..m.start()];
            words += 1;
            total += len + 1;
            let mut word_cost = len + 1;
            for (j, (typed_end, _)) in w.char_indices().enumerate() {
                let text = format!("{ctx}{}", &w[..typed_end]);
                let t = Instant::now();
                let s = suggest(&text)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                let keys: Vec<String> = s.iter().take(3).map(|x| key(x, ignore_case)).collect();
                if j == 0 {
                    top1 += usize::from(keys.first() == Some(&target));
                    top3 += usize::from(keys.contains(&target));
                }
                if keys.contains(&target) {
                    word_cost = j + 1;
                    break;
                }
            }
            cost += word_cost;
        }
    }
    let frac = |n: usize| {
        if words == 0 {
            0.0
        } else {
            n as f64 / words as f64
        }
    };
    Ok(Report {
        words,
        top1: frac(top1),
        top3: frac(top3),
        ksr: if total == 0 {
            0.0
        } else {
            1.0 - cost as f64 / total as f64
        },
        p50_ms: percentile(&mut times, 50.0),
        p95_ms: percentile(&mut times, 95.0),
        calls: times.len(),
    })
}

pub fn run(
    p: &Predictor,
    path: &Path,
    ignore_case: bool,
    max_lines: Option<usize>,
) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().take(max_lines.unwrap_or(usize::MAX)).collect();
    evaluate(&lines, ignore_case, |t| {
        Ok(p.suggest(t, 3)?.into_iter().map(|s| s.text).collect())
    })
}

/// Keystroke savings and latency with and without the user's model: both predictors see the
/// second half of the file; the personal one first learned the first half (as a keyboard would
/// have learned it on commit), with the default blocklist and typo correction on. The plain one
/// has no user model, blocklist or corrections.
#[derive(Debug, Serialize)]
pub struct LearningReport {
    pub learned_lines: usize,
    pub plain: Report,
    pub personal: Report,
    /// Relative change of the per-keystroke latency percentiles, in percent, from a separate
    /// pass where both predictors type every keystroke of the same text, calls alternated so
    /// that both see the same machine.
    pub p50_overhead_pct: f64,
    pub p95_overhead_pct: f64,
    pub paired_calls: usize,
}

impl fmt::Display for LearningReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "learned the first {} lines; on the rest:",
            self.learned_lines
        )?;
        writeln!(f, "without user model  {}", self.plain)?;
        writeln!(f, "with user model     {}", self.personal)?;
        write!(
            f,
            "latency overhead    p50 {:+.1}%  p95 {:+.1}%  ({} calls each, alternated)",
            self.p50_overhead_pct, self.p95_overhead_pct, self.paired_calls
        )
    }
}

pub fn run_learning(
    bundle: &Path,
    matmul: nextword_core::MatMulImpl,
    path: &Path,
    ignore_case: bool,
    max_lines: Option<usize>,
) -> Result<LearningReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().take(max_lines.unwrap_or(usize::MAX)).collect();
    let (learn, test) = lines.split_at(lines.len() / 2);
    let open = |personal: bool| {
        Predictor::open(
            bundle,
            nextword_core::Config {
                matmul,
                block_offensive: personal,
                typo_correction: personal,
                ..nextword_core::Config::default()
            },
        )
        .with_context(|| format!("opening bundle {}", bundle.display()))
    };
    let plain = open(false)?;
    let personal = open(true)?;
    for line in learn {
        personal.learn(line)?;
    }
    let words = |p: &Predictor, t: &str| -> Result<Vec<String>> {
        Ok(p.suggest(t, 3)?.into_iter().map(|s| s.text).collect())
    };
    let plain_report = evaluate(test, ignore_case, |t| words(&plain, t))?;
    let personal_report = evaluate(test, ignore_case, |t| words(&personal, t))?;
    let (mut plain_ms, mut personal_ms) = (Vec::new(), Vec::new());
    for text in keystrokes(test) {
        for (p, times) in [(&plain, &mut plain_ms), (&personal, &mut personal_ms)] {
            let t = Instant::now();
            p.suggest(&text, 3)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut pct =
        |p: f64| (percentile(&mut personal_ms, p) / percentile(&mut plain_ms, p) - 1.0) * 100.0;
    Ok(LearningReport {
        learned_lines: learn.len(),
        p50_overhead_pct: pct(50.0),
        p95_overhead_pct: pct(95.0),
        paired_calls: plain_ms.len(),
        plain: plain_report,
        personal: personal_report,
    })
}

/// The text before the cursor at every keystroke of typing `lines` word by word: each word's
/// context, then the context and each of the word's characters but the last.
fn keystrokes<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    lines.iter().flat_map(|line| {
        word_re().find_iter(line).flat_map(move |m| {
            let ctx = &line[..m.start()];
            m.as_str()
                .char_indices()
                .map(move |(typed_end, _)| format!("{ctx}{}", &m.as_str()[..typed_end]))
        })
    })
}

/// The `p`-th percentile (nearest rank) of `times`, sorting it; 0 when empty.
fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    if times.is_empty() {
        0.0
    } else {
        times[((p / 100.0 * times.len() as f64).ceil() as usize).max(1) - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        word_re().find_iter(s).map(|m| m.as_str()).collect()
    }

    #[test]
    fn word_rule_matches_the_reference() {
        assert_eq!(
            words("don't stop, rock'n'roll!"),
            ["don't", "stop", "rock'n'roll"]
        );
        assert_eq!(
            words("'cause dogs' 3rd émigré"),
            ["cause", "dogs", "3rd", "émigré"]
        );
        assert_eq!(words("snake_case 😀 hi"), ["snake", "case", "hi"]);
        assert_eq!(words("e\u{301}migre\u{301}"), ["e\u{301}migre\u{301}"]);
    }

    #[test]
    fn oracle_scores_as_specified() {
        let lines = ["see you tomorrow", "ok"];
        // An oracle that always knows the next word: top-1 = 1, cost 1 per word.
        let all: Vec<&str> = lines.iter().flat_map(|l| words(l)).collect();
        let mut i = 0;
        let r = evaluate(&lines, false, |_| {
            let w = all[i].to_string();
            i += 1;
            Ok(vec![w])
        })
        .unwrap();
        assert_eq!(r.words, 4);
        assert_eq!((r.top1, r.top3), (1.0, 1.0));
        let total = (3 + 1) + (3 + 1) + (8 + 1) + (2 + 1);
        assert!((r.ksr - (1.0 - 4.0 / total as f64)).abs() < 1e-12);
    }

    #[test]
    fn never_right_costs_the_whole_word() {
        let r = evaluate(&["abc"], false, |_| Ok(vec!["x".into()])).unwrap();
        assert_eq!((r.words, r.calls), (1, 3));
        assert_eq!(r.ksr, 0.0);
    }

    #[test]
    fn found_after_typing_two_letters_and_case() {
        let r = evaluate(&["Hello"], true, |t| {
            Ok(if t.len() >= 2 {
                vec!["hello".into()]
            } else {
                vec![]
            })
        })
        .unwrap();
        // Found at j = 2: cost 3 of 6.
        assert!((r.ksr - 0.5).abs() < 1e-12);
        let r = evaluate(&["Hello"], false, |t| {
            Ok(if t.len() >= 2 {
                vec!["hello".into()]
            } else {
                vec![]
            })
        })
        .unwrap();
        assert_eq!(r.ksr, 0.0);
    }
}
