//! Exit codes and the one shape every error is printed in.
//!
//! `xspack: error: <input>: <what is wrong>` on stderr, or with `--json` a JSON result on
//! stdout. Codes: 0 ok, 1 failure, 2 usage error, 3 verification failed (the input is bad).

use std::fmt;
use std::process::ExitCode;

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
    }
    FAILURE
}

/// Prints `e` in the standard shape and returns its exit code.
pub fn report(e: &anyhow::Error, json: bool, command: &str) -> ExitCode {
    let code = code_of(e);
    // `{:#}` joins the context chain with ": " on one line. Control characters (from names or
    // bytes in a hostile input) are escaped so the line stays one line and the terminal sane.
    let message: String = format!("{e:#}")
        .chars()
        .map(|c| match c {
            '\n' => " ".to_owned(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect();
    if json {
        let result = serde_json::json!({
            "result_version": crate::ui::RESULT_VERSION,
            "command": command,
            "ok": false,
            "exit_code": code,
            "error": message,
        });
        println!("{result}");
    } else {
        eprintln!("xspack: error: {message}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

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
