//! The predictor end to end on the committed fixture bundle (models/fixture, made by
//! `python3 training/pipeline.py --tiny`) and, when present, the bundled English model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nextword_core::{Config, Error, MatMulImpl, Predictor, SuggestionKind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    root().join("models/fixture")
}

/// Bundles the tests run on: the fixture always, the English model once it is committed.
fn bundles() -> Vec<PathBuf> {
    let mut b = vec![fixture()];
    let en = root().join("models/en");
    if en.join("manifest.json").is_file() {
        b.push(en);
    }
    b
}

fn open(dir: &Path) -> Predictor {
    Predictor::open(dir, Config::default()).expect("bundle opens")
}

fn is_whole_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(nextword_core::is_word_char)
}

#[test]
fn next_words_are_whole_words() {
    for b in bundles() {
        let p = open(&b);
        for text in [
            "The cat ",
            "I will see you ",
            "",
            "Hello, ",
            "He said that ",
        ] {
            let s = p.suggest(text, 3).unwrap();
            assert_eq!(s.len(), 3, "{text:?} on {}", b.display());
            for x in &s {
                assert!(is_whole_word(&x.text), "{x:?}");
                assert_eq!(x.kind, SuggestionKind::NextWord);
                assert!(x.score > 0.0 && x.score <= 1.0);
            }
            assert!(s.windows(2).all(|w| w[0].score >= w[1].score), "ranked");
        }
    }
}

#[test]
fn completions_extend_the_typed_prefix() {
    for b in bundles() {
        let p = open(&b);
        for (text, prefix) in [
            ("I will see you tom", "tom"),
            ("The ca", "ca"),
            ("wh", "wh"),
            ("It is n", "n"),
        ] {
            let s = p.suggest(text, 5).unwrap();
            assert!(!s.is_empty(), "{text:?}");
            for x in &s {
                assert!(
                    x.text.to_lowercase().starts_with(prefix),
                    "{x:?} for {text:?}"
                );
                assert!(is_whole_word(&x.text));
                assert_eq!(x.kind, SuggestionKind::Completion);
            }
        }
    }
}

#[test]
fn completions_are_written_as_words() {
    // Prefixes no likely word starts with: the search's best pieces made "tMRW" and "TMRwise"
    // of "tmrw" before forms no word is written in were left out.
    for b in bundles() {
        let p = open(&b);
        for text in ["see you tmrw", "hello xqz", "I love qwrt", "ok grr"] {
            let s = p.suggest(text, 5).unwrap();
            for x in s.iter().filter(|x| x.kind == SuggestionKind::Completion) {
                let mut letters = x.text.chars().filter(|c| c.is_alphabetic());
                let first_lower = letters.next().is_some_and(char::is_lowercase);
                let rest: Vec<char> = letters.collect();
                let upper = rest.iter().any(|c| c.is_uppercase());
                let lower = rest.iter().any(|c| c.is_lowercase());
                assert!(!(upper && (lower || first_lower)), "{x:?} for {text:?}");
            }
        }
    }
}

#[test]
fn casing_follows_the_text() {
    let p = open(&fixture());
    // Sentence start: capitalised next words.
    for x in p.suggest("It rained. ", 3).unwrap() {
        assert!(x.text.chars().next().unwrap().is_uppercase(), "{x:?}");
    }
    // A typed capital is kept.
    for x in p.suggest("I saw Th", 3).unwrap() {
        assert!(x.text.starts_with("Th"), "{x:?}");
    }
}

#[test]
fn odd_inputs_never_fail() {
    let p = open(&fixture());
    let huge = "lorem ipsum dolor ".repeat(60_000); // ~1 MB
    let cases = [
        "",
        " ",
        "   \n\t",
        "😀",
        "😀 ",
        "Привет как",
        "你好",
        "a\u{0}b\u{7}",
        "\u{301}",
        "'''",
        "...",
        "x".repeat(5000).leak(),
        huge.as_str(),
        "e\u{301}",
        "don'",
        "123 45",
    ];
    for text in cases {
        let s = p
            .suggest(text, 3)
            .unwrap_or_else(|e| panic!("{text:.20?}: {e}"));
        for x in s {
            assert!(is_whole_word(&x.text), "{x:?} for {text:.20?}");
        }
    }
    assert!(p.suggest("The cat ", 0).unwrap().is_empty());
    assert!(p.suggest("The cat ", 1000).unwrap().len() <= nextword_core::MAX_SUGGESTIONS);
}

