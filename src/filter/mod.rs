//! Metadata filters: which documents a search may hand over.
//!
//! A filter is a tree (`and`, `or`, `not` over `eq`, `in`, `range`, `glob`, `exists`
//! tests on a field), written as JSON by programs ([`Filter`], in `query --json` options,
//! `serve` and the MCP `search` tool) or in the `--where` grammar by people
//! ([`parse::parse_where`]). Fields every document has without markup: `collection`,
//! `path`, `ext`, `kind`, `modified`, `size`, `title`; any other name is a key of the
//! document's front matter (YAML at the top of a markdown file: `tags`, `status`,
//! `date`, ...), where `tag` also finds `tags`.
//!
//! A filter is compiled once per search ([`Filter::compile`]: unknown shapes, bad dates
//! and ranges on text fields are errors naming where they are, never a match-all) into a
//! [`Predicate`] over a document's facts ([`DocFacts`]); the engine turns it into the set
//! of chunks that may be returned and applies that set *inside* each leg
//! (the engine's search legs), so that `k` hits come back whenever `k` documents match.
//!
//! Not for: which documents exist or what their front matter holds ([`crate::collection`]).

pub mod parse;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A filter tree, as JSON: `{"and": [..]}`, `{"or": [..]}`, `{"not": ..}`,
/// `{"eq": {"field": "ext", "value": "md"}}`, `{"in": {"field": "ext", "values": ["md",
/// "rs"]}}`, `{"range": {"field": "modified", "gte": "2025-01-01"}}`,
/// `{"glob": {"field": "path", "pattern": "drafts/**"}}`, `{"exists": {"field": "tags"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Filter {
    /// Every part holds.
    And(Vec<Filter>),
    /// At least one part holds.
    Or(Vec<Filter>),
    /// The part does not hold.
    Not(Box<Filter>),
    /// The field equals the value (case-insensitive; a list field: one of its items).
    Eq {
        /// Field name.
        field: String,
        /// Value.
        value: Scalar,
    },
    /// The field equals one of the values.
    In {
        /// Field name.
        field: String,
        /// Values.
        values: Vec<Scalar>,
    },
    /// The field lies in a range: dates (`2025-01-01`, `2025-01-01T12:00:00`), numbers
    /// (`size` takes `10KB`, `2MB`), else text order.
    Range {
        /// Field name.
        field: String,
        /// Above this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gt: Option<Scalar>,
        /// At or above this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gte: Option<Scalar>,
        /// Below this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lt: Option<Scalar>,
        /// At or below this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lte: Option<Scalar>,
    },
    /// The field matches a glob (`*` within a path segment, `**` across segments).
    Glob {
        /// Field name.
        field: String,
        /// Pattern.
        pattern: String,
    },
    /// The document has the field (front-matter keys; built-in fields always exist).
    Exists {
        /// Field name.
        field: String,
    },
}

/// A value in a filter: JSON text, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// Number.
    Number(f64),
    /// Boolean.
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Scalar {
        Scalar::Text(s.to_string())
    }
}

/// What a filter can ask about one document.
#[derive(Debug, Clone, Copy)]
pub struct DocFacts<'a> {
    /// Its collection's name (`""` for the unnamed one).
    pub collection: &'a str,
    /// Its key: the path as hits show it (with the collection's name in front, when named).
    pub key: &'a str,
    /// Its path inside its collection's folder.
    pub rel: &'a str,
    /// Its title.
    pub title: &'a str,
    /// Source size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch (0: unknown).
    pub mtime_ns: i64,
    /// Front matter, keys lower-cased, each a list of values.
    pub meta: Option<&'a BTreeMap<String, Vec<String>>>,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Predicate {
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Test(FieldName, Test),
}

#[derive(Debug, Clone, PartialEq)]
enum FieldName {
    Collection,
    Path,
    Ext,
    Kind,
    Modified,
    Size,
    Title,
    Meta(String),
}

