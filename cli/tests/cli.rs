//! The `nextword` binary on the fixture bundle: what a script or CI job would run.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixture")
}

fn nextword(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nextword"))
        .args(args)
        .arg("--bundle")
        .arg(fixture())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn predict_json() {
    let v = json(&nextword(&["predict", "I will see you", "--json"]));
    let s = v["suggestions"].as_array().unwrap();
    assert_eq!(s.len(), 3);
    for x in s {
        assert_eq!(x["kind"], "next_word");
        assert!(x["score"].as_f64().unwrap() > 0.0);
        assert!(!x["text"].as_str().unwrap().contains(' '));
    }
}

#[test]
fn complete_json() {
    let v = json(&nextword(&[
        "complete",
        "see you tom",
        "--json",
        "--max",
        "2",
    ]));
    let s = v["suggestions"].as_array().unwrap();
    assert!(!s.is_empty() && s.len() <= 2);
    for x in s {
        assert_eq!(x["kind"], "completion");
        assert!(x["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .starts_with("tom"));
    }
}

#[test]
fn info_json_reports_parameters() {
    let v = json(&nextword(&["info", "--json"]));
    assert_eq!(v["parameters"], 127_296);
    assert_eq!(v["bits"], 4);
    assert!(v["kernels_available"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "scalar"));
    // The plan's op counts add up to its node count, and every 4-bit layer runs our op.
    let ops = v["plan_ops"].as_object().unwrap();
    let total: u64 = ops.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(v["plan_nodes"], total);
    assert!(ops["NextwordMatMulNBits"].as_u64().unwrap() > 0);
}

#[test]
fn eval_json_on_a_small_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "The cat sat on the mat.\nI will see you tomorrow.\n").unwrap();
    let v = json(&nextword(&[
        "eval",
        "--text",
        text.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["words"], 11);
    for k in ["top1", "top3", "ksr"] {
        let x = v[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert!(v["top3"].as_f64() >= v["top1"].as_f64());
    assert!(v["p95_ms"].as_f64() >= v["p50_ms"].as_f64());
}

#[test]
fn bench_json_has_the_agreed_keys() {
    let v = json(&nextword(&["bench", "--json", "--iterations", "2"]));
    for k in ["load_ms", "keystroke_p50_ms", "keystroke_p95_ms"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
    for k in ["nextword", "tract_builtin"] {
        assert!(v["forward20_ms"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(v.get("peak_rss_mb").is_some());
}

#[test]
fn demo_replays_piped_input_key_by_key() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextword"))
        .args(["demo", "--bundle"])
        .arg(fixture())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hi there\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        "Hi there".len(),
        "one strip per keystroke"
    );
    assert!(stdout.lines().all(|l| l.contains('[') && l.ends_with("ms")));
}

#[test]
fn bad_bundle_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_nextword"))
        .args(["predict", "hello", "--bundle", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bundle file missing"), "{err}");
}
