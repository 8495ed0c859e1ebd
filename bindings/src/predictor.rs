//! The `Predictor` object, its configuration and its results, as foreign code sees them.

use std::sync::{Arc, RwLock};

use nextword_core as core;

use crate::error::NextwordError;

/// Settings of the word search; `default_config()` gives the tuned defaults.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PredictorConfig {
    /// Beams kept at each depth of the word search.
    pub beam_width: u32,
    /// Longest word, in tokens, the search follows.
    pub max_word_tokens: u32,
    /// Directory for the user's learned words and blocks (app-private storage); `None` keeps
    /// them in memory only.
    pub user_dir: Option<String>,
    /// Start in incognito (see `Predictor::set_incognito`).
    pub incognito: bool,
    /// Never suggest words of the default offensive-word list (LDNOOBW, CC-BY-4.0).
    pub block_offensive: bool,
    /// Offer corrections when the typed word looks like a typo.
    pub typo_correction: bool,
    /// Also offer a two-word phrase (kind `Phrase`) when the model is confident of both words.
    pub phrases: bool,
}

impl From<PredictorConfig> for core::Config {
    fn from(c: PredictorConfig) -> Self {
        core::Config {
            beam_width: c.beam_width as usize,
            max_word_tokens: c.max_word_tokens as usize,
            user_dir: c.user_dir.map(Into::into),
            incognito: c.incognito,
            block_offensive: c.block_offensive,
            typo_correction: c.typo_correction,
            phrases: c.phrases,
            ..core::Config::default()
        }
    }
}

