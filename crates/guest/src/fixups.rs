//! Guest fix-ups: the changes that turn a container root filesystem into a machine's, made
//! through the [`MergedTree`] API (nothing is extracted or mounted).
//!
//! - `/etc/fstab` mounts the root by filesystem UUID (`fstab(5)`), so it survives any device
//!   naming (`xvda` under PV, `sda` under HVM emulation).
//! - `/etc/hostname` and `/etc/hosts` name the guest (`hostname(5)`, Debian's `127.0.1.1`
//!   convention).
//! - `/etc/machine-id` is empty, so systemd makes a new id on first boot and clones of the
//!   image differ (`machine-id(5)`); a dbus copy is pointed at it.
//! - `/.dockerenv` (and the older `/.dockerinit`) are removed: systemd and other tools take them
//!   to mean "running in a container".
//! - DHCP on the first NIC, named `eth0` by `net.ifnames=0` on the kernel command line (under
//!   predictable naming, systemd names xen-netfront NICs `enX0`;
//!   `docs/formats/boot.md` section "Network interface names"),
//!   with the tool the image has, in this order: netplan (Ubuntu), ifupdown (Debian, needs a
//!   DHCP client), systemd-networkd.
//! - When cloud-init is present, its datasource list is `NoCloud` (and `None`), so boot does not
//!   wait on EC2 or `OpenStack` metadata timeouts; [`crate::seed`] writes the `cidata` drive.

use xspack_oci::{EntryMeta, MergedTree, NodeKind};

use crate::Error;
use crate::osrelease::Family;

/// The network configuration the guest got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `/etc/netplan/90-xspack.yaml`.
    Netplan,
    /// `/etc/network/interfaces` with `allow-hotplug eth0` and `inet dhcp`.
    Ifupdown,
    /// `/etc/systemd/network/90-xspack-eth0.network`, with systemd-networkd enabled.
    Networkd,
    /// None: the image has no tool for it, or it was not asked for.
    None,
}

/// What the fix-ups did, and what the caller should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixupSummary {
    /// The network configuration written.
    pub network: Network,
    /// Whether cloud-init was found and pointed at `NoCloud`.
    pub cloud_init: bool,
    /// Paths added or replaced, in order.
    pub written: Vec<String>,
    /// Paths removed.
    pub removed: Vec<String>,
    /// Things the guest may lack, one sentence each.
    pub notes: Vec<String>,
}

/// What the fix-ups need to know.
#[derive(Debug, Clone)]
pub struct FixupOptions<'a> {
    /// The root filesystem's UUID, in text form.
    pub root_uuid: &'a str,
    /// The host name (a valid DNS label).
    pub hostname: &'a str,
    /// Whether to configure DHCP on the first NIC.
    pub network: bool,
    /// The distribution family.
    pub family: Family,
    /// Modification time of the files written.
    pub mtime: i64,
}

/// The first of `paths` that exists in the tree (symlinks followed).
fn has_any(tree: &mut MergedTree, paths: &[&str]) -> bool {
    paths.iter().any(|p| tree.resolve(p.as_bytes()).is_some())
}

struct Writer<'t> {
    tree: &'t mut MergedTree,
    mtime: i64,
    summary: FixupSummary,
}

impl Writer<'_> {
    fn meta(&self, mode: u32) -> EntryMeta {
        EntryMeta { mode, mtime: (self.mtime, 0), ..EntryMeta::default() }
    }

    fn file(&mut self, path: &str, mode: u32, text: &str) -> Result<(), Error> {
        let meta = self.meta(mode);
        self.tree.put_file(path.as_bytes(), text.as_bytes().to_vec(), meta)?;
        self.summary.written.push(path.to_owned());
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        let meta = self.meta(0o777);
        self.tree.put_symlink(path.as_bytes(), target.as_bytes(), meta)?;
        self.summary.written.push(path.to_owned());
        Ok(())
    }

    fn remove(&mut self, path: &str) {
        if self.tree.remove(path.as_bytes()) {
            self.summary.removed.push(path.to_owned());
        }
    }
}

/// Checks that `name` is a host name Linux and DHCP accept: 1 to 63 letters, digits and
/// hyphens, not starting or ending with a hyphen.
pub fn check_hostname(name: &str) -> Result<(), Error> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Options(format!(
            "hostname {name:?}: use 1 to 63 letters, digits and '-', not at either end"
        )))
    }
}

