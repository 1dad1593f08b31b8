//! The template RPM: the guest-templates JSON under `/etc/xapi.d/vm-templates/` and the
//! reload (`docs/formats/templates.md` section "The template RPM").
//!
//! `create-guest-templates` deletes every default template and re-imports all JSON files, so
//! installing, upgrading and erasing all end with a reload:
//!
//! - `%posttrans`: remove the marker file that keeps `create-guest-templates.service` from
//!   running again, then `create-guest-templates-wrapper || :`. With xapi running the wrapper
//!   reloads now; at install time (xapi down) the service does it at the next boot because the
//!   marker is gone.
//! - `%postun` on erase (`$1 = 0`): the same, so the template disappears.
//!
//! The package is `noarch`, has no dependencies (the template directory belongs to
//! `guest-templates-json`, whose name differs between products) and is reproducible: every
//! timestamp is the source date.

use xspack_rpmrepo::{FileAttrs, RpmBuilder};

use crate::render::render;
use crate::{Error, TemplateSpec};

/// Where local templates go: read after `/usr/share/xapi/vm-templates`, so a file here wins
/// over a product file of the same name (`docs/formats/templates.md` section "The loader").
pub const VM_TEMPLATES_DIR: &str = "/etc/xapi.d/vm-templates";
/// Where the product's own templates live (`docs/formats/templates.md` section "The loader").
pub const SHIPPED_TEMPLATES_DIR: &str = "/usr/share/xapi/vm-templates";
/// The marker `create-guest-templates.service` checks (`ConditionPathExists=!`,
/// `docs/formats/templates.md` section "The loader").
pub const MARKER_FILE: &str = "/var/lib/misc/ran-create-guest-templates";
/// The command that reloads the default templates
/// (`xenserver/guest-templates-json:service/create-guest-templates-wrapper`).
pub const CREATE_TEMPLATES_WRAPPER: &str = "/usr/bin/create-guest-templates-wrapper";

/// The RPM's name: `<name>-template`.
pub fn rpm_name(spec: &TemplateSpec) -> String {
    format!("{}-template", spec.name())
}

fn script(template: &str, spec: &TemplateSpec, json_path: &str) -> Result<String, Error> {
    let mut ctx = tera::Context::new();
    ctx.insert("package", &rpm_name(spec));
    ctx.insert("json", json_path);
    ctx.insert("marker", MARKER_FILE);
    ctx.insert("wrapper", CREATE_TEMPLATES_WRAPPER);
    render(template, &ctx)
}

/// An [`RpmBuilder`] for `spec` that installs `json` (from [`crate::render_guest_json`]) as
/// `/etc/xapi.d/vm-templates/<name>.json`, stamped with `source_date`. Write it with
/// [`RpmBuilder::write`] or [`RpmBuilder::write_to_dir`], optionally signed.
pub fn template_rpm(
    spec: &TemplateSpec,
    json: &str,
    source_date: u32,
) -> Result<RpmBuilder, Error> {
    let t = &spec.template;
    let json_path = format!("{VM_TEMPLATES_DIR}/{}", spec.json_file_name());
    let mut description = format!(
        "The XenServer VM template \"{}\" ({}), loaded by create-guest-templates from {}.",
        t.label,
        spec.uuid(),
        json_path
    );
    if !t.description.is_empty() {
        description = format!("{}\n\n{description}", t.description);
    }
    Ok(RpmBuilder::new(rpm_name(spec), t.version.0.clone(), t.release.0.clone())
        .summary(format!("XenServer VM template: {}", t.label))
        .description(description)
        .license(t.license.clone())
        .source_date(source_date)
        .file_from_bytes_with(json.as_bytes().to_vec(), json_path.clone(), FileAttrs::mode(0o644))
        .post_trans(script("vm/posttrans.sh.tera", spec, &json_path)?)
        .post_uninstall(script("vm/postun.sh.tera", spec, &json_path)?))
}
