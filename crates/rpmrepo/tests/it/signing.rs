//! Detached signatures and keys against gpg: gpg verifies what we sign (with the status lines
//! xapi requires), we verify what gpg signs, and keys that break the DDK rules are refused.

use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_rpmrepo::{
    Error, PublicKey, SigningKey, TestKeyOptions, generate_test_key, sign_detached,
    sign_detached_file, verify_detached, verify_detached_file,
};

use crate::{
    EPOCH, Run, demo_builder, gpg, gpg_home, run, signing_key, tempdir, test_key, write_rpm,
};

const UPDATE_XML: &str = "<update name-label=\"demo\" version=\"1.0\" uuid=\"df95997f-0332-4f1e-afd6-dcec74940b82\">\n  <name-description>Demo</name-description>\n</update>\n";

fn ok(r: &Run) -> &str {
    assert!(r.ok, "gpg failed:\n{}\n{}", r.stdout, r.stderr);
    &r.stdout
}

/// The fingerprint of the only key in `home`'s keyring.
fn gpg_fingerprint(home: &Utf8Path, secret: bool) -> String {
    let listing =
        gpg(home, &["--with-colons", if secret { "--list-secret-keys" } else { "--list-keys" }]);
    ok(&listing)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned()
}

/// Generates a key with gpg in a fresh home under `dir` and returns (home, fingerprint).
fn gpg_key(dir: &Utf8Path, name: &str, algo: &str, passphrase: &str) -> (Utf8PathBuf, String) {
    let home = gpg_home(&dir.join(name));
    let uid = format!("{name} <{name}@example.invalid>");
    ok(&gpg(&home, &["--passphrase", passphrase, "--quick-gen-key", &uid, algo, "sign", "never"]));
    let fpr = gpg_fingerprint(&home, true);
    (home, fpr)
}

fn export(home: &Utf8Path, secret: bool, passphrase: &str) -> String {
    let what = if secret { "--export-secret-keys" } else { "--export" };
    ok(&gpg(home, &["--passphrase", passphrase, "--armor", what])).to_owned()
}

#[test]
fn gpg_verifies_our_detached_signature_and_we_agree() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let file = dir.join("update.xml");
    fs::write(&file, UPDATE_XML).unwrap();
    let asc = sign_detached_file(&key, &file, EPOCH).unwrap();
    assert_eq!(asc, dir.join("update.xml.asc"));
    let text = fs::read_to_string(&asc).unwrap();
    assert!(
        text.starts_with("-----BEGIN PGP SIGNATURE-----\n")
            && text.ends_with("-----END PGP SIGNATURE-----\n"),
        "{text}"
    );

    // xapi's check: GOODSIG and TRUST_ULTIMATE on the status fd, key imported with trust 5.
    let home = gpg_home(&dir);
    let pubkey = dir.join("RPM-GPG-KEY-test");
    key.public_key().write_file(&pubkey, false).unwrap();
    ok(&gpg(&home, &["--import", pubkey.as_str()]));
    let fpr = key.info().fingerprint.clone();
    fs::write(dir.join("trust"), format!("{fpr}:6:\n")).unwrap();
    ok(&gpg(&home, &["--import-ownertrust", dir.join("trust").as_str()]));
    let status = gpg(&home, &["--status-fd", "1", "--verify", asc.as_str(), file.as_str()]);
    let out = ok(&status);
    assert!(out.contains(&format!("[GNUPG:] GOODSIG {}", key.info().key_id)), "{out}");
    assert!(out.contains(&format!("[GNUPG:] VALIDSIG {fpr} 2023-11-14 {EPOCH}")), "{out}");
    assert!(out.contains("[GNUPG:] TRUST_ULTIMATE"), "{out}");
    let info = verify_detached_file(&key.public_key(), &file, &asc).unwrap();
    assert_eq!(
        (info.key_id.as_str(), info.created, info.hash.as_str()),
        (key.info().key_id.as_str(), EPOCH, "SHA256")
    );

    // One byte changed: gpg says BAD, and so do we.
    fs::write(&file, UPDATE_XML.replace("1.0", "1.1")).unwrap();
    let bad = gpg(&home, &["--status-fd", "1", "--verify", asc.as_str(), file.as_str()]);
    assert!(!bad.ok && bad.stdout.contains("[GNUPG:] BADSIG"), "{}", bad.stdout);
    let err = verify_detached_file(&key.public_key(), &file, &asc).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");
    assert!(err.to_string().starts_with(file.as_str()), "{err}");
}

