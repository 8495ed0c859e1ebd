//! Bundle trust end to end on copies of the fixture bundle: signatures under pinned keys,
//! single-file packs, encrypted weights — every tampering case must give its typed error.

use std::fs;
use std::path::{Path, PathBuf};

use nextword_core::encryption::{self, Encryption};
use nextword_core::trust::{open_bundle, open_pack_bytes, MANIFEST_FILE, SIGNATURE_FILE};
use nextword_core::{
    Config, Error, Predictor, Provenance, PublicKey, SecretKey, TrustPolicy, WeightsKey,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    root().join("models/fixture")
}

/// A copy of the fixture's manifest and the files it lists (no signature).
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["manifest.json", "model.onnx", "tokenizer.json"] {
        fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn sign(dir: &Path, key: &SecretKey) {
    let manifest = fs::read(dir.join(MANIFEST_FILE)).unwrap();
    fs::write(dir.join(SIGNATURE_FILE), key.sign_manifest(&manifest)).unwrap();
}

fn signed_fixture(key: &SecretKey) -> tempfile::TempDir {
    let d = copy_fixture();
    sign(d.path(), key);
    d
}

fn pinned(key: &SecretKey) -> TrustPolicy {
    TrustPolicy::pinned([key.public_key()])
}

fn open_err(dir: &Path, policy: &TrustPolicy) -> Error {
    open_bundle(dir, policy, None).expect_err("must be refused")
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    f(&mut v);
    fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn signed_by_a_pinned_key_opens_and_predicts() {
    let key = SecretKey::generate().unwrap();
    let d = signed_fixture(&key);
    let bundle = open_bundle(d.path(), &pinned(&key), None).unwrap();
    assert_eq!(
        bundle.provenance,
        Provenance::Signed {
            key_id: key.public_key().key_id()
        }
    );
    let config = Config {
        trust: pinned(&key),
        ..Config::default()
    };
    let p = Predictor::open(d.path(), config).unwrap();
    assert!(!p.suggest("I will see you ", 3).unwrap().is_empty());
}

#[test]
fn key_rotation_any_pinned_key_is_accepted() {
    let old = SecretKey::generate().unwrap();
    let new = SecretKey::generate().unwrap();
    let policy = TrustPolicy::pinned([old.public_key(), new.public_key()]);
    for key in [&old, &new] {
        let d = signed_fixture(key);
        open_bundle(d.path(), &policy, None).unwrap();
    }
}

#[test]
fn unsigned_bundle_is_refused_unless_the_app_opts_in() {
    let key = SecretKey::generate().unwrap();
    let d = copy_fixture();
    assert!(matches!(open_err(d.path(), &pinned(&key)), Error::Unsigned));
    let dev = TrustPolicy::development();
    assert_eq!(
        open_bundle(d.path(), &dev, None).unwrap().provenance,
        Provenance::Unsigned
    );
    // Opting in to unsigned bundles while pinning keys still accepts an unsigned one…
    let lenient = TrustPolicy {
        allow_unsigned: true,
        ..pinned(&key)
    };
    assert_eq!(
        open_bundle(d.path(), &lenient, None).unwrap().provenance,
        Provenance::Unsigned
    );
    // …but never a bad signature.
    sign(d.path(), &SecretKey::generate().unwrap());
    assert!(matches!(
        open_err(d.path(), &lenient),
        Error::UntrustedSigner { .. }
    ));
}

#[test]
fn resigned_by_another_key_is_refused() {
    let vendor = SecretKey::generate().unwrap();
    let attacker = SecretKey::generate().unwrap();
    let d = signed_fixture(&attacker);
    let err = open_err(d.path(), &pinned(&vendor));
    assert!(
        matches!(&err, Error::UntrustedSigner { key_id } if *key_id == attacker.public_key().key_id()),
        "{err}"
    );
    // An empty pin list trusts nobody.
    assert!(matches!(
        open_err(d.path(), &TrustPolicy::pinned([])),
        Error::UntrustedSigner { .. }
    ));
}

#[test]
fn manifest_changed_after_signing_is_refused() {
    let key = SecretKey::generate().unwrap();
    let policy = pinned(&key);
    let d = signed_fixture(&key);
    let path = d.path().join(MANIFEST_FILE);
    let original = fs::read(&path).unwrap();

    // One byte of whitespace: same JSON, different bytes.
    fs::write(&path, [&original[..], b" "].concat()).unwrap();
    assert!(matches!(open_err(d.path(), &policy), Error::BadSignature));

    // A changed value with the model file swapped to match it.
    let text = String::from_utf8(original.clone()).unwrap();
    fs::write(
        &path,
        text.replacen("\"context_tokens\": ", "\"context_tokens\": 1", 1),
    )
    .unwrap();
    assert!(matches!(open_err(d.path(), &policy), Error::BadSignature));

    // Truncated manifest: refused on the signature, before it is parsed.
    fs::write(&path, &original[..original.len() / 2]).unwrap();
    assert!(matches!(open_err(d.path(), &policy), Error::BadSignature));

    // The attacker names the pinned key but signs with their own.
    fs::write(&path, [&original[..], b"\n"].concat()).unwrap();
    let forged = SecretKey::generate()
        .unwrap()
        .sign_manifest(&fs::read(&path).unwrap());
    let mut forged: serde_json::Value = serde_json::from_slice(&forged).unwrap();
    forged["public_key"] = key.public_key().to_hex().into();
    fs::write(
        d.path().join(SIGNATURE_FILE),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    assert!(matches!(open_err(d.path(), &policy), Error::BadSignature));
}

#[test]
fn damaged_signature_file_is_refused() {
    let key = SecretKey::generate().unwrap();
    let policy = pinned(&key);
    let d = signed_fixture(&key);
    let sig_path = d.path().join(SIGNATURE_FILE);
    let sig = fs::read(&sig_path).unwrap();

    let mut value: serde_json::Value = serde_json::from_slice(&sig).unwrap();
    let hex_sig = value["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if hex_sig.starts_with('0') { "1" } else { "0" },
        &hex_sig[1..]
    );
    value["signature"] = flipped.into();
    fs::write(&sig_path, serde_json::to_vec(&value).unwrap()).unwrap();
    assert!(matches!(open_err(d.path(), &policy), Error::BadSignature));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", sig[..sig.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not JSON", b"\x00\xffsignature".to_vec()),
        (
            "short signature",
            serde_json::to_vec(&serde_json::json!({
                "algorithm": "ed25519", "public_key": key.public_key().to_hex(), "signature": "abcd"}))
            .unwrap(),
        ),
        (
            "other algorithm",
            String::from_utf8(sig.clone())
                .unwrap()
                .replace("ed25519", "rsa")
                .into_bytes(),
        ),
        (
            "unknown field",
            String::from_utf8(sig.clone())
                .unwrap()
                .replacen('{', "{\"extra\": 1,", 1)
                .into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        fs::write(&sig_path, bytes).unwrap();
        let err = open_err(d.path(), &policy);
        assert!(matches!(err, Error::MalformedSignature(_)), "{what}: {err}");
    }
}

#[test]
fn files_changed_under_a_valid_signature_are_refused() {
    let key = SecretKey::generate().unwrap();
    let policy = pinned(&key);
    let d = signed_fixture(&key);
    let model = d.path().join("model.onnx");
    let bytes = fs::read(&model).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 1;
    fs::write(&model, &flipped).unwrap();
    assert!(
        matches!(open_err(d.path(), &policy), Error::HashMismatch { file } if file == "model.onnx")
    );
    fs::write(&model, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(
        open_err(d.path(), &policy),
        Error::HashMismatch { .. }
    ));
    fs::remove_file(&model).unwrap();
    assert!(
        matches!(open_err(d.path(), &policy), Error::MissingFile(p) if p.ends_with("model.onnx"))
    );
}

#[test]
fn public_keys_parse_from_hex_only() {
    let key = SecretKey::generate().unwrap();
    let text = key.public_key().to_hex();
    assert_eq!(
        PublicKey::from_hex(&format!(" {text}\n")).unwrap(),
        key.public_key()
    );
    for bad in ["", "zz", &text[..62], &format!("{text}00")] {
        assert!(matches!(
            PublicKey::from_hex(bad),
            Err(Error::InvalidKey(_))
        ));
    }
    let again = SecretKey::from_hex(&key.to_hex()).unwrap();
    assert_eq!(again.public_key(), key.public_key());
}

#[test]
fn repository_bundles_are_signed_by_the_development_key() {
    let dev =
        PublicKey::from_hex(&fs::read_to_string(root().join("keys/nextword-dev.pub")).unwrap())
            .unwrap();
    for bundle in ["models/fixture", "models/en"] {
        let dir = root().join(bundle);
        if !dir.join(MANIFEST_FILE).is_file() {
            continue;
        }
        let opened = open_bundle(&dir, &TrustPolicy::pinned([dev]), None)
            .unwrap_or_else(|e| panic!("{bundle}: {e}"));
        assert_eq!(
            opened.provenance,
            Provenance::Signed {
                key_id: dev.key_id()
            }
        );
    }
}

// ---- single-file packs ----

fn pack_of(dir: &Path) -> Vec<u8> {
    let mut entries = Vec::new();
    for name in [
        "manifest.json",
        "manifest.sig",
        "model.onnx",
        "tokenizer.json",
    ] {
        if let Ok(bytes) = fs::read(dir.join(name)) {
            entries.push((name, bytes));
        }
    }
    nextword_core::pack::write(entries.iter().map(|(n, b)| (*n, b.as_slice()))).unwrap()
}

#[test]
fn pack_opens_like_its_directory_and_tampering_is_refused() {
    let key = SecretKey::generate().unwrap();
    let policy = pinned(&key);
    let d = signed_fixture(&key);
    let pack = pack_of(d.path());
    let from_dir = open_bundle(d.path(), &policy, None).unwrap();
    let from_pack = open_pack_bytes(&pack, &policy, None).unwrap();
    assert_eq!(from_dir.manifest, from_pack.manifest);
    assert_eq!(from_dir.model_bytes, from_pack.model_bytes);

    // A pack file on disk opens through Predictor::open too.
    let file = d.path().join("bundle.nwpack");
    fs::write(&file, &pack).unwrap();
    let p = Predictor::open(
        &file,
        Config {
            trust: policy.clone(),
            ..Config::default()
        },
    )
    .unwrap();
    assert!(!p.suggest("the ", 3).unwrap().is_empty());

    // Flip a byte inside the model's data (tar headers are 512-byte blocks; the model is big).
    let mut tampered = pack.clone();
    let at = pack.len() / 2;
    tampered[at] ^= 0x10;
    let err = open_pack_bytes(&tampered, &policy, None).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");

    let err = open_pack_bytes(&pack[..pack.len() / 2], &policy, None).unwrap_err();
    assert!(matches!(err, Error::InvalidPack(_)), "{err}");
    let err = open_pack_bytes(b"", &policy, None).unwrap_err();
    assert!(matches!(err, Error::InvalidPack(_)), "{err}");

    // A pack without the signature entry is an unsigned bundle.
    let unsigned = {
        let entries: Vec<(&str, Vec<u8>)> = ["manifest.json", "model.onnx", "tokenizer.json"]
            .iter()
            .map(|n| (*n, fs::read(d.path().join(n)).unwrap()))
            .collect();
        nextword_core::pack::write(entries.iter().map(|(n, b)| (*n, b.as_slice()))).unwrap()
    };
    assert!(matches!(
        open_pack_bytes(&unsigned, &policy, None),
        Err(Error::Unsigned)
    ));
}

#[test]
fn pack_entries_must_be_plain_regular_files() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_link_name("/etc/passwd").unwrap();
    builder
        .append_data(&mut header, "manifest.json", &b""[..])
        .unwrap();
    let symlink = builder.into_inner().unwrap();
    let err = open_pack_bytes(&symlink, &TrustPolicy::development(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidPack(_)), "{err}");

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "sub/manifest.json", &b"x"[..])
        .unwrap();
    let nested = builder.into_inner().unwrap();
    let err = open_pack_bytes(&nested, &TrustPolicy::development(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidPack(_)), "{err}");

    let dup = nextword_core::pack::write([("a", &b"1"[..]), ("a", &b"2"[..])]).unwrap();
    let err = open_pack_bytes(&dup, &TrustPolicy::development(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidPack(_)), "{err}");
    assert!(nextword_core::pack::write([("../x", &b""[..])]).is_err());
}

