//! Unit tests of atomic files and directories: what a reader sees before and after commit,
//! and what is left after a failure.

use super::*;

fn utf8_tempdir() -> (TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn names(dir: &Utf8Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn commit_publishes_complete_file() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("out.bin");
    let mut f = AtomicFile::create(&dest).unwrap();
    f.write_all(b"hello").unwrap();
    assert!(!dest.exists(), "nothing under the final name before commit");
    assert_eq!(names(&dir).len(), 1);
    f.commit().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"hello");
    assert_eq!(names(&dir), ["out.bin"]);
    assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, FILE_MODE);
}

#[test]
fn drop_without_commit_leaves_nothing() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("out.bin");
    {
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(&[1u8; 10_000]).unwrap();
        assert!(live_temp_paths().iter().any(|p| p.starts_with(&dir)));
    }
    assert!(names(&dir).is_empty());
    assert!(!live_temp_paths().iter().any(|p| p.starts_with(&dir)));
}

#[test]
fn never_clobbers_without_replace() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("out.bin");
    fs::write(&dest, b"old").unwrap();
    assert!(matches!(AtomicFile::create(&dest), Err(Error::Exists { .. })));

    // The destination appearing while we write is caught at commit time too.
    let other = dir.join("race.bin");
    let mut f = AtomicFile::create(&other).unwrap();
    f.write_all(b"new").unwrap();
    fs::write(&other, b"theirs").unwrap();
    assert!(matches!(f.commit(), Err(Error::Exists { .. })));
    assert_eq!(fs::read(&other).unwrap(), b"theirs");
    assert_eq!(names(&dir), ["out.bin", "race.bin"]);
}

#[test]
fn replace_overwrites() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("out.bin");
    fs::write(&dest, b"old").unwrap();
    let mut f = AtomicFile::create_or_replace(&dest).unwrap();
    f.write_all(b"new").unwrap();
    f.commit().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"new");
    assert_eq!(names(&dir), ["out.bin"]);
}

#[test]
fn seek_and_rewrite_header() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("out.bin");
    let mut f = AtomicFile::create(&dest).unwrap();
    f.write_all(b"....body").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEAD").unwrap();
    f.commit().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"HEADbody");
}

#[test]
fn bad_destinations_are_errors() {
    assert!(matches!(AtomicFile::create("/"), Err(Error::InvalidPath { .. })));
    let err = AtomicFile::create("/nonexistent-dir-xspack/out").err().unwrap();
    assert!(err.to_string().contains("/nonexistent-dir-xspack"), "{err}");
}

#[test]
fn dir_commit_and_no_clobber() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("dist");
    let out = AtomicDir::create(&dest).unwrap();
    fs::write(out.path().join("a"), b"1").unwrap();
    fs::create_dir(out.path().join("sub")).unwrap();
    fs::write(out.path().join("sub/b"), b"2").unwrap();
    assert!(!dest.exists());
    out.commit().unwrap();
    assert_eq!(fs::read(dest.join("sub/b")).unwrap(), b"2");
    assert_eq!(names(&dir), ["dist"]);
    assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, DIR_MODE);

    assert!(matches!(AtomicDir::create(&dest), Err(Error::Exists { .. })));
    let again = AtomicDir::create(dir.join("later")).unwrap();
    fs::create_dir(dir.join("later")).unwrap();
    assert!(matches!(again.commit(), Err(Error::Exists { .. })));
    assert_eq!(names(&dir), ["dist", "later"]);
    assert!(!live_temp_paths().iter().any(|p| p.starts_with(&dir)));
}

#[test]
fn dir_replace_swaps_whole_tree() {
    let (_keep, dir) = utf8_tempdir();
    let dest = dir.join("dist");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("stale"), b"old").unwrap();
    let out = AtomicDir::create_or_replace(&dest).unwrap();
    fs::write(out.path().join("fresh"), b"new").unwrap();
    out.commit().unwrap();
    assert_eq!(names(&dest), ["fresh"]);
    assert_eq!(names(&dir), ["dist"]);
    assert!(!live_temp_paths().iter().any(|p| p.starts_with(&dir)));
}

#[test]
fn dir_drop_removes_everything() {
    let (_keep, dir) = utf8_tempdir();
    {
        let out = AtomicDir::create(dir.join("dist")).unwrap();
        fs::write(out.path().join("partial"), b"x").unwrap();
    }
    assert!(names(&dir).is_empty());
}

#[test]
fn temp_names_are_recognised_exactly() {
    assert!(is_temp_of(".out.a1B2c3.xspack-tmp", "out"));
    assert!(!is_temp_of(".out.a1B2c.xspack-tmp", "out"), "five random characters");
    assert!(!is_temp_of(".out.abc.de1234.xspack-tmp", "out"), "another output's temp");
    assert!(!is_temp_of(".out.a1B2c3.xspack-tmp", "ou"));
    assert!(!is_temp_of("out.a1B2c3.xspack-tmp", "out"));
    assert!(!is_temp_of(".out.a1-2c3.xspack-tmp", "out"));
}

