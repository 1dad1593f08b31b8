//! Integration tests of xspack-rpmrepo against the real tools. A missing oracle fails the test
//! (never skips it); `scripts/oracles` installs them.
//!
//! - `rpm_oracle`: built RPMs as `rpm -qpi`, `-qplv`, `--requires/--provides/--scripts`,
//!   `--qf`, `-K` with a scratch rpmdb, and an install into a scratch root see them.
//! - `header`: our header reader against `rpm --qf` and `createrepo_c`, on our RPMs and on RPMs
//!   made by rpmbuild; truncated and corrupt input.
//! - `repodata`: dnf reads our repodata offline; records equal `createrepo_c`'s; reproducibility.
//! - `payload`: multi-block gzip and xz payloads through `rpm -K` and `rpm2cpio | cpio`.
//! - `signing`: gpg verifies our detached signatures and we verify gpg's view; key rules.

mod header;
mod legacy_sigs;
mod memory;
mod payload;
mod repodata;
mod rpm_oracle;
mod signing;

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_rpmrepo::{
    Comparison, DepFlags, Dependency, FileAttrs, GeneratedKey, RpmBuilder, SigningKey,
    TestKeyOptions, generate_test_key,
};

/// The source date of every test build.
pub const EPOCH: u32 = 1_700_000_000;

