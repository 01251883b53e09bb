//! Labelled questions: a BEIR folder (corpus, queries, qrels of a split) or a user's own
//! JSON lines of questions with the paths that answer them.
//!
//! Not for: running them ([`super::evaluate`]).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::models::hex;

/// Graded relevance judgements: query id -> document id -> grade (> 0 is relevant).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// A BEIR-format collection.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Name (the folder name).
    pub name: String,
    /// Documents: (id, title, text), in file order.
    pub corpus: Vec<(String, String, String)>,
    /// Queries by id.
    pub queries: HashMap<String, String>,
    /// Judgements of the loaded split.
    pub qrels: Qrels,
    /// The split name.
    pub split: String,
    /// sha256 of the corpus file, for the index cache key.
    pub corpus_hash: String,
}

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    text: String,
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Line `n` of a BEIR JSON-lines file and its `_id` as a string; errors name the file and line.
fn parse_line<T: serde::de::DeserializeOwned>(
    path: &Path,
    n: usize,
    line: &str,
    id: impl Fn(&T) -> &serde_json::Value,
) -> Result<(String, T)> {
    let parse_error = |what: String| Error::Parse {
        path: path.to_path_buf(),
        line: n,
        what,
    };
    let value: T = serde_json::from_str(line).map_err(|e| parse_error(e.to_string()))?;
    let id =
        id_string(id(&value)).ok_or_else(|| parse_error("_id is not a string or number".into()))?;
    Ok((id, value))
}

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, Result<String>)>> {
    let f = std::fs::File::open(path).at(path)?;
    let p = path.to_path_buf();
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(move |(i, l)| (i + 1, l.map_err(|e| Error::io(&p, e)))))
}

impl Dataset {
    /// Loads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/<split>.tsv`.
    pub fn load_beir(dir: &Path, split: &str) -> Result<Dataset> {
        let corpus_path = dir.join("corpus.jsonl");
        let queries_path = dir.join("queries.jsonl");
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let mut ds = Dataset {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "dataset".into()),
            split: split.to_string(),
            ..Default::default()
        };
        let mut h = Sha256::new();
        for (n, line) in lines(&corpus_path)? {
            let line = line?;
            h.update(line.as_bytes());
            h.update(b"\n");
            if line.trim().is_empty() {
                continue;
            }
            let (id, c) = parse_line(&corpus_path, n, &line, |c: &CorpusLine| &c.id)?;
            ds.corpus
                .push((id, c.title.unwrap_or_default(), c.text.unwrap_or_default()));
        }
        ds.corpus_hash = hex(&h.finalize());
        for (n, line) in lines(&queries_path)? {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let (id, q) = parse_line(&queries_path, n, &line, |q: &QueryLine| &q.id)?;
            ds.queries.insert(id, q.text);
        }
        ds.qrels = load_qrels(&qrels_path)?;
        Ok(ds)
    }

    /// Query ids that have judgements and text, sorted (numerically where possible).
    pub fn judged_queries(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .qrels
            .iter()
            .filter(|(q, r)| self.queries.contains_key(*q) && r.values().any(|&g| g > 0))
            .map(|(q, _)| q.clone())
            .collect();
        ids.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        ids
    }
}

/// Loads a BEIR qrels TSV (`query-id corpus-id score` header, CRLF tolerated).
pub fn load_qrels(path: &Path) -> Result<Qrels> {
    let mut q: Qrels = HashMap::new();
    for (n, line) in lines(path)? {
        let line = line?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if n == 1 && cols.first().is_some_and(|c| c.trim() == "query-id") {
            continue;
        }
        if cols.len() < 3 {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: n,
                what: format!("expected 3 tab-separated columns, found {}", cols.len()),
            });
        }
        let grade: i32 = cols[2].trim().parse().map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            line: n,
            what: format!("score {:?} is not an integer", cols[2]),
        })?;
        q.entry(cols[0].trim().to_string())
            .or_default()
            .insert(cols[1].trim().to_string(), grade);
    }
    Ok(q)
}

/// Labelled queries: (id, text, judgements).
pub type Labelled = Vec<(String, String, HashMap<String, i32>)>;