#[test]
fn signatures_are_reproducible_and_never_older_than_the_key() {
    let key = signing_key();
    let a = sign_detached(&key, UPDATE_XML.as_bytes(), EPOCH).unwrap();
    let b = sign_detached(&key, UPDATE_XML.as_bytes(), EPOCH).unwrap();
    assert_eq!(a, b);
    let early = sign_detached(&key, UPDATE_XML.as_bytes(), 1000).unwrap();
    let info =
        verify_detached(&key.public_key(), UPDATE_XML.as_bytes(), &early, Utf8Path::new("x"))
            .unwrap();
    assert_eq!(info.created, key.info().created);
    let err = verify_detached(
        &key.public_key(),
        UPDATE_XML.as_bytes(),
        "not armored",
        Utf8Path::new("x"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidSignature { .. }), "{err}");
}

#[test]
fn gpg_reads_our_public_key_as_the_ddk_requires() {
    let (_t, dir) = tempdir();
    let pubkey = dir.join("RPM-GPG-KEY-test");
    fs::write(&pubkey, &test_key().public_armored).unwrap();
    let home = gpg_home(&dir);
    let shown = gpg(&home, &["--with-colons", "--show-keys", pubkey.as_str()]);
    let out = ok(&shown);
    let pubs: Vec<&str> = out.lines().filter(|l| l.starts_with("pub:")).collect();
    assert_eq!(pubs.len(), 1, "{out}");
    let fields: Vec<&str> = pubs[0].split(':').collect();
    // Field 3 is the key length, field 4 the algorithm (1 = RSA), field 6 the creation date.
    assert_eq!(
        (fields[2], fields[3], fields[5]),
        ("2048", "1", (EPOCH - 86_400).to_string().as_str()),
        "{out}"
    );
    assert!(fields[11].contains('s') && fields[11].contains('c'), "usage {out}");
    assert!(!out.lines().any(|l| l.starts_with("sub:")), "{out}");
    let fpr = out.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap();
    assert_eq!(fpr, test_key().info.fingerprint);
    assert!(
        out.contains("uid:-::::") && out.contains("xspack test key <test@example.invalid>"),
        "{out}"
    );
    // The secret key imports too.
    let sec = dir.join("secret.asc");
    fs::write(&sec, &test_key().secret_armored).unwrap();
    ok(&gpg(&home, &["--import", sec.as_str()]));
    assert_eq!(gpg_fingerprint(&home, true), test_key().info.fingerprint);
}

#[test]
fn we_load_gpg_keys_and_verify_gpg_signatures() {
    let (_t, dir) = tempdir();
    let (home, fpr) = gpg_key(&dir, "vendor", "rsa2048", "s3cret");
    let secret = export(&home, true, "s3cret");
    let public = PublicKey::from_armored(&export(&home, false, ""), "vendor.asc").unwrap();
    assert_eq!(public.info().fingerprint, fpr);
    assert_eq!(public.info().bits, 2048);

    // gpg signs, we verify.
    let file = dir.join("repomd.xml");
    fs::write(&file, "<repomd/>\n").unwrap();
    ok(&gpg(&home, &["--passphrase", "s3cret", "--armor", "--detach-sign", file.as_str()]));
    verify_detached_file(&public, &file, &dir.join("repomd.xml.asc")).unwrap();

    // Passphrase handling of the protected secret key.
    let err = SigningKey::from_armored(&secret, "vendor.key", None).unwrap_err();
    assert!(matches!(err, Error::PassphraseRequired { .. }), "{err}");
    let err = SigningKey::from_armored(&secret, "vendor.key", Some("wrong")).unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
    assert_eq!(err.to_string(), "vendor.key: wrong passphrase for the secret key");
    let key = SigningKey::from_armored(&secret, "vendor.key", Some("s3cret")).unwrap();

    // We sign with gpg's key, gpg verifies.
    let asc = sign_detached_file(&key, &file, EPOCH).unwrap();
    let status = gpg(&home, &["--status-fd", "1", "--verify", asc.as_str(), file.as_str()]);
    assert!(ok(&status).contains("[GNUPG:] GOODSIG"), "{}", status.stdout);

    // An RPM signed with the protected key passes rpm -K with gpg's export of the public key.
    let rpm = write_rpm(&dir.join("rpms"), &demo_builder(), Some(&key));
    let pubkey = dir.join("vendor.asc");
    fs::write(&pubkey, export(&home, false, "")).unwrap();
    let db = dir.join("rpmdb");
    run("rpm", &["--dbpath", db.as_str(), "--import", pubkey.as_str()]);
    let checked = run("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    let short = key.info().short_id().to_lowercase();
    assert!(checked.contains(&format!("RSA/SHA256 Signature, key ID {short}: OK")), "{checked}");
}

#[test]
fn generated_keys_with_passphrase_and_too_few_bits() {
    let mut opts = TestKeyOptions::new("Locked <locked@example.invalid>", EPOCH);
    opts.seed = Some(99);
    opts.passphrase = Some("open sesame".into());
    let key = generate_test_key(&opts).unwrap();
    assert!(key.secret_armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    let err =
        SigningKey::from_armored(&key.secret_armored, "locked.key", Some("sesame")).unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
    let loaded =
        SigningKey::from_armored(&key.secret_armored, "locked.key", Some("open sesame")).unwrap();
    assert_eq!(loaded.info(), &key.info);
    let sig = sign_detached(&loaded, &b"data"[..], EPOCH).unwrap();
    verify_detached(&loaded.public_key(), &b"data"[..], &sig, Utf8Path::new("data")).unwrap();

    // Fewer than 2048 bits is refused (by the pgp crate already, else by the DDK rules).
    opts.bits = 1024;
    opts.passphrase = None;
    let err = generate_test_key(&opts).unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. } | Error::KeyRules { .. }), "{err}");
    assert!(err.to_string().contains("2048"), "{err}");
}

