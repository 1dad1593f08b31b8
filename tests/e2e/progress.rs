//! Progress on stderr: bars with bytes and a rate in a real terminal (tmux), cleared when the
//! step ends; a few plain lines when stderr is a pipe; nothing under `-q`.

use std::process::Command;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

use crate::bookworm::fixture;
use crate::common::{code, stderr, tempdir, xspack};

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn capture(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "xspack"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn a_terminal_gets_bars_with_rates_that_are_cleared() {
    let fixture = fixture();
    let (_t, dir) = tempdir();
    let dist = dir.join("dist");
    let shell = format!(
        "cd {dir} && {bin} image build docker-archive:{fixture}/docker.tar --flavor none \
         --format vhd -o {dist}; echo XSPACK-EXIT-$?; sleep 600",
        bin = env!("CARGO_BIN_EXE_xspack"),
    );
    let tmux = Tmux { socket: format!("xspack-test-{}", std::process::id()) };
    let out = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "xspack", "-x", "160", "-y", "40", &shell])
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("tmux runs (install it with just oracles)");
    assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
    let start = Instant::now();
    let mut bars = Vec::new();
    let last = loop {
        let pane = tmux.capture();
        for line in pane.lines().filter(|l| l.contains("] ") && l.contains("/s")) {
            bars.push(line.to_owned());
        }
        if pane.contains("XSPACK-EXIT-") {
            break pane;
        }
        assert!(start.elapsed() < Duration::from_mins(5), "no end in 5 minutes:\n{pane}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(last.contains("XSPACK-EXIT-0"), "{last}");
    // A bar: label, [=====>    ], bytes done of total, and a rate.
    assert!(!bars.is_empty(), "no progress bar was ever drawn:\n{last}");
    assert!(
        bars.iter().any(|b| b.contains("iB/") && b.contains("iB/s") && b.contains('=')),
        "{bars:#?}"
    );
    // Cleared: the final screen holds the result lines and no bar.
    assert!(!last.contains("] "), "a bar was left on screen:\n{last}");
    assert!(last.contains(&format!("{dist}/docker.vhd: ")), "{last}");
}

#[test]
fn a_pipe_gets_a_few_plain_lines_and_quiet_gets_none() {
    let (_t, dir) = tempdir();
    let entries = vec![Entry::dir("etc"), Entry::file("etc/hostname", "guest\n")];
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
        .write_oci_dir(&dir.join("layout"), "latest")
        .unwrap();
    let build = |extra: &[&str], out: &Utf8Path| {
        xspack()
            .args(extra)
            .args(["image", "build", &format!("oci:{dir}/layout"), "--flavor", "none"])
            .args(["--format", "vhd", "--format", "qcow2", "-o", out.as_str()])
            .output()
            .unwrap()
    };
    let out = build(&[], &dir.join("a"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(!text.contains('\r') && !text.contains('\x1b'), "no terminal control: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!((4..=16).contains(&lines.len()), "a few lines: {text}");
    assert!(lines.iter().all(|l| l.starts_with("xspack: ")), "{text}");
    for step in ["reading layers", "writing ext4 metadata", "writing VHD", "writing qcow2"] {
        assert!(text.contains(&format!("xspack: {step} (")), "{step} starts: {text}");
        assert!(text.contains(&format!("xspack: {step} done: ")), "{step} ends: {text}");
    }
    let quiet = build(&["-q"], &dir.join("b"));
    assert_eq!(code(&quiet), 0);
    assert!(quiet.stderr.is_empty() && quiet.stdout.is_empty(), "{}", stderr(&quiet));
}
