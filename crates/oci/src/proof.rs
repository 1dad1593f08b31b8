//! Block proofs of a blob: the BLAKE3 hash (BLAKE3 specification, Aumasson, Neves,
//! O'Connor and Wilcox-O'Hearn, 2020) of every [`BLOCK`] of its stored bytes.
//!
//! The first read of a layer checks the blob's sha256 digest against the manifest and notes
//! these hashes of the same bytes as they pass. A reread then proves each block it uses equal
//! to what the first read verified, block by block, at BLAKE3's speed (several times
//! SHA-256's, even with the CPU's SHA instructions), and need not read blocks it does not use.

use std::io;

/// Bytes per proof block. A multiple of [`xspack_io::pipe::CHUNK`], so the blob readers'
/// chunks never straddle two blocks.
pub(crate) const BLOCK: usize = 1 << 20;
const BLOCK_BYTES: u64 = BLOCK as u64;
const _: () = assert!(BLOCK.is_multiple_of(xspack_io::pipe::CHUNK));

/// The hashes of every block of a blob, the last one possibly short.
#[derive(Debug)]
pub(crate) struct BlobProof {
    blocks: Vec<blake3::Hash>,
    size: u64,
}

/// Cuts a stream of bytes into blocks and hashes each.
#[derive(Default)]
struct Blocks {
    hasher: blake3::Hasher,
    /// Bytes of the current block hashed so far.
    filled: usize,
    /// Bytes seen in all.
    bytes: u64,
}

impl Blocks {
    /// Hashes `bytes`, calling `done` with the index and hash of each block they complete.
    fn update(
        &mut self,
        mut bytes: &[u8],
        mut done: impl FnMut(u64, blake3::Hash) -> io::Result<()>,
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (BLOCK - self.filled).min(bytes.len());
            self.hasher.update(&bytes[..take]);
            self.filled += take;
            self.bytes += take as u64;
            bytes = &bytes[take..];
            if self.filled == BLOCK {
                let hash = self.hasher.finalize();
                self.hasher.reset();
                self.filled = 0;
                done(self.bytes / BLOCK_BYTES - 1, hash)?;
            }
        }
        Ok(())
    }

    /// The hash of the short block left at the end of the stream, if any.
    fn last(&self) -> Option<(u64, blake3::Hash)> {
        (self.filled > 0).then(|| (self.bytes / BLOCK_BYTES, self.hasher.finalize()))
    }
}

/// Notes a [`BlobProof`] of the bytes passed to it.
#[derive(Default)]
pub(crate) struct ProofRecorder {
    blocks: Blocks,
    hashes: Vec<blake3::Hash>,
}

impl ProofRecorder {
    /// Hashes the next stored bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let hashes = &mut self.hashes;
        let recorded = self.blocks.update(bytes, |_, hash| {
            hashes.push(hash);
            Ok(())
        });
        debug_assert!(recorded.is_ok(), "recording never fails");
    }

    /// The proof of every byte passed.
    pub(crate) fn finish(mut self) -> BlobProof {
        self.hashes.extend(self.blocks.last().map(|(_, hash)| hash));
        BlobProof { blocks: self.hashes, size: self.blocks.bytes }
    }
}

/// Checks the bytes passed to it, from the start of the blob, against a [`BlobProof`].
pub(crate) struct ProofChecker<'a> {
    proof: &'a BlobProof,
    blocks: Blocks,
    /// Every byte before this is proven.
    proven: u64,
}

impl<'a> ProofChecker<'a> {
    pub(crate) fn new(proof: &'a BlobProof) -> Self {
        ProofChecker { proof, blocks: Blocks::default(), proven: 0 }
    }

