//! `xspack verify`: exit codes, problem reports by name, JSON and quiet modes.

use std::fs;

use crate::common::{code, run, sample_build, stderr, stdout, tempdir};

#[test]
fn clean_build_verifies() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    let out = run(&["verify", dist.as_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{dist}: verified 3 files (3.10 MiB) against SHA256SUMS and manifest.json\n")
    );
    // Not a terminal: progress is a start line and an end line, nothing else.
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.starts_with("xspack: verifying (3.10 MiB)...\nxspack: verifying done: 3.10 MiB in "),
        "{err}"
    );
}

#[test]
fn verbose_lists_each_file() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    let out = run(&["-v", "verify", dist.as_str()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("OK demo-1.0.iso (3.00 MiB)\n"), "{text}");
    assert!(text.contains("OK templates/demo.json (17 B)\n"), "{text}");
}

#[test]
fn quiet_success_prints_nothing() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    let out = run(&["-q", "verify", dist.as_str()]);
    assert_eq!(code(&out), 0);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn one_byte_tamper_exits_3_and_names_the_file() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    let victim = dist.join("demo-1.0.xva");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[50_000] ^= 0x80;
    fs::write(&victim, bytes).unwrap();
    for quiet in [false, true] {
        let mut args = vec!["verify", dist.as_str()];
        if quiet {
            args.insert(0, "-q");
        }
        let out = run(&args);
        assert_eq!(code(&out), 3);
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        let last = err.lines().last().unwrap();
        assert_eq!(
            last,
            format!("xspack: error: {dist}: verification failed: demo-1.0.xva (sha256 mismatch)")
        );
        assert!(
            err.contains(&format!("xspack: {dist}/demo-1.0.xva: sha256 mismatch (expected ")),
            "{err}"
        );
    }
}

#[test]
fn missing_and_extra_files_are_named() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    fs::remove_file(dist.join("templates/demo.json")).unwrap();
    fs::write(dist.join("notes.txt"), "unlisted").unwrap();
    let out = run(&["verify", dist.as_str()]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains(&format!("xspack: {dist}/templates/demo.json: missing\n")), "{err}");
    assert!(
        err.contains(&format!(
            "xspack: {dist}/notes.txt: not listed in SHA256SUMS or manifest.json\n"
        )),
        "{err}"
    );
    assert!(
        err.ends_with("verification failed: templates/demo.json (missing), notes.txt (extra)\n"),
        "{err}"
    );
}

#[test]
fn many_problems_are_summarised_on_one_line() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    for i in 0..8 {
        fs::write(dist.join(format!("extra{i}")), "x").unwrap();
    }
    let out = run(&["verify", dist.as_str()]);
    assert_eq!(code(&out), 3);
    let last = stderr(&out).lines().last().unwrap().to_owned();
    assert!(last.ends_with("extra4 (extra), and 3 more"), "{last}");
}

#[test]
fn single_file_is_checked_against_its_directory() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    fs::write(dist.join("unlisted"), "x").unwrap();
    let iso = dist.join("demo-1.0.iso");
    let out = run(&["verify", iso.as_str()]);
    assert_eq!(code(&out), 0, "extra files elsewhere do not matter: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("{iso}: OK (sha256 in SHA256SUMS and manifest.json)\n"));

    fs::OpenOptions::new().append(true).open(&iso).unwrap();
    let mut bytes = fs::read(&iso).unwrap();
    bytes[0] = 0;
    fs::write(&iso, bytes).unwrap();
    let out = run(&["verify", iso.as_str()]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).ends_with("verification failed: demo-1.0.iso (sha256 mismatch)\n"));

    let out = run(&["verify", dist.join("unlisted").as_str()]);
    assert_eq!(code(&out), 3);
    assert_eq!(
        stderr(&out),
        format!(
            "xspack: error: {dist}/unlisted: not listed in SHA256SUMS or manifest.json of {dist}\n"
        )
    );
}

#[test]
fn directory_without_lists_is_bad_input() {
    let (_t, root) = tempdir();
    let out = run(&["verify", root.as_str()]);
    assert_eq!(code(&out), 3);
    assert_eq!(
        stderr(&out),
        format!("xspack: error: {root}: no SHA256SUMS or manifest.json to verify against\n")
    );
}

#[test]
fn nonexistent_target_is_a_failure_naming_it() {
    let out = run(&["verify", "/nonexistent/dist"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "xspack: error: /nonexistent/dist: cannot open: No such file or directory (os error 2)\n"
    );
}

#[test]
fn json_result_reports_everything() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    fs::write(dist.join("demo-1.0.iso"), "short").unwrap();
    let out = run(&["--json", "verify", dist.as_str()]);
    assert_eq!(code(&out), 3);
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "one result, the report with the error: {lines:?}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(report["result_version"], 1);
    assert_eq!(report["command"], "verify");
    assert_eq!(report["ok"], false);
    assert_eq!(report["mismatched"][0]["path"], "demo-1.0.iso");
    assert_eq!(report["mismatched"][0]["expected_size"], 3 * 1024 * 1024 + 17);
    assert_eq!(report["mismatched"][0]["actual_size"], 5);
    assert_eq!(report["verified"].as_array().unwrap().len(), 2);
    assert_eq!(report["exit_code"], 3);
    assert!(report["error"].as_str().unwrap().contains("demo-1.0.iso (size mismatch)"));
}
