use super::*;

fn personal(dir: Option<&std::path::Path>, incognito: bool) -> Personal {
    Personal::open(
        &PersonalConfig {
            user_dir: dir.map(Into::into),
            incognito,
            block_offensive: true,
            typo_correction: true,
        },
        "en",
    )
    .unwrap()
}

fn model(words: &[(&str, f32)]) -> Candidates {
    Candidates {
        model: words
            .iter()
            .map(|&(w, p)| (w.to_string(), p.ln()))
            .collect(),
        corrections: Vec::new(),
    }
}

fn texts(r: &[Ranked]) -> Vec<&str> {
    r.iter().map(|x| x.word.as_str()).collect()
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

#[test]
fn learned_word_is_offered_for_its_prefix() {
    let p = personal(None, false);
    let before = p.rerank(
        model(&[("saw", 1e-3), ("sad", 1e-4)]),
        &chars("sa"),
        None,
        SuggestionKind::Completion,
    );
    assert_eq!(texts(&before), ["saw", "sad"]);
    p.learn("I met Saoirse today. Saoirse says hi").unwrap();
    let after = p.rerank(
        model(&[("saw", 1e-3), ("sad", 1e-4)]),
        &chars("sao"),
        None,
        SuggestionKind::Completion,
    );
    assert_eq!(after[0].word, "Saoirse");
}

#[test]
fn bigrams_follow_the_previous_word() {
    let p = personal(None, false);
    for _ in 0..3 {
        p.learn("see you at the gym").unwrap();
    }
    p.learn("the cat").unwrap();
    let r = p.rerank(
        model(&[("end", 0.1), ("gym", 1e-5)]),
        &[],
        Some("the"),
        SuggestionKind::NextWord,
    );
    assert_eq!(r[0].word, "gym", "{r:?}");
    // Without the history the pair does not apply as strongly.
    let r = p.rerank(
        model(&[("end", 0.1), ("gym", 1e-5)]),
        &[],
        Some("a"),
        SuggestionKind::NextWord,
    );
    assert_eq!(r[0].word, "end", "{r:?}");
}

#[test]
fn blocked_words_never_come_back_in_any_casing() {
    let p = personal(None, false);
    p.learn("Zorblax zorblax ZORBLAX").unwrap();
    p.block_word("zOrBlAx").unwrap();
    let r = p.rerank(
        model(&[("Zorblax", 0.5), ("zorblax", 0.4), ("zone", 0.1)]),
        &chars("zo"),
        None,
        SuggestionKind::Completion,
    );
    assert_eq!(texts(&r), ["zone"]);
    assert!(!p.may_show("ZORBLAX"));
    assert!(p.unblock_word("Zorblax").unwrap());
    assert!(p.may_show("zorblax"));
}

#[test]
fn default_list_is_on_and_can_be_overridden_by_adding() {
    let p = personal(None, false);
    let m = || model(&[("shit", 0.5), ("ship", 0.1)]);
    assert_eq!(
        texts(&p.rerank(m(), &chars("shi"), None, SuggestionKind::Completion)),
        ["ship"]
    );
    p.add_word("Shit").unwrap();
    assert_eq!(
        texts(&p.rerank(m(), &chars("shi"), None, SuggestionKind::Completion))[0],
        "shit"
    );
    let off = Personal::open(
        &PersonalConfig {
            user_dir: None,
            incognito: false,
            block_offensive: false,
            typo_correction: true,
        },
        "en",
    )
    .unwrap();
    assert_eq!(
        texts(&off.rerank(m(), &chars("shi"), None, SuggestionKind::Completion)),
        ["shit", "ship"]
    );
}

#[test]
fn incognito_learns_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("user");
    {
        let p = personal(Some(&store_dir), false);
        p.learn("Saoirse").unwrap();
    }
    let p = personal(Some(&store_dir), true);
    let listing = |d: &std::path::Path| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let files = listing(&store_dir);
    assert!(!p.learn("secret password hunter2").unwrap());
    assert!(!p.add_word("Hunter").unwrap());
    assert!(!p.block_word("x").unwrap());
    assert_eq!(listing(&store_dir), files, "nothing written");
    assert_eq!(
        p.learned_words().len(),
        1,
        "what was learned before still serves"
    );
    let r = p.rerank(model(&[]), &chars("sao"), None, SuggestionKind::Completion);
    assert_eq!(texts(&r), ["Saoirse"]);
    // Leaving incognito takes the store for writing.
    p.set_incognito(false);
    assert!(p.learn("hello").unwrap());
    drop(p);
    let p = personal(Some(&store_dir), false);
    assert_eq!(p.learned_words().len(), 2);
}