#[test]
fn stale_temporaries_are_swept_and_live_ones_kept() {
    let (_keep, dir) = utf8_tempdir();
    // Left by a killed run: nobody holds a lock on them.
    fs::create_dir(dir.join(".dist.AAAAAA.xspack-tmp")).unwrap();
    fs::write(dir.join(".dist.AAAAAA.xspack-tmp/big"), b"x").unwrap();
    fs::write(dir.join(".dist.BBBBBB.xspack-tmp"), b"x").unwrap();
    // Not ours: other names, and a symlink that only looks like a temporary.
    fs::write(dir.join(".dist.keep.txt"), b"x").unwrap();
    fs::write(dir.join("victim"), b"x").unwrap();
    std::os::unix::fs::symlink("victim", dir.join(".dist.CCCCCC.xspack-tmp")).unwrap();
    // Alive: a build of the same output is running.
    let live = AtomicDir::create(dir.join("dist")).unwrap();
    let live_name = live.path().file_name().unwrap().to_owned();

    let second = AtomicDir::create(dir.join("dist")).unwrap();
    let mut expected = vec![
        ".dist.CCCCCC.xspack-tmp".to_owned(),
        ".dist.keep.txt".to_owned(),
        live_name,
        second.path().file_name().unwrap().to_owned(),
        "victim".to_owned(),
    ];
    expected.sort();
    assert_eq!(names(&dir), expected);
    // A file output sweeps the same way.
    fs::write(dir.join(".f.DDDDDD.xspack-tmp"), b"x").unwrap();
    let f = AtomicFile::create(dir.join("f")).unwrap();
    assert!(!dir.join(".f.DDDDDD.xspack-tmp").exists());
    drop((f, live, second));
    assert_eq!(names(&dir), [".dist.CCCCCC.xspack-tmp", ".dist.keep.txt", "victim"]);
}

#[test]
fn a_live_file_temporary_is_not_swept() {
    let (_keep, dir) = utf8_tempdir();
    let mut first = AtomicFile::create(dir.join("out.bin")).unwrap();
    first.write_all(b"first").unwrap();
    let second = AtomicFile::create(dir.join("out.bin")).unwrap();
    drop(second);
    first.commit().unwrap();
    assert_eq!(fs::read(dir.join("out.bin")).unwrap(), b"first");
}

#[test]
fn parents_made_for_an_output_go_with_it() {
    let (_keep, dir) = utf8_tempdir();
    fs::create_dir(dir.join("existing")).unwrap();
    let dest = dir.join("existing/a/b/dist");
    {
        let out = AtomicDir::create_with_parents(&dest, false).unwrap();
        fs::write(out.path().join("x"), b"1").unwrap();
        assert!(dir.join("existing/a/b").is_dir());
    }
    assert_eq!(names(&dir.join("existing")), Vec::<String>::new(), "a and b are gone");
    assert!(!registry().live.values().any(|(p, _)| p.starts_with(&dir)));

    // A directory someone else filled meanwhile is not removed.
    {
        let _out = AtomicDir::create_with_parents(&dest, false).unwrap();
        fs::write(dir.join("existing/a/theirs"), b"t").unwrap();
    }
    assert_eq!(names(&dir.join("existing/a")), ["theirs"]);
    fs::remove_file(dir.join("existing/a/theirs")).unwrap();
    fs::remove_dir(dir.join("existing/a")).unwrap();

    // An error before the temporary exists removes them too.
    fs::create_dir_all(dir.join("existing/c")).unwrap();
    fs::write(dir.join("existing/c/dist"), b"in the way").unwrap();
    assert!(AtomicDir::create_with_parents(dir.join("existing/c/dist"), false).is_err());
    assert!(
        AtomicDir::create_with_parents(dir.join("existing/c/dist/x/y"), false).is_err(),
        "a file as a parent"
    );
    assert_eq!(names(&dir.join("existing")), ["c"]);

    // A commit keeps them.
    let out = AtomicDir::create_with_parents(&dest, false).unwrap();
    out.commit().unwrap();
    assert!(dest.is_dir());
    assert!(!registry().live.values().any(|(p, _)| p.starts_with(&dir)));
}

#[test]
fn a_parent_locked_by_another_program_delays_nothing_and_sweeps_nothing() {
    let (_keep, dir) = utf8_tempdir();
    fs::create_dir(dir.join(".dist.AAAAAA.xspack-tmp")).unwrap();
    let theirs = File::open(&dir).unwrap();
    lock(&theirs).unwrap();
    let start = std::time::Instant::now();
    let out = AtomicDir::create(dir.join("dist")).unwrap();
    assert!(start.elapsed() < PARENT_LOCK_WAIT * 10, "{:?}", start.elapsed());
    assert!(dir.join(".dist.AAAAAA.xspack-tmp").exists(), "not swept without the lock");
    out.commit().unwrap();
    drop(theirs);
    drop(AtomicDir::create(dir.join("dist2")).unwrap());
    assert!(AtomicDir::create(dir.join("dist")).is_err(), "dist exists");
    let again = AtomicDir::create_or_replace(dir.join("dist")).unwrap();
    drop(again);
    assert!(!dir.join(".dist.AAAAAA.xspack-tmp").exists(), "swept once the lock is free");
}
