//! Typo-tolerant completion: words whose beginning is a few cheap edits away from what was
//! typed, with edits between neighbouring keys, doubled letters and swapped letters cheaper than
//! others. The predictor then ranks the candidates with the language model.

use super::layout::KeyboardLayout;

/// Cost of each kind of edit, in units of an ordinary one.
const NEIGHBOUR_SUBSTITUTION: f32 = 0.5;
const SWAP: f32 = 0.6;
/// A typed letter repeating the one before it, or next to it on the keyboard (a double tap or
/// a finger brushing two keys).
const SLIP_INSERTION: f32 = 0.5;

/// Cost of typing nothing for `word[j - 1]`: a doubled letter typed once is a common slip.
fn omission(word: &[char], j: usize) -> f32 {
    if j >= 2 && word[j - 1] == word[j - 2] {
        SLIP_INSERTION
    } else {
        1.0
    }
}

/// Largest total cost accepted for a typed word of `len` characters: one edit for short words,
/// two for long ones (where a slip is likelier and the word stays recognisable).
pub fn max_cost(len: usize) -> f32 {
    match len {
        0..=1 => 0.0,
        2..=4 => 1.0,
        5..=7 => 1.5,
        _ => 2.0,
    }
}

/// Longest row of [`prefix_cost`]'s table kept on the stack.
const STACK_ROW: usize = 64;

/// Least cost of editing `typed` into some prefix of `word` (both folded), when it is at most
/// `max`: an optimal string alignment distance (substitutions, insertions, deletions, swaps of
/// two adjacent letters) with keyboard-aware costs, where the rest of `word` is free because
/// the user has not typed it yet.
pub fn prefix_cost(
    layout: &KeyboardLayout,
    typed: &[char],
    word: &[char],
    max: f32,
) -> Option<f32> {
    let n = typed.len();
    if word.len() + 1 < n {
        return None;
    }
    let m = word.len().min(n + max.ceil() as usize);
    // d[i][j]: cost of typed[..i] against word[..j]; three rows kept for swaps. On the stack
    // for words of usual length: this runs for every word of the lexicon on a typo keystroke.
    let mut stack = [0f32; 3 * STACK_ROW];
    let mut heap = Vec::new();
    let rows: &mut [f32] = if m < STACK_ROW {
        &mut stack[..3 * (m + 1)]
    } else {
        heap.resize(3 * (m + 1), 0f32);
        &mut heap
    };
    let (mut prev2, rest) = rows.split_at_mut(m + 1);
    let (mut prev, mut cur) = rest.split_at_mut(m + 1);
    for (j, d) in prev.iter_mut().enumerate() {
        *d = j as f32;
    }
    for i in 1..=n {
        let t = typed[i - 1];
        let insertion = if i >= 2 && (typed[i - 2] == t || layout.neighbours(typed[i - 2], t)) {
            SLIP_INSERTION
        } else {
            1.0
        };
        cur[0] = prev[0] + insertion;
        let mut row_min = cur[0];
        for j in 1..=m {
            let w = word[j - 1];
            let substitution = if t == w {
                0.0
            } else if layout.neighbours(t, w) {
                NEIGHBOUR_SUBSTITUTION
            } else {
                1.0
            };
            let mut d = (prev[j - 1] + substitution)
                .min(prev[j] + insertion)
                .min(cur[j - 1] + omission(word, j));
            if i >= 2 && j >= 2 && t == word[j - 2] && typed[i - 2] == w && t != w {
                d = d.min(prev2[j - 2] + SWAP);
            }
            cur[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    // Only a prefix of the word need match, but one at least as long as the typed word less
    // one letter: "th" is no correction of "thx".
    let best = prev
        .iter()
        .skip(n.saturating_sub(1).min(m))
        .copied()
        .fold(f32::INFINITY, f32::min);
    (best <= max).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(typed: &str, word: &str) -> Option<f32> {
        let t: Vec<char> = typed.chars().collect();
        let w: Vec<char> = word.chars().collect();
        prefix_cost(&KeyboardLayout::qwerty(), &t, &w, max_cost(t.len()))
    }

    #[test]
    fn exact_prefixes_cost_nothing() {
        assert_eq!(cost("tom", "tomorrow"), Some(0.0));
        assert_eq!(cost("tomorrow", "tomorrow"), Some(0.0));
    }

    #[test]
    fn keyboard_aware_costs() {
        // 'r' for 'e' (neighbours) is cheaper than 'p' for 'e'.
        assert_eq!(cost("hrllo", "hello"), Some(NEIGHBOUR_SUBSTITUTION));
        assert_eq!(cost("hpllo", "hello"), Some(1.0));
        assert_eq!(cost("teh", "the"), Some(SWAP));
        assert_eq!(
            cost("tomorow", "tomorrow"),
            Some(SLIP_INSERTION),
            "doubled letter once"
        );
        assert_eq!(cost("tommorow", "tomorrow"), Some(2.0 * SLIP_INSERTION));
        assert_eq!(cost("tomorrpw", "tomorrow"), Some(NEIGHBOUR_SUBSTITUTION));
        assert_eq!(
            cost("tomm", "tomorrow"),
            Some(SLIP_INSERTION),
            "rest untyped is free"
        );
        assert_eq!(cost("recieve", "receive"), Some(SWAP));
        assert_eq!(cost("becuase", "because"), Some(SWAP));
    }

    #[test]
    fn too_far_is_rejected() {
        assert_eq!(cost("xyz", "the"), None);
        assert_eq!(cost("a", "b"), None, "one letter is never corrected");
        assert_eq!(cost("thx", "th"), Some(1.0));
        assert_eq!(
            cost("thx", "t"),
            None,
            "the word must cover the typed length less one"
        );
        assert_eq!(cost("qqqqqqqq", "tomorrow"), None);
    }
}
