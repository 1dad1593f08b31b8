//! The real Ignition reads the config drive of `xspack image build --flavor coreos`, as a booting
//! CoreOS guest would. Debian packages the CoreOS project's Ignition (`ignition` 2.14): its
//! `ignition-validate`, then its own binary, which runs
//!
//! - `-platform=openstack -stage=fetch`: it finds the drive at `/dev/disk/by-label/config-2`,
//!   mounts it with `mount -o ro -t auto` and reads `openstack/latest/user_data`. It runs in
//!   private mount and network namespaces (`unshare --mount --net`): `/dev` there is a tmpfs
//!   holding the device nodes it needs and the by-label link to our ISO, and the metadata
//!   service it also tries cannot be reached. The kernel here has no iso9660, so `mount` is a
//!   stand-in on `PATH` that extracts the ISO read-only with xorriso; the label, the paths and
//!   the parsing stay Ignition's own;
//! - `-stage=files -root ROOT`: it writes the files, units, presets and SSH keys into a
//!   Flatcar-like root (a `core` user, uid 500), which is then checked against the config.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use camino::Utf8Path;

use crate::common::{code, stderr, tempdir, tool};

/// Debian's build of Ignition (`scripts/oracles` installs it).
const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Runs inside `unshare --mount --net`: `$1` scratch, `$2` the ISO, `$3` the root.
const STAGES: &str = r#"set -euo pipefail
work=$1 iso=$2 root=$3 ign=$4
mkdir -p "$work/dev"
mount -t tmpfs xspack-dev "$work/dev"
for n in null zero full random urandom; do
  [ -e "/dev/$n" ] || continue
  : >"$work/dev/$n"
  mount --bind "/dev/$n" "$work/dev/$n"
done
mkdir -p "$work/dev/disk/by-label"
ln -s "$iso" "$work/dev/disk/by-label/config-2"
mount --move "$work/dev" /dev
export PATH="$work/bin:$PATH"
state=(-config-cache "$work/ignition.json" -state-file "$work/state")
"$ign" -platform=openstack -stage=fetch -log-to-stdout "${state[@]}" -neednet "$work/neednet"
"$ign" -platform=openstack -stage=files -log-to-stdout "${state[@]}" -root "$root"
"#;

/// `mount -o ro -t auto DEVICE DIR` as Ignition's openstack provider runs it: the ISO's files
/// extracted into DIR with xorriso (Rock Ridge names and modes).
const MOUNT: &str = r#"#!/bin/sh
set -eu
if [ "$#" -ne 6 ] || [ "$1 $2 $3 $4" != "-o ro -t auto" ]; then
  echo "mount stand-in: unexpected arguments: $*" >&2
  exit 1
fi
exec xorriso -osirrox on -indev "stdio:$(readlink -f "$5")" -extract / "$6" >/dev/null 2>&1
"#;

fn write_script(path: &Utf8Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A Flatcar-like root: `root` and `core` (uid 500) users, and `SELinux` permissive with the
/// `mcs` policy, as Flatcar ships it (Ignition relabels what it wrote).
fn flatcar_root(root: &Utf8Path) {
    for dir in ["etc/selinux", "home/core", "etc/systemd/system"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:CoreOS Admin:/home/core:/bin/bash\n",
        ),
        ("etc/group", "root:x:0:\nwheel:x:10:core\ncore:x:500:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\nwheel:*::core\ncore:!::\n"),
        ("etc/selinux/config", "SELINUX=permissive\nSELINUXTYPE=mcs\n"),
    ];
    for (path, text) in files {
        std::fs::write(root.join(path), text).unwrap();
    }
    // Ignition writes a user's SSH keys as that user, into a home it owns.
    std::os::unix::fs::chown(root.join("home/core"), Some(500), Some(500)).unwrap();
}