    /// Hashes the next stored bytes; an error once a whole block differs from the first
    /// read's, or the blob has grown.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        let proof = self.proof;
        if self.blocks.bytes + bytes.len() as u64 > proof.size {
            return Err(changed(&format!("now longer than its {} bytes", proof.size)));
        }
        let proven = &mut self.proven;
        self.blocks.update(bytes, |block, hash| {
            check_block(proof, block, hash)?;
            *proven = (block + 1) * BLOCK_BYTES;
            Ok(())
        })
    }

    /// Where the bytes proven equal to the first read's end: every byte before it is.
    pub(crate) fn verified(&self) -> u64 {
        self.proven
    }

    /// Whether the bytes passed end at a block boundary (nothing is waiting for its proof).
    pub(crate) fn at_boundary(&self) -> bool {
        self.blocks.filled == 0
    }

    /// At the end of the stored bytes: checks the last, short block and the size.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.blocks.bytes != self.proof.size {
            return Err(changed(&format!(
                "now ends after {} of its {} bytes",
                self.blocks.bytes, self.proof.size
            )));
        }
        if let Some((block, hash)) = self.blocks.last() {
            check_block(self.proof, block, hash)?;
        }
        self.proven = self.proof.size;
        Ok(())
    }
}

fn check_block(proof: &BlobProof, block: u64, hash: blake3::Hash) -> io::Result<()> {
    // `Hash` compares in constant time; nothing here is secret, but it does no harm.
    if usize::try_from(block).ok().and_then(|b| proof.blocks.get(b)) == Some(&hash) {
        return Ok(());
    }
    let start = block * BLOCK_BYTES;
    let end = (start + BLOCK_BYTES).min(proof.size);
    Err(changed(&format!("bytes {start}..{end} differ")))
}

fn changed(detail: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("changed since it was first read: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099).to_le_bytes()[0]).collect()
    }

    fn proof_of(data: &[u8], piece: usize) -> BlobProof {
        let mut recorder = ProofRecorder::default();
        for part in data.chunks(piece.max(1)) {
            recorder.update(part);
        }
        recorder.finish()
    }

    fn check(proof: &BlobProof, data: &[u8], piece: usize) -> io::Result<u64> {
        let mut checker = ProofChecker::new(proof);
        for part in data.chunks(piece.max(1)) {
            checker.update(part)?;
        }
        checker.finish()?;
        Ok(checker.verified())
    }

    #[test]
    fn the_same_bytes_pass_in_any_pieces() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = bytes(len);
            let proof = proof_of(&data, 256 << 10);
            assert_eq!(proof.blocks.len(), len.div_ceil(BLOCK));
            for piece in [1 << 18, 4096, 1_000_003] {
                assert_eq!(check(&proof, &data, piece).unwrap(), len as u64);
            }
        }
    }

    #[test]
    fn a_changed_byte_names_its_block() {
        let data = bytes(3 * BLOCK + 10);
        let proof = proof_of(&data, 1 << 18);
        for at in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 5, 3 * BLOCK + 9] {
            let mut changed = data.clone();
            changed[at] ^= 1;
            let e = check(&proof, &changed, 1 << 18).unwrap_err().to_string();
            let start = at / BLOCK * BLOCK;
            let end = (start + BLOCK).min(data.len());
            assert!(e.contains(&format!("bytes {start}..{end} differ")), "{e}");
        }
    }

    #[test]
    fn growing_or_shrinking_is_a_change() {
        let data = bytes(BLOCK + 100);
        let proof = proof_of(&data, 1 << 18);
        let mut longer = data.clone();
        longer.push(0);
        let e = check(&proof, &longer, 1 << 18).unwrap_err().to_string();
        assert!(e.contains("now longer than its 1048676 bytes"), "{e}");
        let e = check(&proof, &data[..BLOCK + 99], 1 << 18).unwrap_err().to_string();
        assert!(e.contains("now ends after 1048675 of its 1048676 bytes"), "{e}");
    }

    #[test]
    fn verified_counts_whole_blocks_until_the_end() {
        let data = bytes(2 * BLOCK + 7);
        let proof = proof_of(&data, 1 << 18);
        let mut checker = ProofChecker::new(&proof);
        checker.update(&data[..BLOCK + 5]).unwrap();
        assert_eq!(checker.verified(), BLOCK as u64);
        assert!(!checker.at_boundary());
        checker.update(&data[BLOCK + 5..2 * BLOCK]).unwrap();
        assert_eq!(checker.verified(), 2 * BLOCK as u64);
        assert!(checker.at_boundary());
        checker.update(&data[2 * BLOCK..]).unwrap();
        assert_eq!(checker.verified(), 2 * BLOCK as u64, "the short block waits for the end");
        checker.finish().unwrap();
        assert_eq!(checker.verified(), data.len() as u64);
        checker.finish().unwrap();
    }
}
