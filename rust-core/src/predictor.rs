//! Suggestions: from the text before the cursor to ranked whole words.
//!
//! The committed words (the last `context_tokens` tokens of them, or a few more: see
//! [`Predictor::window`]) go through the model once and stay in a KV cache, so a keystroke
//! inside a word costs only the short search over the word's own tokens. That search decodes a
//! small tree of beams, all beams of one depth in a single model call (tree attention through
//! the `attn_bias` input), and stops each beam at a word boundary: a word's score is
//! P(its tokens) × P(next token ends the word).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use tokenizers::Tokenizer;

use crate::bundle::{Bundle, Manifest};
use crate::error::{Error, Result};
use crate::lm::{KvCache, LanguageModel, Step, MASKED};
use crate::ops::MatMulImpl;
use crate::personal::{self, Candidates, LearnedWord, Personal, PersonalConfig, Ranked};
use crate::text::{analyse, capitalize, fold, Analysis, MAX_PARTIAL_CHARS};
use crate::vocab::Vocab;

/// Most suggestions one call returns.
pub const MAX_SUGGESTIONS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Which `MatMulNBits` implementation runs the 4-bit layers.
    pub matmul: MatMulImpl,
    /// Beams kept at each depth of the word search.
    pub beam_width: usize,
    /// Longest word, in tokens, the search follows.
    pub max_word_tokens: usize,
    /// Directory of the user's store (learned words, blocks; see [`crate::personal`]). `None`
    /// keeps what is learned in memory for the predictor's lifetime.
    pub user_dir: Option<std::path::PathBuf>,
    /// Learn nothing and write nothing (password fields, `IME_FLAG_NO_PERSONALIZED_LEARNING`);
    /// suggestions still use what was learned before. [`Predictor::set_incognito`] changes it.
    pub incognito: bool,
    /// Never suggest the words of the default offensive-word list (rust-core/data).
    pub block_offensive: bool,
    /// Offer corrections when the word being typed looks like a typo.
    pub typo_correction: bool,
    /// Offer a two-word phrase (the top word and the word after it) when the model is
    /// confident of both; see [`SuggestionKind::Phrase`].
    pub phrases: bool,
    /// Which bundle signers are accepted. The default accepts unsigned development bundles;
    /// production apps pin their keys (see [`crate::trust::TrustPolicy`]).
    pub trust: crate::trust::TrustPolicy,
    /// Key of a bundle with encrypted files; dropped (and wiped) once the bundle is loaded.
    pub weights_key: Option<crate::encryption::WeightsKey>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            matmul: MatMulImpl::Nextword,
            beam_width: 6,
            max_word_tokens: 4,
            user_dir: None,
            incognito: false,
            block_offensive: true,
            typo_correction: true,
            phrases: false,
            trust: crate::trust::TrustPolicy::development(),
            weights_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// The cursor follows a space: the next word.
    NextWord,
    /// A word is being typed: words that start with what was typed.
    Completion,
    /// What was typed looks like a typo: a word a few keys away from it.
    Correction,
    /// Exactly what was typed, offered next to corrections.
    Verbatim,
    /// The top word and the word the model expects after it ("see you" → "tomorrow
    /// morning"), placed right after that word's own suggestion (with [`Config::phrases`]).
    Phrase,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub text: String,
    /// Probability of the word given the text (not normalised over the suggestions).
    pub score: f32,
    pub kind: SuggestionKind,
}

/// The committed context last seen, with the model's state after it.
struct ContextState {
    ids: Vec<u32>,
    /// The context's cache followed by every word-search token decoded since (the tree).
    cache: KvCache,
    next_logp: Vec<f32>,
    /// Word-search tokens already decoded after this context, by path of word tokens: the
    /// next keystroke of the same word mostly walks paths the previous one decoded.
    tree: HashMap<Vec<u32>, TreeNode>,
    /// The state after this context and the last phrase's first word, with the search for the
    /// word after it: the next keystrokes of the same word reuse it, and it becomes the context
    /// when the user commits that word.
    follow: Option<Box<ContextState>>,
}

struct TreeNode {
    /// Where the path's last token sits in the cache.
    slot: usize,
    /// Log-probabilities of the token after the path.
    next_logp: Vec<f32>,
    /// Log-probability that the word ends after the path.
    end_logp: f32,
}

/// Least probability of a phrase's first word given the context and what was typed of it.
const PHRASE_MIN_FIRST: f32 = 0.5;
/// Least probability of a phrase's second word given the context and the first.
const PHRASE_MIN_NEXT: f32 = 0.35;
/// Least probability of both words together (given what was typed).
const PHRASE_MIN_JOINT: f32 = 0.25;

/// How many tokens the context may grow past `context_tokens` before it is re-anchored to the
/// last `context_tokens` (see [`Predictor::window`]).
const CONTEXT_SLACK: usize = 12;

