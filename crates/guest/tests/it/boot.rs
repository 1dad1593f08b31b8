//! The real thing: `debootstrap` bookworm with a kernel, systemd and cloud-init, built into a
//! guest disk, booted by QEMU under TCG (`SeaBIOS`, and OVMF for UEFI) until the Entrypoint
//! service prints its marker on the serial console (and, under BIOS with a `NoCloud` seed drive
//! attached, until cloud-init has run the seed's user data); pygrub extracts the kernel and
//! initrd; e2fsck is clean.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use serde_json::json;
use xspack_guest::fixups::Network;
use xspack_guest::seed::{SeedOptions, write_seed};
use xspack_guest::ubuntu::{BootMode, UbuntuOptions};
use xspack_image::DiskFormat;

use crate::fixture::{bookworm_guest, bookworm_guest_docker_archive, bookworm_guest_image};
use crate::{EPOCH, build, extract, pygrub, run, sfdisk, tempdir};

/// What the service prints: its user, directory, environment and the host name.
const MARKER: &str =
    "XSPACK-GUEST-MARKER user=nobody cwd=/srv greeting=hello-guest host=bookworm-guest";
/// How long a boot may take under TCG on a shared 2-core machine (measured: about 22 s without
/// cloud-init; the limit leaves room for a loaded machine).
const BOOT_TIMEOUT: Duration = Duration::from_mins(5);
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

/// What cloud-init's `runcmd` prints, from the `NoCloud` seed drive's user data.
const CLOUD_INIT_MARKER: &str = "XSPACK-CLOUD-INIT-MARKER instance=bookworm-guest-seed";

/// Boots `args` until the console has shown [`MARKER`] and every line of `more`; returns the
/// seconds it took.
fn boot_until_marker(name: &str, args: &[String], more: &[&str]) -> f64 {
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
    let mut wanted = vec![MARKER.to_owned()];
    wanted.extend(more.iter().map(|m| (*m).to_owned()));
    let found = xspack_testkit::console::wait_for_lines(stdout, &wanted, BOOT_TIMEOUT);
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let status = child.wait().unwrap();
    if let Err(log) = found {
        let mut qemu_err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut qemu_err);
        panic!("{name} (qemu {status}: {}): {log}", qemu_err.trim());
    }
    secs
}

/// Builds the fixture guest with `boot`; returns the raw disk's path and the summary.
fn build_guest(
    dir: &Utf8Path,
    boot: BootMode,
) -> (camino::Utf8PathBuf, xspack_guest::ubuntu::GuestSummary) {
    // BIOS builds from the OCI layout, UEFI from a docker archive of the same image.
    let source = match boot {
        BootMode::Bios => bookworm_guest_image(&dir.join("layout"), &guest_config()),
        BootMode::Uefi => bookworm_guest_docker_archive(&dir.join("guest.tar"), &guest_config()),
    };
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
fn bios_guest_boots_to_the_entrypoint_and_cloud_init_and_pygrub_finds_its_kernel() {
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

    // cloud-init finds the NoCloud seed drive (`--seed`) and runs its user data.
    assert!(summary.fixups.cloud_init, "the fixture has cloud-init");
    let user_data = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo XSPACK-CLOUD-INIT-MARKER instance=$(cat /var/lib/cloud/data/instance-id) >/dev/console']\n";
    let seed_opts = SeedOptions::new("bookworm-guest-seed", user_data.as_bytes().to_vec(), EPOCH);
    let seed = dir.join("seed.img");
    write_seed(&seed_opts, std::fs::File::create(&seed).unwrap()).unwrap();
    let drive = format!("file={raw},format=raw,if=ide,snapshot=on");
    let seed_drive = format!("file={seed},format=raw,if=ide,index=1,snapshot=on");
    let args =
        ["-machine".into(), "pc".into(), "-drive".into(), drive, "-drive".into(), seed_drive];
    let secs = boot_until_marker("bios", &args, &[CLOUD_INIT_MARKER]);
    eprintln!("BIOS (SeaBIOS) boot with a NoCloud seed: both markers after {secs:.1}s");
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
        &[],
    );
    eprintln!("UEFI (OVMF) boot: marker after {secs:.1}s");
}
