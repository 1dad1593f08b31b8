//! Golden files in `tests/golden/templates/`: the guest-templates JSON and the template XVA's
//! `ova.xml` of every shipped template. Refresh with `EXPECTORATE=overwrite`.

use xspack_template::{render_guest_json, template_vm_spec, validate_guest_template_str};

use crate::{EPOCH, SHIPPED, shipped};

fn golden(name: &str) -> String {
    format!("{}/../../tests/golden/templates/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_templates_json() {
    for stem in SHIPPED {
        let spec = shipped(stem);
        let json = render_guest_json(&spec).unwrap();
        validate_guest_template_str(&json, stem).unwrap();
        expectorate::assert_contents(golden(&format!("{}.json", spec.name())), &json);
    }
}

#[test]
fn shipped_templates_ova_xml() {
    for stem in SHIPPED {
        let spec = shipped(stem);
        let xml = template_vm_spec(&spec, EPOCH).unwrap().to_ova_xml().unwrap();
        expectorate::assert_contents(golden(&format!("{}.ova.xml", spec.name())), &xml);
    }
}
