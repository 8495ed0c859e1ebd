//! `tokenizer.json` read into a [`Tokenizer`] in one pass over its BPE model.
//!
//! `Tokenizer::from_bytes` reads the `model` object through `ModelWrapper`'s deserializer,
//! which buffers the whole object (8,192 vocabulary strings and ~8,000 merges) into serde's
//! untagged-enum `Content`, copies it into a `serde_json::Value` to find its `"type"`, then
//! deserializes the BPE from that `Value`: three passes and three sets of allocations, ~60%
//! of the tokenizer's share of opening a bundle. Here the model is kept as raw JSON text and,
//! when it is a BPE (every nextword bundle's), read once by `BPE`'s own deserializer; every
//! other part goes through the same `tokenizers` types and the same builder steps as
//! `Tokenizer::from_bytes` (its `TokenizerImpl` deserializer, mirrored below), so the result
//! is the same tokenizer (tested: same serialization, same encodings). Any other model type
//! takes `Tokenizer::from_bytes` itself.

use serde::Deserialize;
use serde_json::value::RawValue;
use tokenizers::models::bpe::BPE;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingParams,
    PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TruncationParams,
};

/// The builder `Tokenizer` (a `TokenizerImpl` of the wrapper types) is made with.
type Builder = TokenizerBuilder<
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The top level of `tokenizer.json` (format "1.0"), the model left unparsed.
#[derive(Deserialize)]
struct TokenizerFile<'a> {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    truncation: Option<TruncationParams>,
    #[serde(default)]
    padding: Option<PaddingParams>,
    #[serde(default)]
    added_tokens: Vec<AddedTokenWithId>,
    #[serde(default)]
    normalizer: Option<NormalizerWrapper>,
    #[serde(default)]
    pre_tokenizer: Option<PreTokenizerWrapper>,
    #[serde(default)]
    post_processor: Option<PostProcessorWrapper>,
    #[serde(default)]
    decoder: Option<DecoderWrapper>,
    #[serde(borrow)]
    model: &'a RawValue,
}

#[derive(Deserialize)]
struct AddedTokenWithId {
    id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

/// Just the model's `"type"`, to pick the direct path without reading the rest of it.
#[derive(Deserialize)]
struct ModelType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Parses `tokenizer.json` bytes; errors are the `tokenizers` / `serde_json` messages.
pub(crate) fn parse(bytes: &[u8]) -> tokenizers::Result<Tokenizer> {
    let file: TokenizerFile = serde_json::from_slice(bytes)?;
    if let Some(version) = file.version.as_deref().filter(|&v| v != "1.0") {
        return Err(format!("Unknown tokenizer version '{version}'").into());
    }
    let kind: ModelType = serde_json::from_str(file.model.get())?;
    if kind.kind.as_deref() != Some("BPE") {
        return Tokenizer::from_bytes(bytes);
    }
    let model: BPE = serde_json::from_str(file.model.get())?;
    let mut tokenizer: Tokenizer = Builder::new()
        .with_model(model.into())
        .with_normalizer(file.normalizer)
        .with_pre_tokenizer(file.pre_tokenizer)
        .with_post_processor(file.post_processor)
        .with_decoder(file.decoder)
        .with_truncation(file.truncation)
        .with_padding(file.padding)
        .build()?
        .into();
    for t in &file.added_tokens {
        if let Some(id) = tokenizer.token_to_id(&t.token.content) {
            if id != t.id {
                log::warn!(
                    "tokenizer: added token {:?} has id {} in the model, {} in the list",
                    t.token.content,
                    id,
                    t.id
                );
            }
        }
    }
    tokenizer.add_tokens(file.added_tokens.into_iter().map(|t| t.token))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_tokenizer(bundle: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read(root.join(bundle).join("tokenizer.json")).expect("bundle tokenizer")
    }

    /// Same tokenizer as `Tokenizer::from_bytes`: identical serialization (every component,
    /// vocabulary, merges, added tokens) and identical encodings of awkward text.
    #[test]
    fn same_tokenizer_as_the_generic_loader() {
        let texts = [
            "I will see you tomorrow",
            "  leading spaces and  double  spaces ",
            "don't WON'T I'm O'Neil",
            "naïve café — “quotes” … 😀 日本語",
            "<|bos|>hello<|bos|> world",
            "tabs\tand\nnewlines\r\n",
            "",
        ];
        for bundle in ["models/en", "models/fixture"] {
            let bytes = bundle_tokenizer(bundle);
            let fast = parse(&bytes).unwrap();
            let generic = Tokenizer::from_bytes(&bytes).unwrap();
            assert_eq!(
                fast.to_string(false).unwrap(),
                generic.to_string(false).unwrap(),
                "{bundle}"
            );
            for text in texts {
                let a = fast.encode(text, false).unwrap();
                let b = generic.encode(text, false).unwrap();
                assert_eq!(a.get_ids(), b.get_ids(), "{bundle}: {text:?}");
                assert_eq!(a.get_offsets(), b.get_offsets(), "{bundle}: {text:?}");
            }
        }
    }

    #[test]
    fn refuses_what_the_generic_loader_refuses() {
        let good = String::from_utf8(bundle_tokenizer("models/fixture")).unwrap();
        let bad = [
            String::new(),
            "{".to_string(),
            "[]".to_string(),
            good.replacen("\"version\": \"1.0\"", "\"version\": \"2.0\"", 1),
            good.replacen("\"model\"", "\"no_model\"", 1),
            good.replacen("\"merges\"", "\"merges\": 7, \"x\"", 1),
            good[..good.len() / 2].to_string(),
        ];
        for (i, text) in bad.iter().enumerate() {
            assert!(
                Tokenizer::from_bytes(text.as_bytes()).is_err(),
                "case {i}: the generic loader accepts it"
            );
            assert!(parse(text.as_bytes()).is_err(), "case {i}");
        }
    }

    /// A model that is not a BPE goes through the generic loader.
    #[test]
    fn other_models_take_the_generic_path() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2},
            "unk_token":"[UNK]"}}"#;
        let tokenizer = parse(json.as_bytes()).unwrap();
        let ids = tokenizer.encode("hello world there", false).unwrap();
        assert_eq!(ids.get_ids(), &[1, 2, 0]);
    }
}
