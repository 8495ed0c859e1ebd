//! Tokenizer and `suggest` on arbitrary text, on the tiny fixture bundle. Any input, valid
//! UTF-8 or not (lossily decoded as an app's text field would be), must give suggestions or a
//! typed error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nextword_core::{Config, Predictor};

fn predictor() -> &'static Predictor {
    static P: OnceLock<Predictor> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture");
        Predictor::open(dir, Config::default()).expect("fixture bundle opens")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = predictor();
    let _ = p.tokenize(&text);
    if let Ok(suggestions) = p.suggest(&text, 5) {
        assert!(suggestions.len() <= 5);
        for s in suggestions {
            assert!(!s.text.is_empty() && s.score.is_finite());
        }
    }
});