#[test]
fn persists_and_reports_a_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let p = personal(Some(dir.path()), false);
        p.learn("Saoirse Saoirse").unwrap();
        p.add_word("Qwghlm").unwrap();
        p.block_word("gosh").unwrap();
        assert!(p.open_problem().is_none());
    }
    {
        let p = personal(Some(dir.path()), false);
        let words: Vec<String> = p.learned_words().into_iter().map(|w| w.word).collect();
        assert_eq!(words, ["Saoirse", "Qwghlm"]);
        assert_eq!(p.blocked_words(), ["gosh"]);
        assert!(p.remove_word("saoirse").unwrap());
        assert!(!p.remove_word("never-learned").unwrap());
        assert!(p.clear_learned().unwrap());
        assert!(p.learned_words().is_empty());
    }
    std::fs::write(dir.path().join(store::SNAPSHOT_FILE), b"\xff\xfe not json").unwrap();
    let p = personal(Some(dir.path()), false);
    assert!(matches!(p.open_problem(), Some(StoreError::Corrupt { .. })));
    assert!(p.learned_words().is_empty());
    assert!(p.learn("works again").unwrap());
}

#[test]
fn a_second_writer_gets_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = personal(Some(dir.path()), false);
    let second = Personal::open(
        &PersonalConfig {
            user_dir: Some(dir.path().into()),
            incognito: false,
            block_offensive: true,
            typo_correction: true,
        },
        "en",
    );
    assert!(matches!(
        second,
        Err(Error::UserStore(StoreError::Locked { .. }))
    ));
}

