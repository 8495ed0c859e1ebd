//! The whole bundle loader on an arbitrary single-file pack: tar parsing, signature policy,
//! manifest, hashes, decryption. Nothing may panic or allocate past the bundle limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextword_core::trust::open_pack_bytes;
use nextword_core::{TrustPolicy, WeightsKey};

fuzz_target!(|data: &[u8]| {
    let key = WeightsKey::from_bytes([7; 32]);
    let _ = open_pack_bytes(data, &TrustPolicy::development(), Some(&key));
});
