//! Test inputs and oracles shared by the compressors' tests ([`super::pgzip`], [`super::pxz`]).

use std::io::Write;
use std::process::{Command, Stdio};

/// `len` bytes alternating every `period` bytes between random bytes (xorshift) and numbered
/// text lines: data that compresses in some places and not in others.
pub(crate) fn mixed(len: usize, period: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len);
    let mut line = 0u64;
    while out.len() < len {
        if (out.len() / period).is_multiple_of(2) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            line += 1;
            out.extend_from_slice(format!("{line} payload line {}\n", line * 7 % 13).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Runs `cmd args` with `input` on stdin (fed from a thread); asserts it succeeds and returns
/// its stdout.
pub(crate) fn system(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child =
        Command::new(cmd).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd} {args:?} failed");
    out.stdout
}
