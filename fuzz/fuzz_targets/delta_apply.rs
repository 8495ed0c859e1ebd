//! The delta applier on arbitrary bytes against the fixture bundle as the installed base:
//! tar parsing, the delta header, bipatch. Seed it with a real delta (scripts/fuzz-ci.sh does)
//! so the fuzzer reaches the patch decoder.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nextword_core::update::apply_delta;
use nextword_core::Error;

fn base() -> &'static BTreeMap<String, Vec<u8>> {
    static BASE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture");
        [
            "manifest.json",
            "manifest.sig",
            "model.onnx",
            "tokenizer.json",
        ]
        .iter()
        .filter_map(|n| Some((n.to_string(), std::fs::read(dir.join(n)).ok()?)))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let read = |name: &str| {
        base()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::MissingFile(name.into()))
    };
    let _ = apply_delta(data, &read);
});
