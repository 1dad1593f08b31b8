//! The image's run configuration (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`, `StopSignal`) as a
//! systemd service enabled in `multi-user.target`.
//!
//! The command line is Entrypoint followed by Cmd, as `docker run` builds it (Docker
//! "Dockerfile reference", ENTRYPOINT and CMD). A bare interactive shell (`bash` or `sh` alone,
//! the CMD of the `debian` and `ubuntu` base images) would exit at once without a terminal, so
//! it gives no service. The executable is resolved inside the image against the image's `PATH`
//! (or Docker's default), because systemd wants an absolute path.
//!
//! Quoting follows `systemd.syntax(7)` and `systemd.service(5)` ("Command lines"): in
//! `ExecStart=` and `Environment=` every word is double-quoted, `\` and `"` are escaped, `%`
//! becomes `%%` (specifiers) and, in `ExecStart=` only, `$` becomes `$$` (no variable expansion:
//! Docker's exec form expands nothing). `WorkingDirectory=`, `User=` and `Group=` take their
//! value verbatim, so only `%` is escaped there and user names are checked.
//! Output goes to the journal and to the console, which is the serial port
//! (`console=ttyS0,115200n8` is the last `console=`), so `xe console` shows it.

use std::fmt::Write as _;

use xspack_oci::{ContainerConfig, EntryMeta, MergedTree, NodeKind};

use crate::Error;

/// Docker's `PATH` when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long systemd waits after the stop signal, as `docker stop`'s default.
const STOP_TIMEOUT_SECS: u32 = 10;

/// A rendered unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUnit {
    /// The unit name, e.g. `xspack-app.service`.
    pub name: String,
    /// The command line with the executable resolved.
    pub argv: Vec<String>,
    /// The unit file's text.
    pub text: String,
}

/// Escapes one word for a double-quoted systemd command-line or assignment value.
pub(crate) fn quote(word: &str, dollar: bool) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_bare_shell(argv: &[String]) -> bool {
    matches!(argv, [one] if matches!(one.as_str(), "bash" | "sh" | "/bin/bash" | "/bin/sh"
        | "/usr/bin/bash" | "/usr/bin/sh"))
}

/// Whether `name` is a user or group name (or number) systemd accepts: the portable set of
/// letters, digits, `_`, `-` and `.`, not starting with `-`.
fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Whether `path` is an executable regular file in the tree (symlinks followed).
fn is_executable(tree: &mut MergedTree, path: &str) -> bool {
    tree.resolve(path.as_bytes()).is_some_and(|id| {
        let node = tree.node(id);
        matches!(node.kind, NodeKind::File { .. }) && node.meta.mode & 0o111 != 0
    })
}

/// The absolute path of `program` as the container runtime would find it.
fn resolve_program(
    tree: &mut MergedTree,
    program: &str,
    path_var: &str,
    workdir: &str,
) -> Option<String> {
    if program.starts_with('/') {
        return is_executable(tree, program).then(|| program.to_owned());
    }
    if program.contains('/') {
        let relative = program.trim_start_matches("./");
        let full = format!("{}/{relative}", workdir.trim_end_matches('/'));
        return is_executable(tree, &full).then_some(full);
    }
    path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
        .find(|candidate| is_executable(tree, candidate))
}

/// Renders the unit `name` for `config`, or `None` when the image runs no command (or only a
/// bare shell). A missing working directory is created, as the runtime would.
pub fn render(
    tree: &mut MergedTree,
    config: &ContainerConfig,
    name: &str,
    description: &str,
    mtime: i64,
) -> Result<Option<ServiceUnit>, Error> {
    let mut argv: Vec<String> = config.entrypoint.iter().chain(&config.cmd).cloned().collect();
    if argv.is_empty() || is_bare_shell(&argv) {
        return Ok(None);
    }
    let bad = |argv: &[String], reason: String| Error::Service { argv: argv.to_vec(), reason };
    let path_var =
        config.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH).to_owned();
    let workdir = config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or("/".into());
    if !workdir.starts_with('/') {
        return Err(bad(&argv, format!("WorkingDir {workdir:?} is not absolute")));
    }
    let program = resolve_program(tree, &argv[0], &path_var, &workdir).ok_or_else(|| {
        bad(&argv, format!("{} is not an executable file in the image (PATH={path_var})", argv[0]))
    })?;
    argv[0] = program;
    match tree.resolve(workdir.as_bytes()).map(|id| &tree.node(id).kind) {
        Some(NodeKind::Dir(_)) => {}
        None => {
            let meta = EntryMeta { mode: 0o755, mtime: (mtime, 0), ..EntryMeta::default() };
            tree.put_dir(workdir.as_bytes(), meta)?;
        }
        Some(_) => return Err(bad(&argv, format!("WorkingDir {workdir} is not a directory"))),
    }

    let mut text = String::new();
    let _ = writeln!(text, "# Written by xspack from the image's Entrypoint, Cmd, Env, WorkingDir");
    let _ = writeln!(text, "# and User.\n[Unit]\nDescription={}", description.replace('\n', " "));
    text.push_str("Wants=network-online.target\nAfter=network-online.target\n\n[Service]\n");
    text.push_str("Type=simple\n");
    let words: Vec<String> = argv.iter().map(|w| quote(w, true)).collect();
    let _ = writeln!(text, "ExecStart={}", words.join(" "));
    for var in &config.env {
        if var.contains('=') {
            let _ = writeln!(text, "Environment={}", quote(var, false));
        }
    }
    // WorkingDirectory=, User= and Group= take their value verbatim (no unquoting), with
    // specifiers expanded.
    if workdir.chars().any(char::is_control) {
        return Err(bad(&argv, "WorkingDir holds a control character".into()));
    }
    let _ = writeln!(text, "WorkingDirectory={}", workdir.replace('%', "%%"));
    if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
        let (user, group) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        for name in std::iter::once(user).chain(group) {
            if !is_user_name(name) {
                return Err(bad(&argv, format!("User {name:?} is not a user or group name")));
            }
        }
        let _ = writeln!(text, "User={user}");
        if let Some(group) = group.filter(|g| !g.is_empty()) {
            let _ = writeln!(text, "Group={group}");
        }
    }
    if let Some(signal) = config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        let signal = if signal.starts_with("SIG") || signal.parse::<u32>().is_ok() {
            signal.to_owned()
        } else {
            format!("SIG{signal}")
        };
        let _ = writeln!(text, "KillSignal={signal}");
    }
    let _ = writeln!(text, "TimeoutStopSec={STOP_TIMEOUT_SECS}");
    text.push_str("StandardInput=null\nStandardOutput=journal+console\n");
    text.push_str("StandardError=journal+console\n\n[Install]\nWantedBy=multi-user.target\n");
    Ok(Some(ServiceUnit { name: format!("{name}.service"), argv, text }))
}

