//! What each token of the vocabulary is, as far as words go: the core only ever offers whole
//! words, so it must know which tokens start a word, which continue one, and which end it.

use std::collections::HashMap;

use tokenizers::{DecoderWrapper, Tokenizer};

use crate::error::{Error, Result};
use crate::text::is_word_char;

/// Least share of a token's occurrences in the training text that end its word for the word
/// search to take that share instead of asking the model (see [`Vocab::sure_end_logp`]).
/// Measured on benches/heldout.txt and the test splits: see benches/README.md.
const SURE_END_SHARE: f32 = 0.98;
/// The word-end table's byte for a token without an estimate (too rare in the training text).
const NO_ESTIMATE: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Starts a word: a space then word characters ("Ġthe").
    WordStart,
    /// Continues a word: word characters only ("row" in "tomor|row").
    WordContinuation,
    /// Anything else (punctuation, a bare space, partial UTF-8 bytes, special tokens): it ends
    /// the word before it and never appears in a suggestion.
    Other,
}

#[derive(Debug)]
pub struct Vocab {
    /// Surface text of each word piece without its leading space (empty for `Other`).
    pub text: Vec<String>,
    /// `text` lower-cased, as chars, for prefix matching.
    pub folded: Vec<Vec<char>>,
    /// Ids of the `WordStart` pieces.
    pub word_starts: Vec<usize>,
    /// Ids of the `WordContinuation` pieces.
    pub continuations: Vec<usize>,
    /// Ids of the tokens that end a word when they follow it (all but continuations).
    pub word_enders: Vec<usize>,
    /// Per token, the log of the share of its occurrences in the training text that end its
    /// word (from the bundle's word-end table; all `None` without one or without an estimate).
    end_share_logp: Vec<Option<f32>>,
    /// `word_starts` and `continuations` by the first char of their folded text: a typed prefix
    /// only ever needs the tokens that start with its next char.
    word_starts_by_first: HashMap<char, Vec<usize>>,
    continuations_by_first: HashMap<char, Vec<usize>>,
}

impl Vocab {
    /// `word_ends`: the bundle's word-end table, one byte per token: `round(254 * share)`, or
    /// 255 where the training text had too few occurrences for an estimate.
    pub fn new(
        tokenizer: &Tokenizer,
        vocab_size: usize,
        word_ends: Option<&[u8]>,
    ) -> Result<Vocab> {
        let end_share_logp = match word_ends {
            None => vec![None; vocab_size],
            Some(table) if table.len() == vocab_size => table
                .iter()
                .map(|&b| (b != NO_ESTIMATE).then(|| (f32::from(b) / 254.0).ln()))
                .collect(),
            Some(table) => {
                return Err(Error::InvalidManifest(format!(
                    "the word-end table has {} entries for a vocabulary of {vocab_size}",
                    table.len()
                )))
            }
        };
        let mut pieces = Vec::with_capacity(vocab_size);
        let mut text = Vec::with_capacity(vocab_size);
        for decoded in token_texts(tokenizer, vocab_size) {
            let (piece, t) = match decoded {
                Some(s) if !s.contains('\u{FFFD}') => classify(&s),
                _ => (Piece::Other, String::new()),
            };
            pieces.push(piece);
            text.push(t);
        }
        let folded: Vec<Vec<char>> = text.iter().map(|t| crate::text::fold(t)).collect();
        let ids_of = |kind: Piece| -> Vec<usize> {
            (0..vocab_size).filter(|&t| pieces[t] == kind).collect()
        };
        let word_starts = ids_of(Piece::WordStart);
        let (continuations, word_enders): (Vec<usize>, Vec<usize>) =
            (0..vocab_size).partition(|&t| pieces[t] == Piece::WordContinuation);
        let by_first = |ids: &[usize]| {
            let mut map: HashMap<char, Vec<usize>> = HashMap::new();
            for &t in ids {
                if let Some(&c) = folded[t].first() {
                    map.entry(c).or_default().push(t);
                }
            }
            map
        };
        Ok(Vocab {
            word_starts_by_first: by_first(&word_starts),
            continuations_by_first: by_first(&continuations),
            text,
            word_starts,
            folded,
            continuations,
            word_enders,
            end_share_logp,
        })
    }

    /// Log of the share of token `t`'s occurrences in the training text that end its word.
    pub fn end_share_logp(&self, t: u32) -> Option<f32> {
        self.end_share_logp.get(t as usize).copied().flatten()
    }

