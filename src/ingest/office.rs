//! What Word and PowerPoint files share: a zip archive of XML parts, read with a cap on
//! how far a part may inflate, and a flat scan of XML tags.
//!
//! Not for: the formats themselves ([`super::docx`], [`super::pptx`]).

use std::io::Read;

use super::SkipReason;

/// Largest XML part read out of an Office file: the archive's own size is capped, but a
/// small archive can inflate to gigabytes (a zip bomb).
pub(super) const MAX_XML_PART_BYTES: u64 = 256 * 1024 * 1024;

pub(super) type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

/// Opens an Office file (a zip archive of XML parts).
pub(super) fn open_office(bytes: &[u8]) -> Result<Archive<'_>, SkipReason> {
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| SkipReason::BadOffice {
        error: format!("not a zip archive (encrypted, or an old binary format renamed?): {e}"),
    })
}

/// One XML part of an Office archive as text, at most [`MAX_XML_PART_BYTES`] inflated.
pub(super) fn office_part(archive: &mut Archive<'_>, name: &str) -> Result<String, SkipReason> {
    let bad = |error: String| SkipReason::BadOffice { error };
    let mut part = archive
        .by_name(name)
        .map_err(|e| bad(format!("no {name}: {e}")))?;
    if part.size() > MAX_XML_PART_BYTES {
        return Err(bad(format!(
            "{name} inflates to {} bytes (limit {MAX_XML_PART_BYTES})",
            part.size()
        )));
    }
    let mut xml = String::new();
    part.by_ref()
        .take(MAX_XML_PART_BYTES + 1)
        .read_to_string(&mut xml)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    if xml.len() as u64 > MAX_XML_PART_BYTES {
        return Err(bad(format!("{name} is larger than it says")));
    }
    Ok(xml)
}

/// The tags of an XML text in order, each with the text before it: `(text, tag)` where
/// `tag` is what stands between `<` and `>`. Office parts are flat enough that this scan is
/// all their text extraction needs.
pub(super) fn xml_tags(xml: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let lt = i + xml[i..].find('<')?;
        let gt = lt + xml[lt..].find('>')?;
        let text = &xml[i..lt];
        i = gt + 1;
        Some((text, &xml[lt + 1..gt]))
    })
}

/// A tag's name: `w:p` for `<w:p w:rsidR="..">`, `<w:p/>` and `</w:p>` alike.
pub(super) fn tag_name(tag: &str) -> &str {
    tag.trim_start_matches('/')
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("")
}
