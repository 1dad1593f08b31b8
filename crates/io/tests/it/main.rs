//! Integration tests of xspack-io: a real process killed by SIGINT or SIGTERM in the middle of
//! writing an atomic file or directory leaves nothing behind.
//!
//! The process under test is this test binary itself, re-run with `--ignored --exact` on the
//! helper test `helper_write_forever`, which writes until it is killed.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use camino::Utf8PathBuf;
use rustix::process::{Pid, Signal, kill_process};
use xspack_io::{AtomicDir, AtomicFile, install_signal_cleanup};

const DEST_VAR: &str = "XSPACK_IO_TEST_DEST";
const KIND_VAR: &str = "XSPACK_IO_TEST_KIND";

/// Run only as a child of `interrupted_*` tests: writes into an atomic output until killed.
#[test]
#[ignore = "helper process for the signal tests; it never returns"]
fn helper_write_forever() {
    let dest = Utf8PathBuf::from(std::env::var(DEST_VAR).expect("run by the signal tests"));
    install_signal_cleanup().unwrap();
    // Keep the output alive (uncommitted) while writing into it forever.
    let (_dir, mut file): (Option<AtomicDir>, Box<dyn Write>) =
        if std::env::var(KIND_VAR).as_deref() == Ok("dir") {
            let dir = AtomicDir::create(&dest).unwrap();
            let file = fs::File::create(dir.path().join("artifact.bin")).unwrap();
            (Some(dir), Box::new(file))
        } else {
            (None, Box::new(AtomicFile::create(&dest).unwrap()))
        };
    let chunk = vec![0x5au8; 64 * 1024];
    file.write_all(&chunk).unwrap();
    writeln!(std::io::stdout(), "READY").unwrap();
    loop {
        file.write_all(&chunk).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts the helper writing `dest` as a `kind` output; returns once it is writing.
fn start_helper(kind: &str, dest: &Utf8PathBuf) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_write_forever", "--nocapture", "--test-threads=1"])
        .env(DEST_VAR, dest)
        .env(KIND_VAR, kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("helper printed READY").unwrap();
        if line.contains("READY") {
            break;
        }
    }
    child
}

fn interrupt(kind: &str, signal: Signal) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let dest = root.join("artifact");
    let mut child = start_helper(kind, &dest);
    std::thread::sleep(Duration::from_millis(100));
    let during: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(during.len(), 1, "one temporary output while writing: {during:?}");
    assert!(during[0].to_string_lossy().ends_with(".xspack-tmp"), "{during:?}");
    assert!(!dest.exists());

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    kill_process(pid, signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(signal.as_raw()), "dies by the signal: {status:?}");
    let after: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(after.is_empty(), "left behind: {after:?}");
}

#[test]
fn interrupted_file_by_sigterm_leaves_nothing() {
    interrupt("file", Signal::TERM);
}

#[test]
fn interrupted_file_by_sigint_leaves_nothing() {
    interrupt("file", Signal::INT);
}

#[test]
fn interrupted_dir_by_sigterm_leaves_nothing() {
    interrupt("dir", Signal::TERM);
}

/// SIGKILL leaves the temporary behind (nothing can catch it); the next output of the same
/// name finds it unlocked and removes it, while a live writer's temporary is left alone.
fn killed_then_swept(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let dest = root.join("artifact");
    let listing = || -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };

    // While the writer lives, a second output of the same name must not take its temporary.
    let mut live = start_helper(kind, &dest);
    let live_temp = listing();
    assert_eq!(live_temp.len(), 1, "{live_temp:?}");
    drop(AtomicFile::create(root.join("artifact.other")).unwrap());
    let probe = AtomicDir::create(&dest).unwrap();
    assert!(listing().contains(&live_temp[0]), "a live temporary was swept");
    drop(probe);
    let pid = Pid::from_raw(i32::try_from(live.id()).unwrap()).unwrap();
    kill_process(pid, Signal::KILL).unwrap();
    live.wait().unwrap();
    assert_eq!(listing(), live_temp, "SIGKILL leaves the temporary");

    let next = AtomicDir::create(&dest).unwrap();
    let after = listing();
    assert_eq!(after.len(), 1, "the stale temporary is gone: {after:?}");
    assert_ne!(after, live_temp);
    next.commit().unwrap();
    assert_eq!(listing(), ["artifact"]);
}

#[test]
fn killed_file_writer_is_swept_by_the_next_run() {
    killed_then_swept("file");
}

#[test]
fn killed_dir_writer_is_swept_by_the_next_run() {
    killed_then_swept("dir");
}
