//! `--json`: every subcommand prints exactly one result on stdout, on success and on failure,
//! and each one is valid against `docs/json.schema.json` (documented in `docs/json.md`).

use std::collections::BTreeSet;

use camino::Utf8Path;
use serde_json::Value;
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

use crate::common::{EPOCH, code, repo_root, sample_build, stderr, tempdir, xspack};

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("docs/json.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).expect("docs/json.schema.json is JSON");
    jsonschema::draft202012::new(&schema).expect("docs/json.schema.json is a valid schema")
}

/// Runs `xspack --json ARGS` in `cwd`, and checks: one line on stdout, valid against the
/// schema, `exit_code` equal to the process's and `ok` to its success, the expected `code`.
fn check(validator: &jsonschema::Validator, cwd: &Utf8Path, args: &[&str], want: i32) -> Value {
    let out = xspack()
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env_remove("XSPACK_SIGN_PASSPHRASE")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{args:?}: one line on stdout: {text}{}", stderr(&out));
    let result: Value = serde_json::from_str(&text).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&result).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{args:?}: {errors:#?}\n{result:#}");
    assert_eq!(code(&out), want, "{args:?}: {result:#}");
    assert_eq!(result["exit_code"], want, "{args:?}");
    assert_eq!(result["ok"], want == 0, "{args:?}");
    result
}

fn small_image(dir: &Utf8Path) -> String {
    let entries = vec![Entry::dir("etc"), Entry::file("etc/os-release", "ID=debian\n")];
    let spec = ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)]);
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    format!("oci:{dir}/layout")
}

#[test]
fn every_subcommand_prints_one_valid_result_on_success_and_failure() {
    let v = schema();
    let (_t, dir) = tempdir();
    let root = repo_root();
    let mut seen = BTreeSet::new();
    let mut run = |args: &[&str], want: i32| {
        let r = check(&v, &dir, args, want);
        seen.insert((r["command"].as_str().unwrap_or("null").to_owned(), want == 0));
        r
    };

    // pack keygen, then the same directory again.
    let r = run(&["pack", "keygen", "-o", "keys"], 0);
    assert_eq!(r["artifacts"][0]["path"], "signing.asc");
    let r = run(&["pack", "keygen", "-o", "keys"], 1);
    assert!(r["hint"].as_str().unwrap().contains("never replaced"), "{r}");

    // pack list.
    let packs = root.join("packs");
    let r = run(&["pack", "list", packs.as_str()], 0);
    assert!(r["packs"].as_array().unwrap().iter().any(|p| p["name"] == "xspack-demo"), "{r}");
    run(&["pack", "list", "no-such-dir"], 1);

    // pack build: an update pack needs a key; a legacy pack does not.
    let demo = root.join("packs/demo");
    let r = run(&["pack", "build", demo.as_str(), "--format", "update", "-o", "nokey"], 3);
    assert!(r["hint"].as_str().unwrap().contains("xspack pack keygen"), "{r}");
    let r = run(&["pack", "build", demo.as_str(), "--format", "legacy", "-o", "pack"], 0);
    let iso = format!("pack/{}", r["artifacts"][0]["path"].as_str().unwrap());
    assert_eq!(Utf8Path::new(&iso).extension(), Some("iso"), "{r}");

    // pack verify.
    let r = run(&["pack", "verify", &iso], 0);
    let built = r["inputs"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    assert_eq!(r["inputs"][0]["kind"], "iso", "{r}");
    let sums = std::fs::read_to_string(dir.join("pack/SHA256SUMS")).unwrap();
    assert!(sums.contains(&built), "the verified ISO's digest is the built one: {sums}");
    std::fs::write(dir.join("not.iso"), b"nothing").unwrap();
    run(&["pack", "verify", "not.iso"], 3);

    // verify and inspect: a directory, one file, a tampered directory, a missing one.
    sample_build(&dir.join("sample"));
    run(&["verify", "sample"], 0);
    run(&["verify", "sample/demo-1.0.iso"], 0);
    run(&["inspect", "sample"], 0);
    run(&["inspect", &iso], 0);
    std::fs::write(dir.join("sample/demo-1.0.xva"), b"tampered").unwrap();
    let r = run(&["verify", "sample"], 3);
    assert_eq!(r["mismatched"][0]["path"], "demo-1.0.xva", "{r}");
    run(&["verify", "missing"], 1);
    run(&["inspect", "missing"], 1);

    // image build, then the same output again.
    let source = small_image(&dir);
    let image = ["image", "build", &source, "--flavor", "none", "--name", "demo", "-o", "img"];
    let r = run(&image, 0);
    assert_eq!(r["inputs"][0]["kind"], "oci", "{r}");
    let r = run(&image, 1);
    assert_eq!(r["hint"], "add --force to replace it", "{r}");

    // template build and check.
    let template = root.join("templates/debian-guest.toml");
    let r = run(&["template", "build", template.as_str(), "--format", "json", "-o", "tpl"], 0);
    let json = format!("tpl/{}", r["artifacts"][0]["path"].as_str().unwrap());
    run(&["template", "check", &json], 0);
    std::fs::write(dir.join("bad.toml"), "[template]\nnmae = 1\n").unwrap();
    run(&["template", "build", "bad.toml", "-o", "bad"], 3);
    std::fs::write(dir.join("bad.json"), b"{\"memroy\": 1}").unwrap();
    run(&["template", "check", "bad.json"], 3);

    // completions and man.
    let r = run(&["completions", "bash"], 0);
    assert!(r["script"].as_str().unwrap().contains("_xspack"));
    run(&["man", "-o", "man"], 0);
    run(&["man", "-o", "man"], 1);

    // Usage errors: clap's message as a result, before any subcommand is known.
    run(&["completions", "tcsh"], 2);
    run(&["bogus"], 2);

    let commands: BTreeSet<String> = seen.iter().map(|(c, _)| c.clone()).collect();
    let all = [
        "completions",
        "image build",
        "inspect",
        "man",
        "null",
        "pack build",
        "pack keygen",
        "pack list",
        "pack verify",
        "template build",
        "template check",
        "verify",
    ];
    assert_eq!(commands, all.iter().map(|s| (*s).to_owned()).collect());
    for command in all.iter().filter(|c| !["null", "completions"].contains(c)) {
        assert!(seen.contains(&((*command).to_owned(), true)), "{command}: no success checked");
        assert!(seen.contains(&((*command).to_owned(), false)), "{command}: no failure checked");
    }
}

#[test]
fn the_schema_lists_every_subcommand_of_the_cli() {
    let text = std::fs::read_to_string(repo_root().join("docs/json.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let listed: BTreeSet<String> = schema["properties"]["command"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let help = String::from_utf8(xspack().arg("--help").output().unwrap().stdout).unwrap();
    let mut leaves = BTreeSet::new();
    for top in ["verify", "inspect", "completions", "man"] {
        assert!(help.contains(&format!("  {top} ")), "{top}");
        leaves.insert(top.to_owned());
    }
    for (group, subs) in [
        ("image", &["build"][..]),
        ("pack", &["build", "verify", "keygen", "list"][..]),
        ("template", &["build", "check"][..]),
    ] {
        let out = xspack().args([group, "--help"]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let commands: Vec<&str> = text
            .split("Commands:")
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
            .filter(|c| *c != "help")
            .collect();
        assert_eq!(commands, subs, "{group}");
        leaves.extend(subs.iter().map(|s| format!("{group} {s}")));
    }
    assert_eq!(listed, leaves);
}
