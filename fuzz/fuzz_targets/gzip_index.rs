//! Fuzz target `gzip_index`: see `xspack_fuzz::gzip_index`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::gzip_index(data));
