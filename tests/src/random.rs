//! A small deterministic generator for the randomized oracles, and the run's seed
//! (`PGCACHED_ORACLE_SEED`).

/// A small deterministic generator (xorshift), seeded per task.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        // splitmix64, so that nearby seeds give unrelated sequences.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Random((z ^ (z >> 31)) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// An integer in `low..=high`.
    pub fn int(&mut self, low: i32, high: i32) -> i32 {
        low + self.below((high - low + 1) as u64) as i32
    }

    /// An integer in `low..=high`, seven times in eight one of the first two.
    pub fn hot(&mut self, low: i32, high: i32) -> i32 {
        if self.below(8) == 0 {
            self.int(low, high)
        } else {
            self.int(low, (low + 1).min(high))
        }
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

pub fn seed() -> u64 {
    std::env::var("PGCACHED_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_601)
}
