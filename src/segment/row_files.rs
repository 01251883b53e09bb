//! The two files a segment keeps a row of beside its stores: the key of the text each
//! chunk's vector came from ([`TextKeys`]) and, once it loses chunks, its deleted rows as
//! of a generation ([`DeadRows`]). Both are small, fixed-width and read whole.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

const DEL_MAGIC: &[u8; 8] = b"PPDEL001";
const KEYS_MAGIC: &[u8; 8] = b"PPKEYS01";

/// One 64-bit key per chunk of a segment, in row order: a hash of the text the model read
/// for its vector (title, heading trail, text). A commit looks its new chunks' keys up here
/// to reuse vectors; reading 8 bytes a chunk instead of decoding every chunk record kept a
/// one-file commit from scanning the whole chunk store.
pub struct TextKeys;

impl TextKeys {
    /// Writes `keys` (fsynced).
    pub fn write(path: &Path, keys: &[u64]) -> Result<()> {
        let mut b = Vec::with_capacity(16 + keys.len() * 8);
        b.extend_from_slice(KEYS_MAGIC);
        b.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            b.extend_from_slice(&k.to_le_bytes());
        }
        crate::store::write_synced(path, &b)
    }

    /// Reads the keys of a segment of `rows` rows.
    pub fn read(path: &Path, rows: usize) -> Result<Vec<u64>> {
        let b = std::fs::read(path).at(path)?;
        if b.len() != 16 + rows * 8 || &b[..8] != KEYS_MAGIC {
            return Err(Error::corrupt(
                path,
                format!("not the text keys of a segment of {rows} chunks"),
            ));
        }
        Ok(b[16..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// Deleted rows of one segment, a bit per row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadRows {
    rows: usize,
    words: Vec<u64>,
}

impl DeadRows {
    /// No row of `rows` deleted.
    pub fn new(rows: usize) -> DeadRows {
        DeadRows {
            rows,
            words: vec![0; rows.div_ceil(64)],
        }
    }

    /// Marks `row` deleted.
    pub fn set(&mut self, row: usize) {
        if row < self.rows {
            self.words[row / 64] |= 1 << (row % 64);
        }
    }

    /// Whether `row` is deleted.
    pub fn contains(&self, row: usize) -> bool {
        self.words
            .get(row / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Deleted rows.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Writes the bitset (fsynced).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut b = Vec::with_capacity(16 + self.words.len() * 8);
        b.extend_from_slice(DEL_MAGIC);
        b.extend_from_slice(&(self.rows as u64).to_le_bytes());
        for w in &self.words {
            b.extend_from_slice(&w.to_le_bytes());
        }
        crate::store::write_synced(path, &b)
    }

    /// Reads a bitset written by [`DeadRows::write`] for a segment of `rows` rows.
    pub fn read(path: &Path, rows: usize) -> Result<DeadRows> {
        let b = std::fs::read(path).at(path)?;
        let bad = |what: String| Error::corrupt(path, what);
        if b.len() < 16 || &b[..8] != DEL_MAGIC {
            return Err(bad("not a deletion bitset (bad magic)".into()));
        }
        let n = u64::from_le_bytes(
            b[8..16]
                .try_into()
                .map_err(|_| bad("short header".into()))?,
        );
        if n as usize != rows || b.len() != 16 + rows.div_ceil(64) * 8 {
            return Err(bad(format!(
                "a bitset of {n} rows in {} bytes for a segment of {rows}",
                b.len()
            )));
        }
        let words = b[16..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(DeadRows { rows, words })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_bitsets_and_text_keys_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("del/s1.3.bin");
        let mut d = DeadRows::new(130);
        for r in [0, 63, 64, 129, 500] {
            d.set(r);
        }
        assert_eq!(d.count(), 4, "a row past the segment is ignored");
        d.write(&p).unwrap();
        let back = DeadRows::read(&p, 130).unwrap();
        assert_eq!(back, d);
        assert!(back.contains(129) && !back.contains(128));
        let err = DeadRows::read(&p, 131).unwrap_err().to_string();
        assert!(err.contains("s1.3.bin") && err.contains("131"), "{err}");
        std::fs::write(&p, b"PPDEL00").unwrap();
        assert!(DeadRows::read(&p, 130).is_err());

        let k = dir.path().join("s1.keys");
        TextKeys::write(&k, &[7, 8, u64::MAX]).unwrap();
        assert_eq!(TextKeys::read(&k, 3).unwrap(), vec![7, 8, u64::MAX]);
        let err = TextKeys::read(&k, 4).unwrap_err().to_string();
        assert!(err.contains("s1.keys"), "{err}");
    }
}
