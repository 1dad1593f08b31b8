//! The Ignition config (specification 3.3.0, which Flatcar and Fedora CoreOS both accept) that
//! turns a stock CoreOS image into the container host: it is built with the typed structures of
//! the `ignition-config` crate, which are generated from Ignition's own JSON schema.
//!
//! Ignition runs once, in the initramfs of the first boot, and reads this config from the
//! `config-2` drive's `openstack/latest/user_data` (`docs/formats/config-drive.md` section "Who
//! reads it"). It writes `/etc/hostname` and the `core` user's SSH keys, and enables these systemd
//! units:
//!
//! - `var-lib-xspack.mount`: the data disk, found by its label `xspack-data`, read-only at
//!   `/var/lib/xspack`;
//! - `xspack-images.service`: checks the archives against `SHA256SUMS` and loads each into the
//!   container engine, once per boot, before any container starts;
//! - `xspack-NAME.service`, one per container: `run --rm --name NAME` with its ports,
//!   environment, volumes and arguments, restarted by systemd as the spec says; once the
//!   engine reports it running, [`REPORT_SCRIPT`] prints `xspack: container NAME running` on the
//!   console (or, after two minutes, `xspack: container NAME did not start`).

use ignition_config::v3_3 as ign;

use super::spec::{ContainerSpec, Runtime};

/// Where the data disk is mounted in the guest.
pub const DATA_MOUNT: &str = "/var/lib/xspack";
/// The systemd mount unit of [`DATA_MOUNT`] (its path, escaped).
pub const DATA_MOUNT_UNIT: &str = "var-lib-xspack.mount";
/// The unit that loads the images.
pub const LOAD_UNIT: &str = "xspack-images.service";
/// The label of the data disk's filesystem.
pub const DATA_LABEL: &str = "xspack-data";
/// The directory of the archives on the data disk.
pub const IMAGES_DIR: &str = "images";

/// Where the console report script goes (`/etc` is writable on Flatcar and Fedora CoreOS alike).
pub const REPORT_SCRIPT: &str = "/etc/xspack/report-running";

/// The console report: waits until the engine says the container runs, then says so.
const REPORT: &str = r#"#!/bin/sh
# Written by xspack: prints on the console whether container $2 (engine $1) is running.
engine=$1 name=$2 i=0
console=${XSPACK_CONSOLE:-/dev/console}
while [ "$i" -lt "${XSPACK_REPORT_TRIES:-120}" ]; do
    if [ "$("$engine" inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then
        echo "xspack: container $name running" >"$console"
        exit 0
    fi
    i=$((i + 1))
    sleep 1
done
echo "xspack: container $name did not start" >"$console"
"#;

/// One container as the guest runs it: its spec and the tag its archive loads as.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// The container.
    pub spec: &'a ContainerSpec,
    /// `RepoTags` of its archive.
    pub tag: String,
    /// The archive's file name in [`IMAGES_DIR`].
    pub archive: String,
}

/// The guest-wide settings of the config.
#[derive(Debug, Clone)]
pub struct IgnitionOptions<'a> {
    /// Host name.
    pub hostname: &'a str,
    /// SSH keys of `core`.
    pub ssh_keys: &'a [String],
    /// Container engine.
    pub runtime: Runtime,
}

/// Quotes one argument of a systemd `Exec*=` line (systemd.syntax(7), systemd.service(5)
/// "Command lines"): specifiers `%` and variables `$` are doubled, and anything but plain
/// characters is put in double quotes with `\` and `"` escaped.
pub fn systemd_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"%$/._-:=,+@".contains(&b));
    if plain { arg.replace('%', "%%").replace('$', "$$") } else { crate::service::quote(arg, true) }
}

fn command_line(args: &[String]) -> String {
    args.iter().map(|a| systemd_quote(a)).collect::<Vec<_>>().join(" ")
}