/// Least probability, relative to the best word found, of a word the search still decodes
/// beams for: below it a word would sit far down a strip whose top words are much likelier.
/// 0.01 cost 0.05 points of keystroke savings on the test texts and halved the median
/// keystroke (see benches/README.md).
const MIN_SHARE_OF_BEST: f32 = 0.01;

/// Tree nodes kept per context before the tree is dropped and decoded anew.
const MAX_TREE_NODES: usize = 192;

impl ContextState {
    fn new(ids: Vec<u32>, cache: KvCache, logits: &[f32]) -> Self {
        ContextState {
            ids,
            cache,
            next_logp: log_softmax(logits),
            tree: HashMap::new(),
            follow: None,
        }
    }

    /// The state after this context followed by `path`, a path of the tree (else `None`):
    /// its keys and values gathered from the tree's slots, no model call.
    fn after_path(&self, path: &[u32]) -> Result<Option<ContextState>> {
        let Some(node) = self.tree.get(path) else {
            return Ok(None);
        };
        let slots: Vec<usize> = (1..=path.len())
            .map(|k| self.tree[&path[..k]].slot)
            .collect();
        let cache = self
            .cache
            .gathered(self.ids.len(), &slots)
            .map_err(Error::inference)?;
        Ok(Some(ContextState {
            ids: [&self.ids[..], path].concat(),
            cache,
            next_logp: node.next_logp.clone(),
            tree: HashMap::new(),
            follow: None,
        }))
    }
}

pub struct Predictor {
    lm: LanguageModel,
    tokenizer: Tokenizer,
    vocab: Vocab,
    manifest: Manifest,
    bos: u32,
    config: Config,
    state: Mutex<Option<ContextState>>,
    personal: Personal,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("model_id", &self.manifest.model_id)
            .field("config", &self.config)
            .finish()
    }
}

impl Predictor {
    pub fn open(bundle_dir: impl AsRef<Path>, config: Config) -> Result<Predictor> {
        let t = Instant::now();
        let bundle =
            crate::trust::open_bundle(bundle_dir, &config.trust, config.weights_key.as_ref())?;
        log::debug!("bundle read and verified in {:?}", t.elapsed());
        Predictor::from_bundle(bundle, config)
    }

