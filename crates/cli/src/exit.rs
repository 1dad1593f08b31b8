//! Exit codes and the one shape every error is printed in.
//!
//! `xspack: error: <input>: <what is wrong>` on stderr, then `hint: <the fix>` when there is an
//! obvious one ([`crate::hint`]); or with `--json` a JSON result on stdout with `error` and
//! `hint` fields. Codes: 0 ok, 1 failure, 2 usage error, 3 verification failed (the input is bad).

use std::fmt;
use std::process::ExitCode;

use crate::ui::Ui;

/// Exit code for a failure to do the work.
pub const FAILURE: u8 = 1;
/// Exit code for a usage error (clap uses the same).
pub const USAGE: u8 = 2;
/// Exit code when the input was checked and found bad.
pub const BAD_INPUT: u8 = 3;

/// An error meaning "the input was checked and is bad" (exit 3). Holds the whole message.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInput {}

/// An error in how xspack was called (exit 2). Holds the whole message.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// The exit code an error maps to.
pub fn code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() {
            return USAGE;
        }
        if cause.is::<BadInput>() {
            return BAD_INPUT;
        }
        if let Some(xspack_manifest::Error::NotReplaceable { .. }) = cause.downcast_ref() {
            return USAGE;
        }
        if let Some(m) = cause.downcast_ref::<xspack_manifest::Error>()
            && m.is_bad_input()
        {
            return BAD_INPUT;
        }
        if crate::image::is_bad_input(cause) {
            return BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<xspack_pack::Error>()
            && e.is_bad_input()
        {
            return BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<xspack_template::Error>()
            && e.is_bad_input()
        {
            return BAD_INPUT;
        }
        // Only a signing key given on the command line reaches here as a bare rpmrepo error.
        if cause.is::<xspack_rpmrepo::Error>() {
            return BAD_INPUT;
        }
    }
    FAILURE
}

/// Prints `e` in the standard shape, with a `hint:` line when there is an obvious fix, and
/// returns its exit code.
pub fn report(e: &anyhow::Error, ui: &Ui) -> ExitCode {
    let code = code_of(e);
    let message = one_line(e);
    let hint = crate::hint::hint_of(e, ui.command);
    if ui.json {
        ui.result(serde_json::json!({
            "ok": false,
            "exit_code": code,
            "error": message,
            "hint": hint,
        }));
    } else {
        eprintln!("xspack: error: {message}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
    }
    ExitCode::from(code)
}

/// The context chain joined with ": " on one line, as `{:#}` does, but without a cause that
/// repeats what its parent already said (`ext4: {0}` over its own source). Control characters
/// (from names or bytes in a hostile input) are escaped so the line stays one line and the
/// terminal sane.
fn one_line(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text: String = cause
            .to_string()
            .chars()
            .map(|c| match c {
                '\n' => " ".to_owned(),
                c if c.is_control() => c.escape_default().to_string(),
                c => c.to_string(),
            })
            .collect();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    shorten_long_runs(&message)
}

/// Cuts every run of more than [`xspack_io::MAX_QUOTED`] characters without a space (a path,
/// a name or a value taken from the input) to that many, marked with `…`: whatever a library
/// quotes, one line never carries more than that much of any single input, so a hostile
/// input cannot flood a terminal or a CI log.
fn shorten_long_runs(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4096));
    for (i, run) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&xspack_io::quote::truncated(run));
    }
    out
}

/// A command line clap refused: clap's own message (or help and version, which are not
/// errors); with `--json` among the arguments, the one JSON result with `command` null.
pub fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    if !wants_json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.render().to_string();
    let message = text.lines().next().unwrap_or("usage error").trim_start_matches("error: ");
    let result = serde_json::json!({
        "result_version": crate::ui::RESULT_VERSION,
        "command": null,
        "ok": false,
        "exit_code": USAGE,
        "artifacts": [],
        "inputs": [],
        "warnings": [],
        "seconds": 0.0,
        "error": message,
        "hint": "see xspack --help",
    });
    println!("{result}");
    ExitCode::from(USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn a_cause_repeating_its_parent_is_said_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ext4: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrapper(std::io::Error::other("too small"))).context("oci:x");
        assert_eq!(one_line(&e), "oci:x: ext4: too small");
        let plain = anyhow::anyhow!("b").context("a");
        assert_eq!(one_line(&plain), "a: b");
    }

    #[test]
    fn no_input_is_quoted_beyond_the_limit() {
        let name = "a".repeat(10_000);
        let e = anyhow::anyhow!("entry \"{name}\": name too long").context("oci:img");
        let line = one_line(&e);
        assert!(line.starts_with("oci:img: entry \"aaa"), "{line}");
        assert!(line.ends_with("…: name too long") || line.ends_with("… name too long"), "{line}");
        assert!(line.chars().count() < xspack_io::MAX_QUOTED + 60, "{}", line.len());
        let short = anyhow::anyhow!("a b c");
        assert_eq!(one_line(&short), "a b c");
    }

    #[test]
    fn codes_follow_the_chain() {
        let plain: anyhow::Error = anyhow::anyhow!("boom");
        assert_eq!(code_of(&plain), FAILURE);
        let bad = anyhow::Error::new(BadInput("dist: 1 file mismatched".into())).context("ignored");
        assert_eq!(code_of(&bad), BAD_INPUT);
        let usage: anyhow::Error = Usage("bad flag".into()).into();
        assert_eq!(code_of(&usage), USAGE);
        let lib = Err::<(), _>(xspack_manifest::Error::NoManifest { dir: "d".into() })
            .context("d")
            .unwrap_err();
        assert_eq!(code_of(&lib), BAD_INPUT);
    }
}
