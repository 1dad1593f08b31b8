//! `OpenPGP` keys (RFC 4880 / RFC 9580 v4 keys) for signing packs: loading armored secret and
//! public keys, the XenServer DDK key rules, exporting the `RPM-GPG-KEY-<VENDOR>` file, and
//! generating throw-away test keys.
//!
//! The DDK rules (`docs/formats/packs.md` section "Signing and keys") are enforced on every key
//! loaded, public or secret, because a key that breaks them signs packs that a host refuses later:
//!
//! - exactly one certificate in the file (`import-update-key` parses one `pub` line);
//! - a v4 key (gpg 2.0.22 and rpm 4.11 on `CentOS` 7 cannot read v6 keys);
//! - an RSA primary key of at least 2048 bits (no DSA, no ECC: gpg 2.0.22 lacks ECC, and the
//!   pre-2024 `import-update-key` only parses `2048R/XXXXXXXX`);
//! - no subkeys (rpm and the DDK guide: signatures must come from the primary key);
//! - at least one user ID (gpg refuses to import a key without one).

use std::fmt::Write as _;

use camino::Utf8Path;
use pgp::composed::{
    ArmorOptions, Deserializable, KeyType, SecretKeyParamsBuilder, SignedKeyDetails,
    SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyVersion, Password, SecretParams, Timestamp};
use rand::SeedableRng;
use xspack_io::AtomicFile;

use crate::Error;

/// Smallest RSA modulus the DDK rules accept.
pub const MIN_RSA_BITS: u32 = 2048;

/// Facts about a key, as `gpg --with-colons --show-keys` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The v4 fingerprint: 40 uppercase hex digits.
    pub fingerprint: String,
    /// The long key id: 16 uppercase hex digits (the fingerprint's last 8 bytes).
    pub key_id: String,
    /// Public-key algorithm name, e.g. `RSA`.
    pub algorithm: String,
    /// Modulus size in bits (RSA).
    pub bits: u32,
    /// Creation time of the primary key, seconds since the epoch.
    pub created: u32,
    /// The user IDs, in file order.
    pub user_ids: Vec<String>,
    /// When the key expires (seconds since the epoch), per its newest self-signature; `None`
    /// for a key that never expires, as the DDK recommends. gpg reports signatures by an
    /// expired key as `EXPKEYSIG`, which xapi refuses.
    pub expires: Option<u32>,
}

