//! What the randomized tests and the benchmarks share: numbers from the environment, and a
//! small seedable generator, so that a run of a nemesis is replayed from its seed.

use std::time::Duration;

/// The whole number in environment variable `name`, if it holds one.
pub fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// SplitMix64: small, seedable, and good enough to pick faults.
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded from `NEMESIS_SEED`, or from the clock; with the seed, which the
    /// caller prints so that a failing run can be replayed.
    pub fn from_env() -> (Self, u64) {
        let seed = setting("NEMESIS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
        (Self(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number from 0 to `n` - 1.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration from `from` to `to` milliseconds.
    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}
