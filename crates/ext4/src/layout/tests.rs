//! Unit tests of the allocator and extent mapping that placement leans on.

use super::alloc::{Allocator, map_runs};

fn allocator(reserved: Vec<(u64, u64)>) -> Allocator {
    Allocator { next: 0, limit: 1 << 20, used: reserved.clone(), reserved }
}

/// A directory of 32,769 blocks (128 MiB of entries, more than a test should render) is
/// mapped as a file of that size is: two extents, neither longer than 32,768 blocks.
#[test]
fn runs_longer_than_an_extent_are_split() {
    let mut alloc = allocator(Vec::new());
    let runs = alloc.extents(32_769).unwrap();
    assert_eq!(runs, [(0, 32_768), (32_768, 1)]);
    let mut regions = Vec::new();
    let (extents, root, tree_n) =
        map_runs(&mut alloc, &mut regions, &runs, || unreachable!()).unwrap();
    assert_eq!(tree_n, 0);
    assert!(regions.is_empty());
    assert_eq!(
        extents.iter().map(|e| (e.logical, e.len)).collect::<Vec<_>>(),
        [(0, 32_768), (32_768, 1)]
    );
    // Two entries in the inode's extent header, depth 0.
    assert_eq!(u16::from_le_bytes([root[2], root[3]]), 2);
    assert_eq!(u16::from_le_bytes([root[6], root[7]]), 0);
}

/// Five runs need a tree block, placed after them and counted.
#[test]
fn five_runs_get_an_extent_tree_block() {
    let reserved: Vec<(u64, u64)> = (1..5).map(|i| (i * 10, 1)).collect();
    let mut alloc = allocator(reserved);
    let runs = alloc.extents(45).unwrap();
    assert_eq!(runs.len(), 5);
    let mut regions = Vec::new();
    let (_, root, tree_n) = map_runs(&mut alloc, &mut regions, &runs, || unreachable!()).unwrap();
    assert_eq!(tree_n, 1);
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].0, 49, "right after the data");
    assert_eq!(u16::from_le_bytes([root[6], root[7]]), 1, "depth 1");
}