/// A temporary directory and its UTF-8 path.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Output of a tool run that may fail.
pub struct Run {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs an oracle tool; panics (never skips) when it cannot be started.
pub fn run_any(tool: &str, args: &[&str]) -> Run {
    let out = Command::new(tool).args(args).env("LC_ALL", "C").output().unwrap_or_else(|e| {
        panic!("oracle `{tool}` cannot run ({e}); install it with scripts/oracles")
    });
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs an oracle tool that must succeed and returns its stdout.
pub fn run(tool: &str, args: &[&str]) -> String {
    let r = run_any(tool, args);
    assert!(r.ok, "{tool} {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// The test signing key: RSA-2048 from a fixed seed, generated once per test run.
pub fn test_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut opts =
            TestKeyOptions::new("xspack test key <test@example.invalid>", EPOCH - 86_400);
        opts.seed = Some(7);
        generate_test_key(&opts).unwrap()
    })
}

/// [`test_key`] loaded as a signing key.
pub fn signing_key() -> SigningKey {
    SigningKey::from_armored(&test_key().secret_armored, "test key", None).unwrap()
}

/// A fresh gpg home directory inside `dir`.
pub fn gpg_home(dir: &Utf8Path) -> Utf8PathBuf {
    let home = dir.join("gnupg");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    home
}

/// Runs gpg in batch mode with `home`.
pub fn gpg(home: &Utf8Path, args: &[&str]) -> Run {
    let mut all =
        vec!["--homedir", home.as_str(), "--batch", "--no-tty", "--pinentry-mode", "loopback"];
    all.extend_from_slice(args);
    run_any("gpg", &all)
}

/// The payload files, directories and metadata of the demo driver package.
pub fn demo_builder() -> RpmBuilder {
    RpmBuilder::new("demo-driver", "1.2.3", "4")
        .summary("Demo <driver> & \"tools\"")
        .description("A demo package.\nSecond line & <markup>.")
        .license("MIT")
        .vendor("Example & Co")
        .url("https://example.invalid/demo")
        .source_date(EPOCH)
        .file_from_bytes(b"#!/bin/sh\necho demo\n".to_vec(), "/usr/bin/demo-tool", 0o755)
        .file_from_bytes_with(
            b"setting=1\n".to_vec(),
            "/etc/demo/demo.conf",
            FileAttrs::config_noreplace(0o640),
        )
        .file_from_bytes(vec![7u8; 5000], "/usr/share/demo/data.bin", 0o644)
        .file_from_bytes_with(
            b"owned\n".to_vec(),
            "/opt/demo/owned.txt",
            FileAttrs { user: "daemon".into(), group: "daemon".into(), ..FileAttrs::mode(0o600) },
        )
        .dir("/etc/demo", 0o755)
        .dir("/usr/share/demo", 0o755)
        .dir("/var/lib/demo", 0o750)
        .ghost("/var/log/demo.log", FileAttrs::mode(0o644))
        .symlink("/usr/bin/demo", "demo-tool")
        .post_install("echo post-install")
        .post_uninstall("echo post-uninstall")
        .post_trans("echo post-trans")
        .requires(Dependency::versioned("bash", Comparison::Ge, "4.2"))
        .requires(Dependency::any("coreutils").with_flags(DepFlags::SCRIPT_POST))
        .requires(Dependency::versioned("platform-version", Comparison::Ge, "2.3"))
        .provides(Dependency::versioned("demo-capability", Comparison::Eq, "1:2.0-1"))
        .conflicts(Dependency::versioned("old-demo", Comparison::Lt, "1.0"))
        .obsoletes(Dependency::versioned("demo-legacy", Comparison::Le, "0.9"))
}

/// Writes `builder`'s RPM into `dir` and returns its path.
pub fn write_rpm(dir: &Utf8Path, builder: &RpmBuilder, key: Option<&SigningKey>) -> Utf8PathBuf {
    fs::create_dir_all(dir).unwrap();
    let built = builder.write_to_dir(dir, key, false).unwrap();
    dir.join(built.file_name)
}

/// A spec exercising what our builder does not write (epoch, weak dependencies, changelog,
/// self-provided requirements, `Requires(pre)`, primary and non-primary files), built by the
/// real rpmbuild: our reader and repodata must handle foreign packages too.
const PROBE_SPEC: &str = r#"Name: probe
Epoch: 2
Version: 3.0
Release: 1.el7
Summary: Probe "quotes" 'apos' tab	here ünï
License: GPLv2+ and "MIT"
Vendor: Acme & Co
Packager: Joe <joe@example.com>
Group: System/Tools
BuildArch: noarch
Requires: /usr/bin/probe
Requires: /opt/probe/file
Requires: probe-virt
Requires: probe-virt = 1.0
Requires: libfoo >= 1:2.3-4
Requires(pre): shadow-utils
Requires(preun): pre-un-dep
Requires(post): post-dep
Provides: probe-virt = 1.0
Recommends: rec-a
Suggests: sug-b > 1
Supplements: sup-c
Enhances: enh-d
Conflicts: conf-e
Obsoletes: obs-f < 2:1.0

%description
Desc with 'apos' "quote" & tab	end

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/sbin %{buildroot}/etc %{buildroot}/var/lib/probe %{buildroot}/opt/probe
echo x > %{buildroot}/usr/bin/probe
echo y > %{buildroot}/sbin/probectl
echo c > %{buildroot}/etc/probe.conf
echo f > %{buildroot}/opt/probe/file
ln -s probe %{buildroot}/usr/bin/probe-link

%pre
echo pre
%posttrans
echo posttrans

%files
/usr/bin/probe
/usr/bin/probe-link
/sbin/probectl
%config /etc/probe.conf
%ghost %dir /var/lib/probe
/opt/probe

%changelog
* Tue Jan 02 2024 B <b@example.com> - 3.0-1
- newer & <b>
* Mon Jan 01 2024 A "Q" <a@example.com> - 2.0-1
- older
"#;

/// Builds the probe RPM with rpmbuild into `dir` and returns its path.
pub fn rpmbuild_probe(dir: &Utf8Path) -> Utf8PathBuf {
    let top = dir.join("rpmbuild");
    fs::create_dir_all(&top).unwrap();
    let spec = top.join("probe.spec");
    fs::write(&spec, PROBE_SPEC).unwrap();
    run(
        "rpmbuild",
        &[
            "-bb",
            "--quiet",
            "--define",
            &format!("_topdir {top}"),
            "--define",
            "_buildhost probe-host",
            "--define",
            "source_date_epoch_from_changelog 0",
            spec.as_str(),
        ],
    );
    top.join("RPMS/noarch/probe-3.0-1.el7.noarch.rpm")
}