/// Applies every fix-up to `tree`.
pub fn apply(tree: &mut MergedTree, opts: &FixupOptions<'_>) -> Result<FixupSummary, Error> {
    check_hostname(opts.hostname)?;
    let summary = FixupSummary {
        network: Network::None,
        cloud_init: false,
        written: Vec::new(),
        removed: Vec::new(),
        notes: Vec::new(),
    };
    let mut w = Writer { tree, mtime: opts.mtime, summary };
    let fstab = format!(
        "# /etc/fstab: written by xspack. The root filesystem, by UUID.\n\
         UUID={} / ext4 errors=remount-ro 0 1\n",
        opts.root_uuid
    );
    w.file("/etc/fstab", 0o644, &fstab)?;
    w.file("/etc/hostname", 0o644, &format!("{}\n", opts.hostname))?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        opts.hostname
    );
    w.file("/etc/hosts", 0o644, &hosts)?;
    w.file("/etc/machine-id", 0o444, "")?;
    if let Some(id) = w.tree.lookup(b"var/lib/dbus/machine-id")
        && matches!(w.tree.node(id).kind, NodeKind::File { .. })
    {
        w.symlink("/var/lib/dbus/machine-id", "/etc/machine-id")?;
    }
    w.remove("/.dockerenv");
    w.remove("/.dockerinit");
    if opts.network {
        network(&mut w, opts.family)?;
    }
    if has_any(w.tree, &["usr/bin/cloud-init", "etc/cloud/cloud.cfg"]) {
        w.file(
            "/etc/cloud/cloud.cfg.d/90_xspack_datasource.cfg",
            0o644,
            "# Written by xspack: read the NoCloud (cidata) drive, and wait on no metadata \
             service.\ndatasource_list: [ NoCloud, None ]\n",
        )?;
        w.summary.cloud_init = true;
    }
    Ok(w.summary)
}

