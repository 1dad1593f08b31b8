//! `docs/guide.md` works as written: its ```sh blocks run, in order, in one bash session with
//! the built `xspack` on PATH, in a scratch directory holding a copy of `packs/` and
//! `templates/` and the generated stand-ins for `docker save` (`myapp.tar`, `myapp-oci`).
//! Its ```console blocks (a XenServer host, Docker, the network) are checked for shell syntax,
//! and every `xe`, `xspack` and `just` command in them must exist.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::DockerLayout;

use crate::common::{repo_root, tempdir, xspack};
use crate::guest::{DEBIAN, debian};

/// The fenced blocks of `text` tagged `tag`, each with the line it starts on.
pub fn blocks(text: &str, tag: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if let Some((start, mut body)) = current.take() {
            if fence {
                found.push((start, body));
            } else {
                body.push_str(line);
                body.push('\n');
                current = Some((start, body));
            }
        } else if line.trim() == format!("```{tag}") {
            current = Some((i + 1, String::new()));
        }
    }
    assert!(current.is_none(), "unclosed ```{tag} block");
    found
}

fn guide() -> String {
    std::fs::read_to_string(repo_root().join("docs/guide.md")).unwrap()
}

fn copy_tree(from: &Utf8Path, to: &Utf8Path) {
    for entry in walkdir(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(&entry, &dest).unwrap();
        }
    }
}

