//! Fuzz target `layer`: see `xspack_fuzz::layer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::layer(data));
