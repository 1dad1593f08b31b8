//! Running build-host tools: errors carry the command line and the tail of standard error, so
//! a failure names what ran and why it failed in one message.

use std::process::Command;

use crate::Error;

/// Characters of standard error kept in an error message.
const STDERR_TAIL: usize = 400;

/// Runs `cmd`, failing with its argv and stderr tail on a non-zero exit. A program that cannot
/// be started is reported as missing, with the Debian `packages` that provide it.
pub fn run(cmd: &mut Command, packages: &'static str) -> Result<Vec<u8>, Error> {
    let argv = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::ToolMissing { tool: cmd.get_program().to_string_lossy().into_owned(), packages }
        }
        _ => {
            Error::Tool { argv: argv.clone(), status: "not started".into(), stderr: e.to_string() }
        }
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = flat.char_indices().rev().nth(STDERR_TAIL).map_or(0, |(i, _)| i);
    Err(Error::Tool { argv, status: output.status.to_string(), stderr: flat[start..].to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command() {
        let err = run(Command::new("sh").args(["-c", "echo 'bad\nthing' >&2; exit 3"]), "dash")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sh -c "), "{err}");
        assert!(err.ends_with("(exit status: 3): bad thing"), "{err}");
        let err = run(&mut Command::new("/nonexistent/tool"), "some-package").unwrap_err();
        assert!(err.to_string().contains("install the Debian packages some-package"), "{err}");
        assert_eq!(run(Command::new("echo").arg("hi"), "coreutils").unwrap(), b"hi\n");
    }
}