#[derive(Debug, Clone)]
enum Test {
    /// Lower-cased values, any of which may equal.
    Any(Vec<String>),
    Glob(globset::GlobMatcher),
    Exists,
    Range {
        lo: Option<(Ordered, bool)>,
        hi: Option<(Ordered, bool)>,
    },
}

/// A range bound: a number (dates as seconds since the epoch) or text.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Ordered {
    Num(f64),
    Text(String),
}

impl FieldName {
    fn of(name: &str) -> Result<FieldName> {
        let n = name.trim().to_lowercase();
        if n.is_empty() {
            return Err(Error::invalid("filter", "a test names no field"));
        }
        Ok(match n.as_str() {
            "collection" => FieldName::Collection,
            "path" => FieldName::Path,
            "ext" | "extension" => FieldName::Ext,
            "kind" => FieldName::Kind,
            "modified" | "mtime" => FieldName::Modified,
            "size" => FieldName::Size,
            "title" => FieldName::Title,
            _ => FieldName::Meta(n),
        })
    }
}

impl Filter {
    /// Checks the filter and compiles it; errors name the part of the tree at fault
    /// (`filter.and[1].range`).
    pub fn compile(&self) -> Result<Predicate> {
        Ok(Predicate {
            node: compile(self, "filter")?,
        })
    }

    /// Both filters (either may be absent).
    pub fn both(a: Option<Filter>, b: Option<Filter>) -> Option<Filter> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Filter::And(vec![a, b])),
            (a, b) => a.or(b),
        }
    }
}

fn bad(at: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid("filter", format!("{at}: {why}"))
}

