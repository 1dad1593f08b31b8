//! Shell completions and man pages generated from the clap definitions: bash loads the script
//! and completes subcommands and flags; `man -l` renders every page without warnings. And the
//! repository stands on its own: no tracked file refers to notes kept outside it, and every
//! citation of a `docs/formats/` section names a heading that exists. And the sources stay
//! readable: no file of a crate's `src/` over 800 lines, no function over 120.

use std::collections::BTreeMap;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::{code, golden, repo_root, run, stderr, stdout, tempdir, xspack};

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

/// Every tracked text file of the repository (`git ls-files`), with its contents. Files that are
/// not UTF-8 or hold a NUL byte are binary and skipped.
fn tracked_text_files() -> Vec<(String, String)> {
    let root = repo_root();
    let out = Command::new("git")
        .args(["-C", root.as_str(), "ls-files", "-z"])
        .output()
        .expect("git runs (the test reads the tracked files of the checkout)");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    let mut files = Vec::new();
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        // A tracked file deleted in the work tree is not there to read.
        let Ok(bytes) = std::fs::read(root.join(&name)) else { continue };
        match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => files.push((name, text)),
            _ => {}
        }
    }
    assert!(files.len() > 100, "only {} tracked text files", files.len());
    files
}

/// The references to notes kept outside the repository in `text`, as `line: text` strings.
fn outside_note_references(text: &str) -> Vec<String> {
    // Spelled in pieces so that this file does not match itself.
    let dirs = ["reference", "design"].map(|d| format!("shared/{d}"));
    let notes =
        ["supplemental-pack", "vm-formats", "landscape", "toolchain", "code-style", "architecture"]
            .map(|n| format!("{n}.md"));
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if dirs.iter().chain(notes.iter()).any(|p| line.contains(p.as_str())) {
            hits.push(format!("{}: {}", i + 1, line.trim()));
        }
    }
    hits
}

#[test]
fn outside_note_references_are_found() {
    let name = "vm-formats";
    let text = format!("a\n// see {name}.md 4.1\nb `shared/{}/x` c\n", "reference");
    assert_eq!(outside_note_references(&text).len(), 2, "{text}");
    // The fixtures of the path-confinement tests are directories called `shared`, not notes.
    assert!(outside_note_references("root.join(\"../shared/common.conf\")").is_empty());
}

