//! `pack_paths`: the paths of a `pack.toml` against a fixed tree full of traps, resolved by
//! `xspack_pack::check_pack_inputs`, and judged by an independent oracle.
//!
//! The tree (made once per process) holds, inside the pack directory, regular files, a symlink
//! to one of them, symlinks that leave the pack (to a file beside it, to `/dev/zero`, to the
//! directory above), a symlink loop, a FIFO, a socket and a subdirectory; beside the pack, a
//! secret file and a `shared` directory that `--allow-outside` may open. The fuzzer's bytes
//! give up to eight paths (one a line) and, in the first byte, which field each path fills
//! (`files.src`, `post`, `[[rpm]] path`, `[[template]] path`) and whether `shared` is allowed.
//!
//! Oracle: for every path the check accepts, `realpath` of it (or of each glob match) must lie
//! inside the pack directory or an allowed root and be a regular file; conversely, when every
//! path is a plain path (no glob character) that the oracle accepts and the fields are valid,
//! the check must accept the pack. Any disagreement panics.

use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};

/// The fixed tree: (root, pack directory, the `shared` directory).
fn tree() -> &'static (Utf8PathBuf, Utf8PathBuf, Utf8PathBuf) {
    static TREE: OnceLock<(Utf8PathBuf, Utf8PathBuf, Utf8PathBuf)> = OnceLock::new();
    TREE.get_or_init(|| {
        // Kept for the life of the process.
        let dir = tempfile::tempdir().expect("temporary directory").keep();
        let root = Utf8PathBuf::from_path_buf(dir.canonicalize().expect("resolves"))
            .expect("UTF-8 temp path");
        let pack = root.join("pack");
        let shared = root.join("shared");
        for d in [&pack, &pack.join("files/sub"), &shared] {
            std::fs::create_dir_all(d).expect("directory");
        }
        for f in ["outside.txt", "shared/common.conf", "shared/t.toml"] {
            std::fs::write(root.join(f), b"x").expect("file");
        }
        for f in ["files/a", "files/b.rpm", "files/sub/c", "files/t.toml", "post.sh"] {
            std::fs::write(pack.join(f), b"x").expect("file");
        }
        let links = [
            ("files/link-in", "a"),
            ("files/link-out", "../../outside.txt"),
            ("files/link-shared", "../../shared/common.conf"),
            ("files/zero", "/dev/zero"),
            ("files/up", "../.."),
            ("files/loop1", "loop2"),
            ("files/loop2", "loop1"),
            ("files/dangling", "nowhere"),
        ];
        for (link, target) in links {
            std::os::unix::fs::symlink(target, pack.join(link)).expect("symlink");
        }
        let fifo = std::process::Command::new("mkfifo").arg(pack.join("files/fifo")).status();
        assert!(fifo.is_ok_and(|s| s.success()), "mkfifo");
        std::mem::forget(std::os::unix::net::UnixListener::bind(pack.join("files/socket")));
        (root, pack, shared)
    })
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Which field a path fills.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    File,
    Post,
    Rpm,
    Template,
}

/// The oracle: whether `path` (relative to the pack directory) names a regular file inside
/// the pack or `allowed`, after every symlink.
fn inside(pack: &Utf8Path, allowed: &[Utf8PathBuf], path: &Utf8Path) -> bool {
    let Ok(real) = pack.join(path).canonicalize_utf8() else { return false };
    let within = real.starts_with(pack) || allowed.iter().any(|r| real.starts_with(r));
    within && std::fs::metadata(&real).is_ok_and(|m| m.is_file())
}

/// Whether a path of `field` would also pass the pack.toml rules that are not about paths.
fn valid_for(field: Field, path: &str) -> bool {
    match field {
        Field::Template => Utf8Path::new(path).extension() == Some("toml"),
        _ => true,
    }
}

/// Runs the check on the pack the bytes describe and compares it with the oracle.
pub fn pack_paths(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    let (_, pack, shared) = tree();
    let text = String::from_utf8_lossy(rest);
    let paths: Vec<&str> = text.split('\n').take(8).collect();
    let fields = [Field::File, Field::Post, Field::Rpm, Field::Template];
    let chosen: Vec<(Field, &str)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (fields[usize::from((control >> (i % 4 * 2)) & 3)], *p))
        .collect();
    let allowed: Vec<Utf8PathBuf> =
        if control & 0x80 != 0 { vec![shared.clone()] } else { Vec::new() };
    let mut toml = String::from(
        "[pack]\nname = \"f\"\nversion = \"1.0\"\nbuild = \"1\"\noriginator = \"x\"\n\
         description = \"d\"\nformats = [\"legacy\"]\n\n[[package]]\nname = \"p\"\n\
         version = \"1\"\nsummary = \"s\"\ndescription = \"d\"\n",
    );
    let mut files = Vec::new();
    let mut post_given = false;
    for (i, (field, p)) in chosen.iter().enumerate() {
        match field {
            Field::File => files.push(format!("{{ src = {}, dest = \"/opt/f{i}\" }}", toml_string(p))),
            Field::Post if !post_given => {
                post_given = true;
                toml.push_str(&format!("post = {}\n", toml_string(p)));
            }
            _ => {}
        }
    }
    toml.push_str(&format!("files = [{}]\n", files.join(", ")));
    for (field, p) in &chosen {
        match field {
            Field::Rpm => toml.push_str(&format!("\n[[rpm]]\npath = {}\n", toml_string(p))),
            Field::Template => {
                toml.push_str(&format!("\n[[template]]\npath = {}\n", toml_string(p)));
            }
            _ => {}
        }
    }
    let spec = pack.join("pack.toml");
    std::fs::write(&spec, &toml).expect("pack.toml");
    // Which paths the pack really uses: a second `post` is ignored above.
    let mut used: Vec<(Field, &str)> = Vec::new();
    let mut post_seen = false;
    for &(field, p) in &chosen {
        if field == Field::Post {
            if post_seen {
                continue;
            }
            post_seen = true;
        }
        used.push((field, p));
    }
    let result = xspack_pack::check_pack_inputs(&spec, &allowed);
    let globby = |p: &str| p.contains(['*', '?', '[', ']']);
    if result.is_ok() {
        for &(field, p) in &used {
            if field == Field::Rpm && globby(p) {
                continue; // its matches were checked one by one; the oracle has no glob
            }
            assert!(
                inside(pack, &allowed, Utf8Path::new(p)),
                "accepted {p:?} ({}), which the oracle refuses",
                ["file", "post", "rpm", "template"][field as usize]
            );
        }
    } else if used.iter().all(|&(field, p)| {
        !globby(p) && valid_for(field, p) && inside(pack, &allowed, Utf8Path::new(p))
    }) {
        // Every path is fine by the oracle: only the other rules of pack.toml may refuse it.
        let err = result.expect_err("checked above").to_string();
        assert!(
            !err.contains("outside") && !err.contains("not a regular file"),
            "refused a pack whose paths the oracle accepts: {err}\n{toml}"
        );
    }
}
