//! Writing a planned image front to back.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::layout::{Content, Plan};
use crate::superblock::{BLOCKS_PER_GROUP, encode_group_desc, encode_super};
use crate::{BLOCK_SIZE, Error, InodeId};

#[allow(clippy::cast_possible_truncation)]
const BLOCK: usize = crate::BLOCK_BYTES;
/// Zeros and file data move in pieces of this size: large enough to keep syscalls rare.
const CHUNK: usize = 256 * 1024;
static ZEROS: [u8; CHUNK] = [0u8; CHUNK];

/// Writes a [`Plan`]'s image to `W` in one forward pass.
pub struct Ext4Writer<'p, W: Write> {
    plan: &'p Plan,
    out: W,
    /// Blocks written so far.
    pos: u64,
    /// Next metadata region to write.
    region: usize,
    /// Next file whose data is expected.
    file: usize,
    buf: Vec<u8>,
    /// How to pass over blocks this writer leaves alone, when it may seek.
    seek: Option<fn(&mut W, i64) -> std::io::Result<()>>,
    /// Whether the output still has to be extended to `pos` (the last blocks were skipped).
    short: bool,
}

impl Plan {
    /// A writer of this image to `out`, every byte in order. Not for a plan with a data zone,
    /// whose data is in place already: see [`Plan::writer_around_zone`].
    pub fn writer<W: Write>(&self, out: W) -> Ext4Writer<'_, W> {
        Ext4Writer {
            plan: self,
            out,
            pos: 0,
            region: 0,
            file: 0,
            buf: vec![0u8; CHUNK],
            seek: None,
            short: false,
        }
    }

    /// A writer of this image over `out`, which holds the data zone's files already (written
    /// at their [`crate::ZoneFile::runs`]) and reads as zeros wherever nothing was written (a
    /// new file). It writes the metadata and the other files' data at their places and seeks
    /// over everything else, the zone included. The image starts at `out`'s current position
    /// (a partition's offset in a disk, say), and every seek is relative to it.
    pub fn writer_around_zone<W: Write + Seek>(&self, out: W) -> Ext4Writer<'_, W> {
        let seek: fn(&mut W, i64) -> std::io::Result<()> =
            |out, by| out.seek(SeekFrom::Current(by)).map(drop);
        Ext4Writer { seek: Some(seek), ..self.writer(out) }
    }
}

impl<W: Write> Ext4Writer<'_, W> {
    /// Writes the data of file `id`, which must be the next in [`Plan::file_order`], reading
    /// exactly its size from `data`.
    pub fn write_file(&mut self, id: InodeId, data: &mut dyn Read) -> Result<(), Error> {
        let plan = self.plan;
        self.skip_zone_files();
        let Some(file) = plan.files.get(self.file) else {
            return Err(Error::Data(format!("no more files expected, got inode handle {}", id.0)));
        };
        if file.id != id {
            return Err(Error::Data(format!(
                "expected the data of inode handle {}, got {}",
                file.id.0, id.0
            )));
        }
        let mut left = file.size;
        for extent in file.extents.iter() {
            self.advance_to(extent.start)?;
            let mut bytes = u64::from(extent.len) * BLOCK_SIZE;
            while bytes > 0 {
                let want = usize::try_from(bytes.min(CHUNK as u64)).expect("chunk fits");
                let real = usize::try_from(left.min(want as u64)).expect("chunk fits");
                if real > 0 {
                    read_full(data, &mut self.buf[..real], file.size - left, file.size)?;
                    self.out.write_all(&self.buf[..real])?;
                    left -= real as u64;
                }
                // Pad the last block of the file with zeros.
                self.out.write_all(&ZEROS[..want - real])?;
                bytes -= want as u64;
            }
            self.pos = extent.start + u64::from(extent.len);
            self.short = false;
        }
        let mut probe = [0u8; 1];
        if read_some(data, &mut probe)? != 0 {
            return Err(Error::Data(format!(
                "data is longer than the declared {} bytes",
                file.size
            )));
        }
        self.file += 1;
        Ok(())
    }

    /// Writes everything after the last file and returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        self.skip_zone_files();
        if self.file != self.plan.files.len() {
            let expected = self.plan.file_order().count();
            let written = self.plan.files[..self.file].iter().filter(|f| !f.in_zone).count();
            return Err(Error::Data(format!("{written} of {expected} files were written")));
        }
        self.advance_to(self.plan.blocks)?;
        if self.short {
            // The last blocks were passed over: a zero byte at the very end gives the output
            // its full length.
            (self.seek.expect("only a seeking writer skips"))(&mut self.out, -1)?;
            self.out.write_all(&[0])?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Moves past files whose data is in the zone already.
    fn skip_zone_files(&mut self) {
        while self.plan.files.get(self.file).is_some_and(|f| f.in_zone) {
            self.file += 1;
        }
    }

    /// Writes metadata regions and zeros up to block `target`.
    fn advance_to(&mut self, target: u64) -> Result<(), Error> {
        let plan = self.plan;
        while self.pos < target {
            match plan.regions.get(self.region) {
                Some((start, len, content)) if *start < target => {
                    debug_assert!(start + len <= target, "metadata overlaps file data");
                    self.zeros(start - self.pos)?;
                    if let Content::Dir { dir, from } = content {
                        // Rendered now, once for the run, and dropped once written.
                        let data = plan.dirs.render(*dir);
                        let at = usize::try_from(from * BLOCK_SIZE).expect("in memory");
                        let n = usize::try_from(len * BLOCK_SIZE).expect("in memory");
                        self.out.write_all(&data[at..at + n])?;
                    } else {
                        for i in 0..*len {
                            let block = render(plan, content, i);
                            self.out.write_all(&block)?;
                        }
                    }
                    self.pos = start + len;
                    self.region += 1;
                    self.short = false;
                }
                _ => {
                    self.zeros(target - self.pos)?;
                    self.pos = target;
                }
            }
        }
        Ok(())
    }

    fn zeros(&mut self, blocks: u64) -> Result<(), Error> {
        let mut bytes = blocks * BLOCK_SIZE;
        if let Some(seek) = self.seek {
            if bytes > 0 {
                seek(&mut self.out, i64::try_from(bytes).map_err(std::io::Error::other)?)?;
                self.short = true;
            }
            return Ok(());
        }
        if self.plan.zone_end > 0 {
            return Err(Error::Data(
                "a plan with a data zone is written with Plan::writer_around_zone".into(),
            ));
        }
        while bytes > 0 {
            let n = usize::try_from(bytes.min(CHUNK as u64)).expect("chunk fits");
            self.out.write_all(&ZEROS[..n])?;
            bytes -= n as u64;
        }
        Ok(())
    }
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, Error> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8], done: u64, size: u64) -> Result<(), Error> {
    let mut at = 0;
    while at < buf.len() {
        let n = read_some(r, &mut buf[at..])?;
        if n == 0 {
            return Err(Error::Data(format!(
                "data ended after {} of {size} bytes",
                done + at as u64
            )));
        }
        at += n;
    }
    Ok(())
}

