//! The user's own word statistics: decayed unigram and bigram counts of committed text, the
//! words they added by hand, and the words they blocked. Everything here is deterministic in
//! the operations applied, so the store can rebuild it by replaying its journal.
//!
//! Time is counted in learned words, not wall-clock time: a habit fades with how much the user
//! types since, which a clock cannot know, and replay gives the same state on any day.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::text::{fold_into, is_word_char};

/// Longest word learned; longer letter runs (hashes, keys, URLs) are not words.
pub const MAX_WORD_CHARS: usize = 40;

/// How much the user's statistics remember and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Learned words after which a count has halved.
    pub half_life_words: f64,
    /// Most distinct words kept (words added by hand are not counted against it).
    pub max_words: usize,
    /// Most distinct word pairs kept.
    pub max_bigrams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Roughly two weeks of typing.
            half_life_words: 20_000.0,
            max_words: 20_000,
            max_bigrams: 60_000,
        }
    }
}

/// A count that halves every `half_life_words` learned words, stored with the time it was last
/// brought up to date so that nothing needs touching as time passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "(f64, u64)", into = "(f64, u64)")]
pub struct Decayed {
    pub value: f64,
    pub at: u64,
}

/// Stored as a pair: the store holds tens of thousands of them.
impl From<(f64, u64)> for Decayed {
    fn from((value, at): (f64, u64)) -> Self {
        Decayed { value, at }
    }
}

impl From<Decayed> for (f64, u64) {
    fn from(d: Decayed) -> Self {
        (d.value, d.at)
    }
}

impl Decayed {
    pub fn at(&self, now: u64, half_life: f64) -> f64 {
        self.value * 0.5f64.powf(now.saturating_sub(self.at) as f64 / half_life)
    }

