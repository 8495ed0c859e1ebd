//! Personal suggestions on the bundled English model: learned words (including ones the model
//! spells with several pieces), persistence, incognito, blocklists and typo corrections.

use std::path::{Path, PathBuf};

use nextword_core::{Config, Predictor, Suggestion, SuggestionKind};

fn english() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/en")
}

fn open(config: Config) -> Predictor {
    Predictor::open(english(), config).expect("models/en opens")
}

fn texts(s: &[Suggestion]) -> Vec<&str> {
    s.iter().map(|x| x.text.as_str()).collect()
}

#[test]
fn a_word_typed_twice_is_offered_for_its_prefix() {
    let p = open(Config::default());
    assert!(
        p.tokenize(" Saoirse").unwrap().len() > 1,
        "the model spells it with several pieces"
    );
    let before = p.suggest("I had lunch with Sao", 3).unwrap();
    assert!(!texts(&before).contains(&"Saoirse"), "{before:?}");
    assert!(p.learn("I had lunch with Saoirse.").unwrap());
    assert!(p.learn("Saoirse says hello").unwrap());
    for text in [
        "I had lunch with Sao",
        "I had lunch with sao",
        "see you and Saoi",
    ] {
        let after = p.suggest(text, 3).unwrap();
        assert!(texts(&after).contains(&"Saoirse"), "{text:?}: {after:?}");
    }
    // Learned pairs make it a next word too.
    let next = p.suggest("I had lunch with ", 3).unwrap();
    assert!(texts(&next).contains(&"Saoirse"), "{next:?}");
    assert!(p.remove_word("saoirse").unwrap());
    let gone = p.suggest("I had lunch with Sao", 3).unwrap();
    assert!(!texts(&gone).contains(&"Saoirse"), "{gone:?}");
}

#[test]
fn learned_words_persist_and_incognito_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        user_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    {
        let p = open(config.clone());
        p.learn("Meet me at Ballyhooly").unwrap();
        p.add_word("Qwghlm").unwrap();
    }
    let p = open(config.clone());
    assert!(p.user_store_problem().is_none());
    let s = p.suggest("we drove to Bally", 3).unwrap();
    assert!(texts(&s).contains(&"Ballyhooly"), "{s:?}");
    let s = p.suggest("the Qwg", 3).unwrap();
    assert!(texts(&s).contains(&"Qwghlm"), "{s:?}");
    drop(p);

    let p = open(Config {
        incognito: true,
        ..config.clone()
    });
    let files_before = std::fs::read_dir(dir.path()).unwrap().count();
    let journal = dir.path().join("user.journal");
    let journal_before = std::fs::read(&journal).unwrap();
    assert!(!p.learn("my password is Zyxxorb").unwrap());
    assert!(!p.add_word("Zyxxorb").unwrap());
    let s = p.suggest("it is Zyx", 3).unwrap();
    assert!(!texts(&s).contains(&"Zyxxorb"), "{s:?}");
    let s = p.suggest("we drove to Bally", 3).unwrap();
    assert!(
        texts(&s).contains(&"Ballyhooly"),
        "suggestions still use the store: {s:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), files_before);
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before);
}

#[test]
fn a_corrupt_store_is_reported_set_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user.json"), b"{\"version\": 1, \"trunc").unwrap();
    let p = open(Config {
        user_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    });
    let problem = p.user_store_problem().expect("reported").to_string();
    assert!(problem.contains("corrupt"), "{problem}");
    assert!(p.suggest("I will see you ", 3).unwrap().len() == 3);
    assert!(p.learn("still learning").unwrap());
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("user.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
}

/// Contexts where the model may offer a word of the default list, and those words.
const OFFENSIVE: [(&str, &str); 6] = [
    ("the rights of the Neg", "negro"),
    ("they talked about se", "sex"),
    ("this really su", "sucks"),
    ("you stupid bas", "bastard"),
    ("oh sh", "shit"),
    ("what the fu", "fuck"),
];

#[test]
fn default_blocklist_hides_offensive_words_in_every_casing() {
    let unfiltered = open(Config {
        block_offensive: false,
        ..Config::default()
    });
    let p = open(Config::default());
    let mut offered_unfiltered = 0;
    for (context, word) in OFFENSIVE {
        let raw = unfiltered.suggest(context, 5).unwrap();
        offered_unfiltered += usize::from(raw.iter().any(|s| s.text.to_lowercase() == word));
        for text in [context.to_string(), context.to_uppercase()] {
            let s = p.suggest(&text, 5).unwrap();
            assert!(
                s.iter().all(|x| x.text.to_lowercase() != word),
                "{text:?}: {s:?}"
            );
            if text == context {
                // The blocked word's slot is refilled when the search has another word to
                // show (not one below the floor for unlisted words).
                let others = raw.iter().filter(|x| x.text.to_lowercase() != word).count();
                assert!(
                    s.len() >= others,
                    "the strip keeps the others: {s:?} {raw:?}"
                );
            }
        }
    }
    assert!(
        offered_unfiltered >= 1,
        "the model offers some of them unfiltered"
    );
}

