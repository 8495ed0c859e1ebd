//! Where keys sit on a keyboard, so that a typo between neighbouring keys costs less than one
//! between keys far apart. Layouts are data: rows of keys and each row's offset.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct KeyboardLayout {
    /// Key centre of each (lower-case) character, in key widths.
    positions: HashMap<char, (f32, f32)>,
    /// `neighbours` precomputed for ASCII keys, bit `b` of entry `a`: the typo scan asks it for
    /// every letter pair of every word of the word list on a typo keystroke, and hashing chars
    /// there took a fifth of such a keystroke.
    ascii_neighbours: Box<[u128; 128]>,
}

/// Keys whose centres are at most this far apart (in key widths) count as neighbours: on a
/// staggered layout that takes in the two keys beside and the two above and below.
const NEIGHBOUR_DISTANCE: f32 = 1.25;

impl KeyboardLayout {
    /// A layout from its rows, top to bottom, each with its horizontal offset in key widths.
    pub fn from_rows(rows: &[(&str, f32)]) -> Self {
        let mut positions = HashMap::new();
        for (y, (row, offset)) in rows.iter().enumerate() {
            for (x, c) in row.chars().enumerate() {
                positions.insert(c, (x as f32 + offset, y as f32));
            }
        }
        let mut ascii_neighbours = Box::new([0u128; 128]);
        for (a, bits) in ascii_neighbours.iter_mut().enumerate() {
            for b in 0..128u8 {
                if near(&positions, char::from(a as u8), char::from(b)) {
                    *bits |= 1 << b;
                }
            }
        }
        KeyboardLayout {
            positions,
            ascii_neighbours,
        }
    }

    pub fn qwerty() -> Self {
        Self::from_rows(&[
            ("1234567890", 0.0),
            ("qwertyuiop", 0.5),
            ("asdfghjkl", 0.75),
            ("zxcvbnm", 1.25),
        ])
    }

    /// Whether `a` and `b` are different keys next to each other.
    pub fn neighbours(&self, a: char, b: char) -> bool {
        if a.is_ascii() && b.is_ascii() {
            return self.ascii_neighbours[a as usize] >> (b as u32) & 1 == 1;
        }
        near(&self.positions, a, b)
    }
}

/// Whether `a` and `b` are different keys whose centres are at most [`NEIGHBOUR_DISTANCE`] apart.
fn near(positions: &HashMap<char, (f32, f32)>, a: char, b: char) -> bool {
    match (positions.get(&a), positions.get(&b)) {
        (Some(p), Some(q)) if a != b => {
            let (dx, dy) = (p.0 - q.0, p.1 - q.1);
            (dx * dx + dy * dy).sqrt() <= NEIGHBOUR_DISTANCE
        }
        _ => false,
    }
}

impl Default for KeyboardLayout {
    fn default() -> Self {
        Self::qwerty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwerty_neighbours() {
        let k = KeyboardLayout::qwerty();
        for (a, b) in [
            ('e', 'r'),
            ('e', 'w'),
            ('e', 'd'),
            ('e', 's'),
            ('g', 'b'),
            ('m', 'n'),
        ] {
            assert!(k.neighbours(a, b), "{a}{b}");
            assert!(k.neighbours(b, a), "{b}{a}");
        }
        for (a, b) in [('e', 'e'), ('q', 'p'), ('a', 'l'), ('e', 'x'), ('é', 'e')] {
            assert!(!k.neighbours(a, b), "{a}{b}");
        }
    }

    #[test]
    fn the_ascii_table_agrees_with_the_key_positions() {
        let qwertz = KeyboardLayout::from_rows(&[
            ("qwertzuiopü", 0.5),
            ("asdfghjklöä", 0.75),
            ("yxcvbnm", 1.25),
        ]);
        let keys: Vec<char> = (0..128u8).map(char::from).chain("üöäé".chars()).collect();
        let mut pairs = 0;
        for &a in &keys {
            for &b in &keys {
                let by_position = near(&qwertz.positions, a, b);
                assert_eq!(qwertz.neighbours(a, b), by_position, "{a:?} {b:?}");
                pairs += usize::from(by_position);
            }
        }
        assert!(qwertz.neighbours('p', 'ü') && qwertz.neighbours('ö', 'ä') && pairs > 80);
    }

    #[test]
    fn other_layouts_are_data() {
        let azerty = KeyboardLayout::from_rows(&[
            ("azertyuiop", 0.5),
            ("qsdfghjklm", 0.75),
            ("wxcvbn", 1.25),
        ]);
        assert!(azerty.neighbours('a', 'z') && azerty.neighbours('a', 'q'));
        assert!(!azerty.neighbours('m', 'o') && !azerty.neighbours('a', 'w'));
        // On QWERTY, 'a' and 'm' are far apart; on AZERTY 'm' ends the middle row next to 'l'.
        assert!(!KeyboardLayout::qwerty().neighbours('l', 'm') && azerty.neighbours('l', 'm'));
    }
}
