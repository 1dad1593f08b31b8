//! Exit codes and the one shape every error is printed in.
//!
//! `xspack: error: <input>: <what is wrong>` on stderr, then `hint: <the fix>` when there is an
//! obvious one ([`crate::hint`]); or with `--json` a JSON result on stdout with `error` and
//! `hint` fields. Codes: 0 ok, 1 failure, 2 usage error, 3 verification failed (the input is bad).

use std::fmt;
use std::process::ExitCode;

use xspack_io::{Classify, Fault};

use crate::ui::Ui;

/// Exit code for a failure to do the work.
pub const FAILURE: u8 = 1;
/// Exit code for a usage error (clap uses the same).
pub const USAGE: u8 = 2;
/// Exit code when the input was checked and found bad.
pub const BAD_INPUT: u8 = 3;

/// An error and whose fault it is, as the command's functions pass it up through `anyhow`.
/// It is transparent: it prints, and exposes as its source, exactly what the error it holds
/// does, so the one line printed is the same with or without it.
#[derive(Debug)]
pub struct Classified {
    fault: Fault,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Classified {
    /// The error it holds.
    pub fn inner(&self) -> &(dyn std::error::Error + 'static) {
        &*self.error
    }
}

/// Every error in `e`'s chain, outermost first, with the error a [`Classified`] holds in its
/// place (the chain itself skips it: a `Classified` shows its text and its source).
pub fn causes(e: &anyhow::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    e.chain().map(|c| c.downcast_ref::<Classified>().map_or(c, Classified::inner))
}

/// A message of the command's own.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Message {}

/// "The input was checked and is bad" (exit 3), with the whole message.
pub fn bad_input(message: impl Into<String>) -> Classified {
    Classified { fault: Fault::Input, error: Box::new(Message(message.into())) }
}

/// An error in how xspack was called (exit 2), with the whole message.
pub fn usage(message: impl Into<String>) -> Classified {
    Classified { fault: Fault::Caller, error: Box::new(Message(message.into())) }
}

/// `e` with the fault its library gives it.
pub fn classify<E: Classify + std::error::Error + Send + Sync + 'static>(e: E) -> Classified {
    Classified { fault: e.fault(), error: Box::new(e) }
}

/// Library results, classified by the library's own [`Classify`] as they pass up.
pub trait ClassifyResult<T> {
    /// The error with the fault its library gives it.
    fn classified(self) -> Result<T, Classified>;
    /// The error with `fault`, whatever its library says (a key file named on the command
    /// line is an input, even when reading it is what failed).
    fn fault(self, fault: Fault) -> Result<T, Classified>;
}

impl<T, E: Classify + std::error::Error + Send + Sync + 'static> ClassifyResult<T>
    for Result<T, E>
{
    fn classified(self) -> Result<T, Classified> {
        self.map_err(classify)
    }

    fn fault(self, fault: Fault) -> Result<T, Classified> {
        self.map_err(|e| Classified { fault, error: Box::new(e) })
    }
}

/// The exit code an error maps to: the fault of the first classified error in its chain (the
/// outermost that said), else a failure.
pub fn code_of(e: &anyhow::Error) -> u8 {
    let fault = e.chain().find_map(|c| c.downcast_ref::<Classified>()).map(|c| c.fault);
    match fault {
        Some(Fault::Input) => BAD_INPUT,
        Some(Fault::Caller) => USAGE,
        Some(Fault::Host) | None => FAILURE,
    }
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

/// The context chain joined with ": " on one line, as `{:#}` does (no error prints its source
/// as well as exposing it, so nothing is said twice). Control characters (from names or bytes
/// in a hostile input) are escaped so the line stays one line and the terminal sane.
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
pub fn clap_error(e: &clap::Error) -> ExitCode {
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
    fn the_chain_is_joined_in_order() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ext4")
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
        let bad = anyhow::Error::new(bad_input("dist: 1 file mismatched")).context("ignored");
        assert_eq!(code_of(&bad), BAD_INPUT);
        let called: anyhow::Error = usage("bad flag").into();
        assert_eq!(code_of(&called), USAGE);
        let lib = Err::<(), _>(xspack_manifest::Error::NoManifest { dir: "d".into() })
            .classified()
            .context("d")
            .unwrap_err();
        assert_eq!(code_of(&lib), BAD_INPUT);
        assert_eq!(one_line(&lib), "d: d: no SHA256SUMS or manifest.json to verify against");
        let host = Err::<(), _>(xspack_io::IoError::new(
            "reading",
            "f",
            std::io::ErrorKind::NotFound.into(),
        ))
        .classified()
        .unwrap_err();
        assert_eq!(code_of(&anyhow::Error::new(host)), FAILURE);
    }
}