/// Writes `unit` to `/etc/systemd/system` and enables it in `multi-user.target`, as
/// `systemctl enable` would (a symlink in `multi-user.target.wants`).
pub fn install(tree: &mut MergedTree, unit: &ServiceUnit, mtime: i64) -> Result<(), Error> {
    let meta = |mode| EntryMeta { mode, mtime: (mtime, 0), ..EntryMeta::default() };
    let path = format!("/etc/systemd/system/{}", unit.name);
    tree.put_file(path.as_bytes(), unit.text.clone().into_bytes(), meta(0o644))?;
    let link = format!("etc/systemd/system/multi-user.target.wants/{}", unit.name);
    tree.put_symlink(link.as_bytes(), path.as_bytes(), meta(0o777))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> MergedTree {
        let mut t = MergedTree::new();
        let exe = EntryMeta { mode: 0o755, ..EntryMeta::default() };
        t.put_file(b"usr/bin/dash", vec![1], exe.clone()).unwrap();
        t.put_symlink(b"bin", b"usr/bin", exe.clone()).unwrap();
        t.put_symlink(b"usr/bin/sh", b"dash", exe.clone()).unwrap();
        t.put_file(b"srv/app/run", vec![1], exe).unwrap();
        t.put_file(b"usr/bin/data", vec![1], EntryMeta { mode: 0o644, ..EntryMeta::default() })
            .unwrap();
        t
    }

    fn config(entrypoint: &[&str], cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn renders_exec_env_user_and_workdir() {
        let mut t = tree();
        let mut c = config(&["sh", "-c"], &["echo \"$HOME\" 100% \\ done"]);
        c.env = vec!["PATH=/usr/bin".into(), "GREETING=hi %n \"x\"".into()];
        c.working_dir = Some("/var/lib/app".into());
        c.user = Some("nobody:nogroup".into());
        c.stop_signal = Some("INT".into());
        let unit = render(&mut t, &c, "xspack-app", "app", 0).unwrap().unwrap();
        assert_eq!(unit.argv[0], "/usr/bin/sh");
        let want = "ExecStart=\"/usr/bin/sh\" \"-c\" \"echo \\\"$$HOME\\\" 100%% \\\\ done\"\n";
        assert!(unit.text.contains(want), "{}", unit.text);
        assert!(unit.text.contains("Environment=\"GREETING=hi %%n \\\"x\\\"\"\n"));
        assert!(unit.text.contains("WorkingDirectory=/var/lib/app\nUser=nobody\nGroup=nogroup\n"));
        assert!(unit.text.contains("KillSignal=SIGINT\n"));
        c.user = Some("a b".into());
        let err = render(&mut t, &c, "x", "x", 0).unwrap_err().to_string();
        assert!(err.contains("is not a user or group name"), "{err}");
        assert!(unit.text.contains("WantedBy=multi-user.target"));
        assert!(t.lookup(b"var/lib/app").is_some(), "working directory created");
        install(&mut t, &unit, 0).unwrap();
        let link = t.lookup(b"etc/systemd/system/multi-user.target.wants/xspack-app.service");
        assert!(link.is_some());
    }

    #[test]
    fn resolution_and_refusals() {
        let mut t = tree();
        let mut c = config(&[], &["./run", "x"]);
        c.working_dir = Some("/srv/app".into());
        let unit = render(&mut t, &c, "a", "a", 0).unwrap().unwrap();
        assert_eq!(unit.argv, ["/srv/app/run", "x"]);
        assert!(render(&mut t, &config(&[], &["bash"]), "a", "a", 0).unwrap().is_none());
        assert!(render(&mut t, &config(&[], &[]), "a", "a", 0).unwrap().is_none());
        for argv in [&["missing"][..], &["data"], &["/usr/bin/data"]] {
            let err = render(&mut t, &config(argv, &[]), "a", "a", 0).unwrap_err().to_string();
            assert!(err.contains("is not an executable file in the image"), "{err}");
        }
    }
}
