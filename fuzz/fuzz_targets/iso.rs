//! Fuzz target `iso`: see `xspack_fuzz::iso`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::iso(data));