/// Block `i` of a metadata region.
pub(crate) fn render(plan: &Plan, content: &Content, i: u64) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK];
    match content {
        Content::Superblock(g) => {
            let at = if *g == 0 { 1024 } else { 0 };
            block[at..at + 1024].copy_from_slice(&encode_super(&plan.sb, *g));
        }
        Content::Gdt => {
            let per_block = BLOCK / crate::superblock::GROUP_DESC_SIZE;
            let first = usize::try_from(i).expect("fits") * per_block;
            for (k, desc) in plan.descs.iter().skip(first).take(per_block).enumerate() {
                block[k * 32..k * 32 + 32].copy_from_slice(&encode_group_desc(desc));
            }
        }
        Content::BlockBitmap(g) => {
            let gs = u64::from(*g) * BLOCKS_PER_GROUP;
            let ge = gs + BLOCKS_PER_GROUP;
            for &(s, l) in plan.used.iter().filter(|&&(s, l)| s < ge && s + l > gs) {
                for b in s.max(gs)..(s + l).min(ge) {
                    set_bit(&mut block, b - gs);
                }
            }
            // Blocks past the end of the filesystem are marked in use.
            for b in plan.blocks.max(gs)..ge {
                set_bit(&mut block, b - gs);
            }
        }
        Content::InodeBitmap(g) => {
            let ipg = u64::from(plan.inodes_per_group);
            let first = u64::from(*g) * ipg;
            let used = (plan.inodes.len() as u64).saturating_sub(first).min(ipg);
            for b in 0..used {
                set_bit(&mut block, b);
            }
            for b in ipg..(BLOCK as u64 * 8) {
                set_bit(&mut block, b);
            }
        }
        Content::InodeTable(g) => {
            let per_block = BLOCK / crate::inode::INODE_SIZE;
            let first = usize::try_from(
                u64::from(*g) * u64::from(plan.inodes_per_group) + i * per_block as u64,
            )
            .expect("fits");
            for (k, inode) in plan.inodes.iter().skip(first).take(per_block).enumerate() {
                if let Some(fields) = inode {
                    block[k * 256..k * 256 + 256]
                        .copy_from_slice(&crate::inode::encode_inode(fields));
                }
            }
        }
        Content::Bytes(data) => {
            let at = usize::try_from(i).expect("fits") * BLOCK;
            block.copy_from_slice(&data[at..at + BLOCK]);
        }
        Content::Dir { dir, from } => {
            let at = usize::try_from(from + i).expect("fits") * BLOCK;
            block.copy_from_slice(&plan.dirs.render(*dir)[at..at + BLOCK]);
        }
    }
    block
}

fn set_bit(block: &mut [u8], bit: u64) {
    let bit = usize::try_from(bit).expect("bit in block");
    block[bit / 8] |= 1 << (bit % 8);
}
