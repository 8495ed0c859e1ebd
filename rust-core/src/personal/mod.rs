//! Personal and smart suggestions around the neural model: what the user taught the keyboard
//! (learned and added words, word pairs, with decay), what they never want to see (default
//! offensive-word list and their own blocks), and corrections of typos.
//!
//! The predictor's word search returns words with the model's probabilities; [`Personal::rerank`]
//! then interpolates them with the user's own model (a cache language model:
//! P = (1 − λ)·P_model + λ·P_user, where P_user is the user's bigram estimate smoothed towards
//! their unigrams), adds
//! the user's words the search did not reach (a learned word the model spells with several
//! rare pieces), adds typo corrections the predictor scored, and drops blocked words.

pub mod layout;
pub mod ngram;
pub mod store;
pub mod typo;

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub use layout::KeyboardLayout;
pub use ngram::Limits;
pub use store::StoreError;

use crate::error::{Error, Result};
use crate::predictor::SuggestionKind;
use ngram::{key, key_chars_into, runs, UserNgrams};
use store::{Op, Store};

/// λ: weight of the user's model against the neural model's.
const USER_WEIGHT: f64 = 0.25;
/// A correction's probability is multiplied by exp(−TYPO_PENALTY × edit cost): a word the user
/// did not type must be clearly likelier than what they did.
const TYPO_PENALTY: f64 = 3.0;
/// Candidate corrections the language model scores, at most.
pub const MAX_CORRECTIONS: usize = 8;
/// User words looked at per keystroke, at most (a short prefix of a large dictionary).
const MAX_USER_CANDIDATES: usize = 256;
/// Longest text one `learn` call takes: a commit, not a document.
pub const MAX_LEARN_BYTES: usize = 64 * 1024;

/// A word of the user's dictionary, as listed to them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LearnedWord {
    pub word: String,
    /// How often it was typed, faded by how much was typed since.
    pub weight: f64,
    /// Added by hand (kept until removed).
    pub added: bool,
}

/// What the predictor's search and scoring give the personal stage.
pub struct Candidates {
    /// Words the model's search found, with log-probabilities.
    pub model: Vec<(String, f32)>,
    /// Typo corrections with the model's log-probability and their edit cost.
    pub corrections: Vec<(String, f32, f32)>,
}

/// One ranked word, before the predictor adjusts its casing.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub word: String,
    pub probability: f64,
    pub kind: SuggestionKind,
}

struct UserModel {
    data: UserNgrams,
    limits: Limits,
    dir: Option<PathBuf>,
    /// Open for writing once something is to be written (never under incognito).
    store: Option<Store>,
    incognito: bool,
}

impl UserModel {
    /// Journals then applies `op`; false when incognito (nothing learned, nothing written).
    fn apply(&mut self, op: Op) -> Result<bool> {
        if self.incognito {
            return Ok(false);
        }
        if let (None, Some(dir)) = (&self.store, &self.dir) {
            // Leaving an incognito start: take the lock and the latest data from disk.
            let (store, loaded) = Store::open(dir, &self.limits)?;
            if let Some(problem) = loaded.problem {
                log::warn!("{problem}");
            }
            self.data = loaded.data;
            self.store = Some(store);
        }
        if let Some(store) = &mut self.store {
            store.append(&op)?;
        }
        op.apply(&mut self.data, &self.limits);
        if let Some(store) = &mut self.store {
            if store.compaction_due() {
                // The operation is already durable in the journal; a failed compaction is
                // retried after the next one.
                if let Err(e) = store.compact(&self.data) {
                    log::warn!("user store compaction failed: {e}");
                }
            }
        }
        Ok(true)
    }
}

/// Factor on the model's probability of a word that is neither in the language's word list nor
/// the user's: the search assembles words from pieces, and with little probability left for a
/// prefix its best few include non-words ("uping", "didn'tiss"). Stronger factors cost keystroke
/// savings on validation text (real words missing from the list lose their place): 1.0, 0.3,
/// 0.1, 0.01 gave 52.27, 52.27, 52.23, 52.16% on 800 lines of the validation split.
const UNKNOWN_WORD_PRIOR: f64 = 0.3;

/// A word in neither list is dropped when its probability is below this share of the best
/// candidate's: the search's non-words ("stilloard", "supermarketging" after "stil",
/// "supermar") otherwise fill the strip's free slots. The best candidate always stays, so a
/// name or new word the lists lack can still be completed. Shares of 0.05, 0.2 and 0.5 left
/// `nextword eval --text benches/heldout.txt` unchanged (29.08 / 47.04 / 61.81%).
const UNKNOWN_WORD_MIN_SHARE: f64 = 0.05;

