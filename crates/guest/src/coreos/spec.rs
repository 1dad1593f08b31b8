//! `guest.toml`: the containers a CoreOS guest runs, and the guest's own settings.
//!
//! ```toml
//! name = "app-host"            # VM name and output base name (optional)
//! hostname = "app-host"        # default: the name
//! memory = "4G"                # default 2G
//! vcpus = 2                    # default 2
//! ssh-keys = ["ssh-ed25519 AAAA... ops@example"]
//! runtime = "docker"           # docker (Flatcar's default) or podman (Fedora CoreOS's)
//!
//! [[container]]
//! name = "mysql"
//! image = "images/mysql.tar"   # an image source, relative to this file
//! ports = ["3306:3306"]
//! env = { MYSQL_ROOT_PASSWORD = "example" }
//! volumes = ["/var/lib/mysql:/var/lib/mysql"]
//! restart = "always"           # always (default), on-failure or no
//! command = ["--max-connections=200"]
//! ```
//!
//! Unknown keys are errors, and every error names `file:line:column`.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::Error;

/// Largest `guest.toml` read.
const MAX_SPEC: u64 = 1 << 20;

/// The container engine the guest runs the containers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker (`docker load`, `docker run`), built into Flatcar.
    Docker,
    /// Podman (`podman load`, `podman run`), built into Fedora CoreOS.
    Podman,
}

impl Runtime {
    /// The command.
    pub fn command(self) -> &'static str {
        match self {
            Runtime::Docker => "/usr/bin/docker",
            Runtime::Podman => "/usr/bin/podman",
        }
    }
}

/// When systemd restarts a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Always (systemd `Restart=always`).
    #[default]
    Always,
    /// When it exits with an error (`Restart=on-failure`).
    OnFailure,
    /// Never (`Restart=no`).
    No,
}

impl Restart {
    /// The systemd `Restart=` value.
    pub fn systemd(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::No => "no",
        }
    }
}

/// One container of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Container name; also names its archive, its image tag and its systemd unit.
    pub name: String,
    /// The image source (`docker-archive:`, `oci:`, `oci-archive:` or a path), relative paths
    /// taken from the directory of `guest.toml`.
    pub image: String,
    /// Published ports, `[IP:]HOST:CONTAINER[/tcp|/udp]`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bind mounts, `/HOST:/CONTAINER[:ro|:rw]`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// Arguments after the image (replacing its Cmd).
    #[serde(default)]
    pub command: Vec<String>,
}

impl ContainerSpec {
    /// A container named `name` running `image` with no ports, volumes or environment.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            ports: Vec::new(),
            env: BTreeMap::new(),
            volumes: Vec::new(),
            restart: Restart::Always,
            command: Vec::new(),
        }
    }
}

/// A parsed `guest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GuestSpec {
    /// VM name.
    pub name: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Memory, e.g. `2G`.
    pub memory: Option<String>,
    /// Virtual CPUs.
    pub vcpus: Option<u32>,
    /// SSH public keys for the `core` user.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The container engine; by default the distribution's own.
    pub runtime: Option<Runtime>,
    /// The containers, at least one.
    #[serde(default, rename = "container")]
    pub containers: Vec<ContainerSpec>,
    /// The file, for resolving image paths.
    #[serde(skip)]
    pub path: Utf8PathBuf,
}

impl GuestSpec {
    /// Parses `text`, the contents of `file`, and checks every container.
    pub fn parse(text: &str, file: &Utf8Path) -> Result<Self, Error> {
        let mut spec: GuestSpec = toml::from_str(text).map_err(|e| {
            let at = xspack_io::location::locate(file, text, e.span().map(|s| s.start));
            Error::Spec { at, reason: e.message().trim().to_owned() }
        })?;
        spec.path = file.to_owned();
        let err = |reason: String| Error::Spec { at: file.to_string(), reason };
        if spec.containers.is_empty() {
            return Err(err("no [[container]]: a guest runs at least one".into()));
        }
        for c in &spec.containers {
            check_container(c)
                .map_err(|reason| err(format!("container {:?}: {reason}", c.name)))?;
        }
        check_unique(&spec.containers).map_err(err)?;
        Ok(spec)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Utf8Path) -> Result<Self, Error> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
        let mut text = String::new();
        file.take(MAX_SPEC + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io("reading", path, e))?;
        if text.len() as u64 > MAX_SPEC {
            return Err(Error::Spec {
                at: path.to_string(),
                reason: format!("larger than {MAX_SPEC} bytes"),
            });
        }
        Self::parse(&text, path)
    }

    /// The image source of `container`, with a relative path taken from this file's directory.
    pub fn resolve_image(&self, container: &ContainerSpec) -> String {
        let dir = self.path.parent().unwrap_or(Utf8Path::new(""));
        let (prefix, rest) = match container.image.split_once(':') {
            Some((p, r)) if ["docker-archive", "oci", "oci-archive"].contains(&p) => (Some(p), r),
            _ => (None, container.image.as_str()),
        };
        let path = if rest.starts_with('/') || dir.as_str().is_empty() {
            rest.to_owned()
        } else {
            dir.join(rest).to_string()
        };
        match prefix {
            Some(p) => format!("{p}:{path}"),
            None => path,
        }
    }
}

