//! Starting a decoder at a bit that is not a byte boundary: the bits of that byte before the
//! start are replaced by empty DEFLATE blocks of the right total length (`Bits::filler`: block
//! headers of RFC 1951 §3.2.3, with the fixed codes of §3.2.6 or the dynamic codes of §3.2.7),
//! and a fixed-code block header goes before a start inside a block.

use std::io;

use zlib_rs::Inflate;

use crate::segment::SegmentDecoder;
use crate::{RAW_BITS, invalid};

/// A start tried: the byte it falls in, relative to a segment's input, the bit, and the block
/// header to put before it when it is inside a fixed-code block (whether the block is last).
pub(crate) struct StartBit {
    /// Index of the byte holding the first bit, in the segment's input.
    pub(crate) byte: usize,
    /// The bit within it, 0 to 7.
    pub(crate) bit: u32,
    pub(crate) header: Option<bool>,
}

impl StartBit {
    pub(crate) fn new(
        bit: u64,
        input_start: u64,
        input: &[u8],
        header: Option<bool>,
    ) -> Option<Self> {
        let byte = usize::try_from((bit / 8).checked_sub(input_start)?).ok()?;
        let bit = u32::try_from(bit % 8).expect("a bit index is under 8");
        (byte < input.len() || bit == 0).then_some(StartBit { byte, bit, header })
    }

    /// A raw decoder fed the filler and the input from the block on, with `window` as its
    /// dictionary, yielding `limit` bytes.
    pub(crate) fn decoder<I: AsRef<[u8]>>(
        &self,
        input: I,
        window: &[u8],
        limit: Option<u64>,
    ) -> io::Result<SegmentDecoder<I>> {
        // Empty blocks (and the header of a fixed-code block) ending `bit` bits into a byte,
        // whose other bits are the input's.
        let mut bits = Bits::default();
        match self.header {
            None => bits.filler(self.bit),
            Some(last) => {
                bits.filler((self.bit + 5) % 8);
                bits.put(u32::from(last), 1);
                bits.put(1, 2); // fixed Huffman codes
            }
        }
        debug_assert_eq!(bits.len % 8, self.bit as usize);
        let mut prefix = bits.bytes;
        let mut from = self.byte;
        if self.bit > 0 {
            let last = prefix.last_mut().expect("bits for a non-zero bit fill a byte");
            *last |= input.as_ref()[self.byte] & (0xffu8 << self.bit);
            from += 1;
        }
        let mut inflate = Inflate::new(false, RAW_BITS);
        inflate.set_dictionary(window).map_err(|e| invalid(e.as_str()))?;
        Ok(SegmentDecoder::new(input, from, prefix, Some(inflate), limit))
    }
}

/// DEFLATE bits, least significant first as RFC 1951 §3.1.1 packs them.
#[derive(Default)]
pub(crate) struct Bits {
    pub(crate) bytes: Vec<u8>,
    pub(crate) len: usize,
}

impl Bits {
    /// A value of `n` bits, least significant bit first (header fields, extra bits).
    pub(crate) fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = u8::try_from((value >> i) & 1).expect("one bit");
            *self.bytes.last_mut().expect("pushed above") |= bit << (self.len % 8);
            self.len += 1;
        }
    }

    /// A Huffman code of `n` bits, most significant bit first.
    pub(crate) fn code(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    /// Empty blocks adding `bit` (0 to 7) bits more than a whole number of bytes, so a decoder
    /// that starts at a byte boundary ends up `bit` bits into a byte. Fixed ones are 10 bits
    /// (2 mod 8), the dynamic one 95 (7 mod 8): one dynamic block makes the length odd and up
    /// to three fixed ones add the rest.
    pub(crate) fn filler(&mut self, bit: u32) {
        let fixed = if bit % 2 == 1 {
            self.empty_dynamic();
            ((bit + 1) % 8) / 2
        } else {
            bit / 2
        };
        for _ in 0..fixed {
            self.empty_fixed();
        }
    }

    /// An empty block with fixed codes: header and end-of-block, 10 bits.
    pub(crate) fn empty_fixed(&mut self) {
        self.put(0, 1); // not the last block
        self.put(1, 2); // fixed Huffman codes
        self.code(0, 7); // end of block (256) is 0000000
    }

    /// An empty block with dynamic codes, 95 bits: the literal/length code has only
    /// end-of-block (length 1, which zlib accepts as a lone incomplete code) and no distance
    /// codes. Its code-length code (complete: 18 → `0`, 0 → `10`, 1 → `11`) spells 256 zeros
    /// with two runs of symbol 18, then 1 for end-of-block, then 0 for the one distance code.
    pub(crate) fn empty_dynamic(&mut self) {
        self.put(0, 1); // not the last block
        self.put(2, 2); // dynamic Huffman codes
        self.put(0, 5); // HLIT: 257 literal/length codes
        self.put(0, 5); // HDIST: 1 distance code
        self.put(15, 4); // HCLEN: 19 code length code lengths
        // In the order of RFC 1951 §3.2.7: 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1 15.
        for length in [0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0] {
            self.put(length, 3);
        }
        self.code(0, 1); // 18: zeros, 11 + 7 extra bits
        self.put(138 - 11, 7);
        self.code(0, 1);
        self.put(118 - 11, 7);
        self.code(0b11, 2); // 1: end-of-block has length 1
        self.code(0b10, 2); // 0: no distance code
        self.code(0, 1); // end of block
    }
}
