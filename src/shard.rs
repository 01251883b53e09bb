//! Which shard of a sharded build a document belongs to.
//!
//! A sharded build (the Python package's `pinpoint-ray build SOURCE OUT --shards N`) gives
//! each shard an ordinary index of part of a folder: the files whose key (the path in the
//! folder) hashes to the shard. The hash is FNV-1a over the key's bytes: stable across
//! runs, machines and languages (unlike std's `RandomState`), so that a re-run puts every
//! file in the shard it was in, and only changed files are embedded again.
//!
//! Not for: searching the shards together ([`crate::multi`]).

use crate::error::{Error, Result};

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards the folder is split into.
    pub count: u32,
}

impl Shard {
    /// Shard `index` of `count`: `index < count`, `count ≥ 1`.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::invalid(
                "shard",
                format!("{index} of {count} (a shard is 0 ≤ index < count)"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard (of `count`) that holds the document keyed `key`.
    pub fn of(key: &str, count: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % count.max(1) as u64) as u32
    }

    /// Whether this shard holds `key`.
    pub fn holds(&self, key: &str) -> bool {
        Self::of(key, self.count) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_exactly_one_shard_and_the_hash_is_stable() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for i in 0..4000 {
            let key = format!("docs/file{i}.md");
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.holds(&key)).collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0].index as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c: the Python driver computes the same.
        assert_eq!(
            Shard::of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u32::MAX as u64) as u32
        );
        assert!(Shard::new(4, 4).is_err() && Shard::new(0, 0).is_err());
    }
}
