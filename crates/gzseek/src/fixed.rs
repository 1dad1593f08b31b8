//! Access points between two symbols of a fixed-code block (RFC 1951 section 3.2.6): zlib-ng
//! and zlib-rs at level 1 write a whole member as one such block, with no boundary to seek to.
//! The start bit and the match still owed are the ones whose symbols, read with the fixed
//! codes, replay the output that follows.

use crate::CHECK;
use crate::indexing::MAX_MATCH;

/// A stop inside a block (the output was full): the next symbol starts within the last byte
/// taken or right after it, and up to [`MAX_MATCH`] bytes of output may come before it.
pub(crate) struct MidBlock {
    /// Stored bytes taken.
    pub(crate) consumed: u64,
    /// Output before the stop.
    pub(crate) out: u64,
    /// The window before the stop.
    pub(crate) window: Vec<u8>,
    /// Stored bytes from the last one taken on.
    pub(crate) input: Vec<u8>,
    /// All output since the stop (not yet in the CRC).
    pub(crate) truth: Vec<u8>,
}

/// One symbol of a fixed-code block.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Symbol {
    Literal(u8),
    Copy { len: u16, dist: u16 },
}

/// Where the next symbol after a stop inside a block starts (bit of the blob), and how much
/// output the decoder still owed before it: the one start (of 8 bits) and debt (up to a
/// match) whose fixed-code symbols replay the output seen after the stop, `None` if none or
/// several fit (a block with its own codes, or a run of one byte).
pub(crate) fn resolve(m: &MidBlock) -> Option<(u64, usize)> {
    let mut found = None;
    for unused in 0..8u64 {
        let from = usize::try_from(8 - unused).expect("under 9");
        // A few symbols rule out almost every start and debt; only the rest are replayed in
        // full.
        let Some(head) = fixed_symbols(&m.input, from, 64) else { continue };
        let mut full = None;
        for owed in 0..=MAX_MATCH {
            if !replays(&head, &m.window, &m.truth, owed, 64) {
                continue;
            }
            if full.is_none() {
                full = Some(fixed_symbols(&m.input, from, CHECK));
            }
            let Some(Some(symbols)) = &full else { break };
            if replays(symbols, &m.window, &m.truth, owed, CHECK) {
                if found.is_some() {
                    return None;
                }
                found = Some((m.consumed * 8 - unused, owed));
            }
        }
    }
    found
}

/// Reads fixed-code symbols (RFC 1951 §3.2.6) from bit `pos` of `input` until they give
/// `want` bytes; `None` at an invalid code, the end of the block or the end of `input`.
pub(crate) fn fixed_symbols(input: &[u8], pos: usize, want: usize) -> Option<Vec<Symbol>> {
    let mut r = BitReader { input, pos };
    let mut symbols = Vec::new();
    let mut out = 0usize;
    while out < want {
        // Huffman codes are read most significant bit first.
        let mut code = r.code(7)?;
        let symbol = if code <= 0b001_0111 {
            256 + code
        } else {
            code = code << 1 | r.bit()?;
            match code {
                0b0011_0000..=0b1011_1111 => code - 0b0011_0000,
                0b1100_0000..=0b1100_0111 => 280 + code - 0b1100_0000,
                _ => 144 + (code << 1 | r.bit()?) - 0b1_1001_0000,
            }
        };
        match symbol {
            0..=255 => {
                symbols.push(Symbol::Literal(u8::try_from(symbol).expect("a literal")));
                out += 1;
            }
            257..=285 => {
                let len = match symbol {
                    257..=264 => symbol - 254,
                    285 => 258,
                    _ => {
                        let k = symbol - 261;
                        let n = k / 4;
                        ((4 + k % 4) << n) + 3 + r.value(n)?
                    }
                };
                let dist = match r.code(5)? {
                    code @ 0..=3 => code + 1,
                    code @ 4..=29 => {
                        let n = (code - 2) / 2;
                        ((2 + code % 2) << n) + 1 + r.value(n)?
                    }
                    _ => return None,
                };
                symbols.push(Symbol::Copy {
                    len: u16::try_from(len).expect("at most 258"),
                    dist: u16::try_from(dist).expect("at most 32768"),
                });
                out += len as usize;
            }
            // End of block (too soon to check) or an invalid code.
            _ => return None,
        }
    }
    Some(symbols)
}

/// Bits of DEFLATE data, least significant first.
pub(crate) struct BitReader<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) pos: usize,
}

impl BitReader<'_> {
    pub(crate) fn bit(&mut self) -> Option<u32> {
        let byte = self.input.get(self.pos / 8)?;
        let b = (byte >> (self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    /// A Huffman code of `n` bits, most significant first.
    pub(crate) fn code(&mut self, n: u32) -> Option<u32> {
        let mut code = 0;
        for _ in 0..n {
            code = code << 1 | self.bit()?;
        }
        Some(code)
    }

    /// A value of `n` extra bits, least significant first.
    pub(crate) fn value(&mut self, n: u32) -> Option<u32> {
        let mut value = 0;
        for i in 0..n {
            value |= self.bit()? << i;
        }
        Some(value)
    }
}

/// Whether `symbols`, after `owed` bytes of `truth`, give the next `len` bytes of it (with
/// `window` before `truth` for back-references).
pub(crate) fn replays(
    symbols: &[Symbol],
    window: &[u8],
    truth: &[u8],
    owed: usize,
    len: usize,
) -> bool {
    let mut at = owed;
    let end = owed + len;
    let byte_at = |pos: usize, dist: u16| -> Option<u8> {
        if let Some(src) = pos.checked_sub(usize::from(dist)) {
            Some(truth[src])
        } else {
            let back = usize::from(dist) - pos;
            window.len().checked_sub(back).map(|i| window[i])
        }
    };
    for symbol in symbols {
        match *symbol {
            Symbol::Literal(b) => {
                if truth[at] != b {
                    return false;
                }
                at += 1;
            }
            Symbol::Copy { len, dist } => {
                for _ in 0..len {
                    if at == end {
                        return true;
                    }
                    if byte_at(at, dist) != Some(truth[at]) {
                        return false;
                    }
                    at += 1;
                }
            }
        }
        if at == end {
            return true;
        }
    }
    false
}
