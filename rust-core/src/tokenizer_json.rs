//! `tokenizer.json` read into a [`Tokenizer`] in one pass over its BPE model.
//!
//! `Tokenizer::from_bytes` reads the `model` object through `ModelWrapper`'s deserializer,
//! which buffers the whole object (8,192 vocabulary strings and ~8,000 merges) into serde's
//! untagged-enum `Content`, copies it into a `serde_json::Value` to find its `"type"`, then
//! deserializes the BPE from that `Value`: three passes and three sets of allocations, ~60%
//! of the tokenizer's share of opening a bundle. Here the model is kept as raw JSON text and,
//! when it is a BPE (every nextword bundle's), read once, with the steps of `BPE`'s own
//! deserializer but without its buffering of the merges ([`BpeFile`]); every
//! other part goes through the same `tokenizers` types and the same builder steps as
//! `Tokenizer::from_bytes` (its `TokenizerImpl` deserializer, mirrored below), so the result
//! is the same tokenizer (tested: same serialization, same encodings). Any other model type
//! takes `Tokenizer::from_bytes` itself.

use ahash::AHashMap;
use serde::de::{self, Deserializer, Error as _, SeqAccess, Visitor};
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

/// The BPE model object, read as `BPE`'s own deserializer reads it (`BPEVisitor`, tokenizers'
/// `models/bpe/serialization.rs`) but for its merges: that one takes them through an untagged
/// enum (pairs, or legacy "a b" strings), which buffers all ~8,000 in serde's `Content` before
/// reading them again (~2.5 ms of a bundle's load); [`Merges`] reads either form as it comes.
#[derive(Deserialize)]
struct BpeFile {
    #[serde(default)]
    dropout: Option<f32>,
    #[serde(default)]
    unk_token: Option<String>,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    fuse_unk: Option<bool>,
    #[serde(default)]
    byte_fallback: Option<bool>,
    #[serde(default)]
    ignore_merges: Option<bool>,
    vocab: AHashMap<String, u32>,
    merges: Merges,
}

impl BpeFile {
    /// The builder steps of `BPEVisitor`: an option is set only where the file gives it.
    fn build(self) -> tokenizers::Result<BPE> {
        let mut builder = BPE::builder();
        if let Some(p) = self.dropout {
            builder = builder.dropout(p);
        }
        if let Some(unk) = self.unk_token {
            builder = builder.unk_token(unk);
        }
        if let Some(prefix) = self.continuing_subword_prefix {
            builder = builder.continuing_subword_prefix(prefix);
        }
        if let Some(suffix) = self.end_of_word_suffix {
            builder = builder.end_of_word_suffix(suffix);
        }
        if let Some(fuse) = self.fuse_unk {
            builder = builder.fuse_unk(fuse);
        }
        if let Some(fallback) = self.byte_fallback {
            builder = builder.byte_fallback(fallback);
        }
        if let Some(ignore) = self.ignore_merges {
            builder = builder.ignore_merges(ignore);
        }
        let merges = match self.merges {
            Merges::Pairs(pairs) => pairs,
            // As tokenizers' `convert_merges_to_hashmap`: `#version` lines skipped, each
            // other one exactly two parts.
            Merges::Legacy(lines) => lines
                .iter()
                .filter(|l| !l.starts_with("#version"))
                .enumerate()
                .map(
                    |(rank, line)| match line.split(' ').collect::<Vec<_>>()[..] {
                        [a, b] => Ok((a.to_string(), b.to_string())),
                        _ => Err(format!("merges text file invalid at line {}", rank + 1)),
                    },
                )
                .collect::<Result<_, _>>()?,
        };
        builder.vocab_and_merges(self.vocab, merges).build()
    }
}

/// A BPE's merges: a list of pairs, or of legacy "a b" strings (not both).
enum Merges {
    Pairs(Vec<(String, String)>),
    Legacy(Vec<String>),
}

impl<'de> Deserialize<'de> for Merges {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Merges, D::Error> {
        deserializer.deserialize_seq(MergesVisitor)
    }
}

struct MergesVisitor;

impl<'de> Visitor<'de> for MergesVisitor {
    type Value = Merges;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of merges: [a, b] pairs or \"a b\" strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Merges, A::Error> {
        let mut pairs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut legacy = Vec::new();
        while let Some(merge) = seq.next_element::<Merge>()? {
            match merge {
                Merge::Pair(a, b) if legacy.is_empty() => pairs.push((a, b)),
                Merge::Line(line) if pairs.is_empty() => legacy.push(line),
                _ => return Err(A::Error::custom("merges mix pairs and strings")),
            }
        }
        Ok(if legacy.is_empty() {
            Merges::Pairs(pairs)
        } else {
            Merges::Legacy(legacy)
        })
    }
}

/// One merge, in either form, read without buffering.
enum Merge {
    Pair(String, String),
    Line(String),
}

impl<'de> Deserialize<'de> for Merge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Merge, D::Error> {
        struct MergeVisitor;
        impl<'de> Visitor<'de> for MergeVisitor {
            type Value = Merge;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [a, b] pair or an \"a b\" string")
            }

            fn visit_str<E: de::Error>(self, line: &str) -> Result<Merge, E> {
                Ok(Merge::Line(line.to_string()))
            }

            fn visit_string<E: de::Error>(self, line: String) -> Result<Merge, E> {
                Ok(Merge::Line(line))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Merge, A::Error> {
                let a = seq.next_element()?;
                let b = seq.next_element()?;
                match (a, b, seq.next_element::<de::IgnoredAny>()?) {
                    (Some(a), Some(b), None) => Ok(Merge::Pair(a, b)),
                    _ => Err(A::Error::custom("a merge pair has two elements")),
                }
            }
        }
        deserializer.deserialize_any(MergeVisitor)
    }
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
    let model = serde_json::from_str::<BpeFile>(file.model.get())?.build()?;
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

    /// Merges as legacy "a b" strings read as the generic loader reads them; a list that mixes
    /// both forms, or a pair of three, is refused by both.
    #[test]
    fn legacy_merges_and_malformed_merges() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&bundle_tokenizer("models/fixture")).unwrap();
        let pairs = json["model"]["merges"].as_array().unwrap().clone();
        let line = |p: &serde_json::Value| {
            format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())
        };
        let legacy: Vec<serde_json::Value> = pairs.iter().map(|p| line(p).into()).collect();
        json["model"]["merges"] = legacy.clone().into();
        let bytes = serde_json::to_vec(&json).unwrap();
        let generic = Tokenizer::from_bytes(&bytes).unwrap();
        assert_eq!(
            parse(&bytes).unwrap().to_string(false).unwrap(),
            generic.to_string(false).unwrap()
        );
        let mut mixed = legacy;
        mixed[1] = pairs[1].clone();
        let mut triple = pairs.clone();
        triple[0] = serde_json::json!(["a", "b", "c"]);
        for merges in [mixed, triple] {
            json["model"]["merges"] = merges.into();
            let bytes = serde_json::to_vec(&json).unwrap();
            assert!(Tokenizer::from_bytes(&bytes).is_err());
            assert!(parse(&bytes).is_err());
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
