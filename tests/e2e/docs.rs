//! Shell completions and man pages generated from the clap definitions: bash loads the script
//! and completes subcommands and flags; `man -l` renders every page without warnings.

use std::process::Command;

use crate::common::{code, golden, run, stderr, stdout, tempdir, xspack};

/// Completes `line` (the words typed so far, the last one partial) with the bash script
/// `xspack completions bash` prints, and returns the candidates bash offers.
fn bash_complete(line: &[&str]) -> Vec<String> {
    let (_t, dir) = tempdir();
    let script = dir.join("xspack.bash");
    let out = run(&["completions", "bash"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::write(&script, &out.stdout).unwrap();
    let words = line.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let program = format!(
        "set -u; source {script}; complete -p xspack >/dev/null; \
         COMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _xspack xspack '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len() - 2],
    );
    let out =
        Command::new("bash").args(["--norc", "--noprofile", "-c", &program]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "bash: {}\n{err}", out.status);
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    assert_eq!(bash_complete(&["xspack", "pa"]), ["pack"]);
    let top = bash_complete(&["xspack", ""]);
    for sub in ["verify", "inspect", "image", "pack", "template", "completions", "man"] {
        assert!(top.iter().any(|c| c == sub), "{sub} not offered: {top:?}");
    }
    assert_eq!(bash_complete(&["xspack", "pack", "b"]), ["build"]);
    let flags = bash_complete(&["xspack", "pack", "build", "--un"]);
    assert_eq!(flags, ["--unsigned"]);
    let formats = bash_complete(&["xspack", "image", "build", "--format", ""]);
    assert_eq!(formats, ["raw", "vhd", "qcow2", "xva"]);
}

#[test]
fn other_shells_get_scripts_and_unknown_shells_are_usage_errors() {
    for (shell, marker) in [("zsh", "#compdef xspack"), ("fish", "complete -c xspack")] {
        let out = run(&["completions", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains(marker), "{shell}: {}", stdout(&out));
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("invalid value 'tcsh'"), "{}", stderr(&out));
}

#[test]
fn man_renders_every_page_reproducibly() {
    let (_t, dir) = tempdir();
    let write = |name: &str| {
        let dest = dir.join(name);
        let out = xspack()
            .args(["man", "-o", dest.as_str(), "--source-date-epoch", "1700000000"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        dest
    };
    let (a, b) = (write("a"), write("b"));
    let names = crate::common::listing(&a);
    let want = [
        "xspack-completions.1",
        "xspack-image-build.1",
        "xspack-image.1",
        "xspack-inspect.1",
        "xspack-man.1",
        "xspack-pack-build.1",
        "xspack-pack-keygen.1",
        "xspack-pack-list.1",
        "xspack-pack-verify.1",
        "xspack-pack.1",
        "xspack-template-build.1",
        "xspack-template-check.1",
        "xspack-template.1",
        "xspack-verify.1",
        "xspack.1",
    ];
    assert_eq!(names, want);
    for name in &names {
        let page = a.join(name);
        assert!(std::fs::read(&page).unwrap() == std::fs::read(b.join(name)).unwrap(), "{name}");
        let out = Command::new("man")
            .args(["--warnings", "-l", page.as_str()])
            .env("MANWIDTH", "100")
            .output()
            .expect("man runs (install it with just oracles)");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "man -l {name}: {}\n{err}", out.status);
        let title = name.trim_end_matches(".1");
        assert!(text.starts_with(&format!("{title}(1)")), "{name}:\n{text}");
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{name}:\n{text}");
        assert!(text.contains("2023-11-14") && text.contains("xspack 0.1.0"), "{name}:\n{text}");
    }
    // The top page is golden; the others are clap's rendering of the goldened --help texts.
    let top = std::fs::read_to_string(a.join("xspack.1")).unwrap();
    expectorate::assert_contents(golden("man/xspack.1"), &top);
    // An existing directory is kept without --force.
    let out = xspack().args(["man", "-o", a.as_str()]).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}
