//! A small deterministic random number generator for the differential tests: the same seed
//! gives the same cases on every machine, so a disagreement found once can be replayed.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators,
/// scrambled", 2016). The state must not be zero: seed it with `seed | 1`.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fills `buf` with random bytes, eight at a time (little-endian).
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A number below `n` (0 when `n` is 0), of `n`'s type.
    pub fn below<N: TryInto<u64> + TryFrom<u64>>(&mut self, n: N) -> N {
        let n: u64 = n.try_into().ok().expect("a non-negative bound");
        let v = if n == 0 { 0 } else { self.next_u64() % n };
        N::try_from(v).ok().expect("below the bound")
    }

    /// One of `xs`, which must not be empty.
    pub fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100u64) < percent
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn the_same_seed_gives_the_same_numbers_within_their_bounds() {
        let (mut a, mut b) = (Rng(7 | 1), Rng(7 | 1));
        for n in 1..200u64 {
            let x = a.below(n);
            assert_eq!(x, b.below(n));
            assert!(x < n);
        }
        assert_eq!(a.below(0usize), 0);
        assert_eq!(a.pick(&[5]), 5);
        assert!((0..1000).filter(|_| a.chance(50)).count().abs_diff(500) < 100);
    }
}
