//! What the target host's rpm can install, checked in one place before anything is written.
//!
//! Only one target exists for now: the dom0 of XenServer 8 and XCP-ng 8.x, with rpm 4.11.3.
//! It lacks `rpmlib(RichDependencies)` (rpm 4.13) and `rpmlib(LargeFiles)` (rpm 4.12): rpmbuild
//! needs the latter for a file of 4 GiB or more, or a total file size over 4 GiB, because
//! those sizes only fit `LONGFILESIZES`/`LONGSIZE` (rpm 4.11.3 `build/files.c`,
//! `genCpioListAndHeader`; the features rpm 4.11 has are listed in `lib/rpmds.c`,
//! `rpmlibProvides`). A [`Target`] value describes such limits, so other targets can be
//! added as values.

use super::payload::Scan;
use crate::Error;
use crate::build::RpmBuilder;

/// The limits of a target's rpm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Named in errors, e.g. `rpm 4.11 (XenServer 8 / XCP-ng 8.x dom0)`.
    pub(crate) name: &'static str,
    /// Whether `rpmlib(LargeFiles)` is provided: files and totals of 4 GiB and more.
    pub(crate) large_files: bool,
    /// Whether `rpmlib(RichDependencies)` is provided: boolean dependencies.
    pub(crate) rich_dependencies: bool,
}

/// rpm 4.11.3, the dom0 of XenServer 8 and XCP-ng 8.x.
pub(crate) const RPM_4_11: Target = Target {
    name: "rpm 4.11 (XenServer 8 / XCP-ng 8.x dom0)",
    large_files: false,
    rich_dependencies: false,
};

impl Target {
    /// Refuses dependencies the target cannot read.
    pub(crate) fn check_dependencies(&self, b: &RpmBuilder) -> Result<(), Error> {
        if self.rich_dependencies {
            return Ok(());
        }
        let all = b.requires.iter().chain(&b.provides).chain(&b.conflicts).chain(&b.obsoletes);
        match all.clone().find(|d| d.is_rich()) {
            Some(dep) => {
                Err(Error::RichDependency { package: b.name.clone(), dependency: dep.to_string() })
            }
            None => Ok(()),
        }
    }

    /// Refuses one file of `size` bytes at `dest` (read from `source`) the target cannot
    /// install. Called before the file is read.
    pub(crate) fn check_file(
        &self,
        b: &RpmBuilder,
        dest: &str,
        source: &str,
        size: u64,
    ) -> Result<(), Error> {
        if !self.large_files && size > u64::from(u32::MAX) {
            return Err(Error::Unsupported {
                package: b.name.clone(),
                target: self.name,
                what: format!(
                    "file {dest} (from {source}) has {size} bytes: files of 4 GiB or more need \
                     rpmlib(LargeFiles), which rpm 4.12+ provides"
                ),
            });
        }
        Ok(())
    }

    /// Refuses a package whose files total `total` bytes, if too many.
    pub(crate) fn check_total(&self, b: &RpmBuilder, total: u64) -> Result<(), Error> {
        if !self.large_files && total > u64::from(u32::MAX) {
            return Err(Error::Unsupported {
                package: b.name.clone(),
                target: self.name,
                what: format!(
                    "its files total {total} bytes: over 4 GiB needs rpmlib(LargeFiles), which \
                     rpm 4.12+ provides; split the files over several packages"
                ),
            });
        }
        Ok(())
    }

    /// Checks the sizes the first pass read (a file may have grown since it was measured).
    pub(crate) fn check_scan(&self, b: &RpmBuilder, scan: &Scan<'_>) -> Result<(), Error> {
        for item in &scan.items {
            self.check_file(b, &item.entry.dest, &item.entry.dest, item.size)?;
        }
        self.check_total(b, scan.items.iter().map(|i| i.size).sum())
    }
}
