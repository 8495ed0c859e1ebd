//! `nextword user`: the user's store (learned words, blocks) from scripts and tests, without
//! loading a model.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use nextword_core::personal::{Personal, PersonalConfig};
use serde_json::json;

#[derive(Subcommand)]
pub enum Action {
    /// Learn committed TEXT; `-` learns standard input line by line, printing `learned N` once
    /// line N is durably stored.
    Learn { text: String },
    /// Add a word to the dictionary (kept until removed).
    Add { word: String },
    /// Forget a learned or added word.
    Remove { word: String },
    /// The learned and added words, strongest first.
    List,
    /// Forget every learned and added word (blocks stay).
    Clear,
    /// Never suggest WORD, in any casing.
    Block { word: String },
    /// Allow a blocked word again.
    Unblock { word: String },
    /// The blocked words.
    Blocked,
}

pub fn run(action: Action, user_dir: PathBuf, incognito: bool, as_json: bool) -> Result<()> {
    let personal = Personal::open(
        &PersonalConfig {
            user_dir: Some(user_dir.clone()),
            incognito,
            block_offensive: true,
            typo_correction: false,
        },
        "",
    )
    .with_context(|| format!("opening user store {}", user_dir.display()))?;
    if let Some(problem) = personal.open_problem() {
        eprintln!("warning: {problem}");
    }
    let done = |changed: bool, what: &str| {
        if as_json {
            println!("{}", json!({ "changed": changed }));
        } else if incognito {
            println!("incognito: nothing {what}");
        } else if !changed {
            println!("no change");
        }
    };
    match action {
        Action::Learn { text } if text == "-" => {
            let stdin = std::io::stdin();
            let mut out = std::io::stdout().lock();
            for (i, line) in stdin.lock().lines().enumerate() {
                let line = line.context("reading standard input")?;
                personal.learn(&line)?;
                writeln!(out, "learned {}", i + 1)?;
                out.flush()?;
            }
        }
        Action::Learn { text } => done(personal.learn(&text)?, "learned"),
        Action::Add { word } => done(personal.add_word(&word)?, "added"),
        Action::Remove { word } => done(personal.remove_word(&word)?, "removed"),
        Action::Clear => done(personal.clear_learned()?, "cleared"),
        Action::Block { word } => done(personal.block_word(&word)?, "blocked"),
        Action::Unblock { word } => done(personal.unblock_word(&word)?, "unblocked"),
        Action::List => {
            let words = personal.learned_words();
            if as_json {
                println!("{}", json!({ "words": words }));
            } else {
                for w in words {
                    let added = if w.added { "  (added)" } else { "" };
                    println!("{:<24} {:>8.2}{added}", w.word, w.weight);
                }
            }
        }
        Action::Blocked => {
            let words = personal.blocked_words();
            if as_json {
                println!("{}", json!({ "blocked": words }));
            } else {
                for w in words {
                    println!("{w}");
                }
            }
        }
    }
    Ok(())
}
