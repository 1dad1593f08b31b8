//! A fresh filesystem for every timed run: a new sparse ext4 image, loop-mounted, when running
//! as root; otherwise a new directory (and the table says so).
//!
//! The loop device does direct I/O to its backing file (`losetup --direct-io=on`): written
//! data then sits in one page cache, the scratch filesystem's, and reaches the disk once, as
//! on a real disk. A buffered loop device caches every byte twice and copies it once more in
//! the kernel's loop worker, a cost of the harness that falls on whoever writes the most.

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// Size of each scratch filesystem; sparse, so only what a run writes costs anything.
const SCRATCH_SIZE: &str = "16G";

/// How scratch directories are made.
pub enum Scratch {
    /// A loop-mounted ext4 per run.
    Loop,
    /// A plain directory per run.
    Dir,
}

/// One run's scratch directory; unmounted and removed when dropped.
pub struct ScratchDir {
    /// The mount point and its loop device.
    mount: Option<(Utf8PathBuf, String)>,
    holder: tempfile::TempDir,
    path: Utf8PathBuf,
}

impl ScratchDir {
    /// Where the run may write.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some((mount, device)) = &self.mount {
            let _ = Command::new("umount").arg(mount).status();
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
        let _ = &self.holder;
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Scratch {
    /// Loop mounts when they work here, else plain directories.
    pub fn detect() -> Self {
        let probe = Scratch::Loop;
        match probe.create(false) {
            Ok(_) => Scratch::Loop,
            Err(_) => Scratch::Dir,
        }
    }

    /// A line for the report.
    pub fn describe(&self) -> String {
        match self {
            Scratch::Loop => {
                format!("a fresh {SCRATCH_SIZE} ext4 per run, on a direct-I/O loop device")
            }
            Scratch::Dir => "a fresh directory per run (not root: no loop mounts)".into(),
        }
    }

    /// A new scratch directory, owned by `nobody` when `unprivileged`.
    pub fn create(&self, unprivileged: bool) -> Result<ScratchDir> {
        let holder = tempfile::Builder::new().prefix("xspack-bench-").tempdir_in(base())?;
        let root = Utf8PathBuf::from_path_buf(holder.path().to_owned())
            .map_err(|p| anyhow::anyhow!("{}: not UTF-8", p.display()))?;
        let (mount, path) = match self {
            Scratch::Loop => {
                let image = root.join("fs.img");
                let mnt = root.join("mnt");
                std::fs::create_dir(&mnt)?;
                run(Command::new("truncate").args(["-s", SCRATCH_SIZE]).arg(&image))?;
                run(Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
                    .arg(&image))?;
                let out = Command::new("losetup")
                    .args(["--direct-io=on", "--find", "--show"])
                    .arg(&image)
                    .output()
                    .context("running losetup")?;
                if !out.status.success() {
                    bail!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if let Err(e) = run(Command::new("mount").arg(&device).arg(&mnt)) {
                    let _ = Command::new("losetup").arg("-d").arg(&device).status();
                    return Err(e);
                }
                (Some((mnt.clone(), device)), mnt)
            }
            Scratch::Dir => {
                let dir = root.join("run");
                std::fs::create_dir(&dir)?;
                (None, dir)
            }
        };
        if unprivileged {
            run(Command::new("chown").arg("nobody:nogroup").arg(&path))?;
            run(Command::new("chmod").arg("755").arg(&root))?;
        }
        Ok(ScratchDir { mount, holder, path })
    }
}

/// Scratch space lives under target/bench/scratch (same disk as the fixtures).
fn base() -> Utf8PathBuf {
    let dir = crate::target_dir().join("bench/scratch");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Wraps `argv` to run as `nobody` with no supplementary groups (when we are root).
pub fn as_nobody(argv: Vec<String>) -> Vec<String> {
    // The effective uid, read from /proc so no unsafe libc call is needed.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return argv;
    }
    let mut out: Vec<String> =
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
            .map(String::from)
            .to_vec();
    out.extend(argv);
    out
}