// ---- encrypted weights ----

/// Encrypts the fixture's model in place the way `nextword bundle encrypt` does.
fn encrypt_model(dir: &Path, key: &WeightsKey) {
    let model = dir.join("model.onnx");
    let sealed = encryption::encrypt(key, "model.onnx", &fs::read(&model).unwrap()).unwrap();
    fs::write(&model, &sealed).unwrap();
    let hash = nextword_core::bundle::sha256_hex(&sealed);
    edit_json(&dir.join(MANIFEST_FILE), |m| {
        m["files"]["model.onnx"] = hash.into();
        m["encryption"] = serde_json::to_value(Encryption {
            algorithm: encryption::ALGORITHM.into(),
            key_id: key.key_id(),
            files: vec!["model.onnx".into()],
        })
        .unwrap();
    });
}

#[test]
fn encrypted_weights_need_the_right_key() {
    let signer = SecretKey::generate().unwrap();
    let policy = pinned(&signer);
    let key = WeightsKey::generate().unwrap();
    let d = copy_fixture();
    let plain = fs::read(d.path().join("model.onnx")).unwrap();
    encrypt_model(d.path(), &key);
    sign(d.path(), &signer);
    assert_ne!(fs::read(d.path().join("model.onnx")).unwrap(), plain);

    let bundle = open_bundle(d.path(), &policy, Some(&key)).unwrap();
    assert_eq!(
        bundle.model_bytes, plain,
        "decrypted in memory to the original"
    );
    let config = Config {
        trust: policy.clone(),
        weights_key: Some(key.clone()),
        ..Config::default()
    };
    let p = Predictor::open(d.path(), config).unwrap();
    let reference = Predictor::open(fixture(), Config::default()).unwrap();
    assert_eq!(
        p.suggest("I will see you ", 3).unwrap(),
        reference.suggest("I will see you ", 3).unwrap()
    );
    assert_eq!(
        p.config().weights_key,
        None,
        "the key is not kept after loading"
    );

    let err = open_bundle(d.path(), &policy, None).unwrap_err();
    assert!(matches!(err, Error::WeightsKeyRequired { .. }), "{err}");
    let other = WeightsKey::generate().unwrap();
    let err = open_bundle(d.path(), &policy, Some(&other)).unwrap_err();
    assert!(matches!(err, Error::WrongWeightsKey { .. }), "{err}");
}