fn compile(f: &Filter, at: &str) -> Result<Node> {
    Ok(match f {
        Filter::And(parts) | Filter::Or(parts) => {
            let name = if matches!(f, Filter::And(_)) {
                "and"
            } else {
                "or"
            };
            if parts.is_empty() {
                return Err(bad(&format!("{at}.{name}"), "has no parts"));
            }
            let nodes = parts
                .iter()
                .enumerate()
                .map(|(i, p)| compile(p, &format!("{at}.{name}[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            if name == "and" {
                Node::And(nodes)
            } else {
                Node::Or(nodes)
            }
        }
        Filter::Not(p) => Node::Not(Box::new(compile(p, &format!("{at}.not"))?)),
        Filter::Eq { field, value } => {
            test(field, &format!("{at}.eq"), std::slice::from_ref(value))?
        }
        Filter::In { field, values } => {
            if values.is_empty() {
                return Err(bad(&format!("{at}.in"), "has no values"));
            }
            test(field, &format!("{at}.in"), values)?
        }
        Filter::Range {
            field,
            gt,
            gte,
            lt,
            lte,
        } => {
            let here = format!("{at}.range");
            let f = FieldName::of(field).map_err(|e| bad(&here, e))?;
            if matches!(f, FieldName::Collection | FieldName::Ext | FieldName::Kind) {
                return Err(bad(&here, format!("{field} is not ordered; use eq or in")));
            }
            if gt.is_some() && gte.is_some() || lt.is_some() && lte.is_some() {
                return Err(bad(
                    &here,
                    "give one lower bound (gt or gte) and one upper (lt or lte)",
                ));
            }
            let bound = |v: &Option<Scalar>, incl: bool| -> Result<Option<(Ordered, bool)>> {
                v.as_ref()
                    .map(|v| Ok((ordered(&f, &v.text()).map_err(|e| bad(&here, e))?, incl)))
                    .transpose()
            };
            let lo = match gt {
                Some(_) => bound(gt, false)?,
                None => bound(gte, true)?,
            };
            let hi = match lt {
                Some(_) => bound(lt, false)?,
                None => bound(lte, true)?,
            };
            if lo.is_none() && hi.is_none() {
                return Err(bad(&here, "has no bound (gt, gte, lt or lte)"));
            }
            Node::Test(f, Test::Range { lo, hi })
        }
        Filter::Glob { field, pattern } => {
            let here = format!("{at}.glob");
            let f = FieldName::of(field).map_err(|e| bad(&here, e))?;
            let g = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .case_insensitive(true)
                .build()
                .map_err(|e| bad(&here, format!("bad pattern {pattern:?}: {e}")))?;
            Node::Test(f, Test::Glob(g.compile_matcher()))
        }
        Filter::Exists { field } => {
            let here = format!("{at}.exists");
            Node::Test(
                FieldName::of(field).map_err(|e| bad(&here, e))?,
                Test::Exists,
            )
        }
    })
}

/// An `eq`/`in` test; on `path` a value with glob characters is a glob.
fn test(field: &str, at: &str, values: &[Scalar]) -> Result<Node> {
    let f = FieldName::of(field).map_err(|e| bad(at, e))?;
    let texts: Vec<String> = values.iter().map(|v| v.text()).collect();
    if f == FieldName::Path && texts.len() == 1 && texts[0].contains(['*', '?', '[']) {
        return compile(
            &Filter::Glob {
                field: field.to_string(),
                pattern: texts[0].clone(),
            },
            at,
        );
    }
    if matches!(f, FieldName::Modified | FieldName::Size) {
        // Equality on a number or a date: a range of one value (a day, for a date).
        let v = &texts[0];
        if texts.len() > 1 {
            return Err(bad(at, format!("{field} takes one value; use range")));
        }
        let lo = ordered(&f, v).map_err(|e| bad(at, e))?;
        let hi = match (&f, &lo) {
            (FieldName::Modified, Ordered::Num(s)) if !v.contains('T') => {
                (Ordered::Num(s + 86_400.0), false)
            }
            _ => (lo.clone(), true),
        };
        return Ok(Node::Test(
            f,
            Test::Range {
                lo: Some((lo, true)),
                hi: Some(hi),
            },
        ));
    }
    let is_ext = f == FieldName::Ext;
    let norm = |s: &str| {
        let s = s.trim().to_lowercase();
        if is_ext {
            s.trim_start_matches('.').to_string()
        } else {
            s
        }
    };
    Ok(Node::Test(
        f,
        Test::Any(texts.iter().map(|t| norm(t)).collect()),
    ))
}

/// A bound on `f`: seconds since the epoch for dates, bytes for sizes, else a number when
/// it reads as one, else text.
fn ordered(f: &FieldName, v: &str) -> std::result::Result<Ordered, String> {
    let v = v.trim();
    match f {
        FieldName::Modified => date_secs(v)
            .map(Ordered::Num)
            .ok_or_else(|| format!("{v:?} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)")),
        FieldName::Size => size_bytes(v)
            .map(Ordered::Num)
            .ok_or_else(|| format!("{v:?} is not a size (bytes, or with KB, MB, GB)")),
        FieldName::Path | FieldName::Title => Ok(Ordered::Text(v.to_lowercase())),
        _ => Ok(value_order(v)),
    }
}

/// A front-matter value as a bound: a date, a number, else text.
fn value_order(v: &str) -> Ordered {
    if let Some(s) = date_secs(v) {
        Ordered::Num(s)
    } else if let Ok(n) = v.parse::<f64>() {
        Ordered::Num(n)
    } else {
        Ordered::Text(v.to_lowercase())
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (UTC) as seconds since the epoch.
pub fn date_secs(v: &str) -> Option<f64> {
    use chrono::{NaiveDate, NaiveDateTime};
    let v = v.trim().trim_matches('"');
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(v.trim_end_matches('Z'), fmt) {
            return Some(d.and_utc().timestamp() as f64);
        }
    }
    None
}

fn size_bytes(v: &str) -> Option<f64> {
    let lower = v.to_lowercase();
    let (num, mul) = [("gb", 1e9), ("mb", 1e6), ("kb", 1e3), ("b", 1.0)]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
        .unwrap_or((lower.clone(), 1.0));
    num.parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| n * mul)
}

impl Predicate {
    /// Whether the document passes.
    pub fn matches(&self, d: &DocFacts) -> bool {
        eval(&self.node, d)
    }
}

fn eval(n: &Node, d: &DocFacts) -> bool {
    match n {
        Node::And(p) => p.iter().all(|n| eval(n, d)),
        Node::Or(p) => p.iter().any(|n| eval(n, d)),
        Node::Not(p) => !eval(p, d),
        Node::Test(f, t) => {
            let ext = || {
                std::path::Path::new(d.rel)
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default()
            };
            let values: Vec<String> = match f {
                FieldName::Collection => vec![d.collection.to_lowercase()],
                // The path inside the collection, and the key hits show (the collection's
                // name in front): either may match.
                FieldName::Path => vec![d.rel.to_string(), d.key.to_string()],
                FieldName::Ext => vec![ext()],
                FieldName::Kind => vec![kind_name(d.rel)],
                FieldName::Title => vec![d.title.to_string()],
                FieldName::Size => {
                    return range_num(t, d.size as f64);
                }
                FieldName::Modified => {
                    return d.mtime_ns != 0 && range_num(t, d.mtime_ns as f64 / 1e9);
                }
                FieldName::Meta(k) => match meta_values(d.meta, k) {
                    Some(v) => v.to_vec(),
                    None => return false,
                },
            };
            match t {
                Test::Exists => true,
                Test::Any(want) => values
                    .iter()
                    .any(|v| want.iter().any(|w| v.trim().to_lowercase() == *w)),
                Test::Glob(g) => values.iter().any(|v| g.is_match(v)),
                Test::Range { lo, hi } => values.iter().any(|v| {
                    let x = match f {
                        FieldName::Path | FieldName::Title => Ordered::Text(v.to_lowercase()),
                        _ => value_order(v),
                    };
                    in_range(&x, lo, hi)
                }),
            }
        }
    }
}

fn range_num(t: &Test, x: f64) -> bool {
    match t {
        Test::Range { lo, hi } => in_range(&Ordered::Num(x), lo, hi),
        Test::Exists => true,
        Test::Any(want) => want.iter().any(|w| w.parse::<f64>().ok() == Some(x)),
        Test::Glob(g) => g.is_match(x.to_string()),
    }
}

fn in_range(x: &Ordered, lo: &Option<(Ordered, bool)>, hi: &Option<(Ordered, bool)>) -> bool {
    // Numbers compare with numbers and text with text; across kinds nothing matches.
    let same = |b: &Ordered| std::mem::discriminant(b) == std::mem::discriminant(x);
    let lo_ok = lo
        .as_ref()
        .is_none_or(|(b, incl)| same(b) && if *incl { x >= b } else { x > b });
    let hi_ok = hi
        .as_ref()
        .is_none_or(|(b, incl)| same(b) && if *incl { x <= b } else { x < b });
    lo_ok && hi_ok
}

/// A front-matter key's values; `tag` also finds `tags` (and `tags` finds `tag`).
fn meta_values<'a>(
    meta: Option<&'a BTreeMap<String, Vec<String>>>,
    key: &str,
) -> Option<&'a [String]> {
    let m = meta?;
    m.get(key)
        .or_else(|| m.get(&format!("{key}s")))
        .or_else(|| key.strip_suffix('s').and_then(|k| m.get(k)))
        .map(|v| v.as_slice())
}

/// The `kind` field: `markdown`, `code`, `html`, `pdf`, `docx`, `pptx`, `notebook` or
/// `text`.
fn kind_name(rel: &str) -> String {
    use crate::ingest::DocKind;
    match DocKind::from_path(std::path::Path::new(rel)) {
        Some(DocKind::Markdown) => "markdown",
        Some(DocKind::Html) => "html",
        Some(DocKind::Code) => "code",
        Some(DocKind::Pdf) => "pdf",
        Some(DocKind::Docx) => "docx",
        Some(DocKind::Pptx) => "pptx",
        Some(DocKind::Notebook) => "notebook",
        _ => "text",
    }
    .to_string()
}

#[cfg(test)]
mod tests;