/// The BEIR queries of `ds` with judgements, as labelled queries.
pub fn beir_labelled(ds: &Dataset) -> Labelled {
    ds.judged_queries()
        .into_iter()
        .map(|q| {
            let text = ds.queries[&q].clone();
            let rels = ds.qrels[&q].clone();
            (q, text, rels)
        })
        .collect()
}

#[derive(Deserialize)]
struct UserQuery {
    query: String,
    relevant: Vec<String>,
    #[serde(default)]
    id: Option<String>,
}

/// Loads a user's labelled queries: JSON lines of `{"query": str, "relevant": [path or doc
/// id, ...]}`.
pub fn load_user_queries(path: &Path) -> Result<Labelled> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let q: UserQuery = serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: n,
            what: e.to_string(),
        })?;
        if q.relevant.is_empty() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: n,
                what: "\"relevant\" is empty".into(),
            });
        }
        let rels = q.relevant.into_iter().map(|r| (r, 1)).collect();
        out.push((q.id.unwrap_or_else(|| format!("q{n}")), q.query, rels));
    }
    Ok(out)
}

/// Keeps only judgements on documents the index knows, and reports the unknown ones
/// (a typo in a user's label file should not silently lower the scores).
pub fn unknown_labels(engine: &Engine, queries: &Labelled) -> Result<Vec<String>> {
    let known: HashSet<&str> = engine.documents()?.iter().map(|d| d.key.as_str()).collect();
    let mut unknown: Vec<String> = queries
        .iter()
        .flat_map(|(_, _, r)| r.keys())
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    unknown.dedup();
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BEIR folder whose corpus is `corpus`; queries and qrels are well-formed.
    fn beir_dir(corpus: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("corpus.jsonl"), corpus).expect("corpus");
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": 1, \"text\": \"what\"}\n",
        )
        .expect("queries");
        std::fs::create_dir(dir.path().join("qrels")).expect("qrels dir");
        std::fs::write(dir.path().join("qrels/test.tsv"), "1\td1\t1\n").expect("qrels");
        dir
    }

    #[test]
    fn beir_lines_that_do_not_parse_are_named_by_file_and_line() {
        let ok = beir_dir("{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"x\"}\n\n{\"_id\": 7}\n");
        let ds = Dataset::load_beir(ok.path(), "test").expect("well-formed");
        // A numeric id is kept as its decimal text; missing title and text are empty.
        assert_eq!(
            ds.corpus[1],
            ("7".to_string(), String::new(), String::new())
        );
        assert_eq!(ds.queries.get("1").map(String::as_str), Some("what"));

        for (corpus, line, what) in [
            (
                "{\"_id\": \"d1\"}\n{\"_id\": [1]}\n",
                2,
                "_id is not a string",
            ),
            (
                "{\"_id\": \"d1\"}\n\n{not json\n",
                3,
                "key must be a string",
            ),
        ] {
            let dir = beir_dir(corpus);
            match Dataset::load_beir(dir.path(), "test") {
                Err(Error::Parse {
                    path,
                    line: n,
                    what: w,
                }) => {
                    assert!(path.ends_with("corpus.jsonl"), "{path:?}");
                    assert_eq!(n, line);
                    assert!(w.contains(what), "{w}");
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn qrels_tolerate_crlf_and_name_bad_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("q.tsv");
        std::fs::write(
            &p,
            "query-id\tcorpus-id\tscore\r\n1\td1\t1\r\n1\td2\t2\r\n2\td3\t0\r\n",
        )
        .unwrap();
        let q = load_qrels(&p).unwrap();
        assert_eq!(q["1"]["d2"], 2);
        assert_eq!(q["2"]["d3"], 0);
        std::fs::write(&p, "query-id\tcorpus-id\tscore\n1\td1\n").unwrap();
        let e = load_qrels(&p).unwrap_err().to_string();
        assert!(e.contains("q.tsv:2"), "{e}");
        std::fs::write(&p, "1\td1\tx\n").unwrap();
        let e = load_qrels(&p).unwrap_err().to_string();
        assert!(e.contains("q.tsv:1") && e.contains("not an integer"), "{e}");
    }
}