#[test]
fn user_blocked_words_are_never_suggested() {
    let p = open(Config::default());
    let s = p.suggest("I will see you tom", 3).unwrap();
    assert!(texts(&s).contains(&"tomorrow"), "{s:?}");
    p.block_word("Tomorrow").unwrap();
    for text in [
        "I will see you tom",
        "I will see you Tom",
        "I will see you tomorr",
        "see you ",
    ] {
        let s = p.suggest(text, 5).unwrap();
        assert!(
            s.iter().all(|x| x.text.to_lowercase() != "tomorrow"),
            "{text:?}: {s:?}"
        );
    }
    p.learn("see you tomorrow").unwrap();
    let s = p.suggest("I will see you tom", 5).unwrap();
    assert!(
        s.iter().all(|x| x.text.to_lowercase() != "tomorrow"),
        "learning does not unblock: {s:?}"
    );
    assert!(p.unblock_word("tomorrow").unwrap());
    let s = p.suggest("I will see you tom", 3).unwrap();
    assert!(texts(&s).contains(&"tomorrow"), "{s:?}");
}

#[test]
fn typos_get_corrections_ranked_by_the_model_and_keep_what_was_typed() {
    let p = open(Config::default());
    for (text, typed, want) in [
        ("I will see you tommorow", "tommorow", "tomorrow"),
        ("I don't know becuase", "becuase", "because"),
        ("What do you thimk", "thimk", "think"),
    ] {
        let s = p.suggest(text, 3).unwrap();
        let correction = s
            .iter()
            .find(|x| x.kind == SuggestionKind::Correction)
            .unwrap_or_else(|| panic!("{text:?}: {s:?}"));
        assert_eq!(correction.text, want, "{text:?}: {s:?}");
        assert!(
            s.iter()
                .any(|x| x.kind == SuggestionKind::Verbatim && x.text == typed),
            "{text:?}: {s:?}"
        );
    }
    let s = p.suggest("I will see you Tommorow", 3).unwrap();
    assert!(
        texts(&s).contains(&"Tomorrow"),
        "casing follows the typed word: {s:?}"
    );
    // Ordinary prefixes are completed, not corrected.
    let s = p.suggest("I will see you tomor", 3).unwrap();
    assert!(
        s.iter().all(|x| x.kind == SuggestionKind::Completion),
        "{s:?}"
    );
    let off = open(Config {
        typo_correction: false,
        ..Config::default()
    });
    let s = off.suggest("I will see you tommorow", 3).unwrap();
    assert!(
        s.iter().all(|x| x.kind == SuggestionKind::Completion),
        "{s:?}"
    );
}

fn with_phrases() -> Predictor {
    open(Config {
        phrases: true,
        ..Config::default()
    })
}

#[test]
fn a_confident_phrase_follows_its_first_word() {
    let with = with_phrases();
    let s = with.suggest("We met at the e", 3).unwrap();
    assert_eq!(s[0].text, "end", "{s:?}");
    assert_eq!(s[1].kind, SuggestionKind::Phrase, "{s:?}");
    assert_eq!(s[1].text, "end of", "{s:?}");
    assert!(s[1].score < s[0].score, "{s:?}");
    // Off by default, and never with an unconfident first word.
    let without = open(Config::default())
        .suggest("We met at the e", 3)
        .unwrap();
    assert!(
        without.iter().all(|x| x.kind != SuggestionKind::Phrase),
        "{without:?}"
    );
    let unsure = with.suggest("I think that th", 3).unwrap();
    assert!(
        unsure.iter().all(|x| x.kind != SuggestionKind::Phrase),
        "{unsure:?}"
    );
    // A blocked word is never a phrase's second word.
    with.block_word("of").unwrap();
    let blocked = with.suggest("We met at the e", 3).unwrap();
    assert!(
        !blocked.iter().any(|x| x.text.split(' ').any(|w| w == "of")),
        "{blocked:?}"
    );
}

#[test]
fn committing_a_phrases_first_word_gives_what_a_fresh_predictor_gives() {
    // The search for the word after the phrase's first word becomes the context's state when
    // that word is committed: same words, same scores (to rounding) as computed from scratch.
    // "To rounding" is 1%: the reused cache holds keys/values computed in a tree call (other
    // shapes for tract's attention matmuls, so other float summation orders), and a last-bit
    // difference that moves an activation across an int8 rounding boundary moves a score by
    // a few tenths of a percent (0.25% measured on AVX2/VNNI; the kernels themselves give
    // bit-identical rows whatever the batch, see kernels::tests::rows_do_not_depend_on_batch).
    // Reusing the wrong state would change scores by far more than that.
    let with = with_phrases();
    let s = with.suggest("We met at the en", 3).unwrap();
    assert_eq!(s[1].kind, SuggestionKind::Phrase, "{s:?}");
    let reused = with.suggest("We met at the end ", 3).unwrap();
    let fresh = with_phrases().suggest("We met at the end ", 3).unwrap();
    assert_eq!(texts(&reused), texts(&fresh));
    for (a, b) in reused.iter().zip(&fresh) {
        assert!(
            (a.score - b.score).abs() <= 1e-2 * b.score.max(1e-6),
            "{reused:?} {fresh:?}"
        );
    }
}
