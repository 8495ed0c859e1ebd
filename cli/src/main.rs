//! `nextword`: the command line of the nextword SDK.

mod bench;
mod bench_model;
mod bundle;
mod demo;
mod eval;
mod user;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use nextword_core::{Config, MatMulImpl, Predictor, Suggestion};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "nextword",
    version,
    about = "On-device next-word prediction for keyboards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Model bundle directory (default: $NEXTWORD_BUNDLE, else the bundled models/en).
    #[arg(long, global = true)]
    bundle: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// MatMulNBits implementation: nextword (default) or tract (tract's built-in).
    #[arg(long, global = true, default_value = "nextword")]
    matmul: MatMulImpl,
    #[command(flatten)]
    trust: bundle::TrustArgs,
    /// The user's store (learned words, blocks); without it nothing personal is kept.
    #[arg(long, global = true)]
    user_dir: Option<PathBuf>,
    /// Read the user's store but learn and write nothing.
    #[arg(long, global = true)]
    incognito: bool,
    /// Also offer a two-word phrase when the model is confident of both words.
    #[arg(long, global = true)]
    phrases: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Next-word suggestions after TEXT (a space is implied at its end).
    Predict {
        text: String,
        #[arg(long, default_value_t = 3)]
        max: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Completions of the word being typed at the end of TEXT.
    Complete {
        text: String,
        #[arg(long, default_value_t = 3)]
        max: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Interactive: type and watch the suggestion strip follow each keystroke (reads lines
    /// from standard input and replays them key by key when it is not a terminal).
    Demo {
        #[command(flatten)]
        common: Common,
    },
    /// What the bundle holds: model, parameters, kernel, load time.
    Info {
        #[command(flatten)]
        common: Common,
    },
    /// Score the model on a text file: top-1/top-3 next word, keystroke savings, latency.
    Eval {
        #[arg(long)]
        text: PathBuf,
        #[arg(long)]
        ignore_case: bool,
        /// Evaluate only the first N lines.
        #[arg(long)]
        max_lines: Option<usize>,
        /// Learn the first half of the lines, then score the second half with and without the
        /// user's model (keystroke savings and latency overhead).
        #[arg(long)]
        learn_first_half: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Vendor tools for bundles: keygen, sign, verify, encrypt, pack, diff, install, apply.
    Bundle {
        #[command(subcommand)]
        action: bundle::BundleCommand,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The user's store: learn, add, remove, list, clear, block, unblock (needs --user-dir).
    User {
        #[command(subcommand)]
        action: user::Action,
        #[command(flatten)]
        common: Common,
    },
    /// Latency and memory on 1 thread: load, 20-token forward (our op vs tract's), keystrokes.
    Bench {
        /// Text to replay keystroke by keystroke (default: a built-in sample).
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Repetitions of the 20-token forward per implementation.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        #[command(flatten)]
        common: Common,
    },
    /// The model alone on token ids from a JSON file (for benches/peers.sh): 20-token forward
    /// and decode-step times, top-5 next tokens on held-out windows, peak RSS; prints JSON.
    BenchModel {
        /// `{"context": [ids], "next": id, "windows": [[ids], ...]}`.
        #[arg(long)]
        inputs: PathBuf,
        /// Timed repetitions of the forward and of the decode step.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        #[command(flatten)]
        common: Common,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::new().filter("NEXTWORD_LOG")).init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict { text, max, common } => {
            let text = if text.ends_with(char::is_whitespace) || text.is_empty() {
                text
            } else {
                format!("{text} ")
            };
            print_suggestions(&open(&common)?, &text, max, common.json)
        }
        Command::Complete { text, max, common } => {
            print_suggestions(&open(&common)?, &text, max, common.json)
        }
        Command::User { action, common } => {
            let dir = common
                .user_dir
                .context("nextword user needs --user-dir DIR")?;
            user::run(action, dir, common.incognito, common.json)
        }
        Command::Bundle { action, json } => bundle::run(action, json),
        Command::Demo { common } => demo::run(&open(&common)?),
        Command::Info { common } => info(&common),
        Command::Eval {
            text,
            ignore_case,
            max_lines,
            learn_first_half,
            common,
        } => {
            if learn_first_half {
                let report = eval::run_learning(
                    &bundle_dir(&common)?,
                    common.matmul,
                    &text,
                    ignore_case,
                    max_lines,
                )?;
                if common.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{report}");
                }
                return Ok(());
            }
            let p = open(&common)?;
            let report = eval::run(&p, &text, ignore_case, max_lines)?;
            if common.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::Bench {
            replay,
            iterations,
            common,
        } => bench::run(
            &bundle_dir(&common)?,
            replay.as_deref(),
            iterations,
            common.json,
        ),
        Command::BenchModel {
            inputs,
            iterations,
            common,
        } => bench_model::run(&bundle_dir(&common)?, common.matmul, &inputs, iterations),
    }
}

/// The bundle the user named, else $NEXTWORD_BUNDLE, else models/en found from the working
/// directory or from the executable's location (so a fresh clone runs with no arguments).
fn bundle_dir(common: &Common) -> Result<PathBuf> {
    if let Some(b) = &common.bundle {
        return Ok(b.clone());
    }
    if let Some(b) = std::env::var_os("NEXTWORD_BUNDLE") {
        return Ok(PathBuf::from(b));
    }
    let mut roots: Vec<PathBuf> = vec![std::env::current_dir()?];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    roots
        .iter()
        .map(|r| r.join("models/en"))
        .find(|p| p.join("manifest.json").is_file())
        .context("no bundle given and models/en not found: pass --bundle DIR")
}

fn open(common: &Common) -> Result<Predictor> {
    let dir = bundle_dir(common)?;
    Predictor::open(
        &dir,
        Config {
            matmul: common.matmul,
            user_dir: common.user_dir.clone(),
            incognito: common.incognito,
            phrases: common.phrases,
            trust: common.trust.policy()?,
            weights_key: common.trust.weights_key()?,
            ..Config::default()
        },
    )
    .with_context(|| format!("opening bundle {}", dir.display()))
}

fn print_suggestions(p: &Predictor, text: &str, max: usize, as_json: bool) -> Result<()> {
    let t = Instant::now();
    let suggestions = p.suggest(text, max)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        println!("{}", json!({ "suggestions": suggestions }));
    } else {
        print_strip(&suggestions);
        println!("({ms:.1} ms)");
    }
    Ok(())
}

fn print_strip(suggestions: &[Suggestion]) {
    if suggestions.is_empty() {
        println!("(no suggestion)");
    }
    for s in suggestions {
        println!("{:<20} {:>8.4}  {:?}", s.text, s.score, s.kind);
    }
}

fn info(common: &Common) -> Result<()> {
    let dir = bundle_dir(common)?;
    let t = Instant::now();
    let p = Predictor::open(
        &dir,
        Config {
            matmul: common.matmul,
            trust: common.trust.policy()?,
            weights_key: common.trust.weights_key()?,
            ..Config::default()
        },
    )
    .with_context(|| format!("opening bundle {}", dir.display()))?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let m = p.manifest();
    let kernels: Vec<&str> = nextword_core::kernels::available()
        .iter()
        .map(|k| k.name())
        .collect();
    let kernel = nextword_core::kernels::select().name();
    let ops = p.plan_ops();
    let nodes: usize = ops.iter().map(|(_, n)| n).sum();
    if common.json {
        let plan: serde_json::Map<String, serde_json::Value> =
            ops.iter().map(|(op, n)| (op.clone(), json!(n))).collect();
        println!(
            "{}",
            json!({"bundle": dir, "model_id": m.model_id, "language": m.language, "parameters": m.model.parameters,
                   "bits": m.model.bits, "vocab_size": m.vocab_size, "context_tokens": m.context_tokens,
                   "layers": m.model.n_layers, "d_model": m.model.d_model, "matmul": common.matmul.name(),
                   "kernel": kernel, "kernels_available": kernels, "load_ms": load_ms,
                   "plan_nodes": nodes, "plan_ops": plan})
        );
    } else {
        println!("bundle      {}", dir.display());
        println!("model       {} ({})", m.model_id, m.language);
        println!(
            "parameters  {} ({:.1}M), {}-bit",
            m.model.parameters,
            m.model.parameters as f64 / 1e6,
            m.model.bits
        );
        println!(
            "shape       {} layers, d_model {}, {} heads",
            m.model.n_layers, m.model.d_model, m.model.n_heads
        );
        println!(
            "vocabulary  {} tokens, context {} tokens",
            m.vocab_size, m.context_tokens
        );
        println!(
            "matmul      {} (kernel {kernel}; available: {})",
            common.matmul,
            kernels.join(", ")
        );
        println!("load        {load_ms:.1} ms");
        let top: Vec<String> = ops.iter().map(|(op, n)| format!("{n} {op}")).collect();
        println!("plan        {nodes} nodes: {}", top.join(", "));
    }
    Ok(())
}
