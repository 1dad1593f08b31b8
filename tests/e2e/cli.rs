//! The CLI contract: help text, version, usage errors and global flags.

use crate::common::{code, golden, run, stderr, stdout, xspack};

#[test]
fn help_texts_are_golden() {
    for (args, file) in [
        (&["--help"][..], "help/xspack.txt"),
        (&["-h"][..], "help/xspack-short.txt"),
        (&["verify", "--help"][..], "help/verify.txt"),
        (&["inspect", "--help"][..], "help/inspect.txt"),
        (&["help", "verify"][..], "help/verify.txt"),
        (&["image", "--help"][..], "help/image.txt"),
        (&["image", "build", "--help"][..], "help/image-build.txt"),
        (&["pack", "--help"][..], "help/pack.txt"),
        (&["pack", "build", "--help"][..], "help/pack-build.txt"),
        (&["pack", "verify", "--help"][..], "help/pack-verify.txt"),
        (&["pack", "keygen", "--help"][..], "help/pack-keygen.txt"),
        (&["pack", "list", "--help"][..], "help/pack-list.txt"),
        (&["template", "--help"][..], "help/template.txt"),
        (&["template", "build", "--help"][..], "help/template-build.txt"),
        (&["template", "check", "--help"][..], "help/template-check.txt"),
        (&["completions", "--help"][..], "help/completions.txt"),
        (&["man", "--help"][..], "help/man.txt"),
    ] {
        let out = run(args);
        assert_eq!(code(&out), 0, "{args:?}");
        expectorate::assert_contents(golden(file), &stdout(&out));
    }
}

#[test]
fn version_names_the_tool() {
    let out = run(&["--version"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), format!("xspack {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["bogus"][..],
        &["verify"][..],
        &["verify", "a", "b"][..],
        &["--source-date-epoch", "yesterday", "verify", "."][..],
        &["-q", "-v", "verify", "."][..],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn bad_source_date_epoch_in_environment_is_a_usage_error() {
    let out = xspack().env("SOURCE_DATE_EPOCH", "-5").args(["verify", "."]).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--source-date-epoch"), "{}", stderr(&out));
}