    fn add(&mut self, amount: f64, now: u64, half_life: f64) {
        self.value = self.at(now, half_life) + amount;
        self.at = now;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordEntry {
    /// How the word is shown: as last typed inside a sentence (or at a sentence start when it
    /// was never typed elsewhere), so "Saoirse" keeps its capital and "the" does not get one.
    pub display: String,
    pub count: Decayed,
    /// Added by hand: kept whatever the limits and decay, until removed.
    #[serde(default)]
    pub added: bool,
    /// `display` only comes from sentence starts so far.
    #[serde(default)]
    pub display_from_sentence_start: bool,
}

/// A stretch of committed words with only spaces between them: the pairs of a run are bigrams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub sentence_start: bool,
    pub words: Vec<String>,
}

/// Splits committed text into runs of learnable words. Punctuation other than an apostrophe
/// breaks a run (the predictor reads a bigram only when a space alone separates the words);
/// `.`, `!`, `?` and line breaks also start a sentence. Runs of digits are not learned.
pub fn runs(text: &str, starts_sentence: bool) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut current = Run {
        sentence_start: starts_sentence,
        words: Vec::new(),
    };
    let mut at_sentence_start = starts_sentence;
    let mut chars = text.char_indices().peekable();
    let flush = |current: &mut Run, out: &mut Vec<Run>, next_start: bool| {
        let done = std::mem::replace(
            current,
            Run {
                sentence_start: next_start,
                words: Vec::new(),
            },
        );
        if !done.words.is_empty() {
            out.push(done);
        }
    };
    while let Some(&(i, c)) = chars.peek() {
        if is_word_char(c) {
            let mut end = i;
            while let Some(&(j, d)) = chars.peek() {
                if !is_word_char(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = text[i..end].trim_matches(|c| c == '\'' || c == '\u{2019}');
            let learnable = !word.is_empty()
                && word.chars().count() <= MAX_WORD_CHARS
                && word.chars().any(char::is_alphabetic);
            if learnable {
                if current.words.is_empty() {
                    current.sentence_start = at_sentence_start;
                }
                current.words.push(word.replace('\u{2019}', "'"));
            } else {
                flush(&mut current, &mut out, false);
            }
            at_sentence_start = false;
        } else {
            chars.next();
            if !c.is_whitespace() || c == '\n' {
                let ends_sentence = matches!(c, '.' | '!' | '?' | '\n');
                at_sentence_start = at_sentence_start || ends_sentence;
                flush(&mut current, &mut out, at_sentence_start);
            }
        }
    }
    flush(&mut current, &mut out, false);
    out
}

/// The folded form a word is stored under: lower case, straight apostrophe.
pub fn key(word: &str) -> String {
    let mut chars = Vec::with_capacity(word.len());
    key_chars_into(word, &mut chars);
    chars.into_iter().collect()
}

/// [`key`] as chars, appended to `out`.
pub fn key_chars_into(word: &str, out: &mut Vec<char>) {
    let start = out.len();
    fold_into(word, out);
    for c in &mut out[start..] {
        if *c == '\u{2019}' {
            *c = '\'';
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserNgrams {
    /// Words learned so far: the clock of every decayed count.
    pub clock: u64,
    /// Sum of all word counts, decayed the same way (so it stays their exact sum).
    pub total: Decayed,
    /// By folded word; ordered so that a typed prefix is a range.
    pub words: BTreeMap<String, WordEntry>,
    /// By folded previous word, then folded word.
    pub bigrams: HashMap<String, HashMap<String, Decayed>>,
    /// Number of pairs in `bigrams`.
    pub bigram_count: usize,
    /// Folded words the user blocked.
    pub blocked: BTreeSet<String>,
}

impl UserNgrams {
    pub fn learn(&mut self, runs: &[Run], limits: &Limits) {
        let h = limits.half_life_words;
        for run in runs {
            let mut prev: Option<String> = None;
            for (i, word) in run.words.iter().enumerate() {
                self.clock += 1;
                let now = self.clock;
                let k = key(word);
                let from_start = run.sentence_start && i == 0;
                let entry = self.words.entry(k.clone()).or_insert_with(|| WordEntry {
                    display: word.clone(),
                    count: Decayed::default(),
                    added: false,
                    display_from_sentence_start: from_start,
                });
                if !from_start {
                    entry.display = word.clone();
                    entry.display_from_sentence_start = false;
                }
                entry.count.add(1.0, now, h);
                self.total.add(1.0, now, h);
                if let Some(p) = prev {
                    let next = self.bigrams.entry(p).or_default();
                    let pair = next.entry(k.clone()).or_insert_with(|| {
                        self.bigram_count += 1;
                        Decayed::default()
                    });
                    pair.add(1.0, now, h);
                }
                prev = Some(k);
            }
        }
        self.enforce(limits);
    }

    pub fn add_word(&mut self, word: &str) {
        let k = key(word);
        self.blocked.remove(&k);
        let entry = self.words.entry(k).or_insert_with(|| WordEntry {
            display: word.to_string(),
            count: Decayed::default(),
            added: true,
            display_from_sentence_start: false,
        });
        entry.display = word.to_string();
        entry.added = true;
        entry.display_from_sentence_start = false;
    }

    /// Forgets a word and every pair it is in; whether it was known.
    pub fn remove_word(&mut self, word: &str, limits: &Limits) -> bool {
        let k = key(word);
        let Some(entry) = self.words.remove(&k) else {
            return false;
        };
        self.forget_counts(&k, &entry, limits);
        true
    }

    fn forget_counts(&mut self, k: &str, entry: &WordEntry, limits: &Limits) {
        let h = limits.half_life_words;
        let now = self.clock;
        let left = (self.total.at(now, h) - entry.count.at(now, h)).max(0.0);
        self.total = Decayed {
            value: left,
            at: now,
        };
        if let Some(next) = self.bigrams.remove(k) {
            self.bigram_count -= next.len();
        }
        for next in self.bigrams.values_mut() {
            if next.remove(k).is_some() {
                self.bigram_count -= 1;
            }
        }
        self.bigrams.retain(|_, next| !next.is_empty());
    }

    pub fn clear(&mut self) {
        let blocked = std::mem::take(&mut self.blocked);
        *self = UserNgrams {
            blocked,
            ..UserNgrams::default()
        };
    }

    pub fn block(&mut self, word: &str) {
        self.blocked.insert(key(word));
    }

    pub fn unblock(&mut self, word: &str) -> bool {
        self.blocked.remove(&key(word))
    }

    /// Drops the weakest words and pairs once a limit is passed, down to 90% of it so that the
    /// sort is paid once per many learned words.
    fn enforce(&mut self, limits: &Limits) {
        let h = limits.half_life_words;
        let now = self.clock;
        let learned = self.words.values().filter(|e| !e.added).count();
        if learned > limits.max_words {
            let mut by_strength: Vec<(f64, String)> = self
                .words
                .iter()
                .filter(|(_, e)| !e.added)
                .map(|(k, e)| (e.count.at(now, h), k.clone()))
                .collect();
            by_strength.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let drop = learned - limits.max_words * 9 / 10;
            for (_, k) in by_strength.into_iter().take(drop) {
                if let Some(entry) = self.words.remove(&k) {
                    self.forget_counts(&k, &entry, limits);
                }
            }
        }
        if self.bigram_count > limits.max_bigrams {
            let mut pairs: Vec<(f64, String, String)> = self
                .bigrams
                .iter()
                .flat_map(|(p, next)| {
                    next.iter()
                        .map(move |(w, c)| (c.at(now, h), p.clone(), w.clone()))
                })
                .collect();
            pairs.sort_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
            });
            let drop = self.bigram_count - limits.max_bigrams * 9 / 10;
            for (_, p, w) in pairs.into_iter().take(drop) {
                if let Some(next) = self.bigrams.get_mut(&p) {
                    if next.remove(&w).is_some() {
                        self.bigram_count -= 1;
                    }
                }
            }
            self.bigrams.retain(|_, next| !next.is_empty());
        }
    }

    /// The user's probability of the folded word `k` after the folded word `prev`: their
    /// bigram counts smoothed towards their unigram distribution (a Dirichlet prior of weight
    /// `BIGRAM_PRIOR`). A word added by hand and never typed counts as typed once.
    pub fn probability(&self, prev: Option<&str>, k: &str, limits: &Limits) -> f64 {
        let h = limits.half_life_words;
        let now = self.clock;
        let total = self.total.at(now, h);
        let unigram = match self.words.get(k) {
            Some(e) => {
                let c = e.count.at(now, h);
                let c = if e.added { c.max(1.0) } else { c };
                c / (total + 1.0)
            }
            None => return 0.0,
        };
        let Some(p) = prev else {
            return unigram;
        };
        let Some(next) = self.bigrams.get(p) else {
            return unigram;
        };
        let history: f64 = self.words.get(p).map_or(0.0, |e| e.count.at(now, h));
        let pair = next.get(k).map_or(0.0, |c| c.at(now, h));
        (pair + BIGRAM_PRIOR * unigram) / (history + BIGRAM_PRIOR)
    }
}

/// Weight of the unigram prior in the bigram estimate, in counts.
const BIGRAM_PRIOR: f64 = 2.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn words(runs: &[Run]) -> Vec<Vec<&str>> {
        runs.iter()
            .map(|r| r.words.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn runs_break_at_punctuation_and_mark_sentences() {
        let r = runs("Hi Saoirse, see you at 5pm. Bye 1234 now\nok", true);
        assert_eq!(
            words(&r),
            [
                vec!["Hi", "Saoirse"],
                vec!["see", "you", "at", "5pm"],
                vec!["Bye"],
                vec!["now"],
                vec!["ok"]
            ]
        );
        let starts: Vec<bool> = r.iter().map(|r| r.sentence_start).collect();
        assert_eq!(starts, [true, false, true, false, true]);
        assert!(runs("  ... 42 !!", false).is_empty());
        assert_eq!(
            words(&runs("don\u{2019}t 'quoted'", false)),
            [vec!["don't", "quoted"]]
        );
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert!(runs(&long, false).is_empty());
    }

    #[test]
    fn counts_bigrams_and_display_forms() {
        let limits = Limits::default();
        let mut u = UserNgrams::default();
        u.learn(&runs("Saoirse is here. The cat and the dog", true), &limits);
        assert_eq!(u.words["saoirse"].display, "Saoirse");
        assert_eq!(u.words["the"].display, "the");
        assert_eq!(u.clock, 8);
        assert_eq!(u.bigram_count, 6);
        assert!(u.probability(Some("the"), "cat", &limits) > u.probability(None, "cat", &limits));
        assert!(
            u.probability(Some("and"), "the", &limits) > u.probability(Some("and"), "cat", &limits)
        );
        assert_eq!(u.probability(None, "unknown", &limits), 0.0);
        let sum: f64 = u
            .words
            .keys()
            .map(|k| u.probability(None, k, &limits))
            .sum();
        assert!(sum < 1.0 && sum > 0.8, "{sum}");
    }

    #[test]
    fn old_habits_fade() {
        let limits = Limits {
            half_life_words: 10.0,
            ..Limits::default()
        };
        let mut u = UserNgrams::default();
        u.learn(&runs("zorblax", false), &limits);
        let fresh = u.probability(None, "zorblax", &limits);
        u.learn(&runs(&"other words ".repeat(20), false), &limits);
        let old = u.probability(None, "zorblax", &limits);
        assert!(old < fresh / 10.0, "{old} vs {fresh}");
        let c = u.words["zorblax"].count.at(u.clock, 10.0);
        assert!(
            (c - 0.0625).abs() < 1e-9,
            "40 words later, four half-lives: {c}"
        );
    }

    #[test]
    fn limits_evict_the_weakest_but_keep_added_words() {
        let limits = Limits {
            half_life_words: 1e9,
            max_words: 10,
            max_bigrams: 5,
        };
        let mut u = UserNgrams::default();
        u.add_word("Pinned");
        let text: Vec<String> = (0..30).map(|i| format!("w{i}x")).collect();
        u.learn(&runs("strong strong strong", false), &limits);
        u.learn(&runs(&text.join(" "), false), &limits);
        let learned = u.words.values().filter(|e| !e.added).count();
        assert!(learned <= 10, "{learned}");
        assert!(u.words.contains_key("pinned") && u.words.contains_key("strong"));
        assert!(u.bigram_count <= 5);
        let pairs: usize = u.bigrams.values().map(HashMap::len).sum();
        assert_eq!(pairs, u.bigram_count);
        let sum: f64 = u.words.values().map(|e| e.count.at(u.clock, 1e9)).sum();
        assert!((sum - u.total.at(u.clock, 1e9)).abs() < 1e-6);
    }

    #[test]
    fn remove_clear_block() {
        let limits = Limits::default();
        let mut u = UserNgrams::default();
        u.learn(&runs("alpha beta gamma", false), &limits);
        u.block("Gamma");
        assert!(u.remove_word("BETA", &limits));
        assert!(!u.remove_word("beta", &limits));
        assert_eq!(u.bigram_count, 0);
        assert!(u.bigrams.is_empty());
        u.clear();
        assert!(u.words.is_empty());
        assert!(
            u.blocked.contains("gamma"),
            "clearing learned words keeps blocks"
        );
        u.add_word("gamma");
        assert!(!u.blocked.contains("gamma"), "adding a word unblocks it");
        assert!(u.probability(None, "gamma", &limits) > 0.0);
    }
}
