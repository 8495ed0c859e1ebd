//! The FFI error: a handful of cases an app can act on, each with the core's message as reason.

use nextword_core::Error as CoreError;

#[derive(Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum NextwordError {
    /// The bundle directory or one of its files does not exist.
    #[error("bundle not found: {reason}")]
    BundleNotFound { reason: String },
    /// The bundle is not one this build can read: manifest, format version, tokenizer, model.
    #[error("invalid bundle: {reason}")]
    BundleInvalid { reason: String },
    /// A bundle file does not match its recorded hash or the bundle's signature does not
    /// verify: corrupted, truncated or modified.
    #[error("bundle tampered with: {reason}")]
    BundleTampered { reason: String },
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    #[error("inference failed: {reason}")]
    Inference { reason: String },
    #[error("I/O error: {reason}")]
    Io { reason: String },
    /// The user's store cannot be used: another predictor or process has it open for
    /// writing, or its directory cannot be written.
    #[error("user store: {reason}")]
    UserStore { reason: String },
    /// The predictor was closed; open a new one.
    #[error("predictor is closed: {reason}")]
    Closed { reason: String },
}

impl From<CoreError> for NextwordError {
    fn from(e: CoreError) -> Self {
        let reason = e.to_string();
        // Exhaustive on purpose: a new core error must be given its FFI case deliberately.
        match e {
            CoreError::MissingFile(_) => NextwordError::BundleNotFound { reason },
            CoreError::Io { .. } => NextwordError::Io { reason },
            CoreError::InvalidManifest(_)
            | CoreError::UnsupportedFormat { .. }
            | CoreError::VocabMismatch { .. }
            | CoreError::InvalidTokenizer(_)
            | CoreError::InvalidModel(_) => NextwordError::BundleInvalid { reason },
            CoreError::HashMismatch { .. } => NextwordError::BundleTampered { reason },
            CoreError::InvalidInput(_) => NextwordError::InvalidInput { reason },
            CoreError::Inference(_) => NextwordError::Inference { reason },
            CoreError::UserStore(_) => NextwordError::UserStore { reason },
            // Signature and encryption: the bundle is not what its publisher signed.
            CoreError::Unsigned
            | CoreError::MalformedSignature(_)
            | CoreError::UntrustedSigner { .. }
            | CoreError::BadSignature
            | CoreError::DecryptionFailed { .. } => NextwordError::BundleTampered { reason },
            // Keys are the app's input.
            CoreError::InvalidKey(_)
            | CoreError::WeightsKeyRequired { .. }
            | CoreError::WrongWeightsKey { .. } => NextwordError::InvalidInput { reason },
            CoreError::InvalidPack(_)
            | CoreError::InvalidDelta(_)
            | CoreError::DeltaBaseMismatch { .. } => NextwordError::BundleInvalid { reason },
            CoreError::Store { .. } => NextwordError::Io { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A core error and the test its FFI case must pass.
    type Case = (CoreError, fn(&NextwordError) -> bool);

    #[test]
    fn every_core_error_maps_to_its_case_and_keeps_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let cases: Vec<Case> = vec![
            (
                CoreError::MissingFile(PathBuf::from("b/manifest.json")),
                |e| matches!(e, NextwordError::BundleNotFound { .. }),
            ),
            (
                CoreError::Io {
                    path: PathBuf::from("b/model.onnx"),
                    source: io,
                },
                |e| matches!(e, NextwordError::Io { .. }),
            ),
            (CoreError::InvalidManifest("not JSON".into()), |e| {
                matches!(e, NextwordError::BundleInvalid { .. })
            }),
            (
                CoreError::UnsupportedFormat {
                    found: 9,
                    supported: 1,
                },
                |e| matches!(e, NextwordError::BundleInvalid { .. }),
            ),
            (
                CoreError::VocabMismatch {
                    tokenizer: 10,
                    model: 11,
                },
                |e| matches!(e, NextwordError::BundleInvalid { .. }),
            ),
            (CoreError::InvalidTokenizer("x".into()), |e| {
                matches!(e, NextwordError::BundleInvalid { .. })
            }),
            (CoreError::InvalidModel("x".into()), |e| {
                matches!(e, NextwordError::BundleInvalid { .. })
            }),
            (
                CoreError::HashMismatch {
                    file: "model.onnx".into(),
                },
                |e| matches!(e, NextwordError::BundleTampered { .. }),
            ),
            (CoreError::InvalidInput("x".into()), |e| {
                matches!(e, NextwordError::InvalidInput { .. })
            }),
            (CoreError::Inference("x".into()), |e| {
                matches!(e, NextwordError::Inference { .. })
            }),
        ];
        for (core, is_expected_case) in cases {
            let message = core.to_string();
            let ffi = NextwordError::from(core);
            assert!(is_expected_case(&ffi), "{message} mapped to {ffi:?}");
            assert!(ffi.to_string().ends_with(&message), "{ffi} lost {message}");
        }
    }
}
