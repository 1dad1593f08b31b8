//! `xspack inspect`: golden human and JSON views of a build directory.

use crate::common::{code, golden, run, sample_build, stderr, stdout, tempdir};

/// Replaces the temporary directory in output with a stable name.
fn stable(text: &str, root: &camino::Utf8Path) -> String {
    text.replace(root.as_str(), "$TMP")
}

#[test]
fn human_view_is_golden() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    for target in [dist.clone(), dist.join("manifest.json")] {
        let out = run(&["inspect", target.as_str()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stable(&stdout(&out), &root).replace("$TMP/dist/manifest.json", "$TMP/dist");
        expectorate::assert_contents(golden("inspect.txt"), &text);
    }
}

#[test]
fn json_view_is_golden() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    let out = run(&["inspect", "--json", dist.as_str()]);
    assert_eq!(code(&out), 0);
    let mut value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The one field that changes from run to run.
    assert!(value["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{value}");
    value["seconds"] = 0.into();
    let text = stable(&serde_json::to_string_pretty(&value).unwrap(), &root);
    expectorate::assert_contents(golden("inspect.json"), &format!("{text}\n"));
}

#[test]
fn written_lists_are_golden() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    for name in ["SHA256SUMS", "manifest.json"] {
        let text = std::fs::read_to_string(dist.join(name)).unwrap();
        expectorate::assert_contents(golden(&format!("build/{name}")), &text);
    }
}

#[test]
fn sums_only_directory_is_shown() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    sample_build(&dist);
    std::fs::remove_file(dist.join("manifest.json")).unwrap();
    let out = run(&["inspect", dist.as_str()]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.starts_with(&format!("{dist}/SHA256SUMS\n  files              3\n")), "{text}");
}

#[test]
fn unknown_files_and_bad_manifests_are_refused() {
    let (_t, root) = tempdir();
    let other = root.join("notes.txt");
    std::fs::write(&other, "hi").unwrap();
    let out = run(&["inspect", other.as_str()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with(&format!("xspack: error: {other}: not something inspect reads"))
    );

    let dist = root.join("dist");
    sample_build(&dist);
    std::fs::write(dist.join("manifest.json"), "{\"manifest_version\": 9}").unwrap();
    let out = run(&["inspect", dist.as_str()]);
    assert_eq!(code(&out), 3);
    assert_eq!(
        stderr(&out),
        format!(
            "xspack: error: {dist}/manifest.json: manifest_version 9 is not supported (this xspack reads versions 1 to 2)\n"
        )
    );
}
