//! Stable hashing for seeds and fingerprints. std's `DefaultHasher` may change between Rust
//! releases; a seed must give the same runs on every build, so FNV-1a and SplitMix64 it is.

/// FNV-1a over the parts, with a separator byte so that ("ab", "c") ≠ ("a", "bc").
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// SplitMix64 finaliser: spreads nearby inputs across the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of one run: depends on the suite seed, the case and the run index only, so a
/// run's result does not depend on scheduling, concurrency, sharding or resumption.
pub fn run_seed(suite_seed: u64, case_id: &str, run: u32) -> u64 {
    mix(stable_hash(&[
        &suite_seed.to_le_bytes(),
        case_id.as_bytes(),
        &run.to_le_bytes(),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable_and_distinct() {
        // Pinned (checked against an independent FNV-1a): a change here changes every
        // seeded result users have recorded.
        assert_eq!(stable_hash(&[b"ragprobe"]), 0x3316_5196_361a_bebe);
        let a = run_seed(42, "cost", 0);
        assert_eq!(a, run_seed(42, "cost", 0));
        assert_ne!(a, run_seed(42, "cost", 1));
        assert_ne!(a, run_seed(43, "cost", 0));
        assert_ne!(a, run_seed(42, "storage", 0));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }
}