/// The mount unit of the data disk.
fn mount_unit() -> String {
    format!(
        "[Unit]\n\
         Description=xspack data disk (container images)\n\
         Before=local-fs.target\n\
         \n\
         [Mount]\n\
         What=/dev/disk/by-label/{DATA_LABEL}\n\
         Where={DATA_MOUNT}\n\
         Type=ext4\n\
         Options=ro,nodev,nosuid,noexec\n\
         \n\
         [Install]\n\
         WantedBy=local-fs.target\n"
    )
}

fn engine_deps(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Docker => " docker.service",
        Runtime::Podman => "",
    }
}

/// The unit that checks and loads every archive.
fn load_unit(workloads: &[Workload<'_>], runtime: Runtime) -> String {
    let deps = engine_deps(runtime);
    let mut text = format!(
        "[Unit]\n\
         Description=Load the container images of the xspack data disk\n\
         Requires={DATA_MOUNT_UNIT}{deps}\n\
         After={DATA_MOUNT_UNIT}{deps}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         WorkingDirectory={DATA_MOUNT}/{IMAGES_DIR}\n\
         ExecStart=/usr/bin/sha256sum --check --strict --quiet SHA256SUMS\n"
    );
    for w in workloads {
        let argv =
            [runtime.command().to_owned(), "load".into(), "--input".into(), w.archive.clone()];
        text.push_str(&format!("ExecStart={}\n", command_line(&argv)));
    }
    text.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    text
}

/// The `run` command line of a container.
pub fn run_argv(w: &Workload<'_>, runtime: Runtime) -> Vec<String> {
    let c = w.spec;
    let mut argv = vec![
        runtime.command().to_owned(),
        "run".into(),
        "--rm".into(),
        "--name".into(),
        c.name.clone(),
    ];
    for port in &c.ports {
        argv.extend(["--publish".into(), port.clone()]);
    }
    for (key, value) in &c.env {
        argv.extend(["--env".into(), format!("{key}={value}")]);
    }
    for volume in &c.volumes {
        argv.extend(["--volume".into(), volume.clone()]);
    }
    argv.push(w.tag.clone());
    argv.extend(c.command.iter().cloned());
    argv
}

/// The unit of one container.
fn container_unit(w: &Workload<'_>, runtime: Runtime) -> String {
    let c = w.spec;
    let engine = runtime.command();
    let name = &c.name;
    let deps = engine_deps(runtime);
    format!(
        "[Unit]\n\
         Description=Container {name} ({tag}, xspack)\n\
         Requires={LOAD_UNIT}{deps}\n\
         After={LOAD_UNIT}{deps} network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         ExecStartPre=-{engine} rm --force {name}\n\
         ExecStart={run}\n\
         ExecStartPost=/bin/sh {REPORT_SCRIPT} {engine} {name}\n\
         ExecStop={engine} stop {name}\n\
         Restart={restart}\n\
         RestartSec=5s\n\
         TimeoutStartSec=0\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        tag = w.tag,
        run = command_line(&run_argv(w, runtime)),
        restart = c.restart.systemd(),
    )
}

/// The unit name of a container.
pub fn container_unit_name(name: &str) -> String {
    format!("xspack-{name}.service")
}

fn unit(name: &str, contents: String) -> ign::Unit {
    let mut u = ign::Unit::new(name.to_owned());
    u.enabled = Some(true);
    u.contents = Some(contents);
    u
}

/// Percent-encodes `text` as an RFC 2397 `data:` URL.
fn data_url(text: &str) -> String {
    let mut out = String::from("data:,");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Ignition config of the guest.
pub fn config(workloads: &[Workload<'_>], opts: &IgnitionOptions<'_>) -> ign::Config {
    let mut config = ign::Config::default();
    if !opts.ssh_keys.is_empty() {
        let mut core = ign::User::new("core".into());
        core.ssh_authorized_keys = Some(opts.ssh_keys.to_vec());
        config.passwd = Some(ign::Passwd { groups: None, users: Some(vec![core]) });
    }
    let mut hostname = ign::File::new("/etc/hostname".into());
    hostname.mode = Some(0o644);
    hostname.overwrite = Some(true);
    hostname.contents = Some(ign::Resource {
        source: Some(data_url(&format!("{}\n", opts.hostname))),
        ..ign::Resource::default()
    });
    let mut report = ign::File::new(REPORT_SCRIPT.into());
    report.mode = Some(0o755);
    report.overwrite = Some(true);
    report.contents =
        Some(ign::Resource { source: Some(data_url(REPORT)), ..ign::Resource::default() });
    config.storage =
        Some(ign::Storage { files: Some(vec![hostname, report]), ..ign::Storage::default() });
    let mut units = vec![
        unit(DATA_MOUNT_UNIT, mount_unit()),
        unit(LOAD_UNIT, load_unit(workloads, opts.runtime)),
    ];
    if opts.runtime == Runtime::Docker {
        let mut docker = ign::Unit::new("docker.service".into());
        docker.enabled = Some(true);
        units.push(docker);
    }
    for w in workloads {
        units.push(unit(&container_unit_name(&w.spec.name), container_unit(w, opts.runtime)));
    }
    config.systemd = Some(ign::Systemd { units: Some(units) });
    config
}

/// The config as the JSON document Ignition reads, with a final newline.
pub fn render(config: &ign::Config) -> String {
    let mut text = serde_json::to_string_pretty(config).expect("Ignition configs serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a `data:,` URL of [`data_url`].
    fn decode(url: &str) -> Vec<u8> {
        let text = url.strip_prefix("data:,").unwrap().as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'%' {
                let hex = std::str::from_utf8(&text[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    }

    /// The report script, run by sh against a stand-in engine, says what the engine says.
    #[test]
    fn the_report_script_tells_running_from_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("report");
        std::fs::write(&script, decode(&data_url(REPORT))).unwrap();
        for (answer, line) in [
            ("true", "xspack: container web running"),
            ("false", "xspack: container web did not start"),
        ] {
            let engine = dir.path().join("engine");
            std::fs::write(&engine, format!("#!/bin/sh\n[ \"$1 $2 $3 $4\" = 'inspect --format {{{{.State.Running}}}} web' ] && echo {answer}\n")).unwrap();
            std::process::Command::new("chmod").arg("+x").arg(&engine).status().unwrap();
            let console = dir.path().join("console");
            let status = std::process::Command::new("sh")
                .arg(&script)
                .arg(&engine)
                .arg("web")
                .env("XSPACK_CONSOLE", &console)
                .env("XSPACK_REPORT_TRIES", "2")
                .status()
                .unwrap();
            assert!(status.success());
            assert_eq!(std::fs::read_to_string(&console).unwrap(), format!("{line}\n"));
        }
    }

    #[test]
    fn quoting_keeps_arguments_whole_and_literal() {
        assert_eq!(systemd_quote("--env"), "--env");
        assert_eq!(systemd_quote("A=b c"), "\"A=b c\"");
        assert_eq!(systemd_quote("p%h$HOME"), "p%%h$$HOME");
        assert_eq!(systemd_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn the_config_parses_as_ignition_3_3_without_unknown_keys() {
        let mut c = ContainerSpec::new("web", "x");
        c.ports.push("8080:80".into());
        c.env.insert("GREETING".into(), "hello world $1 %d".into());
        c.volumes.push("/srv:/usr/share/nginx/html:ro".into());
        let w =
            Workload { spec: &c, tag: "xspack/web:0123456789ab".into(), archive: "web.tar".into() };
        let keys = vec!["ssh-ed25519 AAAA ops".to_owned()];
        for runtime in [Runtime::Docker, Runtime::Podman] {
            let opts = IgnitionOptions { hostname: "app-host", ssh_keys: &keys, runtime };
            let text = render(&config(std::slice::from_ref(&w), &opts));
            let (parsed, warnings) = ignition_config::Config::parse_str(&text).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert!(matches!(parsed, ignition_config::Config::V3_3(_)));
            assert!(text.contains("GREETING=hello world $$1 %%d"), "{text}");
            assert!(text.contains("data:,app-host%0A"));
            assert_eq!(text.contains("docker.service"), runtime == Runtime::Docker);
        }
    }
}
