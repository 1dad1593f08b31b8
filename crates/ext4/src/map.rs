//! Which parts of a planned image hold non-zero bytes, known before the image is written.
//!
//! Sparse disk formats (VHD) put their allocation table before the data. To write them in the
//! same forward pass as the filesystem, without a scratch copy, the caller needs to know which
//! pieces of the image are all zeros before the first byte is written. Metadata blocks are
//! rendered (stopping at the first non-zero block of each piece); file data is described by
//! the caller, who saw the bytes when it first read them, as runs of all-zero 4 KiB blocks.

use crate::layout::Plan;
use crate::write::render;
use crate::{BLOCK_SIZE, InodeId};

impl Plan {
    /// Which `unit`-byte pieces of the image hold at least one non-zero byte: one flag per
    /// piece, `size_bytes() / unit` of them (rounded up).
    ///
    /// `zero_blocks(id)` returns the all-zero 4 KiB blocks of file `id`'s data as sorted,
    /// disjoint `(first block, count)` runs, counting from the file's first byte (a partial
    /// last block is all-zero when its bytes are). The answer is exact when those runs are; a
    /// run left out only marks more pieces as holding data.
    ///
    /// # Panics
    ///
    /// If `unit` is not a positive multiple of [`BLOCK_SIZE`].
    pub fn nonzero_map<'z>(
        &self,
        unit: u64,
        zero_blocks: impl Fn(InodeId) -> &'z [(u64, u64)],
    ) -> Vec<bool> {
        assert!(unit > 0 && unit.is_multiple_of(BLOCK_SIZE), "unit {unit} not a block multiple");
        let per_unit = unit / BLOCK_SIZE;
        let units = usize::try_from(self.blocks.div_ceil(per_unit)).expect("map fits memory");
        let mut map = vec![false; units];
        let index = |block: u64| usize::try_from(block / per_unit).expect("inside the map");
        let mark = |map: &mut [bool], start: u64, len: u64| {
            if len > 0 {
                map[index(start)..=index(start + len - 1)].fill(true);
            }
        };
        for (start, len, content) in &self.regions {
            for i in 0..*len {
                let block = start + i;
                if map[index(block)] {
                    continue;
                }
                // A directory block always holds a record (its length at least).
                let dir = matches!(content, crate::layout::Content::Dir { .. });
                if dir || render(self, content, i).iter().any(|&b| b != 0) {
                    map[index(block)] = true;
                }
            }
        }
        for file in &self.files {
            let data_blocks = file.size.div_ceil(BLOCK_SIZE);
            let zeros = zero_blocks(file.id);
            // Walk the file's blocks as runs of data between its zero runs, mapping each run
            // through the extents.
            let mut z = zeros.iter().copied().peekable();
            for extent in file.extents.iter() {
                let logical = u64::from(extent.logical);
                let ext_end = (logical + u64::from(extent.len)).min(data_blocks);
                let mut at = logical;
                while at < ext_end {
                    while z.peek().is_some_and(|&(s, n)| s + n <= at) {
                        z.next();
                    }
                    match z.peek() {
                        Some(&(s, n)) if s <= at => at = (s + n).min(ext_end),
                        next => {
                            let stop = next.map_or(ext_end, |&(s, _)| s.min(ext_end));
                            mark(&mut map, extent.start + (at - logical), stop - at);
                            at = stop;
                        }
                    }
                }
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use crate::{Attrs, Ext4Options, FsBuilder, InodeId, NodeKind, SIZE_ALIGN};
    use std::collections::HashMap;

    /// Builds an image with the given files (data, zero runs as the caller would report them)
    /// and checks the map against the written bytes.
    fn check(files: &[Vec<u8>], unit: u64) {
        let mut b = FsBuilder::new(Attrs::default());
        let root = b.root();
        let mut ids = Vec::new();
        for (i, data) in files.iter().enumerate() {
            let id = b.add(
                NodeKind::File { size: data.len() as u64, data_key: i as u64 },
                Attrs::default(),
            );
            b.link(root, format!("f{i}").as_bytes(), id).unwrap();
            ids.push(id);
        }
        let mut opts = Ext4Options::new([1; 16], [2; 16], 0);
        opts.size = Some(8 * SIZE_ALIGN);
        let plan = b.plan(&opts).unwrap();
        let runs: HashMap<InodeId, Vec<(u64, u64)>> = ids
            .iter()
            .zip(files)
            .map(|(id, data)| {
                let mut runs: Vec<(u64, u64)> = Vec::new();
                for (k, block) in data.chunks(4096).enumerate() {
                    if block.iter().all(|&b| b == 0) {
                        match runs.last_mut() {
                            Some((s, n)) if *s + *n == k as u64 => *n += 1,
                            _ => runs.push((k as u64, 1)),
                        }
                    }
                }
                (*id, runs)
            })
            .collect();
        let map = plan.nonzero_map(unit, |id| &runs[&id]);
        let mut w = plan.writer(Vec::new());
        let order: Vec<InodeId> = plan.file_order().map(|(id, _)| id).collect();
        for id in order {
            let i = ids.iter().position(|x| *x == id).unwrap();
            w.write_file(id, &mut &files[i][..]).unwrap();
        }
        let image = w.finish().unwrap();
        let unit = usize::try_from(unit).unwrap();
        let want: Vec<bool> = image.chunks(unit).map(|c| c.iter().any(|&b| b != 0)).collect();
        assert_eq!(map, want);
    }

    #[test]
    fn map_matches_the_written_image() {
        let mut mixed = vec![0u8; 5 << 20];
        mixed[100] = 1;
        mixed[(4 << 20) + 4095] = 2;
        let mut tail = vec![0u8; (3 << 20) + 10];
        tail[(3 << 20) + 9] = 7;
        let files = vec![vec![0u8; 3 << 20], mixed, vec![5u8; 9000], tail, vec![0u8; 10]];
        check(&files, 2 << 20);
        check(&files, 1 << 20);
        check(&files, 4096);
    }
}
