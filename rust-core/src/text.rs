//! What the text before the cursor says about the suggestion wanted: the committed text the
//! model reads, the partial word being typed, and the casing a suggestion needs.

/// A word is a run of letters, digits and apostrophes (`nextword eval` counts words the same way).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '\u{2019}'
}

/// The committed text's tail the core tokenizes: enough for far more than the model's context
/// window, small enough that a 1 MB field costs nothing.
pub const TAIL_BYTES: usize = 400;

/// Longest partial word the core tries to complete; longer runs are not words a user types.
pub const MAX_PARTIAL_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis<'a> {
    /// Committed text (the partial word removed, trailing whitespace trimmed), possibly cut.
    pub context: &'a str,
    /// Whether `context` is the whole field's start (so the model may see a start-of-text mark).
    pub starts_field: bool,
    /// The partial word typed before the cursor ("" when the cursor follows a space).
    pub partial: &'a str,
    /// Whether the next word starts a sentence.
    pub sentence_start: bool,
}

pub fn analyse(text: &str) -> Analysis<'_> {
    let partial_start = text
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word_char(c))
        .last()
        .map_or(text.len(), |(i, _)| i);
    let partial = &text[partial_start..];
    let committed = text[..partial_start].trim_end();
    let mut cut = committed.len().saturating_sub(TAIL_BYTES);
    while !committed.is_char_boundary(cut) {
        cut += 1;
    }
    let mut context = &committed[cut..];
    if cut > 0 {
        // Start at a word boundary so the first token is not half a word.
        if let Some(sp) = context.find(char::is_whitespace) {
            context = context[sp..].trim_start();
        }
    }
    let sentence_start = match committed.chars().last() {
        None => true,
        Some(c) => matches!(c, '.' | '!' | '?' | '\n'),
    };
    Analysis {
        context,
        starts_field: cut == 0,
        partial,
        sentence_start,
    }
}

/// `s` with its first character upper-cased.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(f) => f.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Lower-cased characters of `s`, for case-insensitive prefix matching. ASCII text (nearly
/// every word of the English word list, folded at load) skips the Unicode case tables.
pub fn fold(s: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// [`fold`], appended to `out`.
pub fn fold_into(s: &str, out: &mut Vec<char>) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        out.extend(s.chars().flat_map(char::to_lowercase));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_word_after_space() {
        let a = analyse("I will see you ");
        assert_eq!(a.context, "I will see you");
        assert_eq!(a.partial, "");
        assert!(!a.sentence_start);
        assert!(a.starts_field);
    }

    #[test]
    fn partial_word() {
        let a = analyse("see you tom");
        assert_eq!((a.context, a.partial), ("see you", "tom"));
        let a = analyse("I don't");
        assert_eq!((a.context, a.partial), ("I", "don't"));
    }

    #[test]
    fn sentence_starts() {
        assert!(analyse("").sentence_start);
        assert!(analyse("Hello. ").sentence_start);
        assert!(analyse("Really? Th").sentence_start);
        assert!(!analyse("Hello, ").sentence_start);
    }

    #[test]
    fn long_text_is_cut_at_a_word_boundary() {
        let text = "héllo wörld ".repeat(100_000);
        let a = analyse(&text);
        assert!(!a.starts_field);
        assert!(a.context.len() <= TAIL_BYTES);
        assert!(a.context.starts_with("héllo") || a.context.starts_with("wörld"));
    }

    #[test]
    fn only_whitespace_and_punctuation() {
        let a = analyse("   \n\t ");
        assert_eq!((a.context, a.partial), ("", ""));
        let a = analyse("?!");
        assert_eq!((a.context, a.partial), ("?!", ""));
    }

    #[test]
    fn casing_helpers() {
        assert_eq!(capitalize("émile"), "Émile");
        assert_eq!(capitalize(""), "");
        assert_eq!(fold("ToM"), vec!['t', 'o', 'm']);
    }
}
