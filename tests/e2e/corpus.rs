//! The bad-input corpus of issue 9: hostile inputs generated here (never committed as blobs),
//! each run through the `xspack` binary and required to fail cleanly:
//!
//! - the exit code the case names (3 for an input found bad, 1 for a failure to do the work);
//! - exactly one `xspack: error:` line, the last on stderr but for a `hint:` line, naming the
//!   input and the problem;
//! - no panic;
//! - the case's directory unchanged: nothing under the final output name, no temporary left.
//!
//! One test per group runs a table of cases and reports every failing row by name. The case
//! tables live in `corpus/`: image sources, packs (pack.toml, RPMs, keys), and the files given
//! to `verify` and `inspect`.

mod files;
mod image;
mod pack;

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::xspack;

/// One bad input and what xspack must say about it.
pub struct Case {
    /// Short name, shown when the case fails.
    pub name: String,
    /// Arguments after the global `-q`.
    pub args: Vec<String>,
    /// Expected exit code.
    pub code: i32,
    /// The input the error line must name.
    pub input: String,
    /// What the error line must say is wrong.
    pub problem: String,
}

impl Case {
    /// A case named `name` running `args`, expected to exit `code` naming `input` and `problem`.
    pub fn new(
        name: impl Into<String>,
        args: &[&str],
        code: i32,
        input: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Case {
            name: name.into(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
            code,
            input: input.into(),
            problem: problem.into(),
        }
    }
}

/// Every path under `root` with its size (0 for directories), to compare before and after.
fn snapshot(root: &Utf8Path) -> BTreeMap<Utf8PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = Utf8PathBuf::from_path_buf(entry.path()).unwrap();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, 0);
            } else {
                out.insert(path, meta.len());
            }
        }
    }
    out
}

/// Runs one case in `root`; returns what is wrong with xspack's behaviour, if anything.
fn check(root: &Utf8Path, case: &Case) -> Option<String> {
    let before = snapshot(root);
    let out = xspack().arg("-q").args(&case.args).output().expect("xspack runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut wrong = Vec::new();
    match out.status.code() {
        Some(c) if c == case.code => {}
        Some(c) => wrong.push(format!("exit {c}, want {}", case.code)),
        None => wrong.push(format!("killed: {:?}", out.status)),
    }
    if err.contains("panicked") {
        wrong.push("panicked".to_owned());
    }
    // A `hint:` line may follow the error; nothing else may.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("xspack: error: ")).collect();
    let last = err.lines().rfind(|l| !l.starts_with("hint: "));
    if errors.len() != 1 || last != errors.first().copied() {
        wrong.push("not exactly one error line, last".to_owned());
    }
    if let Some(line) = errors.first() {
        if !line.contains(&case.input) {
            wrong.push(format!("does not name {:?}", case.input));
        }
        if !line.contains(&case.problem) {
            wrong.push(format!("does not say {:?}", case.problem));
        }
    }
    // With --no-capture, one line per case: name, exit code, error line.
    eprintln!("corpus\t{}\t{:?}\t{}", case.name, out.status.code(), errors.first().unwrap_or(&""));
    let after = snapshot(root);
    if after != before {
        let added: Vec<&Utf8PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
        let gone: Vec<&Utf8PathBuf> = before.keys().filter(|p| !after.contains_key(*p)).collect();
        wrong.push(format!("files changed: added {added:?}, removed {gone:?}"));
    }
    if wrong.is_empty() {
        None
    } else {
        Some(format!("{}: {}\n    stderr: {}", case.name, wrong.join("; "), err.trim_end()))
    }
}

/// Runs every case of a group (each in its own directory under `root`, made by `setup`) and
/// fails naming every case that went wrong.
pub fn run_group(group: &str, cases: &[(Utf8PathBuf, Case)]) {
    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (dir, case) in cases {
        assert!(names.insert(case.name.clone()), "duplicate case name {}", case.name);
        if let Some(f) = check(dir, case) {
            failures.push(f);
        }
    }
    eprintln!("{group}: {} cases, {} failed", cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{group}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A fresh directory `root/name` for one case.
pub fn case_dir(root: &Utf8Path, name: &str) -> Utf8PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
