//! Measuring in a child process of the test binary: a test runs one of its own tests again,
//! alone, so that what that test reads of its process (the peak resident set, `VmHWM` in
//! `/proc/self/status`, Linux `proc(5)`) is its own and not the parent's or another test's.

use std::process::Command;

/// The peak resident set of this process so far, in KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("a VmHWM line");
    line.trim().trim_end_matches("kB").trim().parse().expect("VmHWM in kB")
}

/// Runs test `test` (its full path in this test binary, ignored or not) alone in a child
/// process, with the environment variable `env.0` set to `env.1`; asserts that it passed and
/// returns what it printed.
pub fn run_test_in_child(test: &str, env: (&str, &str)) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", test, "--include-ignored", "--nocapture"])
        .env(env.0, env.1)
        .output()
        .expect("running the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{test}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// What follows `key` on the first line of `out` that holds it, trimmed (the test harness may
/// print the test's name first on that line).
pub fn reported(out: &str, key: &str) -> String {
    let line = out.lines().find_map(|l| l.find(key).map(|at| &l[at + key.len()..]));
    line.unwrap_or_else(|| panic!("no {key:?} line in:\n{out}")).trim().to_owned()
}
