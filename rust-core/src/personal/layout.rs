//! Where keys sit on a keyboard, so that a typo between neighbouring keys costs less than one
//! between keys far apart. Layouts are data: rows of keys and each row's offset.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct KeyboardLayout {
    /// Key centre of each (lower-case) character, in key widths.
    positions: HashMap<char, (f32, f32)>,
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
        KeyboardLayout { positions }
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
        match (self.positions.get(&a), self.positions.get(&b)) {
            (Some(p), Some(q)) if a != b => {
                let (dx, dy) = (p.0 - q.0, p.1 - q.1);
                (dx * dx + dy * dy).sqrt() <= NEIGHBOUR_DISTANCE
            }
            _ => false,
        }
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