/// The English word list typo corrections come from (see training/lexicon.py).
///
/// Built when the first English predictor opens, so it is part of the load time: the folded
/// words in one buffer and a sorted index instead of a set of strings (which took ~10 ms of
/// the ~100 ms load, more than the vocabulary's classification; one allocation per word still
/// cost ~1 ms).
struct Lexicon {
    /// Every word folded, one after another.
    chars: Vec<char>,
    /// Most frequent first: where each word's folded form lies in `chars`, its usual casing.
    words: Vec<(Range<u32>, &'static str)>,
    /// Indices into `words` in the order of their folded forms, for "is this a word?" and
    /// "does any word start with this?".
    sorted: Vec<u32>,
    /// The words written in a casing [`regular_casing`] rejects ("iPad", "McCarthy").
    irregular: HashSet<&'static str>,
}

impl Lexicon {
    fn new(list: &'static str) -> Lexicon {
        let mut chars = Vec::with_capacity(list.len());
        let mut words = Vec::new();
        let mut irregular = HashSet::new();
        for w in list.lines().filter(|l| !l.is_empty()) {
            let start = chars.len() as u32;
            key_chars_into(w, &mut chars);
            words.push((start..chars.len() as u32, w));
            if !regular_casing(w) {
                irregular.insert(w);
            }
        }
        let folded = |i: u32| {
            let range = &words[i as usize].0;
            &chars[range.start as usize..range.end as usize]
        };
        let mut keyed: Vec<(u64, u32)> = (0..words.len() as u32)
            .map(|i| (sort_key(folded(i)), i))
            .collect();
        keyed.sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| folded(x.1).cmp(folded(y.1))));
        let sorted = keyed.into_iter().map(|(_, i)| i).collect();
        Lexicon {
            chars,
            words,
            sorted,
            irregular,
        }
    }

    /// Word `i`'s folded form.
    fn folded(&self, i: usize) -> &[char] {
        let range = &self.words[i].0;
        &self.chars[range.start as usize..range.end as usize]
    }

    /// The words, most frequent first: folded form and usual casing.
    fn iter(&self) -> impl Iterator<Item = (&[char], &'static str)> {
        (0..self.words.len()).map(|i| (self.folded(i), self.words[i].1))
    }

    /// The first folded word, in sorted order, not before `folded` (chars compare in the
    /// order of a `str`'s bytes).
    fn first_from(&self, folded: &str) -> Option<&[char]> {
        let at = self
            .sorted
            .partition_point(|&i| self.folded(i as usize).iter().copied().lt(folded.chars()));
        self.sorted.get(at).map(|&i| self.folded(i as usize))
    }

    fn contains(&self, folded: &str) -> bool {
        self.first_from(folded)
            .is_some_and(|w| w.iter().copied().eq(folded.chars()))
    }

    fn has_prefix(&self, folded: &str) -> bool {
        self.first_from(folded).is_some_and(|w| {
            let mut word = w.iter().copied();
            folded.chars().all(|c| word.next() == Some(c))
        })
    }
}

/// The first 8 chars of a folded word packed as bytes so that words whose keys differ compare
/// as their keys do: ASCII chars as themselves, the first other char as 0x80 and zeros after
/// it, zeros past the end. (Before the first position where two keys differ they hold the same
/// ASCII chars; there, an ASCII char is below any other and the end below any char.) Equal
/// keys need the full comparison. Sorting by it first took the word lists' load from 4.8 to
/// 2.9 ms: comparing chars through the index was most of it.
fn sort_key(word: &[char]) -> u64 {
    let mut key = [0u8; 8];
    for (k, &c) in key.iter_mut().zip(word) {
        if c.is_ascii() {
            *k = c as u8;
        } else {
            *k = 0x80;
            break;
        }
    }
    u64::from_be_bytes(key)
}

fn english_lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| Lexicon::new(include_str!("../../data/lexicon-en.txt")))
}

fn english_offensive() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../../data/blocklist-en.txt")
            .lines()
            .filter(|l| !l.is_empty())
            .map(key)
            .collect()
    })
}

