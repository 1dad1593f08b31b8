//! The error shapes every xspack library shares: one I/O error that names the file and what
//! was being done to it ([`IoError`]), and whose fault an error is ([`Classify`]), which the
//! command turns into its exit code (3 for a bad input, 2 for a bad call, 1 otherwise).
//!
//! Each error either prints its cause or exposes it as its `source`, never both: the command
//! prints the whole chain, so a message that also printed its source would say it twice.

use std::io;

/// An operation on a file that failed: `{path}: {op}`, with the OS error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {op}")]
pub struct IoError {
    /// What was being done, as a short gerund phrase ("reading", "creating directory").
    pub op: &'static str,
    /// The file or directory, or what stands for it ("the image").
    pub path: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// An error doing `op` to `path`.
    pub fn new(op: &'static str, path: impl AsRef<str>, source: io::Error) -> Self {
        IoError { op, path: path.as_ref().to_owned(), source }
    }

    /// The kind of the OS error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input was checked and is bad: a corrupt image, an invalid pack, a spec that names
    /// what is not there (exit code 3).
    Input,
    /// The command was called wrongly: options that do not fit together, an output that may
    /// not be replaced (exit code 2).
    Caller,
    /// The work could not be done: a full disk, a failed tool, a bug (exit code 1).
    Host,
}

impl Fault {
    /// [`Fault::Input`] when `input` holds, else [`Fault::Host`]: the split most errors make.
    pub fn input_if(input: bool) -> Fault {
        if input { Fault::Input } else { Fault::Host }
    }
}

/// An error that knows whose fault it is. Every library error type implements it, so the
/// command maps any of them to an exit code the same way.
pub trait Classify {
    /// Whose fault this error is.
    fn fault(&self) -> Fault;

    /// Whether the input is at fault.
    fn is_bad_input(&self) -> bool {
        self.fault() == Fault::Input
    }
}

impl Classify for IoError {
    /// The host's: a file that cannot be read or written is not a bad input by itself (a
    /// library that knows better wraps it in an error of its own).
    fn fault(&self) -> Fault {
        Fault::Host
    }
}
