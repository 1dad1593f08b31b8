//! Fuzz target `qcow2`: see `xspack_fuzz::qcow2`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::qcow2(data));
