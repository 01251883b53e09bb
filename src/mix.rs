//! SplitMix64's finaliser, the one 64-bit bit mixer the crate uses where it needs a
//! deterministic, well-spread hash of a number: a graph row's level
//! ([`crate::graph_build`]), the random directions of projected token codes
//! ([`crate::late::TokenProjection`]) and the shingles that tell copies apart
//! ([`crate::copies`]). Kept in one place so the three draw from the same function.

/// Mixes `z` so that nearby inputs give unrelated outputs (Steele, Lea and Flood's
/// SplitMix64 finaliser). Deterministic across runs and platforms.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mix64_is_splitmix64s_finaliser() {
        // SplitMix64 seeded with 0 yields 0xE220A8397B1DCDAF first: the finaliser of the
        // state after one step (0 + the golden gamma).
        assert_eq!(super::mix64(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF);
        assert_eq!(super::mix64(0), 0);
    }
}
