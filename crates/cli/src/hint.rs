//! The `hint: ...` line printed under an error when there is an obvious fix.
//!
//! Hints come from the error's type, never from its text: the libraries' own `hint()` where
//! the fix is theirs to know (the Dockerfile line a guest lacks), and here where the fix is a
//! flag or a command of this binary (`--force`, `xspack pack keygen`).

use xspack_pack::PackFormat;

/// Environment variable holding the signing key's passphrase unless pack.toml names another.
pub const PASSPHRASE_ENV: &str = "XSPACK_SIGN_PASSPHRASE";

/// The hint for `e` run as `command` (`"pack build"`), if there is an obvious fix.
pub fn hint_of(e: &anyhow::Error, command: &str) -> Option<String> {
    crate::exit::causes(e).find_map(|cause| hint_of_cause(cause, command))
}

fn hint_of_cause(cause: &(dyn std::error::Error + 'static), command: &str) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<xspack_io::Error>() {
        return io_hint(e, command);
    }
    if let Some(xspack_manifest::Error::Output(e)) = cause.downcast_ref::<xspack_manifest::Error>()
    {
        return io_hint(e, command);
    }
    if let Some(e) = cause.downcast_ref::<xspack_guest::Error>() {
        return match e {
            xspack_guest::Error::Output(xspack_manifest::Error::Output(e)) => io_hint(e, command),
            _ => e.hint(),
        };
    }
    if let Some(xspack_manifest::Error::NotReplaceable { .. }) = cause.downcast_ref() {
        return Some(
            "--force replaces only an empty directory or a previous build: give another -o DIR"
                .into(),
        );
    }
    if let Some(xspack_image::Error::OverSize { .. }) = cause.downcast_ref() {
        return Some(
            "give a larger --size, or leave --size out to size the disk from the content".into(),
        );
    }
    if let Some(xspack_ext4::Error::TooSmall { needed, .. }) = cause.downcast_ref() {
        return Some(format!(
            "give --size {}M or more, or leave --size out",
            needed.div_ceil(1 << 20)
        ));
    }
    if let Some(e) = cause.downcast_ref::<xspack_rpmrepo::Error>() {
        return key_hint(e, command);
    }
    if let Some(e) = cause.downcast_ref::<xspack_pack::Error>() {
        return pack_hint(e);
    }
    if let Some(e) = cause.downcast_ref::<xspack_template::Error>() {
        return unknown_key_hint(&e.to_string(), "templates/README.md");
    }
    None
}

fn io_hint(e: &xspack_io::Error, command: &str) -> Option<String> {
    match e {
        xspack_io::Error::Exists { .. } if command == "pack keygen" => {
            Some("keys are never replaced: give another -o DIR, or remove the old one".into())
        }
        xspack_io::Error::Exists { .. } => Some("add --force to replace it".into()),
        _ => None,
    }
}

fn key_hint(e: &xspack_rpmrepo::Error, command: &str) -> Option<String> {
    match e {
        xspack_rpmrepo::Error::Io(e) if e.op == "reading secret key" => Some(
            "make a key with `xspack pack keygen -o keys`, then pass --sign-key keys/signing.asc"
                .into(),
        ),
        xspack_rpmrepo::Error::InvalidKey { .. } => Some(
            "--sign-key takes an armored OpenPGP secret key: make one with `xspack pack keygen \
             -o keys`"
                .into(),
        ),
        xspack_rpmrepo::Error::PassphraseRequired { .. } => Some(format!(
            "put the passphrase in ${PASSPHRASE_ENV}{}",
            if command == "pack build" {
                " (or the variable [signing] passphrase-env names)"
            } else {
                ""
            }
        )),
        xspack_rpmrepo::Error::WrongPassphrase { .. } => {
            Some(format!("check ${PASSPHRASE_ENV} (or [signing] passphrase-env)"))
        }
        xspack_rpmrepo::Error::KeyRules { .. } => Some(
            "make a DDK-compatible key with `xspack pack keygen -o keys` (RSA, one primary key, \
             no subkeys)"
                .into(),
        ),
        _ => None,
    }
}

fn pack_hint(e: &xspack_pack::Error) -> Option<String> {
    match e {
        xspack_pack::Error::Spec { reason, .. } | xspack_pack::Error::Metadata { reason, .. }
            if reason.starts_with("update packs must be signed") =>
        {
            Some(format!(
                "make a key with `xspack pack keygen -o keys`, then pass --sign-key \
                 keys/signing.asc (or set [signing] key in pack.toml); --format {} needs none",
                PackFormat::Legacy
            ))
        }
        xspack_pack::Error::Spec { reason, .. } => unknown_key_hint(reason, "packs/README.md"),
        _ => None,
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" becomes "valid keys here: a, b".
fn unknown_key_hint(reason: &str, doc: &str) -> Option<String> {
    let rest = &reason[reason.find("unknown field `")?..];
    let (_, expected) = rest.split_once(", expected ")?;
    let keys = expected.trim_start_matches("one of ").replace('`', "");
    Some(format!("valid keys here: {keys} (see {doc})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_exists_hints_force_except_for_keys() {
        let e: anyhow::Error = xspack_io::Error::Exists { path: "dist/x".into() }.into();
        assert_eq!(hint_of(&e, "image build").as_deref(), Some("add --force to replace it"));
        assert!(hint_of(&e, "pack keygen").unwrap().contains("never replaced"));
    }

    #[test]
    fn too_small_names_the_size_that_fits() {
        let e =
            anyhow::Error::new(xspack_ext4::Error::TooSmall { given: 1 << 20, needed: 5 << 20 })
                .context("oci:x");
        assert_eq!(
            hint_of(&e, "image build").as_deref(),
            Some("give --size 5M or more, or leave --size out")
        );
    }

    #[test]
    fn unknown_key_lists_the_valid_ones() {
        let reason = "unknown field `orginator`, expected one of `name`, `version`, `build`, \
                      `originator`, `description`, `formats`";
        let e: anyhow::Error =
            xspack_pack::Error::Spec { at: "p/pack.toml:6:1".into(), reason: reason.into() }.into();
        assert_eq!(
            hint_of(&e, "pack build").as_deref(),
            Some(
                "valid keys here: name, version, build, originator, description, formats (see \
                 packs/README.md)"
            )
        );
        let plain: anyhow::Error = anyhow::anyhow!("boom");
        assert_eq!(hint_of(&plain, "pack build"), None);
    }
}
