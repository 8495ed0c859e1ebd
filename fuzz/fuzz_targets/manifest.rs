//! Manifest parsing and the signature check on arbitrary bytes: the first 2 bytes say where
//! the manifest ends and the signature file begins. Nothing may panic; a signature can only
//! verify if the fuzzer forges Ed25519, so `Signed` for any manifest other than the ones the
//! development key really signed (the seeds) is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nextword_core::bundle::parse_manifest;
use nextword_core::{Provenance, PublicKey, TrustPolicy};

fn policy() -> &'static TrustPolicy {
    static POLICY: OnceLock<TrustPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let dev = include_str!("../../keys/nextword-dev.pub");
        TrustPolicy::pinned([PublicKey::from_hex(dev).unwrap()])
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (usize::from(u16::from_le_bytes([data[0], data[1]])) % data.len()).max(2);
    let (manifest, signature) = data.split_at(split);
    let manifest = &manifest[2..];
    let _ = parse_manifest(manifest);
    const SIGNED: [&[u8]; 2] = [
        include_bytes!("../../models/fixture/manifest.json"),
        include_bytes!("../../models/en/manifest.json"),
    ];
    if let Ok(Provenance::Signed { .. }) = policy().check(manifest, Some(signature)) {
        assert!(
            SIGNED.contains(&manifest),
            "fuzzer produced a valid signature for a manifest the key never signed"
        );
    }
});