fn network(w: &mut Writer<'_>, family: Family) -> Result<(), Error> {
    let netplan = has_any(w.tree, &["usr/sbin/netplan", "usr/share/netplan/netplan.script"]);
    let ifupdown = has_any(w.tree, &["sbin/ifup", "usr/sbin/ifup"]);
    let networkd =
        has_any(w.tree, &["lib/systemd/systemd-networkd", "usr/lib/systemd/systemd-networkd"]);
    if netplan && (family == Family::Ubuntu || !ifupdown) {
        w.file(
            "/etc/netplan/90-xspack.yaml",
            0o600,
            "# Written by xspack: DHCP on the first NIC (eth0, from net.ifnames=0).\n\
             network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      \
             dhcp6: true\n      optional: true\n",
        )?;
        w.summary.network = Network::Netplan;
    } else if ifupdown {
        w.file(
            "/etc/network/interfaces",
            0o644,
            "# Written by xspack: DHCP on the first NIC (eth0, from net.ifnames=0).\n\
             source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n\
             allow-hotplug eth0\niface eth0 inet dhcp\n",
        )?;
        let dhcp = ["sbin/dhclient", "usr/sbin/dhclient", "sbin/udhcpc", "usr/sbin/dhcpcd"];
        if !has_any(w.tree, &dhcp) {
            w.summary
                .notes
                .push("ifupdown has no DHCP client in the image: add isc-dhcp-client".to_owned());
        }
        w.summary.network = Network::Ifupdown;
    } else if networkd {
        w.file(
            "/etc/systemd/network/90-xspack-eth0.network",
            0o644,
            "# Written by xspack: DHCP on the first NIC (eth0, from net.ifnames=0).\n\
             [Match]\nName=eth0\n\n[Network]\nDHCP=yes\n",
        )?;
        // What `systemctl enable systemd-networkd` links, from the unit's [Install] section.
        let unit = if has_any(w.tree, &["usr/lib/systemd/system/systemd-networkd.service"]) {
            "/usr/lib/systemd/system"
        } else {
            "/lib/systemd/system"
        };
        for (link, target) in [
            ("multi-user.target.wants/systemd-networkd.service", "systemd-networkd.service"),
            ("sockets.target.wants/systemd-networkd.socket", "systemd-networkd.socket"),
            (
                "network-online.target.wants/systemd-networkd-wait-online.service",
                "systemd-networkd-wait-online.service",
            ),
            ("dbus-org.freedesktop.network1.service", "systemd-networkd.service"),
        ] {
            w.symlink(&format!("/etc/systemd/system/{link}"), &format!("{unit}/{target}"))?;
        }
        w.summary.network = Network::Networkd;
    } else {
        w.summary.notes.push(
            "the image has no netplan, ifupdown or systemd-networkd: the NIC stays \
             unconfigured (add ifupdown and isc-dhcp-client)"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xspack_oci::FileData;

    fn text(t: &MergedTree, path: &str) -> String {
        let id = t.lookup(path.as_bytes()).unwrap_or_else(|| panic!("{path} missing"));
        match &t.node(id).kind {
            NodeKind::File { source: FileData::Inline(data), .. } => {
                String::from_utf8(data.to_vec()).unwrap()
            }
            other => panic!("{path}: {other:?}"),
        }
    }

    fn opts(family: Family) -> FixupOptions<'static> {
        FixupOptions { root_uuid: "0123", hostname: "guest", network: true, family, mtime: 7 }
    }

    #[test]
    fn debian_with_ifupdown() {
        let mut t = MergedTree::new();
        let meta = EntryMeta { mode: 0o755, ..EntryMeta::default() };
        t.put_file(b".dockerenv", Vec::new(), meta.clone()).unwrap();
        t.put_file(b"sbin/ifup", vec![1], meta.clone()).unwrap();
        t.put_file(b"lib/systemd/systemd-networkd", vec![1], meta.clone()).unwrap();
        t.put_file(b"var/lib/dbus/machine-id", b"abc\n".to_vec(), meta).unwrap();
        let s = apply(&mut t, &opts(Family::Debian)).unwrap();
        assert_eq!(s.network, Network::Ifupdown);
        assert_eq!(s.removed, ["/.dockerenv"]);
        assert_eq!(s.notes.len(), 1, "no DHCP client: {:?}", s.notes);
        assert!(text(&t, "etc/fstab").contains("UUID=0123 / ext4 errors=remount-ro 0 1\n"));
        assert_eq!(text(&t, "etc/hostname"), "guest\n");
        assert!(text(&t, "etc/hosts").contains("127.0.1.1\tguest\n"));
        assert_eq!(text(&t, "etc/machine-id"), "");
        assert!(text(&t, "etc/network/interfaces").contains("iface eth0 inet dhcp"));
        let dbus = t.node(t.lookup(b"var/lib/dbus/machine-id").unwrap());
        assert_eq!(dbus.kind, NodeKind::Symlink(b"/etc/machine-id".to_vec()));
        assert!(!s.cloud_init);
    }

    #[test]
    fn ubuntu_netplan_cloud_init_and_networkd_fallback() {
        let mut t = MergedTree::new();
        let meta = EntryMeta { mode: 0o755, ..EntryMeta::default() };
        t.put_file(b"usr/sbin/netplan", vec![1], meta.clone()).unwrap();
        t.put_file(b"usr/bin/cloud-init", vec![1], meta.clone()).unwrap();
        let s = apply(&mut t, &opts(Family::Ubuntu)).unwrap();
        assert_eq!(s.network, Network::Netplan);
        assert!(s.cloud_init);
        assert!(text(&t, "etc/netplan/90-xspack.yaml").contains("eth0:\n      dhcp4: true"));
        assert!(
            text(&t, "etc/cloud/cloud.cfg.d/90_xspack_datasource.cfg")
                .contains("datasource_list: [ NoCloud, None ]")
        );

        let mut t = MergedTree::new();
        t.put_file(b"usr/lib/systemd/systemd-networkd", vec![1], meta).unwrap();
        let s = apply(&mut t, &opts(Family::Debian)).unwrap();
        assert_eq!(s.network, Network::Networkd);
        let link = t.lookup(b"etc/systemd/system/multi-user.target.wants/systemd-networkd.service");
        let target = b"/lib/systemd/system/systemd-networkd.service".to_vec();
        assert_eq!(t.node(link.unwrap()).kind, NodeKind::Symlink(target));

        let mut t = MergedTree::new();
        let s = apply(&mut t, &opts(Family::Debian)).unwrap();
        assert_eq!((s.network, s.notes.len()), (Network::None, 1));
        let mut bad = opts(Family::Debian);
        bad.hostname = "-x";
        assert!(apply(&mut t, &bad).unwrap_err().to_string().contains("hostname"));
    }
}
