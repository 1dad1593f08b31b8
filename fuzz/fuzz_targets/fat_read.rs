//! Fuzz target `fat_read`: see `xspack_fuzz::fat_read`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::fat_read(data));
