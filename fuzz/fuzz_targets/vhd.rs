//! Fuzz target `vhd`: see `xspack_fuzz::vhd`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::vhd(data));