/// All lower case, capitalised ("Paris", "I'm") or all capitals ("NASA"), letters only
/// counted: the casings a word has unless it is a name like "iPad" or "McCarthy".
fn regular_casing(word: &str) -> bool {
    // Most words of the list: lower-case ASCII.
    if word
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        return true;
    }
    let mut letters = word.chars().filter(|c| c.is_alphabetic());
    let Some(first) = letters.next() else {
        return true;
    };
    let (mut upper, mut lower) = (false, false);
    for c in letters {
        upper |= c.is_uppercase();
        lower |= c.is_lowercase();
    }
    !(upper && (lower || first.is_lowercase()))
}

/// Settings of the personal stage (part of the predictor's `Config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalConfig {
    pub user_dir: Option<PathBuf>,
    pub incognito: bool,
    pub block_offensive: bool,
    pub typo_correction: bool,
}

pub struct Personal {
    user: Mutex<UserModel>,
    /// The default offensive-word list, when on and known for the language.
    offensive: Option<&'static HashSet<String>>,
    /// The language's word list, when known: corrections come from it, and the model's words
    /// missing from it are ranked down ([`UNKNOWN_WORD_PRIOR`]).
    lexicon: Option<&'static Lexicon>,
    typo_correction: bool,
    layout: KeyboardLayout,
    /// Why the store was (partly) unreadable when opened, if it was.
    open_problem: Option<StoreError>,
}

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personal")
            .field("offensive_list", &self.offensive.is_some())
            .field("lexicon", &self.lexicon.is_some())
            .finish()
    }
}

impl Personal {
    /// Opens the user's store (read-only under incognito). A corrupt or newer store is set aside
    /// and reported by [`Personal::open_problem`]; a locked or unreachable one is an error.
    pub fn open(config: &PersonalConfig, language: &str) -> Result<Personal> {
        let limits = Limits::default();
        let (data, store, open_problem) = match &config.user_dir {
            None => (UserNgrams::default(), None, None),
            Some(dir) if config.incognito => {
                let loaded = Store::read_only(dir, &limits)?;
                (loaded.data, None, loaded.problem)
            }
            Some(dir) => {
                let (store, loaded) = Store::open(dir, &limits)?;
                (loaded.data, Some(store), loaded.problem)
            }
        };
        if let Some(p) = &open_problem {
            log::warn!("{p}");
        }
        let english =
            language == "en" || language.starts_with("en-") || language.starts_with("en_");
        Ok(Personal {
            user: Mutex::new(UserModel {
                data,
                limits,
                dir: config.user_dir.clone(),
                store,
                incognito: config.incognito,
            }),
            offensive: (english && config.block_offensive).then(english_offensive),
            lexicon: english.then(english_lexicon),
            typo_correction: config.typo_correction,
            layout: KeyboardLayout::qwerty(),
            open_problem,
        })
    }

    fn user(&self) -> MutexGuard<'_, UserModel> {
        self.user.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open_problem(&self) -> Option<&StoreError> {
        self.open_problem.as_ref()
    }

    pub fn set_layout(&mut self, layout: KeyboardLayout) {
        self.layout = layout;
    }

    pub fn set_incognito(&self, on: bool) {
        self.user().incognito = on;
    }

    pub fn incognito(&self) -> bool {
        self.user().incognito
    }

    /// Learns committed text; false when incognito.
    pub fn learn(&self, text: &str) -> Result<bool> {
        if text.len() > MAX_LEARN_BYTES {
            return Err(Error::InvalidInput(format!(
                "{} bytes to learn: more than {MAX_LEARN_BYTES}; pass committed text as it is committed",
                text.len()
            )));
        }
        let runs = runs(text, true);
        if runs.is_empty() {
            return Ok(!self.incognito());
        }
        self.user().apply(Op::Learn { runs })
    }

    pub fn add_word(&self, word: &str) -> Result<bool> {
        let word = single_word(word)?;
        self.user().apply(Op::Add { word })
    }

    /// Forgets a learned or added word; whether it was known (false also when incognito).
    pub fn remove_word(&self, word: &str) -> Result<bool> {
        let mut user = self.user();
        if !user.data.words.contains_key(&key(word)) {
            return Ok(false);
        }
        user.apply(Op::Remove {
            word: word.to_string(),
        })
    }

    pub fn clear_learned(&self) -> Result<bool> {
        self.user().apply(Op::Clear)
    }

    pub fn block_word(&self, word: &str) -> Result<bool> {
        let word = single_word(word)?;
        self.user().apply(Op::Block { word })
    }