/// Checks that container names are unique.
pub fn check_unique(containers: &[ContainerSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in containers {
        if !seen.insert(c.name.as_str()) {
            return Err(format!("two containers are named {:?}", c.name));
        }
    }
    Ok(())
}

/// Checks one container's fields; the message says which and why.
pub fn check_container(c: &ContainerSpec) -> Result<(), String> {
    let name_ok = (1..=63).contains(&c.name.len())
        && c.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        && c.name.as_bytes()[0].is_ascii_alphanumeric()
        && c.name.as_bytes()[c.name.len() - 1].is_ascii_alphanumeric();
    if !name_ok {
        return Err("the name must be 1 to 63 lower-case letters, digits, '.', '_' and '-', \
                    starting and ending with a letter or digit"
            .into());
    }
    if c.image.is_empty() {
        return Err("image is empty".into());
    }
    for port in &c.ports {
        check_port(port).map_err(|why| format!("port {port:?}: {why}"))?;
    }
    for volume in &c.volumes {
        check_volume(volume).map_err(|why| format!("volume {volume:?}: {why}"))?;
    }
    for (key, value) in &c.env {
        let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(format!(
                "env {key:?}: names are letters, digits and '_', not starting with a digit"
            ));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(format!("env {key:?}: the value holds a line break or NUL"));
        }
    }
    if let Some(arg) = c.command.iter().find(|a| a.contains(['\n', '\r', '\0'])) {
        return Err(format!("command argument {arg:?} holds a line break or NUL"));
    }
    Ok(())
}

fn check_port(text: &str) -> Result<(), &'static str> {
    let (ports, proto) = match text.rsplit_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (text, None),
    };
    if proto.is_some_and(|p| p != "tcp" && p != "udp") {
        return Err("the protocol must be tcp or udp");
    }
    let fields: Vec<&str> = ports.rsplitn(3, ':').collect();
    let number = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
    match fields.as_slice() {
        [container, host] | [container, host, _]
            if number(container).is_some() && number(host).is_some() =>
        {
            if let [_, _, ip] = fields.as_slice()
                && ip.parse::<std::net::IpAddr>().is_err()
            {
                return Err("the address before the host port is not an IP address");
            }
            Ok(())
        }
        _ => Err("use HOST:CONTAINER or IP:HOST:CONTAINER with ports 1 to 65535"),
    }
}

fn check_volume(text: &str) -> Result<(), &'static str> {
    let fields: Vec<&str> = text.split(':').collect();
    let (host, container) = match fields.as_slice() {
        [h, c] | [h, c, "ro" | "rw"] => (*h, *c),
        _ => return Err("use /HOST:/CONTAINER, optionally followed by :ro or :rw"),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err("both paths must be absolute");
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("paths must not hold spaces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "app-host"
memory = "4G"
ssh-keys = ["ssh-ed25519 AAAAC3Nza ops@example"]

[[container]]
name = "mysql"
image = "images/mysql.tar"
ports = ["3306:3306", "127.0.0.1:8080:80/tcp"]
env = { MYSQL_ROOT_PASSWORD = "a b$c" }
volumes = ["/var/lib/mysql:/var/lib/mysql", "/srv:/srv:ro"]

[[container]]
name = "web"
image = "oci:/abs/web:latest"
restart = "on-failure"
"#;

    #[test]
    fn a_full_spec_parses_and_resolves_images() {
        let spec = GuestSpec::parse(GOOD, Utf8Path::new("/etc/g/guest.toml")).unwrap();
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(spec.containers[1].restart, Restart::OnFailure);
        assert_eq!(spec.resolve_image(&spec.containers[0]), "/etc/g/images/mysql.tar");
        assert_eq!(spec.resolve_image(&spec.containers[1]), "oci:/abs/web:latest");
    }

    #[test]
    fn bad_specs_name_the_place_and_the_problem() {
        let cases = [
            ("name = 1\n[[container]]\nname='a'\nimage='x'", "guest.toml:1:8"),
            ("[[container]]\nname='a'\nimage='x'\nport=['1:1']", "guest.toml:4:1"),
            ("", "no [[container]]"),
            ("[[container]]\nname='A'\nimage='x'", "lower-case"),
            ("[[container]]\nname='a'\nimage='x'\nports=['99999:1']", "port \"99999:1\""),
            ("[[container]]\nname='a'\nimage='x'\nports=['1:2/sctp']", "tcp or udp"),
            ("[[container]]\nname='a'\nimage='x'\nports=['host:1:2']", "not an IP address"),
            ("[[container]]\nname='a'\nimage='x'\nvolumes=['data:/data']", "absolute"),
            ("[[container]]\nname='a'\nimage='x'\nvolumes=['/a:/b:rx']", ":ro or :rw"),
            ("[[container]]\nname='a'\nimage='x'\nenv={1A='x'}", "env \"1A\""),
            ("[[container]]\nname='a'\nimage='x'\nenv={A=\"x\\ny\"}", "line break"),
            ("[[container]]\nname='a'\nimage='x'\nrestart='sometimes'", "guest.toml:4:9"),
            (
                "[[container]]\nname='a'\nimage='x'\n[[container]]\nname='a'\nimage='y'",
                "two containers",
            ),
            ("runtime = 'lxc'\n[[container]]\nname='a'\nimage='x'", "guest.toml:1:11"),
        ];
        for (text, want) in cases {
            let err = GuestSpec::parse(text, Utf8Path::new("guest.toml")).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
