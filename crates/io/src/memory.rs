//! Handing freed heap memory back to the kernel.
//!
//! glibc's allocator keeps the pages of freed small allocations in its arenas, so a process
//! that frees a large structure made of many small pieces (a merged layer tree of a quarter of
//! a million nodes, say) keeps their pages resident although it uses them no more.
//! `malloc_trim(0)` (glibc `malloc/malloc.c`, `mtrim`) releases every whole free page of every
//! arena with `madvise(MADV_DONTNEED)`, not only the top of the heap (glibc 2.8 and later).

/// Returns the whole free pages of the allocator's arenas to the kernel, where the C library
/// can (glibc); elsewhere it does nothing. Costs a walk over the free lists: call it after
/// freeing something large, not in a loop.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own state, and
    // is safe to call from any thread at any time (glibc takes each arena's lock).
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    /// A freed structure of many small allocations leaves the resident set once released
    /// (read from /proc/self/statm: resident pages).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_small_allocations_leave_the_resident_set() {
        let resident = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
        };
        // 64 MiB in 64-byte pieces, touched, then freed but for one piece at the end, which
        // keeps the heap's top from shrinking by itself.
        let mut pieces: Vec<Vec<u8>> =
            (0..1u32 << 20).map(|i| vec![i.to_le_bytes()[0]; 64]).collect();
        let keep = pieces.pop();
        let holding = resident();
        drop(pieces);
        super::release_free_memory();
        let released = resident();
        assert!(keep.is_some());
        assert!(
            released + (32 << 20) < holding,
            "resident {holding} bytes before, {released} after"
        );
    }
}
