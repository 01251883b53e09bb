//! PowerPoint (`.pptx`): each slide in presentation order, its title as a markdown heading;
//! locations count slides.
//!
//! Not for: speaker notes, embedded media.

use super::office::{office_part, open_office, tag_name, xml_tags, Archive};
use super::{DocKind, Document, SkipReason};

/// A PowerPoint deck as text: per slide, in presentation order, its title as a markdown
/// heading (`Slide N` when it has none, so that a slide never takes the previous one's
/// heading trail) and one line per paragraph of its other text. Locations count slides.
/// Speaker notes are not read.
pub(super) fn pptx_document(
    key: String,
    title: String,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    let mut archive = open_office(bytes)?;
    let slides = pptx_slide_order(&mut archive)?;
    let mut text = String::new();
    let mut starts = Vec::with_capacity(slides.len());
    for (n, name) in slides.iter().enumerate() {
        let xml = office_part(&mut archive, name)?;
        let slide = pptx_slide_text(&xml);
        if !text.is_empty() {
            text.push('\n');
        }
        starts.push(text.len());
        let heading = slide.title.unwrap_or_else(|| format!("Slide {}", n + 1));
        text.push_str(&format!("# {heading}\n"));
        for line in slide.lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    if text.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    Ok(Document::packaged(
        key,
        title,
        DocKind::Pptx,
        bytes,
        mtime,
        text,
        starts,
    ))
}

/// The slide parts in presentation order: `ppt/presentation.xml` lists slide relationship
/// ids, `ppt/_rels/presentation.xml.rels` maps them to parts (a moved slide keeps its file
/// name, so file order is not slide order). Without them: slide files by number.
pub(super) fn pptx_slide_order(archive: &mut Archive<'_>) -> Result<Vec<String>, SkipReason> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[at..].split('"').next()?.to_string())
    };
    let ordered = (|| -> Option<Vec<String>> {
        let pres = office_part(archive, "ppt/presentation.xml").ok()?;
        let rels = office_part(archive, "ppt/_rels/presentation.xml.rels").ok()?;
        let targets: std::collections::HashMap<String, String> = xml_tags(&rels)
            .filter(|(_, t)| tag_name(t) == "Relationship")
            .filter_map(|(_, t)| Some((attr(t, "Id")?, attr(t, "Target")?)))
            .collect();
        let order: Vec<String> = xml_tags(&pres)
            .filter(|(_, t)| tag_name(t) == "p:sldId")
            .filter_map(|(_, t)| targets.get(&attr(t, "r:id")?).cloned())
            .map(|target| match target.strip_prefix('/') {
                Some(abs) => abs.to_string(),
                None => format!("ppt/{target}"),
            })
            .collect();
        (!order.is_empty()).then_some(order)
    })();
    if let Some(order) = ordered {
        return Ok(order);
    }
    let mut numbered: Vec<(u32, String)> = archive
        .file_names()
        .filter_map(|n| {
            let n = n.ok()?;
            let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
            Some((num.parse().ok()?, n.to_string()))
        })
        .collect();
    if numbered.is_empty() {
        return Err(SkipReason::BadOffice {
            error: "no slides (ppt/slides/slideN.xml)".into(),
        });
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, n)| n).collect())
}

/// A slide's text: the title placeholder's paragraphs joined, the other paragraphs (text
/// runs `<a:t>`, breaks) one per line.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SlideText {
    title: Option<String>,
    lines: Vec<String>,
}

pub(super) fn pptx_slide_text(xml: &str) -> SlideText {
    let mut out = SlideText::default();
    let mut para = String::new();
    let mut title_parts: Vec<String> = Vec::new();
    let (mut in_text, mut in_title_shape) = (false, false);
    for (before, tag) in xml_tags(xml) {
        if in_text {
            para.push_str(&html_escape::decode_html_entities(before));
        }
        let closing = tag.starts_with('/');
        match tag_name(tag) {
            "a:t" => in_text = !closing && !tag.ends_with('/'),
            "a:br" => para.push(' '),
            "p:sp" if !closing => in_title_shape = false,
            "p:ph" => {
                in_title_shape = tag.contains("type=\"title\"") || tag.contains("type=\"ctrTitle\"")
            }
            "a:p" if closing => {
                let line = para.trim();
                if !line.is_empty() {
                    if in_title_shape {
                        title_parts.push(line.to_string());
                    } else {
                        out.lines.push(line.to_string());
                    }
                }
                para.clear();
            }
            "p:sp" if closing => {
                if in_title_shape && out.title.is_none() && !title_parts.is_empty() {
                    out.title = Some(title_parts.join(" "));
                }
                title_parts.clear();
                in_title_shape = false;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::ingest::*;

    /// A `.pptx` whose slide files are in the reverse of presentation order.
    fn pptx_bytes() -> Vec<u8> {
        use std::io::Write;
        let slide = |title: Option<&str>, body: &[&str]| {
            let mut x = String::from(r#"<p:sld xmlns:a="a" xmlns:p="p"><p:cSld><p:spTree>"#);
            if let Some(t) = title {
                x.push_str(&format!(
                    r#"<p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{t}</a:t></a:r></a:p></p:txBody></p:sp>"#
                ));
            }
            x.push_str("<p:sp><p:txBody>");
            for line in body {
                x.push_str(&format!("<a:p><a:r><a:t>{line}</a:t></a:r></a:p>"));
            }
            x.push_str("</p:txBody></p:sp></p:spTree></p:cSld></p:sld>");
            x
        };
        let parts = [
            (
                "ppt/presentation.xml",
                r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId3"/><p:sldId id="257" r:id="rId2"/></p:sldIdLst></p:presentation>"#.to_string(),
            ),
            (
                "ppt/_rels/presentation.xml.rels",
                r#"<Relationships><Relationship Id="rId2" Type="slide" Target="slides/slide1.xml"/><Relationship Id="rId3" Type="slide" Target="slides/slide2.xml"/></Relationships>"#.to_string(),
            ),
            ("ppt/slides/slide1.xml", slide(None, &["Costs rose by 4 &amp; 5 percent"])),
            ("ppt/slides/slide2.xml", slide(Some("Quarterly review"), &["Sales grew", "Churn fell"])),
        ];
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in parts {
            zip.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn pptx_slides_in_presentation_order_with_titles() {
        let d = document_from_bytes("d.pptx".into(), "d".into(), DocKind::Pptx, &pptx_bytes(), 0)
            .unwrap();
        assert_eq!(
            d.text,
            "# Quarterly review\nSales grew\nChurn fell\n\n# Slide 2\nCosts rose by 4 & 5 percent"
        );
        assert_eq!(d.line_of(d.text.find("Churn").unwrap()), 1);
        assert_eq!(d.line_of(d.text.find("Costs").unwrap()), 2);
        assert_eq!(DocKind::Pptx.location_unit(), "slide");
    }
}
