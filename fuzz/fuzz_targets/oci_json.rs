//! Fuzz target `oci_json`: see `xspack_fuzz::oci_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::oci_json(data));