    pub fn unblock_word(&self, word: &str) -> Result<bool> {
        let mut user = self.user();
        if !user.data.blocked.contains(&key(word)) {
            return Ok(false);
        }
        user.apply(Op::Unblock {
            word: word.to_string(),
        })
    }

    /// The user's words, strongest first.
    pub fn learned_words(&self) -> Vec<LearnedWord> {
        let user = self.user();
        let (now, h) = (user.data.clock, user.limits.half_life_words);
        let mut out: Vec<LearnedWord> = user
            .data
            .words
            .values()
            .map(|e| LearnedWord {
                word: e.display.clone(),
                weight: e.count.at(now, h),
                added: e.added,
            })
            .collect();
        out.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| a.word.cmp(&b.word))
        });
        out
    }

    pub fn blocked_words(&self) -> Vec<String> {
        self.user().data.blocked.iter().cloned().collect()
    }

    /// Whether `word` must never be suggested: blocked by the user, or on the default list and
    /// not added by the user.
    fn is_blocked(&self, user: &UserModel, k: &str) -> bool {
        user.data.blocked.contains(k)
            || self.offensive.is_some_and(|list| {
                list.contains(k) && !user.data.words.get(k).is_some_and(|e| e.added)
            })
    }

    /// Words worth asking the model about because `typed` (folded) looks like a typo: no known
    /// word starts with it, but some are a few cheap edits away. Each with its edit cost, the
    /// likeliest corrections (cheap edits of frequent words) first.
    pub fn correction_candidates(&self, typed: &[char]) -> Vec<(String, f32)> {
        let Some(lexicon) = self.lexicon.filter(|_| self.typo_correction) else {
            return Vec::new();
        };
        if typed.len() < 2 || !typed.iter().all(|c| c.is_alphabetic() || *c == '\'') {
            return Vec::new();
        }
        let prefix: String = typed.iter().collect();
        let user = self.user();
        let user_has = user
            .data
            .words
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix));
        if user_has || lexicon.has_prefix(&prefix) {
            return Vec::new();
        }
        let max = typo::max_cost(typed.len());
        let mut found: Vec<(f32, usize, String)> = Vec::new();
        let user_words: Vec<(Vec<char>, &str)> = user
            .data
            .words
            .iter()
            .map(|(k, e)| (k.chars().collect(), e.display.as_str()))
            .collect();
        // Each word with its rank by frequency: the user's own words first (rank 0), then the
        // word list's, which is in frequency order.
        let words = user_words
            .iter()
            .map(|(folded, display)| (0, folded.as_slice(), *display))
            .chain(
                lexicon
                    .iter()
                    .enumerate()
                    .map(|(rank, (folded, display))| (rank + 1, folded, display)),
            );
        let mut seen = HashSet::new();
        for (rank, folded, display) in words {
            if let Some(cost) = typo::prefix_cost(&self.layout, typed, folded, max) {
                let k: String = folded.iter().collect();
                if !self.is_blocked(&user, &k) && seen.insert(k) {
                    found.push((cost, rank, display.to_string()));
                }
            }
        }
        // The model scores only a few: those whose ranking score would be best with a word's
        // frequency (Zipf: probability ~ 1 / rank) in place of the model's probability. By
        // cost alone, the many words one neighbouring key from a typo ("ten", "tendency",
        // "tennis" for "teh") took every slot from the word meant ("the": a swap).
        let prior =
            |cost: f32, rank: usize| f64::from(cost) * TYPO_PENALTY + ((rank + 1) as f64).ln();
        found.sort_by(|a, b| {
            prior(a.0, a.1)
                .total_cmp(&prior(b.0, b.1))
                .then(a.1.cmp(&b.1))
        });
        found
            .into_iter()
            .take(MAX_CORRECTIONS)
            .map(|(cost, _, w)| (w, cost))
            .collect()
    }

    /// The final ranking: model words interpolated with the user's model, the user's own words
    /// that start with `typed` (or follow `prev` when nothing is typed), scored corrections;
    /// blocked words removed. Best first.
    pub fn rerank(
        &self,
        candidates: Candidates,
        typed: &[char],
        prev: Option<&str>,
        kind: SuggestionKind,
    ) -> Vec<Ranked> {
        let user = self.user();
        let data = &user.data;
        let limits = &user.limits;
        let lambda = if data.words.is_empty() {
            0.0
        } else {
            USER_WEIGHT
        };
        let prev_key = prev.map(key);
        let prev_key = prev_key.as_deref();
        let p_user = |k: &str| data.probability(prev_key, k, limits);
        let mut out: Vec<Ranked> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut unknown: HashSet<String> = HashSet::new();
        let known =
            |k: &str| self.lexicon.is_none_or(|lex| lex.contains(k)) || data.words.contains_key(k);
        for (word, logp) in candidates.model {
            let k = key(&word);
            let first = seen.insert(k.clone());
            let user_part = if first { lambda * p_user(&k) } else { 0.0 };
            let prior = if known(&k) {
                1.0
            } else {
                unknown.insert(word.clone());
                UNKNOWN_WORD_PRIOR
            };
            let p_model = f64::from(logp).exp() * prior;
            out.push(Ranked {
                word,
                probability: (1.0 - lambda) * p_model + user_part,
                kind,
            });
        }
        if lambda > 0.0 {
            let prefix: String = typed.iter().collect();
            let mut add_user_word = |k: &str, out: &mut Vec<Ranked>| {
                if seen.contains(k) {
                    return;
                }
                if let Some(e) = data.words.get(k) {
                    seen.insert(k.to_string());
                    out.push(Ranked {
                        word: e.display.clone(),
                        probability: lambda * p_user(k),
                        kind,
                    });
                }
            };
            if prefix.is_empty() {
                if let Some(next) = prev_key.and_then(|p| data.bigrams.get(p)) {
                    for k in next.keys().take(MAX_USER_CANDIDATES) {
                        add_user_word(k, &mut out);
                    }
                }
            } else {
                let keys: Vec<&String> = data
                    .words
                    .range(prefix.clone()..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(&prefix))
                    .take(MAX_USER_CANDIDATES)
                    .collect();
                for k in keys {
                    add_user_word(k, &mut out);
                }
            }
        }
        for (word, logp, cost) in candidates.corrections {
            let k = key(&word);
            if !seen.insert(k.clone()) {
                continue;
            }
            let p = (1.0 - lambda) * f64::from(logp).exp() + lambda * p_user(&k);
            out.push(Ranked {
                word,
                probability: p * (-TYPO_PENALTY * f64::from(cost)).exp(),
                kind: SuggestionKind::Correction,
            });
        }
        out.retain(|r| !self.is_blocked(&user, &key(&r.word)));
        out.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let floor = out.first().map_or(0.0, |best| best.probability) * UNKNOWN_WORD_MIN_SHARE;
        out.retain(|r| r.probability >= floor || !unknown.contains(&r.word));
        out
    }

    /// Whether `word` may be shown: not blocked (by the user or the default list).
    pub fn may_show(&self, word: &str) -> bool {
        !self.is_blocked(&self.user(), &key(word))
    }

    /// Whether the model's `word` is written as a word is: in a [`regular_casing`], or exactly
    /// as the word list or the user writes it. The search assembles words from pieces, and
    /// for a prefix no likely word starts with, its best few were forms like "tMRW" and
    /// "TMRwise" (typed "tmrw").
    pub fn plausible_form(&self, word: &str) -> bool {
        regular_casing(word)
            || self.lexicon.is_some_and(|lex| lex.irregular.contains(word))
            || self
                .user()
                .data
                .words
                .get(&key(word))
                .is_some_and(|e| e.display == word)
    }
}

/// The word before the cursor's word when only spaces separate them: the history the user's
/// bigrams condition on (punctuation in between breaks it, as in learning).
pub fn previous_word(context: &str) -> Option<&str> {
    let trimmed = context.trim_end();
    let last = trimmed.chars().last()?;
    if !crate::text::is_word_char(last) {
        return None;
    }
    let start = trimmed
        .char_indices()
        .rev()
        .take_while(|&(_, c)| crate::text::is_word_char(c))
        .last()
        .map_or(0, |(i, _)| i);
    let word = trimmed[start..].trim_matches(|c| c == '\'' || c == '\u{2019}');
    (!word.is_empty()).then_some(word)
}

fn single_word(word: &str) -> Result<String> {
    let w = word.trim();
    let ok = !w.is_empty()
        && w.chars().count() <= ngram::MAX_WORD_CHARS
        && w.chars().all(crate::text::is_word_char);
    if ok {
        Ok(w.to_string())
    } else {
        Err(Error::InvalidInput(format!(
            "{word:?} is not a single word of at most {} letters, digits or apostrophes",
            ngram::MAX_WORD_CHARS
        )))
    }
}

#[cfg(test)]
mod tests;