#[test]
fn modified_ciphertext_fails_authentication() {
    // Development policy, so only the AEAD tag stands between the edit and the model.
    let key = WeightsKey::generate().unwrap();
    let d = copy_fixture();
    encrypt_model(d.path(), &key);
    let model = d.path().join("model.onnx");
    let mut sealed = fs::read(&model).unwrap();
    let at = sealed.len() / 2;
    sealed[at] ^= 1;
    fs::write(&model, &sealed).unwrap();
    let hash = nextword_core::bundle::sha256_hex(&sealed);
    edit_json(&d.path().join(MANIFEST_FILE), |m| {
        m["files"]["model.onnx"] = hash.into()
    });
    let dev = TrustPolicy::development();
    let err = open_bundle(d.path(), &dev, Some(&key)).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");

    // Truncated below the nonce.
    fs::write(&model, &sealed[..5]).unwrap();
    let hash = nextword_core::bundle::sha256_hex(&sealed[..5]);
    edit_json(&d.path().join(MANIFEST_FILE), |m| {
        m["files"]["model.onnx"] = hash.into()
    });
    let err = open_bundle(d.path(), &dev, Some(&key)).unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed { .. }), "{err}");
}

#[test]
fn encryption_entry_is_validated() {
    let key = WeightsKey::generate().unwrap();
    let dev = TrustPolicy::development();
    for (what, edit) in [
        ("unknown algorithm", "algorithm"),
        ("unlisted file", "files"),
    ] {
        let d = copy_fixture();
        encrypt_model(d.path(), &key);
        edit_json(&d.path().join(MANIFEST_FILE), |m| match edit {
            "algorithm" => m["encryption"]["algorithm"] = "rot13".into(),
            _ => m["encryption"]["files"] = serde_json::json!(["secret.bin"]),
        });
        let err = open_bundle(d.path(), &dev, Some(&key)).unwrap_err();
        assert!(matches!(err, Error::InvalidManifest(_)), "{what}: {err}");
    }
    assert!(matches!(
        WeightsKey::from_hex("00"),
        Err(Error::InvalidKey(_))
    ));
    assert!(!format!("{key:?}").contains(key.to_hex().as_str()));
}