#[test]
fn no_references_to_notes_outside_the_repository() {
    let mut found = Vec::new();
    for (name, text) in tracked_text_files() {
        for hit in outside_note_references(&text) {
            found.push(format!("{name}:{hit}"));
        }
    }
    assert!(
        found.is_empty(),
        "{} references to notes outside the repository; cite docs/formats/*.md or the upstream \
         source instead:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The section headings of a markdown file, without the `#`s and without a leading section
/// number such as `3.2`.
fn headings(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let title = match title.split_once(' ') {
            Some((num, rest))
                if num.trim_end_matches('.').split('.').all(|p| p.parse::<u32>().is_ok()) =>
            {
                rest.trim()
            }
            _ => title,
        };
        out.push(title.to_owned());
    }
    out
}

/// The citations `docs/formats/<note>.md` ... section "TITLE" in `text`: (line, note, TITLE), the
/// title `None` when the file is cited without a section. Comment markers between `section`
/// and the title (a wrapped comment) are skipped.
fn format_note_citations(text: &str) -> Vec<(usize, String, Option<String>)> {
    const PREFIX: &str = "docs/formats/";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(PREFIX) {
        let start = from + at + PREFIX.len();
        from = start;
        let line = text[..start].lines().count();
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let Some(name) = name.strip_suffix(".md").map(str::to_owned) else { continue };
        let rest = text[start + name.len() + 3..].trim_start_matches(['`', '\'', ',']);
        let rest = rest.trim_start_matches([' ', '\n', '/', '!', '#', '*']);
        let title = rest.strip_prefix("section").and_then(|r| {
            let r = r.trim_start_matches([' ', '\n', '/', '!', '#', '*']);
            let r = r.strip_prefix('"')?;
            // A title wrapped onto the next comment line: drop the comment markers.
            let words = r[..r.find('"')?].split_whitespace();
            Some(
                words
                    .filter(|w| !["//!", "///", "//", "#"].contains(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        });
        out.push((line, name, title));
    }
    out
}

#[test]
fn format_note_citations_are_parsed() {
    let text = "x `docs/formats/packs.md` section \"update.xml\"\n\
                //! see `docs/formats/vhd.md` section\n//! \"Batmap of\n//! blktap\" and \
                docs/formats/README.md";
    let got = format_note_citations(text);
    assert_eq!(
        got,
        [
            (1, "packs".to_owned(), Some("update.xml".to_owned())),
            (2, "vhd".to_owned(), Some("Batmap of blktap".to_owned())),
            (4, "README".to_owned(), None),
        ]
    );
    assert_eq!(
        headings("# T\n## 3.2 update.xml\n```\n# not\n```\n### Conventions\n"),
        ["T", "update.xml", "Conventions"]
    );
}

#[test]
fn format_note_citations_name_existing_sections() {
    let dir: Utf8PathBuf = repo_root().join("docs/formats");
    let mut notes = BTreeMap::new();
    for entry in dir.read_dir_utf8().unwrap() {
        let path = entry.unwrap().into_path();
        if let Some(stem) = path.as_str().strip_suffix(".md") {
            let stem = stem.rsplit('/').next().unwrap().to_owned();
            notes.insert(stem, headings(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let mut bad = Vec::new();
    let mut count = 0;
    for (name, text) in tracked_text_files() {
        for (line, note, title) in format_note_citations(&text) {
            count += 1;
            match (notes.get(&note), title) {
                (None, _) => bad.push(format!("{name}:{line}: no docs/formats/{note}.md")),
                (Some(heads), Some(t)) if !heads.contains(&t) => bad
                    .push(format!("{name}:{line}: docs/formats/{note}.md has no section \"{t}\"")),
                _ => {}
            }
        }
    }
    assert!(count > 20, "only {count} citations of docs/formats found");
    assert!(bad.is_empty(), "citations of missing format notes or sections:\n{}", bad.join("\n"));
}

/// Most lines a source file may have.
const MAX_FILE_LINES: usize = 800;
/// Most lines a function may have, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 120;

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<Utf8PathBuf> =
        dir.read_dir_utf8().unwrap().map(|e| e.unwrap().into_path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension() == Some("rs") {
            out.push(path);
        }
    }
    out
}

/// Whether `line` starts a function: `fn NAME` after any visibility and qualifiers. Returns
/// the name.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("pub(") {
            rest = r.split_once(')')?.1.trim_start();
        } else if let Some(r) = ["pub ", "const ", "async ", "unsafe ", "extern \"C\" "]
            .iter()
            .find_map(|q| rest.strip_prefix(q))
        {
            rest = r.trim_start();
        } else {
            break;
        }
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(name.len());
    (end > 0).then_some(&name[..end])
}

/// The functions of `text` longer than `max` lines, outside `#[cfg(test)]` modules, as
/// (line of the `fn`, name, lines). A function runs from its `fn` line to the first line after
/// it that is a closing brace at the `fn` line's indentation; one without a body (`;`) is
/// skipped. rustfmt's layout is assumed.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() == "#[cfg(test)]" {
            // Past further attributes and doc comments to the item: a module with a body is
            // skipped to its closing brace.
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim_start().starts_with(['#', '/']) {
                j += 1;
            }
            if j < lines.len() && lines[j].trim_start().contains("mod ") && lines[j].ends_with('{')
            {
                let close = format!("{}}}", &lines[j][..indent(lines[j])]);
                i = (j + 1..lines.len()).find(|&k| lines[k] == close).unwrap_or(lines.len());
                continue;
            }
        }
        let Some(name) = fn_name(line) else {
            i += 1;
            continue;
        };
        // The end of the signature: a body opens (`{`), or ends on the same line (`{}`), or
        // there is none (`;`).
        let sig_end = (i..lines.len()).find(|&k| lines[k].trim_end().ends_with(['{', ';', '}']));
        let end = match sig_end {
            Some(k) if lines[k].trim_end().ends_with('{') => {
                let close = format!("{}}}", &line[..indent(line)]);
                (k + 1..lines.len()).find(|&m| lines[m] == close)
            }
            Some(k) if lines[k].trim_end().ends_with('}') => Some(k),
            _ => None,
        };
        if let Some(end) = end {
            let len = end - i + 1;
            if len > max {
                out.push((i + 1, name.to_owned(), len));
            }
        }
        i += 1;
    }
    out
}

#[test]
fn long_functions_are_found() {
    let body = |n: usize| vec!["    let x = 1;"; n];
    let text = [
        vec!["//! m", "pub(crate) fn short() {"],
        body(3),
        vec!["}", "impl A {", "    pub async fn long(", "        a: u32,", "    ) -> u32 {"],
        body(8),
        vec!["        if a {", "        }", "    }", "    fn decl(&self);", "    fn one() {}", "}"],
        vec!["#[cfg(test)]", "#[allow(x)]", "mod tests {", "    fn long() {"],
        body(20),
        vec!["    }", "}", "const fn longer() -> u8 {"],
        body(12),
        vec!["}"],
    ]
    .concat()
    .join("\n");
    assert_eq!(
        long_functions(&text, 10),
        [(8, "long".to_owned(), 14), (51, "longer".to_owned(), 14)],
        "{text}"
    );
    assert_eq!(fn_name("    pub(in crate::x) unsafe fn run() {"), Some("run"));
    assert_eq!(fn_name("pub(super) fn f<T>("), Some("f"));
    assert_eq!(fn_name("    // fn f() {"), None);
}

/// No source file of a crate is longer than [`MAX_FILE_LINES`] and no function longer than
/// [`MAX_FN_LINES`]: past those, split the file by job or the function by stage. Tests are
/// exempt (`tests.rs`, anything under a `tests/` directory, `#[cfg(test)]` modules), but inline
/// test modules count toward their file's length.
#[test]
fn sources_stay_small() {
    let root = repo_root();
    let mut crates: Vec<Utf8PathBuf> =
        root.join("crates").read_dir_utf8().unwrap().map(|e| e.unwrap().into_path()).collect();
    crates.sort();
    let mut scanned = 0;
    let mut bad = Vec::new();
    for src in crates.iter().map(|c| c.join("src")).filter(|s| s.is_dir()) {
        for path in rust_files(&src) {
            let rel = path.strip_prefix(&root).unwrap();
            if rel.file_name() == Some("tests.rs")
                || rel.components().any(|c| c.as_str() == "tests")
            {
                continue;
            }
            scanned += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().count();
            if lines > MAX_FILE_LINES {
                bad.push(format!("{rel}: {lines} lines (at most {MAX_FILE_LINES})"));
            }
            for (line, name, len) in long_functions(&text, MAX_FN_LINES) {
                bad.push(format!("{rel}:{line}: fn {name}: {len} lines (at most {MAX_FN_LINES})"));
            }
        }
    }
    assert!(scanned > 100, "only {scanned} source files found under crates/*/src");
    assert!(bad.is_empty(), "oversized source files and functions:\n{}", bad.join("\n"));
}