#[test]
fn cache_reuse_gives_the_same_answers_as_a_fresh_start() {
    let typed = "The cat sat on the mat and then";
    let warm = open(&fixture());
    let mut last = Vec::new();
    for i in 1..=typed.len() {
        last = warm.suggest(&typed[..i], 3).unwrap();
    }
    let fresh = open(&fixture()).suggest(typed, 3).unwrap();
    assert_eq!(last.len(), fresh.len());
    for (a, b) in last.iter().zip(&fresh) {
        assert_eq!(a.text, b.text);
        assert!(
            (a.score - b.score).abs() <= 1e-4 * b.score.max(1e-6),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn our_op_agrees_with_tracts_builtin() {
    for b in bundles() {
        let ours = open(&b);
        let builtin = Predictor::open(
            &b,
            Config {
                matmul: MatMulImpl::TractBuiltin,
                ..Config::default()
            },
        )
        .unwrap();
        let ids = ours
            .tokenize("I think we should meet tomorrow at the station before")
            .unwrap();
        let a = ours.next_token_logprobs(&ids).unwrap();
        let c = builtin.next_token_logprobs(&ids).unwrap();
        let top = |v: &[f32]| {
            let mut i: Vec<usize> = (0..v.len()).collect();
            i.sort_by(|&x, &y| v[y].total_cmp(&v[x]));
            i.truncate(5);
            i
        };
        let (ta, tc) = (top(&a), top(&c));
        let shared = ta.iter().filter(|i| tc.contains(i)).count();
        assert!(shared >= 4, "top-5 {ta:?} vs {tc:?}");
        // W4A8 (ours) vs tract's float activations: log-probs of the top tokens stay close.
        for &i in &ta {
            assert!(
                (a[i] - c[i]).abs() < 0.15,
                "token {i}: {} vs {}",
                a[i],
                c[i]
            );
        }
    }
}

#[test]
fn one_predictor_serves_many_threads() {
    let p = Arc::new(open(&fixture()));
    let texts = [
        "The cat ",
        "I will see you tom",
        "He said ",
        "wh",
        "It is n",
    ];
    let expected: Vec<Vec<String>> = texts
        .iter()
        .map(|t| {
            p.suggest(t, 3)
                .unwrap()
                .into_iter()
                .map(|s| s.text)
                .collect()
        })
        .collect();
    let handles: Vec<_> = (0..8)
        .map(|k| {
            let p = p.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let j = (i + k) % texts.len();
                    let got: Vec<String> = p
                        .suggest(texts[j], 3)
                        .unwrap()
                        .into_iter()
                        .map(|s| s.text)
                        .collect();
                    assert_eq!(got, expected[j]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no panic");
    }
}

#[test]
fn rust_tokenizer_gives_python_ids() {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("rust-core/tests/fixtures/tokenizer_ids.json"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for (bundle, list) in cases.as_object().unwrap() {
        let p = open(&root().join(bundle));
        for case in list.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(p.tokenize(text).unwrap(), want, "{bundle}: {text:?}");
            checked += 1;
        }
    }
    assert!(checked >= 16);
}

// ---- bundles that must be refused ----

fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["manifest.json", "model.onnx", "tokenizer.json"] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(path, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn rehash(dir: &Path, file: &str) {
    let hash = nextword_core::bundle::sha256_hex(&std::fs::read(dir.join(file)).unwrap());
    edit_manifest(dir, |m| m["files"][file] = hash.into());
}

fn open_err(dir: &Path) -> Error {
    Predictor::open(dir, Config::default()).expect_err("must be refused")
}

#[test]
fn missing_bundle_or_file() {
    assert!(matches!(
        open_err(Path::new("/nonexistent/bundle")),
        Error::MissingFile(_)
    ));
    let d = copy_fixture();
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    assert!(matches!(open_err(d.path()), Error::MissingFile(p) if p.ends_with("tokenizer.json")));
}

#[test]
fn tampered_or_truncated_files() {
    let d = copy_fixture();
    let model = d.path().join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    assert!(matches!(open_err(d.path()), Error::HashMismatch { file } if file == "model.onnx"));
    std::fs::write(&model, &bytes[..mid]).unwrap();
    assert!(matches!(open_err(d.path()), Error::HashMismatch { .. }));
}

#[test]
fn manifest_problems() {
    let d = copy_fixture();
    edit_manifest(d.path(), |m| m["format_version"] = 99.into());
    assert!(matches!(
        open_err(d.path()),
        Error::UnsupportedFormat {
            found: 99,
            supported: 1
        }
    ));

    let d = copy_fixture();
    std::fs::write(d.path().join("manifest.json"), b"{not json").unwrap();
    assert!(matches!(open_err(d.path()), Error::InvalidManifest(_)));

    let d = copy_fixture();
    edit_manifest(d.path(), |m| {
        let h = m["files"]["model.onnx"].clone();
        m["files"]["../model.onnx"] = h;
    });
    assert!(matches!(open_err(d.path()), Error::InvalidManifest(_)));

    let d = copy_fixture();
    edit_manifest(d.path(), |m| {
        m["files"].as_object_mut().unwrap().remove("model.onnx");
    });
    assert!(matches!(open_err(d.path()), Error::InvalidManifest(_)));
}

#[test]
fn word_end_table_problems() {
    // Named by the manifest but not listed with a hash.
    let d = copy_fixture();
    edit_manifest(d.path(), |m| m["word_ends"] = "word_ends.bin".into());
    assert!(matches!(open_err(d.path()), Error::InvalidManifest(m) if m.contains("word_ends.bin")));
    // Listed, hashed, but of the wrong length.
    std::fs::write(d.path().join("word_ends.bin"), [254u8; 100]).unwrap();
    rehash(d.path(), "word_ends.bin");
    assert!(
        matches!(open_err(d.path()), Error::InvalidManifest(m) if m.contains("word-end table"))
    );
    // Well formed it loads; changed after hashing or missing, it is refused.
    std::fs::write(d.path().join("word_ends.bin"), [254u8; 512]).unwrap();
    rehash(d.path(), "word_ends.bin");
    Predictor::open(d.path(), Config::default()).expect("a well-formed table loads");
    std::fs::write(d.path().join("word_ends.bin"), [253u8; 512]).unwrap();
    assert!(matches!(open_err(d.path()), Error::HashMismatch { file } if file == "word_ends.bin"));
    std::fs::remove_file(d.path().join("word_ends.bin")).unwrap();
    assert!(matches!(open_err(d.path()), Error::MissingFile(_)));
}

#[test]
fn vocabulary_mismatch() {
    let d = copy_fixture();
    edit_manifest(d.path(), |m| m["vocab_size"] = 1000.into());
    assert!(matches!(
        open_err(d.path()),
        Error::VocabMismatch {
            tokenizer: 512,
            model: 1000
        }
    ));
}

#[test]
fn not_onnx_or_not_a_tokenizer() {
    let d = copy_fixture();
    std::fs::write(d.path().join("model.onnx"), b"this is not a protobuf model").unwrap();
    rehash(d.path(), "model.onnx");
    assert!(matches!(open_err(d.path()), Error::InvalidModel(_)));

    let d = copy_fixture();
    std::fs::write(d.path().join("tokenizer.json"), b"{}").unwrap();
    rehash(d.path(), "tokenizer.json");
    assert!(matches!(open_err(d.path()), Error::InvalidTokenizer(_)));
}
