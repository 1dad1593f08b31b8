//! Fuzz target `pack_paths`: see `xspack_fuzz::pack_paths`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::pack_paths(data));