#[test]
fn bad_input_is_a_typed_error() {
    let p = personal(None, false);
    assert!(matches!(
        p.add_word("two words"),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(p.add_word(""), Err(Error::InvalidInput(_))));
    assert!(matches!(
        p.block_word(&"x".repeat(41)),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        p.learn(&"word ".repeat(MAX_LEARN_BYTES)),
        Err(Error::InvalidInput(_))
    ));
    assert!(p.learn("").unwrap());
    assert!(p.learn("!!! 123 ...").unwrap());
    assert!(p.learned_words().is_empty());
}

#[test]
fn typo_candidates_only_when_nothing_starts_with_the_typed_word() {
    let p = personal(None, false);
    assert!(p.correction_candidates(&chars("tomor")).is_empty());
    assert!(p.correction_candidates(&chars("t")).is_empty());
    let c = p.correction_candidates(&chars("tommorow"));
    assert!(c.iter().any(|(w, _)| w == "tomorrow"), "{c:?}");
    let c = p.correction_candidates(&chars("becuase"));
    assert_eq!(c[0].0, "because", "{c:?}");
    assert!(c.len() <= MAX_CORRECTIONS);
    // Learned words are candidates too, and a learned prefix is not a typo.
    p.learn("Saoirse").unwrap();
    assert!(p.correction_candidates(&chars("saoi")).is_empty());
    let c = p.correction_candidates(&chars("saoisr"));
    assert_eq!(c[0].0, "Saoirse", "{c:?}");
}

/// The word meant is among the few corrections the model scores even when many rarer words
/// are cheaper edits of the typo (one neighbouring key from "teh": "ten", "tend", "tennis" ...).
#[test]
fn frequent_words_are_among_the_scored_corrections() {
    let p = personal(None, false);
    for (typed, meant) in [
        ("teh", "the"),
        ("dont", "don't"),
        ("wnat", "want"),
        ("yuor", "your"),
    ] {
        let c = p.correction_candidates(&chars(typed));
        assert!(c.len() <= MAX_CORRECTIONS);
        assert!(c.iter().any(|(w, _)| w == meant), "{typed}: {c:?}");
    }
    let c = p.correction_candidates(&chars("teh"));
    assert_eq!(c[0].0, "the", "{c:?}");
}

#[test]
fn corrections_rank_below_a_likely_model_word_and_are_marked() {
    let p = personal(None, false);
    // The typed "tommorow" as the model's word (probability `p_typed`), and its correction.
    let ranked = |p_typed: f32| {
        p.rerank(
            Candidates {
                model: vec![("tommorow".into(), p_typed.ln())],
                corrections: vec![("tomorrow".into(), (0.01f32).ln(), 1.0)],
            },
            &chars("tommorow"),
            None,
            SuggestionKind::Completion,
        )
    };
    let r = ranked(1e-6);
    assert_eq!(r[0].word, "tomorrow");
    assert_eq!(r[0].kind, SuggestionKind::Correction);
    // The model's unlisted "tommorow", far below, is dropped (the predictor shows what was
    // typed next to a correction); at a likelier share it stays, as a completion.
    assert_eq!(r.len(), 1, "{r:?}");
    let r = ranked(1e-3);
    assert_eq!(r[0].kind, SuggestionKind::Correction);
    assert_eq!(r[1].kind, SuggestionKind::Completion);
}

#[test]
fn previous_word_needs_only_spaces_between() {
    assert_eq!(previous_word("see you at the"), Some("the"));
    assert_eq!(previous_word("hello,"), None);
    assert_eq!(previous_word(""), None);
    assert_eq!(previous_word("it's 'quoted'"), Some("quoted"));
}

#[test]
fn words_missing_from_the_word_list_rank_below_listed_ones() {
    let p = personal(None, false);
    let ranked = |words: &[(&str, f32)], typed: &str| {
        let r = p.rerank(
            model(words),
            &chars(typed),
            None,
            SuggestionKind::Completion,
        );
        texts(&r).iter().map(|w| w.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        ranked(&[("up", 0.5), ("uping", 3e-4), ("upset", 1e-4)], "up"),
        ["up", "upset"]
    );
    assert_eq!(
        ranked(&[("up", 0.5), ("uping", 0.1), ("upset", 0.04)], "up"),
        ["up", "upset", "uping"]
    );
    // A confident unlisted word keeps its place; one the user wrote is not ranked down.
    assert_eq!(
        ranked(&[("saoirse", 0.3), ("sad", 0.05)], "sa"),
        ["saoirse", "sad"]
    );
    assert_eq!(
        ranked(&[("saoirse", 0.01), ("sad", 0.005)], "sa"),
        ["sad", "saoirse"]
    );
    p.learn("I met Saoirse").unwrap();
    assert_eq!(
        ranked(&[("saoirse", 0.01), ("sad", 0.005)], "sa")[0],
        "saoirse"
    );
}

#[test]
fn only_words_written_as_words_are_plausible() {
    let p = personal(None, false);
    for word in [
        "paris", "Paris", "NASA", "I'm", "don't", "e-mail", "2nd", "café", "Ça", "日本",
    ] {
        assert!(p.plausible_form(word), "{word} rejected");
    }
    // Irregular casings pass only as the word list writes them.
    for word in ["iPad", "McCarthy", "YouTube"] {
        assert!(p.plausible_form(word), "{word} (in the word list) rejected");
    }
    for word in [
        "tMRW",
        "TMRwise",
        "yOUTUBE",
        "Youtube'S",
        "mcCarthy",
        "iPAD",
    ] {
        assert!(!p.plausible_form(word), "{word} accepted");
    }
    // The user's own spelling of a word counts as written.
    assert!(!p.plausible_form("GitLab"));
    assert!(p.add_word("GitLab").unwrap());
    assert!(p.plausible_form("GitLab"));
    assert!(!p.plausible_form("gITLAB"));
}

#[test]
fn unlikely_non_words_are_dropped_but_the_best_stays() {
    let p = personal(None, false);
    // "supermarketging" is in no list: far below "supermarket", it is left out; a listed word
    // that unlikely stays.
    let r = p.rerank(
        model(&[
            ("supermarket", 0.006),
            ("supermarketging", 1e-4),
            ("supernatural", 1e-5),
        ]),
        &chars("supermar"),
        None,
        SuggestionKind::Completion,
    );
    assert_eq!(texts(&r), ["supermarket", "supernatural"], "{r:?}");
    // An unlisted word that is the best candidate (a name, a new word) is kept, and so is one
    // close to it.
    let r = p.rerank(
        model(&[
            ("Zelenskyy", 0.01),
            ("Zelensky", 0.004),
            ("Zelenskyyia", 1e-5),
        ]),
        &chars("zel"),
        None,
        SuggestionKind::Completion,
    );
    assert_eq!(texts(&r), ["Zelenskyy", "Zelensky"], "{r:?}");
}

#[test]
fn lexicon_lookups_match_a_set_of_its_folded_words() {
    let lex = Lexicon::new("the\nThe\nthere\nÉcole\nécoles\niPad\nMcCarthy\nzoo\nzebra\nAb\n");
    let set: std::collections::BTreeSet<String> =
        lex.iter().map(|(k, _)| k.iter().collect()).collect();
    assert!(set.contains("école") && set.contains("ipad"), "{set:?}");
    for probe in [
        "", "t", "th", "the", "ther", "there", "theres", "é", "éc", "école", "écoles", "eco",
        "ipa", "ipad", "mcc", "z", "zo", "zoo", "zoos", "ze", "a", "ab", "abc", "zz", "ü",
    ] {
        let prefix = set
            .range(probe.to_string()..)
            .next()
            .is_some_and(|w| w.starts_with(probe));
        assert_eq!(
            lex.contains(probe),
            set.contains(probe),
            "contains {probe:?}"
        );
        assert_eq!(lex.has_prefix(probe), prefix, "prefix {probe:?}");
    }
    assert!(lex.irregular.contains("iPad") && lex.irregular.contains("McCarthy"));
    assert!(!lex.irregular.contains("École"));
    // Words come in the list's order (most frequent first), with their casing.
    assert_eq!(lex.words[3].1, "École");
}

#[test]
fn the_lexicon_index_is_in_the_order_of_the_words() {
    let lex = english_lexicon();
    assert_eq!(lex.sorted.len(), lex.words.len());
    for pair in lex.sorted.windows(2) {
        let (a, b) = (lex.folded(pair[0] as usize), lex.folded(pair[1] as usize));
        assert!(a <= b, "{a:?} > {b:?}");
    }
    let mixed = [
        "ab",
        "a",
        "aé",
        "aè",
        "az",
        "a\u{0}",
        "abcdefghij",
        "abcdefghi",
        "é",
        "z",
    ];
    let mut by_key: Vec<Vec<char>> = mixed.iter().map(|w| w.chars().collect()).collect();
    by_key.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)).then_with(|| a.cmp(b)));
    let mut plain = by_key.clone();
    plain.sort();
    assert_eq!(by_key, plain);
}
