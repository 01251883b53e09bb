use std::collections::BTreeMap;

use super::parse::parse_where;
use super::*;

fn doc<'a>(
    collection: &'a str,
    rel: &'a str,
    key: &'a str,
    mtime_day: &str,
    size: u64,
    meta: Option<&'a BTreeMap<String, Vec<String>>>,
) -> DocFacts<'a> {
    DocFacts {
        collection,
        key,
        rel,
        title: "A title",
        size,
        mtime_ns: (date_secs(mtime_day).unwrap() * 1e9) as i64,
        meta,
    }
}

fn meta(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn the_issue_example_parses_and_decides() {
    let f = parse_where(
        "ext IN (md,rs) AND modified >= 2025-01-01 AND tag:rust AND NOT path:drafts/**",
    )
    .unwrap();
    let p = f.compile().unwrap();
    let m = meta(&[("tags", &["Rust", "async"])]);
    let none = meta(&[("tags", &["go"])]);
    assert!(p.matches(&doc(
        "notes",
        "a/b.md",
        "notes/a/b.md",
        "2025-03-01",
        10,
        Some(&m)
    )));
    // Each clause can fail on its own.
    assert!(!p.matches(&doc(
        "notes",
        "a/b.txt",
        "notes/a/b.txt",
        "2025-03-01",
        10,
        Some(&m)
    )));
    assert!(!p.matches(&doc(
        "notes",
        "a/b.md",
        "notes/a/b.md",
        "2024-12-31",
        10,
        Some(&m)
    )));
    assert!(!p.matches(&doc(
        "notes",
        "a/b.md",
        "notes/a/b.md",
        "2025-03-01",
        10,
        Some(&none)
    )));
    assert!(!p.matches(&doc(
        "notes",
        "a/b.md",
        "notes/a/b.md",
        "2025-03-01",
        10,
        None
    )));
    assert!(!p.matches(&doc(
        "notes",
        "drafts/x/b.md",
        "notes/drafts/x/b.md",
        "2025-03-01",
        10,
        Some(&m)
    )));
}

#[test]
fn precedence_parentheses_and_comparisons() {
    // AND binds tighter than OR.
    let f = parse_where("collection:code OR ext:md AND size < 1KB").unwrap();
    assert!(matches!(&f, Filter::Or(parts) if parts.len() == 2));
    let p = f.compile().unwrap();
    assert!(p.matches(&doc(
        "code",
        "big.rs",
        "code/big.rs",
        "2025-01-01",
        50_000,
        None
    )));
    assert!(p.matches(&doc("notes", "s.md", "notes/s.md", "2025-01-01", 999, None)));
    assert!(!p.matches(&doc(
        "notes",
        "l.md",
        "notes/l.md",
        "2025-01-01",
        1000,
        None
    )));
    let p = parse_where("(collection:code OR ext:md) AND size < 1KB")
        .unwrap()
        .compile()
        .unwrap();
    assert!(!p.matches(&doc(
        "code",
        "big.rs",
        "code/big.rs",
        "2025-01-01",
        50_000,
        None
    )));
    // A date equality is the whole day; != and EXISTS; quoted values keep spaces.
    let p = parse_where("modified = 2025-02-03")
        .unwrap()
        .compile()
        .unwrap();
    let mut d = doc("", "a.md", "a.md", "2025-02-03", 1, None);
    d.mtime_ns += 23 * 3600 * 1_000_000_000;
    assert!(p.matches(&d));
    assert!(!p.matches(&doc("", "a.md", "a.md", "2025-02-04", 1, None)));
    let m = meta(&[("status", &["in review"])]);
    let p = parse_where("status = 'in review' AND owner EXISTS")
        .unwrap()
        .compile()
        .unwrap();
    assert!(!p.matches(&doc("", "a.md", "a.md", "2025-02-03", 1, Some(&m))));
    let p = parse_where("status != draft and status exists")
        .unwrap()
        .compile()
        .unwrap();
    assert!(p.matches(&doc("", "a.md", "a.md", "2025-02-03", 1, Some(&m))));
    // A time of day after a comparison operator is one value.
    let p = parse_where("modified > 2025-02-03T12:30")
        .unwrap()
        .compile()
        .unwrap();
    assert!(!p.matches(&doc("", "a.md", "a.md", "2025-02-03", 1, None)));
    // Front-matter dates compare as dates, numbers as numbers.
    let m = meta(&[("date", &["2024-06-01"]), ("priority", &["10"])]);
    let p = parse_where("date < 2025-01-01 AND priority > 9")
        .unwrap()
        .compile()
        .unwrap();
    assert!(p.matches(&doc("", "a.md", "a.md", "2025-02-03", 1, Some(&m))));
}

#[test]
fn malformed_filters_name_the_position_and_never_match_all() {
    for (text, pos, needle) in [
        ("ext IN (md,rs", 13, "expected ',' or ')'"),
        ("ext md", 4, "expected ':'"),
        ("AND ext:md", 0, "expected a field name"),
        ("ext:md AND", 10, "expected a field name"),
        ("ext:md OR OR ext:rs", 10, "expected a field name"),
        ("(ext:md", 7, "expected ')'"),
        ("ext:md ext:rs", 7, "expected AND, OR or the end"),
        ("title = \"open", 8, "unterminated"),
        ("", 0, "empty"),
    ] {
        let e = parse_where(text).unwrap_err().to_string();
        assert!(
            e.contains(&format!("position {pos}")) && e.contains(needle),
            "{text:?}: {e}"
        );
    }
    // Hostile nesting and size: refused, not a stack overflow.
    let deep = format!("{}ext:md{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(parse_where(&deep)
        .unwrap_err()
        .to_string()
        .contains("nested more than 64"));
    let nots = format!("{}ext:md", "NOT ".repeat(3_000));
    assert!(parse_where(&nots)
        .unwrap_err()
        .to_string()
        .contains("nested more than 64"));
    assert!(parse_where(&format!("{}ext:md", "NOT ".repeat(30))).is_ok());
    let long = vec!["ext:md"; 5_000].join(" OR ");
    assert!(parse_where(&long)
        .unwrap_err()
        .to_string()
        .contains("at most"));
    for (text, needle) in [
        ("modified >= yesterday", "not a date"),
        ("size > big", "not a size"),
        ("ext > md", "not ordered"),
        ("path:[", "bad pattern"),
    ] {
        let e = parse_where(text).unwrap_err().to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn json_trees_are_checked_with_their_place_named() {
    let f: Filter = serde_json::from_str(
        r#"{"and": [{"in": {"field": "ext", "values": ["md", "rs"]}},
                    {"range": {"field": "size", "gte": 10, "lt": "1KB"}},
                    {"not": {"glob": {"field": "path", "pattern": "drafts/**"}}}]}"#,
    )
    .unwrap();
    let p = f.compile().unwrap();
    assert!(p.matches(&doc("", "a.rs", "a.rs", "2025-01-01", 10, None)));
    assert!(!p.matches(&doc("", "a.rs", "a.rs", "2025-01-01", 1000, None)));
    // Unknown operators and unknown keys are refused by the parser.
    assert!(serde_json::from_str::<Filter>(r#"{"like": {"field": "ext", "value": "m"}}"#).is_err());
    assert!(
        serde_json::from_str::<Filter>(r#"{"eq": {"field": "ext", "value": "md", "x": 1}}"#)
            .is_err()
    );
    let f: Filter = serde_json::from_str(
        r#"{"or": [{"eq": {"field": "ext", "value": "md"}}, {"range": {"field": "size"}}]}"#,
    )
    .unwrap();
    let e = f.compile().unwrap_err().to_string();
    assert!(
        e.contains("filter.or[1].range") && e.contains("no bound"),
        "{e}"
    );
    let e = Filter::And(vec![]).compile().unwrap_err().to_string();
    assert!(e.contains("filter.and") && e.contains("no parts"), "{e}");
}
