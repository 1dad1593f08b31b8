//! `docs/errors.md`: every error message the libraries can give, read from their thiserror
//! enums (`#[error("...")]` with the variant's doc comment), so the list cannot fall behind
//! the code. Refresh with `EXPECTORATE=overwrite`; the guide's troubleshooting table says what
//! to do about the common ones.

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::repo_root;

/// One `#[error]` of a library: where, which variant, its message and its doc comment.
struct Message {
    file: String,
    enum_name: String,
    variant: String,
    text: String,
    doc: String,
}

fn rust_files(dir: &Utf8Path, out: &mut Vec<Utf8PathBuf>) {
    let mut entries: Vec<Utf8PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| Utf8PathBuf::try_from(e.unwrap().path()).unwrap())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension() == Some("rs") {
            out.push(path);
        }
    }
}

/// The format string of an `#[error(...)]` attribute (its first string literal, continuation
/// lines joined); format arguments after it are dropped. `transparent` for `#[error(transparent)]`.
fn literal(attr: &str) -> String {
    let inner = attr.trim().trim_start_matches("#[error(").trim();
    let Some(body) = inner.strip_prefix('"') else {
        return inner.split([')', ',']).next().unwrap_or("").trim().to_owned();
    };
    let mut text = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                // A line continuation: the newline and the next line's indentation vanish.
                Some('\n') => {
                    let rest: String = chars.clone().collect();
                    let skipped = rest.len() - rest.trim_start().len();
                    for _ in 0..rest[..skipped].chars().count() {
                        chars.next();
                    }
                }
                Some('n') => text.push(' '),
                Some(other) => text.push(other),
                None => {}
            },
            _ => text.push(c),
        }
    }
    text
}

fn messages() -> Vec<Message> {
    let root = repo_root();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = Utf8PathBuf::try_from(krate.unwrap().path()).unwrap();
        let name = dir.file_name().unwrap();
        // Test fixtures and the benchmark harness are not part of what users run.
        if !["testkit", "bench"].contains(&name) {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(&root).unwrap().to_string();
        let lines: Vec<&str> = text.lines().collect();
        let mut enum_name = String::new();
        let mut doc: Vec<String> = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if let Some(rest) =
                line.strip_prefix("pub enum ").or_else(|| line.strip_prefix("enum "))
            {
                rest.split([' ', '{', '<']).next().unwrap().clone_into(&mut enum_name);
            }
            if let Some(d) = line.strip_prefix("///") {
                doc.push(d.trim().to_owned());
                i += 1;
                continue;
            }
            if line.starts_with("#[error(") {
                let mut attr = lines[i].to_owned();
                while !attr.trim_end().ends_with(")]") {
                    i += 1;
                    attr.push('\n');
                    attr.push_str(lines[i]);
                }
                let text = literal(&attr);
                let mut j = i + 1;
                while lines[j].trim().starts_with("#[") || lines[j].trim().starts_with("///") {
                    j += 1;
                }
                let item = lines[j].trim();
                // An error struct stands alone; an enum's variant is named with its enum.
                let (owner, item) = match item.strip_prefix("pub struct ") {
                    Some(rest) => (String::new(), rest),
                    None => (enum_name.clone(), item),
                };
                let variant = item.split([' ', '{', '(', ',']).next().unwrap().to_owned();
                if text != "transparent" {
                    found.push(Message {
                        file: rel.clone(),
                        enum_name: owner,
                        variant,
                        text,
                        doc: doc.join(" "),
                    });
                }
                doc.clear();
                i = j;
            }
            if !line.starts_with("#[") {
                doc.clear();
            }
            i += 1;
        }
    }
    found
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('`', "'")
}

#[test]
fn every_library_error_is_listed_in_docs_errors_md() {
    let all = messages();
    assert!(all.len() > 150, "only {} messages found: the parser is broken", all.len());
    let mut out = String::from(
        "# Error messages\n\n\
         Every message the xspack libraries can give, generated from their error types by\n\
         `tests/e2e/errors.rs` (refresh with `EXPECTORATE=overwrite`). xspack prints one as\n\
         `xspack: error: <input>: <message>`, often after the input's own context, then a\n\
         `hint:` line when there is an obvious fix. `{name}` stands for a value filled in at run\n\
         time. What to do about the common ones: the troubleshooting table of\n\
         [guide.md](guide.md#9-troubleshooting).\n",
    );
    let mut current = String::new();
    for m in &all {
        let krate = m.file.split('/').nth(1).unwrap();
        if krate != current {
            out.push_str(&format!(
                "\n## xspack-{krate}\n\n| error | message | meaning |\n|---|---|---|\n"
            ));
            current = krate.to_owned();
        }
        let name = if m.enum_name.is_empty() {
            m.variant.clone()
        } else {
            format!("{}::{}", m.enum_name, m.variant)
        };
        out.push_str(&format!("| `{name}` | `{}` | {} |\n", cell(&m.text), cell(&m.doc)));
    }
    expectorate::assert_contents(repo_root().join("docs/errors.md"), &out);
}