fn walkdir(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut children: Vec<Utf8PathBuf> = std::fs::read_dir(&out[i])
                .unwrap()
                .map(|e| Utf8PathBuf::try_from(e.unwrap().path()).unwrap())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

#[test]
fn every_sh_block_of_the_guide_runs() {
    let text = guide();
    let sh = blocks(&text, "sh");
    assert!(sh.len() >= 8, "the guide has {} sh blocks", sh.len());
    let (_t, dir) = tempdir();
    let root = repo_root();
    copy_tree(&root.join("packs"), &dir.join("packs"));
    copy_tree(&root.join("templates"), &dir.join("templates"));
    let image = debian(DEBIAN, true);
    image
        .write_docker_archive(&dir.join("myapp.tar"), "myapp:latest", DockerLayout::Blobs)
        .unwrap();
    image.write_oci_dir(&dir.join("myapp-oci"), "latest").unwrap();
    // The CoreOS section's stand-ins: a Flatcar-partitioned base and four workload images.
    crate::coreos::inputs(&dir);
    crate::common::tool("gzip", &["-1", "--keep", dir.join("flatcar.img").as_str()]);

    let mut script = String::from("set -euo pipefail\n");
    for (line, body) in &sh {
        script.push_str(&format!("echo '>>> docs/guide.md:{line}' >&2\n{body}"));
    }
    let bin = Utf8PathBuf::from(env!("CARGO_BIN_EXE_xspack"));
    let path = format!("{}:{}", bin.parent().unwrap(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        .env("HOME", &dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("XSPACK_SIGN_PASSPHRASE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let failed_at = err.lines().rev().find(|l| l.starts_with(">>> ")).unwrap_or("(start)");
    assert!(
        out.status.success(),
        "the block at {failed_at} failed:\n{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // What the blocks claim, checked.
    for file in [
        "dist/demo/xspack-demo-1.0.0-1.iso",
        "dist/demo/xspack-demo-1.0.0-1-update.iso",
        "dist/hello/SHA256SUMS",
        "dist/hello-vendor/manifest.json",
        "protected-key/signing.asc",
        "dist/myapp/myapp.vhd",
        "dist/myapp/myapp.xva",
        "dist/myapp-uefi/myapp-uefi.qcow2",
        "dist/debian-guest/xspack-debian-guest.xva",
        "dist/apps/apps.xva",
        "vendor-key/signing.pub.asc",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exit 3"), "the misspelt key fails with exit 3: {stdout}");
    assert!(err.contains("hint: valid keys here: "), "{err}");
    assert!(err.contains("hint: put the passphrase in $XSPACK_SIGN_PASSPHRASE"), "{err}");
    assert!(!dir.join("dist/nope").exists());
    let packs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("packs.json")).unwrap()).unwrap();
    assert_eq!(packs["ok"], true);
}

/// `xe` subcommands the guide may use (xapi's CLI, `xe help --all`).
const XE_COMMANDS: [&str; 11] = [
    "vm-import",
    "vm-param-get",
    "vm-start",
    "vm-install",
    "vdi-create",
    "vdi-import",
    "update-upload",
    "update-apply",
    "update-list",
    "update-pool-clean",
    "template-list",
];

/// Other programs a console block may run.
const PROGRAMS: [&str; 16] = [
    "git",
    "dmesg",
    "mokutil",
    "od",
    "curl",
    "ssh",
    "cargo",
    "gpg",
    "cd",
    "docker",
    "skopeo",
    "xe-install-supplemental-pack",
    "/opt/xensource/debug/import-update-key",
    "xe",
    "xspack",
    "just",
];

/// The commands of a block: lines joined at trailing backslashes, split at `&&`, comments cut.
pub fn commands(body: &str) -> Vec<Vec<String>> {
    let joined = body.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for part in line.split("&&") {
            let words: Vec<String> = part.split_whitespace().map(str::to_owned).collect();
            if !words.is_empty() {
                out.push(words);
            }
        }
    }
    out
}

/// The recipes of the justfile.
pub fn just_recipes() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("justfile")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#']) && l.contains(':') && !l.contains(":="))
        .filter_map(|l| l.split([' ', ':']).next())
        .filter(|n| !n.is_empty() && !n.starts_with("set"))
        .map(str::to_owned)
        .collect()
}

/// Whether `words` (after `xspack` and its global flags) name a real subcommand.
pub fn is_xspack_command(words: &[String]) -> bool {
    let path: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with('-'))
        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        .take(2)
        .collect();
    if path.is_empty() {
        return words.iter().any(|w| w == "--version" || w == "--help");
    }
    // `xspack pack build --help` succeeds only for a real path; extra words would be arguments.
    (1..=path.len()).rev().any(|n| {
        let out = xspack().args(&path[..n]).arg("--help").output().unwrap();
        out.status.success()
            && (n == path.len() || !String::from_utf8_lossy(&out.stdout).contains("Commands:"))
    })
}

#[test]
fn console_blocks_are_valid_shell_naming_real_commands() {
    let text = guide();
    let console = blocks(&text, "console");
    assert!(console.len() >= 6, "the guide has {} console blocks", console.len());
    let recipes = just_recipes();
    for (line, body) in &console {
        let out = Command::new("bash").args(["-n", "-c", body]).output().unwrap();
        assert!(
            out.status.success(),
            "docs/guide.md:{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for words in commands(body) {
            let program = words[0].as_str();
            assert!(PROGRAMS.contains(&program), "docs/guide.md:{line}: unknown program {program}");
            match program {
                "xe" => assert!(
                    XE_COMMANDS.contains(&words[1].as_str()),
                    "docs/guide.md:{line}: xe {} is not an xe command the guide knows",
                    words[1]
                ),
                "just" => assert!(
                    recipes.contains(&words[1]),
                    "docs/guide.md:{line}: no recipe {} in the justfile ({recipes:?})",
                    words[1]
                ),
                "xspack" => assert!(
                    is_xspack_command(&words[1..]),
                    "docs/guide.md:{line}: {words:?} is not an xspack command"
                ),
                _ => {}
            }
        }
    }
    // The guide names no other kind of block, so nothing escapes both tests.
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(tag) = t.strip_prefix("```").filter(|t| !t.is_empty()) {
            assert!(["sh", "console"].contains(&tag), "docs/guide.md:{}: ```{tag}", i + 1);
        }
    }
}