/// The core's defaults.
#[uniffi::export]
pub fn default_config() -> PredictorConfig {
    let c = core::Config::default();
    PredictorConfig {
        beam_width: u32::try_from(c.beam_width).unwrap_or(u32::MAX),
        max_word_tokens: u32::try_from(c.max_word_tokens).unwrap_or(u32::MAX),
        user_dir: None,
        incognito: c.incognito,
        block_offensive: c.block_offensive,
        typo_correction: c.typo_correction,
        phrases: c.phrases,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SuggestionKind {
    /// The cursor follows a space: the next word.
    NextWord,
    /// A word is being typed: words that start with what was typed.
    Completion,
    /// What was typed looks like a typo: a word a few keys away from it.
    Correction,
    /// Exactly what was typed, offered next to corrections.
    Verbatim,
    /// The top word and the word expected after it ("see you" → "tomorrow morning"), right
    /// after that word's own suggestion.
    Phrase,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Suggestion {
    pub text: String,
    /// Probability of the word given the text (not normalised over the suggestions).
    pub score: f32,
    pub kind: SuggestionKind,
}

impl From<core::Suggestion> for Suggestion {
    fn from(s: core::Suggestion) -> Self {
        Suggestion {
            text: s.text,
            score: s.score,
            kind: match s.kind {
                core::SuggestionKind::NextWord => SuggestionKind::NextWord,
                core::SuggestionKind::Completion => SuggestionKind::Completion,
                core::SuggestionKind::Correction => SuggestionKind::Correction,
                core::SuggestionKind::Verbatim => SuggestionKind::Verbatim,
                core::SuggestionKind::Phrase => SuggestionKind::Phrase,
            },
        }
    }
}

/// A word of the user's dictionary.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LearnedWord {
    pub word: String,
    /// How often it was typed, faded by how much was typed since.
    pub weight: f64,
    /// Added by hand (kept until removed).
    pub added: bool,
}

/// What a bundle holds, for an app's about screen or its logs.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ModelInfo {
    pub model_id: String,
    pub language: String,
    pub parameters: u64,
    pub vocab_size: u64,
}

/// An open model bundle. Safe to call from any thread; calls on one predictor run one at a
/// time inside the core (it keeps the last context's state), so an app uses one per keyboard.
#[derive(Debug, uniffi::Object)]
pub struct Predictor {
    /// `None` once closed. Calls clone the `Arc` and release the lock before running, so
    /// `close()` never waits for a running `suggest`; the model is freed when the last
    /// running call returns.
    open: RwLock<Option<Arc<core::Predictor>>>,
}

#[uniffi::export]
impl Predictor {
    /// Opens and verifies the bundle directory at `bundle_path`.
    #[uniffi::constructor]
    pub fn open(bundle_path: String, config: PredictorConfig) -> Result<Arc<Self>, NextwordError> {
        let predictor = core::Predictor::open(bundle_path, config.into())?;
        Ok(Arc::new(Predictor {
            open: RwLock::new(Some(Arc::new(predictor))),
        }))
    }

    /// Up to `max` ranked suggestions for the text before the cursor.
    pub fn suggest(
        &self,
        text_before_cursor: String,
        max: u32,
    ) -> Result<Vec<Suggestion>, NextwordError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let suggestions = self.core()?.suggest(&text_before_cursor, max)?;
        Ok(suggestions.into_iter().map(Suggestion::from).collect())
    }

    pub fn info(&self) -> Result<ModelInfo, NextwordError> {
        let predictor = self.core()?;
        let manifest = predictor.manifest();
        Ok(ModelInfo {
            model_id: manifest.model_id.clone(),
            language: manifest.language.clone(),
            parameters: manifest.model.parameters,
            vocab_size: manifest.vocab_size as u64,
        })
    }

    /// Learns text the user committed (call it on commit, not per keystroke); false when
    /// incognito, where nothing is learned or written.
    pub fn learn(&self, committed_text: String) -> Result<bool, NextwordError> {
        Ok(self.core()?.learn(&committed_text)?)
    }

    /// Adds a word to the user's dictionary; false when incognito.
    pub fn add_word(&self, word: String) -> Result<bool, NextwordError> {
        Ok(self.core()?.add_word(&word)?)
    }

    /// Forgets a learned or added word (long-press "forget"); whether it was known.
    pub fn remove_word(&self, word: String) -> Result<bool, NextwordError> {
        Ok(self.core()?.remove_word(&word)?)
    }

    /// The user's words, strongest first.
    pub fn list_learned_words(&self) -> Result<Vec<LearnedWord>, NextwordError> {
        Ok(self
            .core()?
            .list_learned_words()
            .into_iter()
            .map(|w| LearnedWord {
                word: w.word,
                weight: w.weight,
                added: w.added,
            })
            .collect())
    }

    /// Forgets every learned and added word (blocks stay); false when incognito.
    pub fn clear_learned(&self) -> Result<bool, NextwordError> {
        Ok(self.core()?.clear_learned()?)
    }

    /// Never suggests `word` again, in any casing (long-press "block").
    pub fn block_word(&self, word: String) -> Result<bool, NextwordError> {
        Ok(self.core()?.block_word(&word)?)
    }

    /// Allows a blocked word again; whether it was blocked.
    pub fn unblock_word(&self, word: String) -> Result<bool, NextwordError> {
        Ok(self.core()?.unblock_word(&word)?)
    }

    /// Incognito for this session (password fields, `IME_FLAG_NO_PERSONALIZED_LEARNING`):
    /// nothing is learned or written while on; suggestions still work.
    pub fn set_incognito(&self, on: bool) -> Result<(), NextwordError> {
        self.core()?.set_incognito(on);
        Ok(())
    }

    /// Releases the model. Every later call returns `NextwordError::Closed`; closing twice is
    /// harmless. Exported as `release()`: Kotlin's generated objects already have a `close()`
    /// (AutoCloseable), which frees the handle itself, after which calls throw untyped errors.
    #[uniffi::method(name = "release")]
    pub fn close(&self) {
        self.open
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

impl Predictor {
    fn core(&self) -> Result<Arc<core::Predictor>, NextwordError> {
        self.open
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| NextwordError::Closed {
                reason: "close() was called on this predictor".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn bundle(name: &str) -> String {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn default_config_is_the_cores() {
        let core_default = core::Config::default();
        assert_eq!(core::Config::from(default_config()), core_default);
    }

    #[test]
    fn suggests_then_every_call_after_close_is_a_closed_error() {
        let p = Predictor::open(bundle("fixture"), default_config()).expect("fixture opens");
        let words = p.suggest("the ".into(), 3).expect("suggest");
        assert!(!words.is_empty() && words.len() <= 3, "{words:?}");
        assert!(words.iter().all(|s| s.kind == SuggestionKind::NextWord));
        assert!(p.info().expect("info").vocab_size > 0);

        p.close();
        p.close();
        assert!(matches!(
            p.suggest("the ".into(), 3),
            Err(NextwordError::Closed { .. })
        ));
        assert!(matches!(p.info(), Err(NextwordError::Closed { .. })));
    }

    #[test]
    fn learning_api_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = PredictorConfig {
            user_dir: Some(dir.path().to_string_lossy().into_owned()),
            ..default_config()
        };
        let p = Predictor::open(bundle("fixture"), config.clone()).expect("fixture opens");
        assert!(p.learn("Saoirse says hi".into()).unwrap());
        assert!(p.add_word("Qwghlm".into()).unwrap());
        assert!(p.block_word("hi".into()).unwrap());
        let words: Vec<String> = p
            .list_learned_words()
            .unwrap()
            .into_iter()
            .map(|w| w.word)
            .collect();
        assert!(words.contains(&"Saoirse".to_string()) && words.contains(&"Qwghlm".to_string()));
        p.set_incognito(true).unwrap();
        assert!(!p.learn("secret".into()).unwrap());
        p.set_incognito(false).unwrap();
        assert!(p.remove_word("saoirse".into()).unwrap());
        assert!(p.unblock_word("HI".into()).unwrap());
        assert!(p.clear_learned().unwrap());
        assert!(p.list_learned_words().unwrap().is_empty());
        // A second predictor on the same store is a typed error while the first holds it.
        let err = Predictor::open(bundle("fixture"), config).unwrap_err();
        assert!(matches!(err, NextwordError::UserStore { .. }), "{err}");
        p.close();
        assert!(matches!(
            p.learn("x".into()),
            Err(NextwordError::Closed { .. })
        ));
    }

    #[test]
    fn missing_bundle_is_bundle_not_found() {
        let err = Predictor::open(bundle("no-such-bundle"), default_config()).unwrap_err();
        assert!(matches!(err, NextwordError::BundleNotFound { .. }), "{err}");
    }

    #[test]
    fn modified_bundle_file_is_bundle_tampered() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["manifest.json", "model.onnx", "tokenizer.json"] {
            std::fs::copy(
                PathBuf::from(bundle("fixture")).join(name),
                dir.path().join(name),
            )
            .unwrap();
        }
        let tokenizer = dir.path().join("tokenizer.json");
        let mut bytes = std::fs::read(&tokenizer).unwrap();
        bytes.push(b' ');
        std::fs::write(&tokenizer, bytes).unwrap();
        let err =
            Predictor::open(dir.path().to_string_lossy().into(), default_config()).unwrap_err();
        assert!(matches!(err, NextwordError::BundleTampered { .. }), "{err}");
    }
}