impl KeyInfo {
    /// The 8-digit short key id the pre-2024 `import-update-key` and `rpm -K` print.
    pub fn short_id(&self) -> &str {
        &self.key_id[8..]
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

fn rules(origin: &str, reason: impl Into<String>) -> Error {
    Error::KeyRules { origin: origin.to_owned(), reason: reason.into() }
}

fn invalid(origin: &str, reason: &dyn std::fmt::Display) -> Error {
    Error::InvalidKey { origin: origin.to_owned(), reason: reason.to_string() }
}

/// Checks the DDK rules on a primary key and describes it.
fn check_rules(
    origin: &str,
    primary: &impl KeyDetails,
    subkeys: usize,
    details: &SignedKeyDetails,
) -> Result<KeyInfo, Error> {
    let user_ids = user_ids(details);
    if primary.version() != KeyVersion::V4 {
        return Err(rules(
            origin,
            format!(
                "a {:?} key; only v4 keys are readable by gpg 2.0 and rpm 4.11",
                primary.version()
            ),
        ));
    }
    let algorithm = primary.algorithm();
    if !matches!(algorithm, PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign) {
        return Err(rules(
            origin,
            format!(
                "the primary key is {algorithm:?}, not RSA; DSA and ECC keys are refused \
                 (gpg 2.0.22 on CentOS 7 lacks ECC and import-update-key expects an RSA key)"
            ),
        ));
    }
    // An RSA public key serializes as MPI(n) then MPI(e); an MPI starts with its bit count.
    let mut params = Vec::new();
    primary.public_params().to_writer(&mut params).map_err(|e| invalid(origin, &e))?;
    let bits = match params.as_slice() {
        [hi, lo, ..] => u32::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(invalid(origin, &"RSA parameters are empty")),
    };
    if bits < MIN_RSA_BITS {
        return Err(rules(
            origin,
            format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    if subkeys > 0 {
        return Err(rules(
            origin,
            format!(
                "the key has {subkeys} subkey(s); rpm and the DDK need a single RSA primary key without subkeys"
            ),
        ));
    }
    if user_ids.is_empty() {
        return Err(rules(origin, "the key has no user ID; gpg refuses to import it"));
    }
    let created = primary.created_at().as_secs();
    let expires = expiry(details, created);
    if let Some(at) = expires
        && u64::from(at) <= now()
    {
        return Err(rules(origin, format!("the key expired at {at} (seconds since the epoch)")));
    }
    let fingerprint = upper_hex(primary.fingerprint().as_bytes());
    Ok(KeyInfo {
        key_id: fingerprint[fingerprint.len() - 16..].to_owned(),
        fingerprint,
        algorithm: "RSA".to_owned(),
        bits,
        created,
        user_ids,
        expires,
    })
}

/// Refuses a file with several armored blocks: the parser would silently read only the first.
fn single_block(text: &str, origin: &str, kind: &str) -> Result<(), Error> {
    let blocks = text.matches(&format!("-----BEGIN PGP {kind} KEY BLOCK-----")).count();
    if blocks > 1 {
        return Err(rules(origin, format!("the file holds {blocks} keys; exactly one is allowed")));
    }
    Ok(())
}

/// The key's expiry per its newest self-signature carrying a key expiration time.
fn expiry(details: &SignedKeyDetails, created: u32) -> Option<u32> {
    let signatures =
        details.users.iter().flat_map(|u| &u.signatures).chain(&details.direct_signatures);
    let newest = signatures
        .filter(|s| s.key_expiration_time().is_some())
        .max_by_key(|s| s.created().map_or(0, Timestamp::as_secs))?;
    let secs = newest.key_expiration_time()?.as_secs();
    (secs > 0).then(|| created.saturating_add(secs))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn user_ids(details: &SignedKeyDetails) -> Vec<String> {
    details.users.iter().map(|u| String::from_utf8_lossy(u.id.id()).into_owned()).collect()
}

/// A public key that passed the DDK rules.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub(crate) key: SignedPublicKey,
    info: KeyInfo,
}

impl PublicKey {
    /// Parses an armored public key block; `origin` names it in errors.
    pub fn from_armored(text: &str, origin: &str) -> Result<Self, Error> {
        if text.contains("BEGIN PGP PRIVATE KEY BLOCK") {
            return Err(invalid(
                origin,
                &"this is a secret key; export the public key with `gpg --armor --export`",
            ));
        }
        single_block(text, origin, "PUBLIC")?;
        let (keys, _) = SignedPublicKey::from_string_many(text).map_err(|e| invalid(origin, &e))?;
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| invalid(origin, &e))?;
        let [key] = <[SignedPublicKey; 1]>::try_from(keys).map_err(|keys| {
            if keys.is_empty() {
                invalid(origin, &"no public key found")
            } else {
                rules(origin, format!("the file holds {} keys; exactly one is allowed", keys.len()))
            }
        })?;
        key.verify_bindings().map_err(|e| invalid(origin, &format!("bad self-signature: {e}")))?;
        let info = check_rules(origin, &key.primary_key, key.public_subkeys.len(), &key.details)?;
        Ok(PublicKey { key, info })
    }

    /// Reads an armored public key file.
    pub fn from_file(path: &Utf8Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading public key", path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            invalid(path.as_str(), &"not an ASCII-armored key (the file is not text)")
        })?;
        Self::from_armored(&text, path.as_str())
    }

    /// Facts about the key.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// The key as an armored `PUBLIC KEY BLOCK`, like `gpg --armor --export`.
    pub fn to_armored(&self) -> String {
        self.key
            .to_armored_string(ArmorOptions::default())
            .expect("serializing a parsed key into memory cannot fail")
    }

    /// Writes [`PublicKey::to_armored`] atomically to `dest` (conventionally
    /// `RPM-GPG-KEY-<VENDOR>`, a name then baked into `update.xml` and never to be changed).
    pub fn write_file(&self, dest: &Utf8Path, replace: bool) -> Result<(), Error> {
        use std::io::Write as _;
        let mut out =
            if replace { AtomicFile::create_or_replace(dest)? } else { AtomicFile::create(dest)? };
        out.write_all(self.to_armored().as_bytes())
            .map_err(|e| Error::io("writing public key", dest, e))?;
        out.commit()?;
        Ok(())
    }
}

/// A secret signing key that passed the DDK rules and is unlocked by its passphrase.
pub struct SigningKey {
    pub(crate) key: SignedSecretKey,
    pub(crate) passphrase: Option<String>,
    info: KeyInfo,
    origin: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("info", &self.info)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses an armored secret key block (`gpg --armor --export-secret-keys`); `origin` names
    /// it in errors. A protected key needs `passphrase`, which is checked here.
    pub fn from_armored(text: &str, origin: &str, passphrase: Option<&str>) -> Result<Self, Error> {
        if !text.contains("BEGIN PGP PRIVATE KEY BLOCK") {
            return Err(invalid(
                origin,
                &"no armored secret key block (BEGIN PGP PRIVATE KEY BLOCK)",
            ));
        }
        single_block(text, origin, "PRIVATE")?;
        let (keys, _) = SignedSecretKey::from_string_many(text).map_err(|e| invalid(origin, &e))?;
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| invalid(origin, &e))?;
        let [key] = <[SignedSecretKey; 1]>::try_from(keys).map_err(|keys| {
            if keys.is_empty() {
                invalid(origin, &"no secret key found")
            } else {
                rules(origin, format!("the file holds {} keys; exactly one is allowed", keys.len()))
            }
        })?;
        key.verify_bindings().map_err(|e| invalid(origin, &format!("bad self-signature: {e}")))?;
        let subkeys = key.public_subkeys.len() + key.secret_subkeys.len();
        let info = check_rules(origin, &key.primary_key, subkeys, &key.details)?;
        if let SecretParams::Encrypted(_) = key.primary_key.secret_params() {
            let Some(pw) = passphrase else {
                return Err(Error::PassphraseRequired { origin: origin.to_owned() });
            };
            let unlocked = key.primary_key.unlock(&Password::from(pw), |_, _| Ok(()));
            if !matches!(unlocked, Ok(Ok(()))) {
                return Err(Error::WrongPassphrase { origin: origin.to_owned() });
            }
        }
        Ok(SigningKey {
            key,
            passphrase: passphrase.map(str::to_owned),
            info,
            origin: origin.to_owned(),
        })
    }

    /// Reads an armored secret key file.
    pub fn from_file(path: &Utf8Path, passphrase: Option<&str>) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading secret key", path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            invalid(path.as_str(), &"not an ASCII-armored key (the file is not text)")
        })?;
        Self::from_armored(&text, path.as_str(), passphrase)
    }

    /// Facts about the key.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// The matching public key, for `RPM-GPG-KEY-<VENDOR>` and verification.
    pub fn public_key(&self) -> PublicKey {
        PublicKey { key: self.key.to_public_key(), info: self.info.clone() }
    }

    /// The passphrase as the pgp crate takes it (empty for an unprotected key).
    pub(crate) fn password(&self) -> Password {
        self.passphrase.as_deref().map_or_else(Password::empty, Password::from)
    }

    /// A signature time no earlier than the key's creation: gpg reports a signature older
    /// than its key as a time conflict and does not accept it.
    pub(crate) fn signature_time(&self, wanted: u32) -> u32 {
        wanted.max(self.info.created)
    }
}

