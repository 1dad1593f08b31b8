//! Fuzz target `xva`: see `xspack_fuzz::xva`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::xva(data));
