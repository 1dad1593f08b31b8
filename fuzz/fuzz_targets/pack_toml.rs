//! Fuzz target `pack_toml`: see `xspack_fuzz::pack_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::pack_toml(data));
