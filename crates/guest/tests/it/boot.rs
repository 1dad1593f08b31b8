//! The real thing: `debootstrap` bookworm with a kernel, systemd, cloud-init and the signed
//! boot packages (shim-signed, grub-efi-amd64-signed), built into a guest disk, booted by QEMU
//! under TCG (`SeaBIOS`, OVMF for UEFI, and OVMF with Microsoft's keys enrolled and Secure Boot
//! enforced) until the Entrypoint service prints its marker on the serial console (and, under
//! BIOS with a `NoCloud` seed drive attached, until cloud-init has run the seed's user data;
//! under Secure Boot, until the kernel and the `SecureBoot` EFI variable say it is on). The
//! unsigned chain must be stopped by the same enforcing firmware. pygrub extracts the kernel
//! and initrd; e2fsck is clean.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use serde_json::json;
use xspack_guest::efi::{Chain, SecureBoot};
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
/// One QEMU at a time, across test processes (nextest runs each test in its own): two TCG
/// guests on two shared cores would time each other out. Held while the returned file is open.
fn one_qemu() -> std::fs::File {
    let path = xspack_testkit::fixtures::fixtures_dir().join("qemu.lock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    file.lock().unwrap();
    file
}

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
    let mut wanted = vec![MARKER.to_owned()];
    wanted.extend(more.iter().map(|m| (*m).to_owned()));
    boot_until(name, args, &wanted, &[])
}

/// Boots `args` until the console has shown every line of `wanted`, failing if one of
/// `forbidden` shows first; returns the seconds it took.
fn boot_until(name: &str, args: &[String], wanted: &[String], forbidden: &[String]) -> f64 {
    let _one = one_qemu();
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
    let found =
        xspack_testkit::console::wait_for_lines_unless(stdout, wanted, forbidden, BOOT_TIMEOUT);
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

/// Builds the fixture guest with `boot` and `secure_boot` from an image with `config`;
/// returns the raw disk's path and the summary.
fn build_guest(
    dir: &Utf8Path,
    (boot, secure_boot): (BootMode, SecureBoot),
    config: &serde_json::Value,
) -> (camino::Utf8PathBuf, xspack_guest::ubuntu::GuestSummary) {
    // BIOS builds from the OCI layout, UEFI from a docker archive of the same image.
    let source = match boot {
        BootMode::Bios => bookworm_guest_image(&dir.join("layout"), config),
        BootMode::Uefi => bookworm_guest_docker_archive(&dir.join("guest.tar"), config),
    };
    let mut opts = UbuntuOptions::new("bookworm-guest", vec![DiskFormat::Raw], EPOCH);
    opts.boot = boot;
    opts.secure_boot = secure_boot;
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
    let (raw, summary) = build_guest(&dir, (BootMode::Bios, SecureBoot::Auto), &guest_config());
    assert_eq!(summary.chain, Chain::Grub);

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

/// QEMU arguments for a q35 machine with OVMF: `secure` takes the firmware with Microsoft's
/// keys enrolled and Secure Boot on (`OVMF_*_4M.ms.fd`), which needs SMM and the secure flash.
fn uefi_args(dir: &Utf8Path, raw: &Utf8Path, secure: bool) -> Vec<String> {
    let (code, vars, machine) = if secure {
        ("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd", "q35,smm=on")
    } else {
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", "q35")
    };
    let copy = dir.join(vars);
    std::fs::copy(format!("/usr/share/OVMF/{vars}"), &copy)
        .unwrap_or_else(|e| panic!("{vars} (scripts/oracles installs ovmf): {e}"));
    let mut args = vec!["-machine".to_owned(), machine.to_owned()];
    if secure {
        args.extend(["-global".into(), "driver=cfi.pflash01,property=secure,value=on".into()]);
    }
    args.extend([
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/{code}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={copy}"),
        "-drive".into(),
        format!("file={raw},format=raw,if=virtio,snapshot=on"),
    ]);
    args
}

#[test]
fn uefi_guest_boots_to_the_entrypoint() {
    let (_t, dir) = tempdir();
    let (raw, summary) = build_guest(&dir, (BootMode::Uefi, SecureBoot::Off), &guest_config());
    assert_eq!(summary.chain, Chain::Grub);
    let secs = boot_until_marker("uefi", &uefi_args(&dir, &raw, false), &[]);
    eprintln!("UEFI (OVMF) boot: marker after {secs:.1}s");
}

/// The `SecureBoot` EFI variable (UEFI 2.10 section 3.3: 1 when Secure Boot is on), as the
/// service prints it: efivarfs files start with 4 bytes of attributes.
const SECURE_BOOT_REPORT: &str = "XSPACK-SECUREBOOT-VARIABLE=1";

#[test]
fn secure_boot_guest_boots_with_secure_boot_enforced_and_the_unsigned_chain_does_not() {
    let (_t, dir) = tempdir();
    let mut config = guest_config();
    config["Cmd"] = json!([format!(
        "{}; echo XSPACK-SECUREBOOT-VARIABLE=$(od -An -tu1 -j4 -N1 \
         /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -d ' ')",
        config["Cmd"][0].as_str().unwrap()
    )]);
    let (raw, summary) = build_guest(&dir, (BootMode::Uefi, SecureBoot::Require), &config);
    assert_eq!(summary.chain, Chain::Shim, "the fixture has shim-signed and grub-efi-amd64-signed");
    let wanted = [MARKER, SECURE_BOOT_REPORT, "secureboot: Secure boot enabled"].map(str::to_owned);
    let secs = boot_until("secure boot", &uefi_args(&dir, &raw, true), &wanted, &[]);
    eprintln!("UEFI with Secure Boot enforced (OVMF, Microsoft keys): marker after {secs:.1}s");

    // The same image with GRUB linked by xspack: the firmware refuses to start it.
    let off = dir.join("off");
    std::fs::create_dir(&off).unwrap();
    let (raw, summary) = build_guest(&off, (BootMode::Uefi, SecureBoot::Off), &config);
    assert_eq!(summary.chain, Chain::Grub);
    let refused = ["Access Denied", "No bootable option or device was found"].map(str::to_owned);
    let never = [MARKER, "Linux version"].map(str::to_owned);
    let secs = boot_until("unsigned chain", &uefi_args(&off, &raw, true), &refused, &never);
    eprintln!("the unsigned chain under enforced Secure Boot: refused after {secs:.1}s");
}