#[test]
fn keys_breaking_the_ddk_rules_are_refused() {
    let (_t, dir) = tempdir();
    let check = |armored_secret: &str, armored_public: &str, want: &str| {
        let err = SigningKey::from_armored(armored_secret, "k.key", Some("")).unwrap_err();
        assert!(matches!(err, Error::KeyRules { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err} lacks {want:?}");
        let err = PublicKey::from_armored(armored_public, "k.asc").unwrap_err();
        assert!(matches!(err, Error::KeyRules { .. }) && err.to_string().contains(want), "{err}");
    };
    for (algo, want) in [
        ("ed25519", "not RSA"),
        ("nistp256", "not RSA"),
        ("dsa2048", "not RSA"),
        ("rsa1024", "1024 bits"),
    ] {
        let (home, _) = gpg_key(&dir, algo, algo, "");
        check(&export(&home, true, ""), &export(&home, false, ""), want);
    }
    let (home, fpr) = gpg_key(&dir, "withsub", "rsa2048", "");
    ok(&gpg(&home, &["--passphrase", "", "--quick-add-key", &fpr, "rsa2048", "encr", "never"]));
    check(&export(&home, true, ""), &export(&home, false, ""), "1 subkey(s)");

    // An expired key (made in 2020, valid one day); a key that expires later loads.
    let home = gpg_home(&dir.join("expired"));
    let uid = "Expired <expired@example.invalid>";
    ok(&gpg(
        &home,
        &[
            "--faked-system-time",
            "20200101T000000",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "rsa2048",
            "sign",
            "1d",
        ],
    ));
    check(&export(&home, true, ""), &export(&home, false, ""), "expired at 1577923200");
    let home = gpg_home(&dir.join("soon"));
    let uid = "Soon <soon@example.invalid>";
    ok(&gpg(&home, &["--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "2y"]));
    let soon = home.join("soon.asc");
    fs::write(&soon, ok(&gpg(&home, &["--armor", "--export", uid]))).unwrap();
    let key = PublicKey::from_file(&soon).unwrap();
    let expires = key.info().expires.unwrap();
    assert!(expires > key.info().created + 700 * 86_400, "{:?}", key.info());
    assert_eq!(test_key().info.expires, None);

    // Two keys in one file.
    let two = format!("{}{}", test_key().public_armored, export(&home, false, ""));
    let err = PublicKey::from_armored(&two, "two.asc").unwrap_err();
    assert!(err.to_string().contains("holds 2 keys"), "{err}");
    // A public key where a secret key is expected, and the reverse.
    assert!(matches!(
        SigningKey::from_armored(&test_key().public_armored, "p", None),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        PublicKey::from_armored(&test_key().secret_armored, "s"),
        Err(Error::InvalidKey { .. })
    ));
}
