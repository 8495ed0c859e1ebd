//! nextword-core: on-device next-word prediction for mobile keyboards.
//!
//! A [`Predictor`] opens a verified model [`bundle`], runs its 4-bit decoder LM through tract
//! with nextword's own `MatMulNBits` op ([`ops`], [`kernels`]) and turns the text before the
//! cursor into ranked whole-word [`Suggestion`]s. See ARCHITECTURE.md for the keystroke path.

pub mod bundle;
pub mod encryption;
pub mod error;
pub mod kernels;
mod lm;
pub mod model_runner;
pub mod ops;
pub mod pack;
pub mod personal;
mod predictor;
mod text;
mod tokenizer_json;
pub mod trust;
pub mod update;
mod vocab;

pub use bundle::{Bundle, Manifest, ModelInfo};
pub use encryption::WeightsKey;
pub use error::{Error, Result};
pub use model_runner::{ModelCache, ModelRunner};
pub use ops::MatMulImpl;
pub use personal::{KeyboardLayout, LearnedWord, StoreError};
pub use predictor::{Config, Predictor, Suggestion, SuggestionKind, MAX_SUGGESTIONS};
pub use text::is_word_char;
pub use tract_onnx;
pub use trust::{Provenance, PublicKey, SecretKey, TrustPolicy};