    /// [`Vocab::end_share_logp`] where the share is at least [`SURE_END_SHARE`]: the word
    /// search then takes it for the probability that a word ends after `t`, with no model call.
    pub fn sure_end_logp(&self, t: u32) -> Option<f32> {
        self.end_share_logp(t).filter(|&l| l >= SURE_END_SHARE.ln())
    }

    /// Word-start tokens that may begin a word whose folded text starts with `typed`.
    pub fn word_starts_for(&self, typed: &[char]) -> &[usize] {
        Self::narrowed(&self.word_starts, &self.word_starts_by_first, typed)
    }

    /// Continuation tokens that may follow when `typed` (folded) is still to be covered.
    pub fn continuations_for(&self, typed: &[char]) -> &[usize] {
        Self::narrowed(&self.continuations, &self.continuations_by_first, typed)
    }

    fn narrowed<'a>(
        all: &'a [usize],
        by_first: &'a HashMap<char, Vec<usize>>,
        typed: &[char],
    ) -> &'a [usize] {
        match typed.first() {
            None => all,
            Some(c) => by_first.get(c).map_or(&[], Vec::as_slice),
        }
    }
}

fn classify(s: &str) -> (Piece, String) {
    let (word_start, rest) = match s.strip_prefix(' ') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if rest.is_empty() || !rest.chars().all(is_word_char) {
        return (Piece::Other, String::new());
    }
    let piece = if word_start {
        Piece::WordStart
    } else {
        Piece::WordContinuation
    };
    (piece, rest.to_string())
}

/// Each token's text as `tokenizer.decode(&[id], false)` gives it; `None` for special tokens
/// and ids the tokenizer does not know.
///
/// With a byte-level decoder (the bundles' tokenizers) the pieces are mapped back to their
/// bytes here, as that decoder does: the tokenizer's whole decode pipeline, 8,192 times, took
/// ~4 ms of the load. Other decoders go through the tokenizer.
fn token_texts(tokenizer: &Tokenizer, vocab_size: usize) -> Vec<Option<String>> {
    let byte_level = matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
    let table = byte_level_table();
    let added = tokenizer.get_added_vocabulary();
    (0..vocab_size as u32)
        .map(|id| {
            let token = tokenizer.id_to_token(id)?;
            if added.is_special_token(&token) {
                return None;
            }
            if !byte_level {
                return tokenizer.decode(&[id], false).ok();
            }
            // A piece with a char outside the byte alphabet stands for its own UTF-8 bytes.
            let mapped: Option<Vec<u8>> = token
                .chars()
                .map(|c| table.get(c as usize).copied().flatten())
                .collect();
            let bytes = mapped.unwrap_or_else(|| token.into_bytes());
            Some(String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

/// The byte-level alphabet (GPT-2's): printable Latin-1 bytes stand for themselves, the other
/// 68 bytes for the chars from U+0100 on, in byte order. Indexed by char, the byte it stands for.
fn byte_level_table() -> [Option<u8>; 256 + 68] {
    let mut table = [None; 256 + 68];
    let mut next = 256;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            usize::from(b)
        } else {
            next += 1;
            next - 1
        };
        table[c] = Some(b);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct byte-level mapping gives what the tokenizer's decode gives, for every token
    /// of both bundles.
    #[test]
    fn token_texts_match_the_tokenizers_decode() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for bundle in ["models/en", "models/fixture"] {
            let path = root.join(bundle).join("tokenizer.json");
            let Ok(tokenizer) = Tokenizer::from_file(&path) else {
                panic!("{} not found", path.display());
            };
            assert!(
                matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_))),
                "{bundle}: the direct path is the one under test"
            );
            let n = tokenizer.get_vocab_size(true);
            let texts = token_texts(&tokenizer, n);
            let mut special = 0;
            for (id, text) in texts.iter().enumerate() {
                let token = tokenizer.id_to_token(id as u32).unwrap();
                if tokenizer.get_added_vocabulary().is_special_token(&token) {
                    special += 1;
                    assert_eq!(text, &None);
                } else {
                    let want = tokenizer.decode(&[id as u32], false).unwrap();
                    assert_eq!(text.as_deref(), Some(want.as_str()), "token {id} {token:?}");
                }
            }
            assert!(
                special >= 1 && n > 200,
                "{bundle}: {n} tokens, {special} special"
            );
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(" the"), (Piece::WordStart, "the".into()));
        assert_eq!(classify("row"), (Piece::WordContinuation, "row".into()));
        assert_eq!(classify("'t"), (Piece::WordContinuation, "'t".into()));
        assert_eq!(classify(","), (Piece::Other, String::new()));
        assert_eq!(classify(" "), (Piece::Other, String::new()));
        assert_eq!(classify(" hello!"), (Piece::Other, String::new()));
    }
}