/// What [`generate_test_key`] makes.
#[derive(Debug, Clone)]
pub struct TestKeyOptions {
    /// The user ID, e.g. `Example Test Key <test@example.invalid>`.
    pub user_id: String,
    /// Key creation time, seconds since the epoch; signatures are never dated before it.
    pub created: u32,
    /// RSA modulus size (2048 unless testing the rules).
    pub bits: u32,
    /// Seed for the key material: the same seed and options give the same RSA key and so the
    /// same fingerprint (the self-signature still carries the current time, so the armored
    /// text differs between runs). `None` draws from the operating system's RNG.
    pub seed: Option<u64>,
    /// Protect the secret key with this passphrase.
    pub passphrase: Option<String>,
}

impl TestKeyOptions {
    /// An RSA-2048 key for `user_id` created at `created`, random, without passphrase.
    pub fn new(user_id: impl Into<String>, created: u32) -> Self {
        TestKeyOptions {
            user_id: user_id.into(),
            created,
            bits: 2048,
            seed: None,
            passphrase: None,
        }
    }
}

/// A generated key pair, armored.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The armored secret key (`BEGIN PGP PRIVATE KEY BLOCK`). Never commit it.
    pub secret_armored: String,
    /// The armored public key (`BEGIN PGP PUBLIC KEY BLOCK`).
    pub public_armored: String,
    /// Facts about the key.
    pub info: KeyInfo,
}

/// Generates a fresh RSA key pair (one certifying and signing primary key, no subkeys) for
/// tests and examples. Real packs should be signed with a vendor key kept offline.
pub fn generate_test_key(opts: &TestKeyOptions) -> Result<GeneratedKey, Error> {
    let origin = "generated test key";
    let fail = |e: &dyn std::fmt::Display| invalid(origin, &format!("generation failed: {e}"));
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Rsa(opts.bits))
        .can_certify(true)
        .can_sign(true)
        .created_at(Timestamp::from_secs(opts.created))
        .passphrase(opts.passphrase.clone())
        .primary_user_id(opts.user_id.clone());
    let params = params.build().map_err(|e| fail(&e))?;
    let key = match opts.seed {
        Some(seed) => params.generate(rand::rngs::StdRng::seed_from_u64(seed)),
        None => params.generate(rand::rngs::OsRng),
    }
    .map_err(|e| fail(&e))?;
    let secret_armored = key.to_armored_string(ArmorOptions::default()).map_err(|e| fail(&e))?;
    let loaded = SigningKey::from_armored(&secret_armored, origin, opts.passphrase.as_deref())?;
    Ok(GeneratedKey {
        public_armored: loaded.public_key().to_armored(),
        info: loaded.info.clone(),
        secret_armored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_id_is_the_last_eight_digits() {
        let info = KeyInfo {
            fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
            key_id: "89ABCDEF01234567".into(),
            algorithm: "RSA".into(),
            bits: 2048,
            created: 0,
            user_ids: vec![],
            expires: None,
        };
        assert_eq!(info.short_id(), "01234567");
        assert_eq!(upper_hex(&[0xab, 0x01]), "AB01");
    }

    #[test]
    fn garbage_is_an_invalid_key() {
        let err = PublicKey::from_armored("hello", "k.asc").unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        let err = SigningKey::from_armored("hello", "k.asc", None).unwrap_err();
        assert!(err.to_string().starts_with("k.asc: invalid OpenPGP key"), "{err}");
    }
}