    pub fn from_bundle(bundle: Bundle, config: Config) -> Result<Predictor> {
        let t = Instant::now();
        let manifest = bundle.manifest;
        let tokenizer = crate::tokenizer_json::parse(&bundle.tokenizer_bytes)
            .map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
        let tok_vocab = tokenizer.get_vocab_size(true);
        if tok_vocab != manifest.vocab_size {
            return Err(Error::VocabMismatch {
                tokenizer: tok_vocab,
                model: manifest.vocab_size,
            });
        }
        let bos = tokenizer
            .token_to_id(&manifest.bos_token)
            .ok_or_else(|| Error::InvalidTokenizer(format!("no {} token", manifest.bos_token)))?;
        log::debug!("tokenizer parsed in {:?}", t.elapsed());
        let t = Instant::now();
        drop(bundle.tokenizer_bytes);
        let lm = LanguageModel::load(
            bundle.model_bytes,
            &manifest.model,
            manifest.vocab_size,
            config.matmul,
        )?;
        log::debug!("model parsed and optimized in {:?}", t.elapsed());
        let t = Instant::now();
        let vocab = Vocab::new(
            &tokenizer,
            manifest.vocab_size,
            bundle.word_ends_bytes.as_deref(),
        )?;
        log::debug!("vocabulary classified in {:?}", t.elapsed());
        let config = Config {
            beam_width: config.beam_width.max(1),
            max_word_tokens: config.max_word_tokens.max(1),
            weights_key: None,
            ..config
        };
        let t = Instant::now();
        let personal = Personal::open(
            &PersonalConfig {
                user_dir: config.user_dir.clone(),
                incognito: config.incognito,
                block_offensive: config.block_offensive,
                typo_correction: config.typo_correction,
            },
            &manifest.language,
        )?;
        log::debug!("word lists and user store opened in {:?}", t.elapsed());
        log::info!(
            "loaded {} ({} parameters, {} matmul)",
            manifest.model_id,
            manifest.model.parameters,
            config.matmul
        );
        Ok(Predictor {
            personal,
            lm,
            tokenizer,
            vocab,
            manifest,
            bos,
            config,
            state: Mutex::new(None),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model's optimized plan, as (operator, node count), most frequent first.
    pub fn plan_ops(&self) -> Vec<(String, usize)> {
        self.lm.plan_ops()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Token ids of `text` as the model reads committed text (no start-of-text mark).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Log-probabilities of the token after `ids`, from a fresh forward pass (no cache).
    pub fn next_token_logprobs(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() || ids.len() >= self.manifest.model.max_positions {
            return Err(Error::InvalidInput(format!(
                "{} tokens: not in 1..{}",
                ids.len(),
                self.manifest.model.max_positions
            )));
        }
        let (logits, _) = self.forward(&self.lm.empty_cache(), ids)?;
        Ok(log_softmax(&logits))
    }

    /// Ranked suggestions for the text before the cursor.
    ///
    /// The model state of the previous call is reused for whatever start of the context it
    /// shares, so the same text can get scores that differ by float rounding (amplified where an
    /// activation sits on an int8 rounding boundary: ~0.2% seen) depending on what came before.
    pub fn suggest(&self, text_before_cursor: &str, max: usize) -> Result<Vec<Suggestion>> {
        let max = max.min(MAX_SUGGESTIONS);
        let a = analyse(text_before_cursor);
        if max == 0 || a.partial.chars().count() > MAX_PARTIAL_CHARS {
            return Ok(Vec::new());
        }
        let all = self.context_tokens(a.context, a.starts_field)?;
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = guard.take();
        let ids = self
            .window(&all, previous.as_ref().map(|p| &p.ids[..]))
            .to_vec();
        let mut state = self.update_context(previous, ids)?;
        let suggestions = self.suggest_after(&mut state, &a, max);
        *guard = Some(state);
        suggestions
    }

    /// [`Predictor::suggest`] once the context's state is up to date.
    fn suggest_after(
        &self,
        state: &mut ContextState,
        a: &Analysis,
        max: usize,
    ) -> Result<Vec<Suggestion>> {
        let kind = if a.partial.is_empty() {
            SuggestionKind::NextWord
        } else {
            SuggestionKind::Completion
        };
        let typed = fold(a.partial);
        let found = self.search_words(state, &typed, max)?;
        let model = found.iter().map(|f| (f.text.clone(), f.logp)).collect();
        let candidates = self.personal_candidates(state, &typed, model)?;
        let prev = personal::previous_word(a.context);
        let words = self.personal.rerank(candidates, &typed, prev, kind);
        let typed_capital = a.partial.chars().any(char::is_uppercase);
        let typed_len = a.partial.chars().count();
        // Case variants ("Tom", "tom") stay apart: merged into the casing ranked first, they
        // lost keystroke savings (52.27 -> 52.16% on validation text, case-sensitive protocol):
        // the other casing was more often the word wanted than the word taking its slot.
        let mut seen: HashMap<String, usize> = HashMap::new();
        // Each suggestion with the word it shows.
        let mut out: Vec<(Suggestion, String)> = Vec::new();
        for Ranked {
            word,
            probability,
            kind,
        } in words
        {
            let score = probability as f32;
            let text = if typed_capital && kind == SuggestionKind::Correction {
                capitalize(&word)
            } else if typed_capital && fold(&word).len() == word.chars().count() {
                a.partial
                    .chars()
                    .chain(word.chars().skip(typed_len))
                    .collect()
            } else if a.sentence_start && a.partial.is_empty() {
                capitalize(&word)
            } else {
                word.clone()
            };
            match seen.get(&text) {
                Some(&i) => {
                    out[i].0.score += score;
                }
                None => {
                    seen.insert(text.clone(), out.len());
                    out.push((Suggestion { text, score, kind }, word));
                }
            }
        }
        out.sort_by(|x, y| y.0.score.total_cmp(&x.0.score));
        out.truncate(max);
        if self.config.phrases && max >= 2 && !out.is_empty() {
            let (first, word) = &out[0];
            if let Some(phrase) = self.phrase(state, first, word, &found, typed.is_empty())? {
                out.insert(1, (phrase, String::new()));
                out.truncate(max);
            }
        }
        let mut out: Vec<Suggestion> = out.into_iter().map(|(s, _)| s).collect();
        // Next to corrections, what was typed stays one tap away.
        if max >= 2
            && out.iter().any(|s| s.kind == SuggestionKind::Correction)
            && !out.iter().any(|s| s.text == a.partial)
            && self.personal.may_show(a.partial)
        {
            out.truncate(max - 1);
            out.push(Suggestion {
                text: a.partial.to_string(),
                score: 0.0,
                kind: SuggestionKind::Verbatim,
            });
        }
        Ok(out)
    }

    /// `first` (showing the search's word `word`) followed by the word the model expects after
    /// it, when the model is confident of both: `word` given the context and what was typed of
    /// it, and the next word given the context and `word`. The search for the next word is kept
    /// in `ctx.follow`, for the next keystrokes and for when `word` is committed.
    fn phrase(
        &self,
        ctx: &mut ContextState,
        first: &Suggestion,
        word: &str,
        found: &[Found],
        next_word: bool,
    ) -> Result<Option<Suggestion>> {
        if !matches!(
            first.kind,
            SuggestionKind::NextWord | SuggestionKind::Completion
        ) {
            return Ok(None);
        }
        let Some(f) = found.iter().find(|f| f.text == word) else {
            return Ok(None);
        };
        // Next words' probabilities are over all words already; a completion's are normalised
        // over the words found for the typed prefix (the best few: nearly all of its mass).
        let mass: f32 = if next_word {
            1.0
        } else {
            found.iter().map(|f| f.logp.exp()).sum()
        };
        let p_first = f.logp.exp() / mass;
        if p_first < PHRASE_MIN_FIRST {
            return Ok(None);
        }
        let mut follow = match ctx.follow.take() {
            Some(s) if s.ids.len() == ctx.ids.len() + f.path.len() && s.ids.ends_with(&f.path) => s,
            _ => {
                // The search may have finished the word without decoding its last token.
                self.decode_paths(ctx, std::iter::once(&f.path))?;
                match ctx.after_path(&f.path)? {
                    Some(s) => Box::new(s),
                    None => return Ok(None),
                }
            }
        };
        let next = self.search_words(&mut follow, &[], 1);
        ctx.follow = Some(follow);
        let Some(second) = next?.into_iter().next() else {
            return Ok(None);
        };
        let p_second = second.logp.exp();
        if p_second < PHRASE_MIN_NEXT || p_first * p_second < PHRASE_MIN_JOINT {
            return Ok(None);
        }
        log::trace!(
            "phrase {word} {}: {p_first:.2} × {p_second:.2}",
            second.text
        );
        Ok(Some(Suggestion {
            text: format!("{} {}", first.text, second.text),
            score: first.score * p_second,
            kind: SuggestionKind::Phrase,
        }))
    }

    /// Every token of the committed tail, after a start-of-text mark when it is the field's start.
    fn context_tokens(&self, context: &str, starts_field: bool) -> Result<Vec<u32>> {
        let mut ids = if starts_field {
            vec![self.bos]
        } else {
            Vec::new()
        };
        if !context.is_empty() {
            ids.extend(self.tokenize(context)?);
        }
        if ids.is_empty() {
            ids.push(self.bos);
        }
        Ok(ids)
    }

    /// The tokens the model reads: the last `context_tokens` of `all`, or more (up to
    /// [`CONTEXT_SLACK`] more) when that keeps the start of the `previous` context. A window that
    /// slid by one word per committed word would change its first token on every word, and
    /// every committed word would cost a full forward pass; a window that keeps its start costs
    /// only the committed word's own tokens, and is re-anchored once it is full.
    fn window<'a>(&self, all: &'a [u32], previous: Option<&[u32]>) -> &'a [u32] {
        let least = self.manifest.context_tokens;
        if all.len() <= least {
            return all;
        }
        let most = (least + CONTEXT_SLACK).min(self.manifest.model.max_positions / 2);
        let common = |s: usize| previous.map_or(0, |prev| common_prefix(&all[s..], prev));
        let latest = all.len() - least;
        let earliest = all.len().saturating_sub(most).min(latest);
        let start = (earliest..=latest)
            .map(|s| (common(s), s))
            .filter(|&(c, _)| c > 0)
            .max()
            .map_or(latest, |(_, s)| s);
        &all[start..]
    }

    /// The model state after `ids`, reusing what `previous` already computed for a common prefix.
    fn update_context(
        &self,
        previous: Option<ContextState>,
        ids: Vec<u32>,
    ) -> Result<ContextState> {
        if let Some(mut prev) = previous {
            if prev.ids == ids {
                return Ok(prev);
            }
            if let Some(follow) = prev.follow.take().filter(|f| f.ids == ids) {
                return Ok(*follow);
            }
            if ids.len() > prev.ids.len() && ids.starts_with(&prev.ids) {
                // The word just committed is usually a path the word search already decoded
                // (it was suggested or completed): its keys and values are in the cache.
                if let Some(next) = prev.after_path(&ids[prev.ids.len()..])? {
                    return Ok(next);
                }
            }
            // A committed word, a deleted one, a correction: the shared start stays cached; at
            // least the last token is run again, for the logits after it.
            let keep = common_prefix(&ids, &prev.ids).min(ids.len() - 1);
            if keep > 0 {
                let past = prev.cache.truncated(keep).map_err(Error::inference)?;
                let (logits, cache) = self.forward(&past, &ids[keep..])?;
                return Ok(ContextState::new(ids, cache, &logits));
            }
        }
        let (logits, cache) = self.forward(&self.lm.empty_cache(), &ids)?;
        Ok(ContextState::new(ids, cache, &logits))
    }

    /// Causal forward of `ids` after `past`; logits after the last one.
    fn forward(&self, past: &KvCache, ids: &[u32]) -> Result<(Vec<f32>, KvCache)> {
        let p = past.len();
        let s = ids.len();
        let positions: Vec<usize> = (p..p + s).collect();
        let mut bias = vec![0f32; s * (p + s)];
        for q in 0..s {
            for k in p + q + 1..p + s {
                bias[q * (p + s) + k] = MASKED;
            }
        }
        self.lm.run(
            past,
            &Step {
                ids,
                positions: &positions,
                bias: &bias,
                logits_at: &[s - 1],
            },
        )
    }

    /// Whole words after the context that start with `typed` (folded), most probable first,
    /// none of them blocked.
    fn search_words(
        &self,
        ctx: &mut ContextState,
        typed: &[char],
        max: usize,
    ) -> Result<Vec<Found>> {
        if ctx.tree.len() > MAX_TREE_NODES {
            ctx.tree.clear();
            ctx.cache = ctx
                .cache
                .truncated(ctx.ids.len())
                .map_err(Error::inference)?;
        }
        let v = &self.vocab;
        // The best word starts are chosen before any beam is built: a next word has thousands
        // of candidates, and a beam's text and path are allocations.
        let mut starts: Vec<(f32, usize, usize)> = v
            .word_starts_for(typed)
            .iter()
            .filter_map(|&t| Some((ctx.next_logp[t], t, covers(typed, &v.folded[t])?)))
            .collect();
        // Best first; equal ones in vocabulary order (the lists are in token order).
        let best_first = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
        };
        let width = self.config.beam_width;
        if starts.len() > width {
            starts.select_nth_unstable_by(width, best_first);
            starts.truncate(width);
        }
        starts.sort_by(best_first);
        let mut live: Vec<Beam> = starts
            .into_iter()
            .map(|(logp, t, covered)| Beam {
                text: v.text[t].clone(),
                covered,
                logp,
                path: vec![t as u32],
            })
            .collect();
        let mut finished: Vec<Found> = Vec::new();
        for _depth in 0..self.config.max_word_tokens {
            // The model is asked only about the beams whose call can change the strip. A beam
            // that covers what was typed and ends in a token that nearly always ends its word
            // in the training text is finished at that rate and not continued: on a next-word
            // search that is most of the common words.
            let covering_last =
                |b: &Beam| (b.covered == typed.len()).then(|| *b.path.last().expect("non-empty"));
            let end_share = |b: &Beam| covering_last(b).and_then(|t| v.end_share_logp(t));
            let sure_end = |b: &Beam| covering_last(b).and_then(|t| v.sure_end_logp(t));
            let (sure, rest): (Vec<Beam>, Vec<Beam>) =
                live.into_iter().partition(|b| sure_end(b).is_some());
            for beam in &sure {
                self.finish(&mut finished, beam, sure_end(beam).expect("sure"), typed);
            }
            // A beam only loses probability as it grows: one at or below the max-th finished
            // word can never enter the strip. Nor, as far as the training text's word-end
            // rates tell, one at or below the max-th word the other beams would make. And a
            // beam whose words past its last token (by that rate) would not make the strip is
            // finished at that rate.
            let floor = Self::floor(finished.iter().map(|f| f.logp), max);
            let estimated = rest.iter().filter_map(|b| Some(b.logp + end_share(b)?));
            let estimated_floor =
                Self::floor(finished.iter().map(|f| f.logp).chain(estimated), max);
            live = Vec::new();
            for beam in rest {
                if let Some(share) = end_share(&beam) {
                    let longer = beam.logp + (-share.exp()).ln_1p();
                    if longer <= estimated_floor {
                        self.finish(&mut finished, &beam, share, typed);
                        continue;
                    }
                }
                if beam.logp > floor.max(estimated_floor) {
                    live.push(beam);
                }
            }
            if live.is_empty() {
                break;
            }
            self.decode_paths(ctx, live.iter().map(|b| &b.path))?;
            for beam in &live {
                let end = ctx.tree[&beam.path].end_logp;
                self.finish(&mut finished, beam, end, typed);
            }
            let floor = Self::floor(finished.iter().map(|f| f.logp), max);
            // Candidates as (log-prob, beam, token, typed chars covered); only the best few
            // become beams.
            let mut candidates: Vec<(f32, usize, usize, usize)> = Vec::new();
            // A beam at or below the floor has no continuation above it: its scan is skipped.
            for (j, beam) in live.iter().enumerate().filter(|(_, b)| b.logp > floor) {
                let lp = &ctx.tree[&beam.path].next_logp;
                let rest = &typed[beam.covered..];
                for &t in v.continuations_for(rest) {
                    let logp = beam.logp + lp[t];
                    if logp > floor {
                        if let Some(n) = covers(rest, &v.folded[t]) {
                            candidates.push((logp, j, t, beam.covered + n));
                        }
                    }
                }
            }
            let width = self.config.beam_width;
            if candidates.len() > width {
                candidates.select_nth_unstable_by(width, |a, b| b.0.total_cmp(&a.0));
                candidates.truncate(width);
            }
            live = candidates
                .into_iter()
                .map(|(logp, j, t, covered)| {
                    let parent = &live[j];
                    let mut path = parent.path.clone();
                    path.push(t as u32);
                    Beam {
                        text: format!("{}{}", parent.text, v.text[t]),
                        covered,
                        logp,
                        path,
                    }
                })
                .collect();
        }
        finished.sort_by(|a, b| b.logp.total_cmp(&a.logp));
        Ok(finished)
    }

    /// Adds `beam` to `finished` as a word ending after it (log-probability `end_logp`) when it
    /// covers what was typed and may be shown. Blocked words (and forms no word is written in)
    /// are left out here, not after the search, so that they do not raise the floor below which
    /// beams are pruned: a strip of `max` shown words costs the same search with a blocklist as
    /// without.
    fn finish(&self, finished: &mut Vec<Found>, beam: &Beam, end_logp: f32, typed: &[char]) {
        if beam.covered == typed.len()
            && self.personal.may_show(&beam.text)
            && self.personal.plausible_form(&beam.text)
        {
            finished.push(Found {
                text: beam.text.clone(),
                logp: beam.logp + end_logp,
                path: beam.path.clone(),
            });
        }
    }

    /// The log-probability a word needs to make a strip of `max` words when the best words so
    /// far have log-probabilities `logps`: that of the `max`-th (-inf while there are fewer),
    /// and at least [`MIN_SHARE_OF_BEST`] of the best.
    fn floor(logps: impl Iterator<Item = f32>, max: usize) -> f32 {
        let mut logps: Vec<f32> = logps.collect();
        logps.sort_by(|a, b| b.total_cmp(a));
        let relative = logps
            .first()
            .map_or(f32::NEG_INFINITY, |best| best + MIN_SHARE_OF_BEST.ln());
        logps
            .get(max.saturating_sub(1))
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
            .max(relative)
    }

    /// Makes sure every path (all of one length, their prefixes decoded) is in the tree,
    /// decoding the missing ones in a single model call with tree attention: each new token
    /// sees the context, the earlier tokens of its own path, and itself.
    fn decode_paths<'a>(
        &self,
        ctx: &mut ContextState,
        paths: impl Iterator<Item = &'a Vec<u32>>,
    ) -> Result<()> {
        let missing: Vec<&Vec<u32>> = paths.filter(|p| !ctx.tree.contains_key(*p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let ctx_len = ctx.ids.len();
        let p = ctx.cache.len();
        let s = missing.len();
        let t = p + s;
        let ids: Vec<u32> = missing
            .iter()
            .map(|path| *path.last().expect("non-empty"))
            .collect();
        let positions: Vec<usize> = missing
            .iter()
            .map(|path| ctx_len + path.len() - 1)
            .collect();
        let mut bias = vec![MASKED; s * t];
        for (j, path) in missing.iter().enumerate() {
            let row = &mut bias[j * t..(j + 1) * t];
            row[..ctx_len].fill(0.0);
            for k in 1..path.len() {
                row[ctx.tree[&path[..k]].slot] = 0.0;
            }
            row[p + j] = 0.0;
        }
        let logits_at: Vec<usize> = (0..s).collect();
        let step = Step {
            ids: &ids,
            positions: &positions,
            bias: &bias,
            logits_at: &logits_at,
        };
        let (logits, cache) = self.lm.run(&ctx.cache, &step)?;
        ctx.cache = cache;
        let vocab_size = self.lm.vocab_size();
        for (j, path) in missing.into_iter().enumerate() {
            let next_logp = log_softmax(&logits[j * vocab_size..(j + 1) * vocab_size]);
            let end_logp = log_sum_exp(self.vocab.word_enders.iter().map(|&t| next_logp[t]));
            ctx.tree.insert(
                path.clone(),
                TreeNode {
                    slot: p + j,
                    next_logp,
                    end_logp,
                },
            );
        }
        Ok(())
    }
}

/// Most tokens of a word [`Predictor::score_words`] scores.
const MAX_SCORED_TOKENS: usize = 6;

/// The user's model and the corrections (see [`crate::personal`]).
impl Predictor {
    /// Learns text the user committed (words and word pairs); false when incognito, where
    /// nothing is learned or written. Acknowledged writes survive a crash.
    pub fn learn(&self, committed_text: &str) -> Result<bool> {
        self.personal.learn(committed_text)
    }

    /// Adds a word to the user's dictionary (kept until removed; allowed even if on the default
    /// offensive-word list); false when incognito.
    pub fn add_word(&self, word: &str) -> Result<bool> {
        self.personal.add_word(word)
    }

    /// Forgets a learned or added word; whether it was known (and not incognito).
    pub fn remove_word(&self, word: &str) -> Result<bool> {
        self.personal.remove_word(word)
    }

    /// The user's words, strongest first.
    pub fn list_learned_words(&self) -> Vec<LearnedWord> {
        self.personal.learned_words()
    }

    /// Forgets every learned and added word (blocks stay); false when incognito.
    pub fn clear_learned(&self) -> Result<bool> {
        self.personal.clear_learned()
    }

    /// Never suggests `word` again, in any casing; false when incognito.
    pub fn block_word(&self, word: &str) -> Result<bool> {
        self.personal.block_word(word)
    }

    /// Undoes [`Predictor::block_word`]; whether it was blocked (and not incognito).
    pub fn unblock_word(&self, word: &str) -> Result<bool> {
        self.personal.unblock_word(word)
    }

    /// The words the user blocked (folded).
    pub fn blocked_words(&self) -> Vec<String> {
        self.personal.blocked_words()
    }

    pub fn set_incognito(&self, on: bool) {
        self.personal.set_incognito(on)
    }

    pub fn incognito(&self) -> bool {
        self.personal.incognito()
    }

    /// Why the user's store could not be (fully) read when the predictor opened, if it could
    /// not: the bad file was renamed aside and learning went on from what was readable.
    pub fn user_store_problem(&self) -> Option<&crate::personal::StoreError> {
        self.personal.open_problem()
    }

    /// The search's words plus, when `typed` looks like a typo, corrections scored by the model.
    fn personal_candidates(
        &self,
        ctx: &mut ContextState,
        typed: &[char],
        model: Vec<(String, f32)>,
    ) -> Result<Candidates> {
        let typos = self.personal.correction_candidates(typed);
        let mut corrections = Vec::new();
        if !typos.is_empty() {
            let words: Vec<&str> = typos.iter().map(|(w, _)| w.as_str()).collect();
            let scores = self.score_words(ctx, &words)?;
            for ((word, cost), logp) in typos.into_iter().zip(scores) {
                if let Some(logp) = logp {
                    corrections.push((word, logp, cost));
                }
            }
        }
        Ok(Candidates { model, corrections })
    }

    /// Log-probability of each whole word after the context (its tokens, then a word end), for
    /// words the search was not asked about; `None` for a word that is not a word-start piece
    /// followed by continuation pieces, or has more than `MAX_SCORED_TOKENS`. One model call
    /// per token depth for all the words together, through the search's tree.
    fn score_words(&self, ctx: &mut ContextState, words: &[&str]) -> Result<Vec<Option<f32>>> {
        let v = &self.vocab;
        let paths: Vec<Option<Vec<u32>>> = words
            .iter()
            .map(|w| {
                let ids = self.tokenize(&format!(" {w}")).ok()?;
                let (first, rest) = ids.split_first()?;
                let pieces = ids.len() <= MAX_SCORED_TOKENS
                    && v.word_starts.binary_search(&(*first as usize)).is_ok()
                    && rest
                        .iter()
                        .all(|&t| v.continuations.binary_search(&(t as usize)).is_ok());
                pieces.then_some(ids)
            })
            .collect();
        // As in the search, a last token that nearly always ends its word is not decoded.
        let sure_end = |p: &[u32]| v.sure_end_logp(*p.last().expect("non-empty"));
        let longest = paths.iter().flatten().map(Vec::len).max().unwrap_or(0);
        for depth in 1..=longest {
            let prefixes: std::collections::BTreeSet<Vec<u32>> = paths
                .iter()
                .flatten()
                .filter(|p| p.len() > depth || (p.len() == depth && sure_end(p).is_none()))
                .map(|p| p[..depth].to_vec())
                .collect();
            self.decode_paths(ctx, prefixes.iter())?;
        }
        Ok(paths
            .iter()
            .map(|p| {
                let p = p.as_ref()?;
                let mut logp = ctx.next_logp[p[0] as usize];
                for k in 1..p.len() {
                    logp += ctx.tree[&p[..k]].next_logp[p[k] as usize];
                }
                let end = sure_end(p).unwrap_or_else(|| ctx.tree[&p[..]].end_logp);
                Some(logp + end)
            })
            .collect())
    }
}

/// A whole word the search found.
struct Found {
    text: String,
    /// Log-probability of the word after the context (its tokens, then a word end).
    logp: f32,
    /// Its tokens.
    path: Vec<u32>,
}

struct Beam {
    text: String,
    /// How many typed characters (folded) the beam's tokens cover.
    covered: usize,
    logp: f32,
    /// The beam's tokens.
    path: Vec<u32>,
}

/// How many chars of `typed` a token whose folded text is `piece` covers, if they agree.
fn covers(typed: &[char], piece: &[char]) -> Option<usize> {
    let n = typed.len().min(piece.len());
    (typed[..n] == piece[..n]).then_some(n)
}

fn log_sum_exp(xs: impl Iterator<Item = f32> + Clone) -> f32 {
    let m = xs.clone().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + xs.map(|x| (x - m).exp()).sum::<f32>().ln()
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let z = log_sum_exp(logits.iter().copied());
    logits.iter().map(|&x| x - z).collect()
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_prefixes() {
        let typed: Vec<char> = "tom".chars().collect();
        assert_eq!(covers(&typed, &['t', 'o']), Some(2));
        assert_eq!(
            covers(&typed, &"tomorrow".chars().collect::<Vec<_>>()),
            Some(3)
        );
        assert_eq!(covers(&typed, &['t', 'a']), None);
        assert_eq!(covers(&[], &['x']), Some(0));
    }

    fn fixture() -> Predictor {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture");
        Predictor::open(dir, Config::default()).unwrap()
    }

    #[test]
    fn window_keeps_its_start_until_full() {
        let p = fixture();
        let least = p.manifest.context_tokens;
        let all: Vec<u32> = (1..=60).collect();
        // Short contexts are read whole; with nothing before, the last `least` tokens.
        assert_eq!(p.window(&all[..least], None), &all[..least]);
        assert_eq!(p.window(&all[..40], None), &all[40 - least..40]);
        // A committed word extends the previous window instead of sliding it ...
        let prev = p.window(&all[..40], None).to_vec();
        assert_eq!(p.window(&all[..43], Some(&prev)), &all[40 - least..43]);
        let grown = &all[40 - least..40 + CONTEXT_SLACK];
        assert_eq!(p.window(&all[..40 + CONTEXT_SLACK], Some(&prev)), grown);
        // ... until it would pass `least + CONTEXT_SLACK` tokens: then the last `least` again.
        let end = 41 + CONTEXT_SLACK;
        assert_eq!(p.window(&all[..end], Some(grown)), &all[end - least..end]);
        // A previous context found nowhere in range does not move the window.
        assert_eq!(p.window(&all[..40], Some(&[99, 98])), &all[40 - least..40]);
    }

    #[test]
    fn cached_state_matches_a_fresh_forward_after_any_edit() {
        let p = fixture();
        let ids = p
            .tokenize("the cat sat on the mat and then it went home")
            .unwrap();
        let n = ids.len();
        assert!(n > 6);
        let edited = [&ids[..n - 3], &ids[1..3]].concat();
        // Extend, delete back, extend again, replace the tail, shrink to one token.
        let steps: [&[u32]; 5] = [&ids[..n - 2], &ids[..n], &ids[..n - 4], &edited, &ids[..1]];
        let mut state: Option<ContextState> = None;
        for step in steps {
            let warm = p.update_context(state.take(), step.to_vec()).unwrap();
            let fresh = p.update_context(None, step.to_vec()).unwrap();
            assert_eq!(warm.cache.len(), step.len());
            let worst = warm
                .next_logp
                .iter()
                .zip(&fresh.next_logp)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "{step:?}: logits differ by {worst}");
            state = Some(warm);
        }
    }

    /// The fixture bundle with a word-end table giving every token `byte`.
    fn fixture_with_word_ends(byte: u8) -> Predictor {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture");
        let mut bundle = Bundle::open(dir).unwrap();
        bundle.word_ends_bytes = Some(vec![byte; bundle.manifest.vocab_size]);
        Predictor::from_bundle(bundle, Config::default()).unwrap()
    }

    const TEXTS: [&str; 4] = ["the cat ", "the cat s", "I will see you to", "we"];

    #[test]
    fn a_word_end_table_without_estimates_changes_nothing() {
        let (plain, unknown) = (fixture(), fixture_with_word_ends(255));
        for text in TEXTS {
            let (a, b) = (
                plain.suggest(text, 3).unwrap(),
                unknown.suggest(text, 3).unwrap(),
            );
            assert!(!a.is_empty(), "{text:?}");
            assert_eq!(a, b, "{text:?}");
        }
    }

    /// With every token ending its word for sure, a next-word search finishes the best
    /// word starts without decoding any of them, at their own probability.
    #[test]
    fn words_that_surely_end_are_finished_without_a_model_call() {
        let p = fixture_with_word_ends(254);
        let found = p.suggest("the cat ", 3).unwrap();
        let guard = p.state.lock().unwrap();
        let state = guard.as_ref().unwrap();
        assert!(state.tree.is_empty(), "{} paths decoded", state.tree.len());
        assert!(!found.is_empty());
        for s in &found {
            let t = p
                .vocab
                .word_starts
                .iter()
                .find(|&&t| p.vocab.text[t] == s.text)
                .unwrap_or_else(|| panic!("{:?} is not one word-start token", s.text));
            let want = state.next_logp[*t].exp();
            assert!((s.score - want).abs() <= 1e-4 * want, "{s:?} vs {want}");
        }
    }

    #[test]
    fn a_word_end_table_of_the_wrong_size_is_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture");
        let mut bundle = Bundle::open(dir).unwrap();
        bundle.word_ends_bytes = Some(vec![254; 3]);
        let err = Predictor::from_bundle(bundle, Config::default()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidManifest(m) if m.contains("word-end table")),
            "{err}"
        );
    }

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0, -1e9]);
        let total: f32 = lp.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
