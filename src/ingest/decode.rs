//! Text decoding: UTF-8, or UTF-16 behind a byte-order mark; binary and other encodings are
//! reasons to skip a file, never mojibake in the index.
//!
//! Not for: extraction from packaged formats (their own files).

use super::SkipReason;

/// Decodes `bytes` as UTF-16 when they start with a UTF-16 byte-order mark (little- or
/// big-endian); `None` for anything else. The mark itself is dropped.
pub(super) fn decode_utf16_with_bom(bytes: &[u8]) -> Result<Option<String>, SkipReason> {
    let from: fn([u8; 2]) -> u16 = match bytes {
        [0xFF, 0xFE, ..] => u16::from_le_bytes,
        [0xFE, 0xFF, ..] => u16::from_be_bytes,
        _ => return Ok(None),
    };
    let body = &bytes[2..];
    let units = body.chunks_exact(2).map(|p| from([p[0], p[1]]));
    let mut text = String::with_capacity(body.len() / 2);
    let mut read = 0; // code units consumed so far
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                text.push(c);
                read += c.len_utf16();
            }
            Err(_) => {
                return Err(SkipReason::InvalidUtf16 {
                    offset: 2 + 2 * read,
                })
            }
        }
    }
    if body.len() % 2 == 1 {
        return Err(SkipReason::InvalidUtf16 {
            offset: bytes.len() - 1,
        });
    }
    Ok(Some(text))
}
