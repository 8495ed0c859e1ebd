//! What each token of the vocabulary is, as far as words go: the core only ever offers whole
//! words, so it must know which tokens start a word, which continue one, and which end it.

use std::collections::HashMap;

use tokenizers::Tokenizer;

use crate::text::is_word_char;

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
    /// `word_starts` and `continuations` by the first char of their folded text: a typed prefix
    /// only ever needs the tokens that start with its next char.
    word_starts_by_first: HashMap<char, Vec<usize>>,
    continuations_by_first: HashMap<char, Vec<usize>>,
}

impl Vocab {
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> Vocab {
        let mut pieces = Vec::with_capacity(vocab_size);
        let mut text = Vec::with_capacity(vocab_size);
        for id in 0..vocab_size as u32 {
            let special = tokenizer
                .get_added_vocabulary()
                .is_special_token(&tokenizer.id_to_token(id).unwrap_or_default());
            let decoded = if special {
                None
            } else {
                tokenizer.decode(&[id], false).ok()
            };
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
        Vocab {
            word_starts_by_first: by_first(&word_starts),
            continuations_by_first: by_first(&continuations),
            text,
            word_starts,
            folded,
            continuations,
            word_enders,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