/// The bytes of an RFC 2397 `data:` URL (percent-encoded or base64).
fn data_url(url: &str) -> Vec<u8> {
    let (head, body) = url.strip_prefix("data:").unwrap().split_once(',').unwrap();
    assert!(!head.ends_with(";base64"), "xspack writes percent-encoded data URLs: {url}");
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&body[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Builds the coreos guest of the e2e inputs with `runtime`, runs both stages of the real
/// Ignition on its config drive, and checks the root against the config.
fn ignition_applies(runtime: &str) {
    let (_t, dir) = tempdir();
    crate::coreos::inputs(&dir);
    let dist = dir.join("dist");
    let out = crate::coreos::build(&dir, &dist, &["--format", "raw", "--runtime", runtime]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let iso = dist.join("apps-config-2.iso");

    // Ignition's own validator accepts the config as it is on the drive.
    let user_data =
        tool("isoinfo", &["-R", "-i", iso.as_str(), "-x", "/openstack/latest/user_data"]).stdout;
    let config_path = dir.join("user_data.ign");
    std::fs::write(&config_path, &user_data).unwrap();
    let validate = Command::new("ignition-validate").arg(&config_path).output().unwrap();
    assert!(
        validate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );

    let work = dir.join("work");
    let root = dir.join("root");
    std::fs::create_dir_all(work.join("bin")).unwrap();
    write_script(&work.join("bin/mount"), MOUNT);
    write_script(&work.join("bin/umount"), "#!/bin/sh\nexit 0\n");
    write_script(&work.join("bin/setfiles"), "#!/bin/sh\nexit 0\n");
    flatcar_root(&root);
    let run = Command::new("unshare")
        .args(["--mount", "--net", "bash", "-c", STAGES, "stages"])
        .args([work.as_str(), iso.as_str(), root.as_str(), IGNITION])
        .output()
        .unwrap();
    let log =
        format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "ignition failed:\n{log}");
    assert!(log.contains("config-2"), "fetched from the drive:\n{log}");

    // What Ignition fetched is ours (it caches its own form: the newest spec, defaults filled
    // in, so units, files and users are compared, not the text).
    let fetched: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("ignition.json")).unwrap()).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&user_data).unwrap();
    let names = |v: &serde_json::Value, list: &str, key: &str| -> Vec<String> {
        v.pointer(list)
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().map(|x| x[key].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    for (list, key) in
        [("/systemd/units", "name"), ("/storage/files", "path"), ("/passwd/users", "name")]
    {
        assert_eq!(names(&fetched, list, key), names(&ours, list, key), "{list}");
    }
    assert_eq!(
        fetched["passwd"]["users"][0]["sshAuthorizedKeys"],
        ours["passwd"]["users"][0]["sshAuthorizedKeys"]
    );

    // Units and presets.
    let units = ours["systemd"]["units"].as_array().unwrap();
    let preset =
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
    for unit in units {
        let name = unit["name"].as_str().unwrap();
        if let Some(contents) = unit["contents"].as_str() {
            let written =
                std::fs::read_to_string(root.join("etc/systemd/system").join(name)).unwrap();
            assert_eq!(written, contents, "{name}");
        }
        if unit["enabled"] == true {
            assert!(preset.lines().any(|l| l == format!("enable {name}")), "{name} in\n{preset}");
        }
    }
    for c in ["mysql", "tomcat", "apache", "hadoop"] {
        let unit =
            std::fs::read_to_string(root.join(format!("etc/systemd/system/xspack-{c}.service")))
                .unwrap();
        assert!(unit.contains(&format!("/usr/bin/{runtime} ")), "{c}: {unit}");
    }
    // Files, with their modes.
    let mut files = BTreeMap::new();
    for file in ours["storage"]["files"].as_array().into_iter().flatten() {
        let path = file["path"].as_str().unwrap().trim_start_matches('/').to_owned();
        let written = root.join(&path);
        let want = data_url(file["contents"]["source"].as_str().unwrap());
        assert!(std::fs::read(&written).unwrap() == want, "{path}");
        if let Some(mode) = file["mode"].as_u64() {
            let got = std::fs::metadata(&written).unwrap().permissions().mode() & 0o7777;
            assert_eq!(u64::from(got), mode, "{path}");
        }
        files.insert(path, want.len());
    }
    // The SSH key, for core.
    let key = ours["passwd"]["users"][0]["sshAuthorizedKeys"][0].as_str().unwrap();
    let ssh = root.join("home/core/.ssh");
    let keys = ["authorized_keys.d/ignition", "authorized_keys"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(ssh.join(f)).ok())
        .collect::<String>();
    assert!(keys.contains(key), "{key} in {ssh}: {keys:?}\n{log}");
    eprintln!(
        "{runtime}: Ignition wrote {} units and {} files: {files:?}",
        units.len(),
        files.len()
    );
}

#[test]
fn real_ignition_applies_the_docker_guests_config_drive() {
    ignition_applies("docker");
}

#[test]
fn real_ignition_applies_the_podman_guests_config_drive() {
    ignition_applies("podman");
}
