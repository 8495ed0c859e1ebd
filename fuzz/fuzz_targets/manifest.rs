//! Manifest parsing and the signature check on arbitrary bytes: the first 2 bytes say where
//! the manifest ends and the signature file begins. Nothing may panic; a signature can only
//! verify if the fuzzer forges Ed25519, so `Signed` is a finding.
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
    if let Ok(Provenance::Signed { .. }) = policy().check(manifest, Some(signature)) {
        panic!("fuzzer produced a valid signature");
    }
});
