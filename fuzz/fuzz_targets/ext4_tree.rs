//! Fuzz target `ext4_tree`: see `xspack_fuzz::ext4_tree`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xspack_fuzz::ext4_tree(data));
