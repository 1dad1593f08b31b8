//! The real thing: `debootstrap` bookworm with a kernel and systemd, built into a guest disk,
//! booted by QEMU under TCG (`SeaBIOS`, and OVMF for UEFI) until the Entrypoint service prints
//! its marker on the serial console; pygrub extracts the kernel and initrd; e2fsck is clean.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use serde_json::json;
use xspack_guest::fixups::Network;
use xspack_guest::ubuntu::{BootMode, UbuntuOptions};
use xspack_image::DiskFormat;

use crate::fixture::{bookworm_guest, bookworm_guest_image};
use crate::{EPOCH, build, extract, pygrub, run, sfdisk, tempdir};

/// What the service prints: its user, directory, environment and the host name.
const MARKER: &str =
    "XSPACK-GUEST-MARKER user=nobody cwd=/srv greeting=hello-guest host=bookworm-guest";
/// How long a boot may take under TCG on a shared 2-core machine (measured: about 22 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// One QEMU at a time: two TCG guests on two shared cores would time each other out.
static QEMU: Mutex<()> = Mutex::new(());

fn guest_config() -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo XSPACK-GUEST-MARKER user=$(id -un) cwd=$(pwd) greeting=$GREETING host=$(hostname)"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello-guest"],
        "WorkingDir": "/srv",
        "User": "nobody",
    })
}

/// Boots `args` until a serial line equals [`MARKER`]; returns the seconds it took.
fn boot_until_marker(name: &str, args: &[String]) -> f64 {
    let _one = QEMU.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nographic", "-no-reboot", "-m", "1024", "-nic", "none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs (scripts/oracles installs it from bookworm-backports)");
    let stdout = child.stdout.take().unwrap();
    let found = xspack_testkit::console::wait_for_lines(stdout, &[MARKER.to_owned()], BOOT_TIMEOUT);
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let status = child.wait().unwrap();
    if let Err(log) = found {
        panic!("{name} (qemu {status}): {log}");
    }
    secs
}

/// Builds the fixture guest with `boot`; returns the raw disk's path and the summary.
fn build_guest(
    dir: &Utf8Path,
    boot: BootMode,
) -> (camino::Utf8PathBuf, xspack_guest::ubuntu::GuestSummary) {
    let source = bookworm_guest_image(&dir.join("layout"), &guest_config());
    let mut opts = UbuntuOptions::new("bookworm-guest", vec![DiskFormat::Raw], EPOCH);
    opts.boot = boot;
    let started = Instant::now();
    let (summary, out) = build(&source, dir, &opts).unwrap();
    eprintln!(
        "{boot:?} guest built in {:.1}s: {:?}",
        started.elapsed().as_secs_f64(),
        summary.layout
    );
    assert_eq!(summary.fixups.network, Network::Ifupdown);
    assert!(summary.boot_files.kernel.starts_with("/boot/vmlinuz-6.1.0-"));
    (out.join("bookworm-guest.raw"), summary)
}

#[test]
fn bios_guest_boots_to_the_entrypoint_and_pygrub_finds_its_kernel() {
    let (_t, dir) = tempdir();
    let (raw, summary) = build_guest(&dir, BootMode::Bios);

    // pygrub extracts exactly the image's kernel and initrd.
    let (kernel, initrd, args) = pygrub(&raw, &dir);
    let boot = bookworm_guest().join("boot");
    let name = |path: &str| path.rsplit('/').next().unwrap().to_owned();
    assert!(kernel == std::fs::read(boot.join(name(&summary.boot_files.kernel))).unwrap());
    assert!(initrd == std::fs::read(boot.join(name(&summary.boot_files.initrd))).unwrap());
    assert_eq!(args, summary.cmdline);

    // The root filesystem is clean.
    let table = sfdisk(&raw);
    let size = table["partitions"][0]["size"].as_u64().unwrap() * 512;
    let fs = dir.join("root.ext4");
    extract(&raw, 1 << 20, size, &fs);
    run(Command::new("e2fsck").arg("-fn").arg(&fs));
    std::fs::remove_file(&fs).unwrap();

    let drive = format!("file={raw},format=raw,if=ide,snapshot=on");
    let secs = boot_until_marker("bios", &["-machine".into(), "pc".into(), "-drive".into(), drive]);
    eprintln!("BIOS (SeaBIOS) boot: marker after {secs:.1}s");
}

#[test]
fn uefi_guest_boots_to_the_entrypoint() {
    let (_t, dir) = tempdir();
    let (raw, _) = build_guest(&dir, BootMode::Uefi);
    let code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    let vars = dir.join("OVMF_VARS_4M.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
        .expect("OVMF_VARS_4M.fd (scripts/oracles installs ovmf)");
    let secs = boot_until_marker(
        "uefi",
        &[
            "-machine".into(),
            "q35".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={code}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={vars}"),
            "-drive".into(),
            format!("file={raw},format=raw,if=virtio,snapshot=on"),
        ],
    );
    eprintln!("UEFI (OVMF) boot: marker after {secs:.1}s");
}
