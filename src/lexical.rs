//! The lexical (BM25) index, over tantivy.
//!
//! One tantivy document per chunk: `chunk` (u64 id, fast field), `doc` (the document key,
//! for deletes), `text` (title + heading trail + chunk text, analysed with an English
//! stemming chain) and `near` (the texts of the chunk's dense neighbours in other documents,
//! [`crate::near`]; searched only with a weight). BM25 uses tantivy's k1 = 1.2, b = 0.75,
//! with each field's own statistics.
//!
//! Queries are *not* parsed with tantivy's query language: user text such as `C++ AND (`
//! must never be a syntax error. The query is run through the same analyzer and becomes a
//! bag-of-words disjunction, repeated terms weighted by their count (as Anserini does).
//!
//! Not for: fusing its scores with the dense leg ([`crate::fuse`]).

use std::collections::HashMap;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{describe_tantivy, Error, Result};

const ANALYZER: &str = "pinpoint_en";

/// The English analysis chain used for both documents and queries.
pub fn analyzer() -> TextAnalyzer {
    let mut b = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .dynamic();
    if let Some(stop) = StopWordFilter::new(Language::English) {
        b = b.filter_dynamic(stop);
    }
    b.filter_dynamic(Stemmer::new(Language::English)).build()
}

struct Fields {
    chunk: Field,
    doc: Field,
    text: Field,
    /// Words of the chunk's dense neighbours ([`crate::near`]); absent in indexes written
    /// before it existed, which then search without expansion.
    near: Option<Field>,
}

/// The schema; `with_near` adds the neighbour field last, so the other fields keep their
/// ids in both forms.
fn schema(with_near: bool) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let chunk = b.add_u64_field("chunk", INDEXED | STORED | FAST);
    let doc = b.add_text_field("doc", STRING);
    let opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let text = b.add_text_field("text", opts.clone());
    let near = with_near.then(|| b.add_text_field("near", opts));
    (
        b.build(),
        Fields {
            chunk,
            doc,
            text,
            near,
        },
    )
}

/// The BM25 index.
pub struct LexicalIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl LexicalIndex {
    /// Opens the index in `dir`, creating it when absent.
    pub fn open_or_create(dir: &Path) -> Result<LexicalIndex> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let open = |with_near: bool| -> Result<std::result::Result<(Index, Fields), String>> {
            let (schema, fields) = schema(with_near);
            let mmap = tantivy::directory::MmapDirectory::open(dir)
                .map_err(|e| Error::corrupt(dir, format!("cannot open lexical index: {e}")))?;
            match Index::open_or_create(mmap, schema) {
                Ok(index) => Ok(Ok((index, fields))),
                Err(tantivy::TantivyError::SchemaError(s)) => Ok(Err(s)),
                Err(other) => Err(Error::corrupt(dir, describe_tantivy(&other))),
            }
        };
        // A new index gets the neighbour field; one written before it existed opens as it is.
        let (index, fields) = match open(true)? {
            Ok(x) => x,
            Err(_) => open(false)?.map_err(|s| Error::IncompatibleIndex {
                path: dir.to_path_buf(),
                what: format!("lexical index has another schema: {s}"),
            })?,
        };
        // Custom analyzers are not persisted: register on every open.
        index.tokenizers().register(ANALYZER, analyzer());
        // Segments are opened here: a damaged segment file is a corrupt index.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| Error::corrupt(dir, describe_tantivy(&e)))?;
        Ok(LexicalIndex {
            index,
            reader,
            fields,
        })
    }

    /// The generation stored as the payload of the last tantivy commit.
    pub fn committed_generation(&self) -> Result<Option<u64>> {
        let metas = self.index.load_metas()?;
        Ok(metas.payload.as_deref().and_then(|p| p.trim().parse().ok()))
    }

    /// A writer (one thread: the machine's other core is busy embedding).
    ///
    /// Files left by a writer killed mid-commit (segments or delete bitsets that no commit
    /// references) are garbage-collected first: tantivy reuses their names, and a leftover
    /// would make every later commit fail with "file already exists" (found by the kill -9
    /// test, tests/crash.rs).
    pub fn writer(&self) -> Result<LexicalWriter> {
        let w: IndexWriter = self.index.writer_with_num_threads(1, 64_000_000)?;
        w.garbage_collect_files().wait()?;
        Ok(LexicalWriter {
            w,
            chunk: self.fields.chunk,
            doc: self.fields.doc,
            text: self.fields.text,
            near: self.fields.near,
        })
    }

    /// Makes the last commit visible to searches.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// Whether the index has the neighbour field ([`crate::near`]).
    pub fn has_near(&self) -> bool {
        self.fields.near.is_some()
    }

    /// Number of indexed chunks visible to searches.
    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Analysed terms of `text`.
    pub fn terms(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    /// Top `k` chunks for `text` with weights per term: `(chunk id, bm25)`, best first.
    pub fn search_weighted(&self, terms: &[(String, f32)], k: usize) -> Result<Vec<(u64, f32)>> {
        self.search_expanded(terms, k, 0.0)
    }

    /// As [`LexicalIndex::search_weighted`], plus `near_weight` times the BM25 of the
    /// chunk's neighbour field ([`crate::near`]): a chunk whose neighbours in meaning hold
    /// the query's words scores (a little) even when it does not. 0, or an index without
    /// the field, is plain BM25.
    pub fn search_expanded(
        &self,
        terms: &[(String, f32)],
        k: usize,
        near_weight: f32,
    ) -> Result<Vec<(u64, f32)>> {
        self.search_within(terms, k, near_weight, None)
    }

    /// As [`LexicalIndex::search_expanded`], among the chunks in `allowed` only (a metadata
    /// filter, [`crate::filter`]): the filter is a collector over the `chunk` fast field,
    /// so BM25 scores are those of the whole index and the top `k` are the top `k` that
    /// pass, not a share of an unfiltered top list.
    pub fn search_within(
        &self,
        terms: &[(String, f32)],
        k: usize,
        near_weight: f32,
        allowed: Option<&std::sync::Arc<std::collections::HashSet<u64>>>,
    ) -> Result<Vec<(u64, f32)>> {
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let query = self.query(terms, near_weight);
        let searcher = self.reader.searcher();
        let top = match allowed {
            None => searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?,
            Some(ids) => {
                let ids = ids.clone();
                let pass = move |id: u64| ids.contains(&id);
                searcher.search(
                    &query,
                    &tantivy::collector::FilterCollector::new(
                        "chunk".to_string(),
                        pass,
                        TopDocs::with_limit(k).order_by_score(),
                    ),
                )?
            }
        };
        // Opening a fast-field column decodes its block index (thousands of blocks in a
        // million-chunk segment): once per segment, not once per hit, or a default query's
        // 1,000 hits spend most of their time there.
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let col = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(c) => c.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .u64("chunk")?,
                ),
            };
            if let Some(id) = col.first(addr.doc_id) {
                out.push((id, score));
            }
        }
        Ok(out)
    }

    /// The query of weighted `terms` over the text field, plus the neighbour field at
    /// `near_weight` times their weight.
    fn query(&self, terms: &[(String, f32)], near_weight: f32) -> BooleanQuery {
        let clause = |field: Field, t: &str, w: f32| -> (Occur, Box<dyn Query>) {
            let tq: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(field, t),
                IndexRecordOption::WithFreqs,
            ));
            let q: Box<dyn Query> = if (w - 1.0).abs() > f32::EPSILON {
                Box::new(BoostQuery::new(tq, w))
            } else {
                tq
            };
            (Occur::Should, q)
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|(t, w)| clause(self.fields.text, t, *w))
            .collect();
        if let (Some(near), true) = (self.fields.near, near_weight > 0.0) {
            clauses.extend(terms.iter().map(|(t, w)| clause(near, t, *w * near_weight)));
        }
        BooleanQuery::new(clauses)
    }

    /// Analysed terms of `text`, each once, weighted by how often it occurs (a repeated
    /// word counts more, as in Anserini's bag-of-words queries).
    pub fn weighted_terms(text: &str) -> Vec<(String, f32)> {
        let mut counts: HashMap<String, f32> = HashMap::new();
        let mut order = Vec::new();
        for t in Self::terms(text) {
            let c = counts.entry(t.clone()).or_insert(0.0);
            if *c == 0.0 {
                order.push(t);
            }
            *c += 1.0;
        }
        order
            .into_iter()
            .map(|t| {
                let w = counts[&t];
                (t, w)
            })
            .collect()
    }

    /// Top `k` chunks for free text: `(chunk id, bm25)`, best first.
    pub fn search(&self, text: &str, k: usize) -> Result<Vec<(u64, f32)>> {
        self.search_weighted(&Self::weighted_terms(text), k)
    }

    /// Document frequency of an analysed term and the number of chunks (for expansion).
    pub fn doc_freq(&self, term: &str) -> Result<(u64, u64)> {
        let searcher = self.reader.searcher();
        let df = searcher.doc_freq(&Term::from_field_text(self.fields.text, term))?;
        Ok((df, searcher.num_docs()))
    }

    /// All chunk ids currently visible (for verification).
    pub fn all_chunk_ids(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for seg in searcher.segment_readers() {
            let col = seg.fast_fields().u64("chunk")?;
            let alive = seg.alive_bitset();
            for d in 0..seg.max_doc() {
                if alive.map(|a| a.is_alive(d)).unwrap_or(true) {
                    if let Some(id) = col.first(d) {
                        out.push(id);
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Pending changes to the lexical index, made visible by [`LexicalWriter::commit`].
pub struct LexicalWriter {
    w: IndexWriter,
    chunk: Field,
    doc: Field,
    text: Field,
    near: Option<Field>,
}

impl LexicalWriter {
    /// Removes every chunk of document `key`.
    pub fn delete_doc(&mut self, key: &str) {
        self.w.delete_term(Term::from_field_text(self.doc, key));
    }

    /// Removes one chunk (to write it again with other neighbours).
    pub fn delete_chunk(&mut self, id: u64) {
        self.w.delete_term(Term::from_field_u64(self.chunk, id));
    }

    /// Adds one chunk: its indexed text and its neighbours' (dropped by an index without
    /// the neighbour field).
    pub fn add_chunk(&mut self, id: u64, doc_key: &str, text: &str, near: &str) -> Result<()> {
        let mut d = TantivyDocument::default();
        d.add_u64(self.chunk, id);
        d.add_text(self.doc, doc_key);
        d.add_text(self.text, text);
        if let (Some(f), false) = (self.near, near.is_empty()) {
            d.add_text(f, near);
        }
        self.w.add_document(d)?;
        Ok(())
    }

    /// Commits with `generation` as payload: the commit point of the whole index.
    pub fn commit(mut self, generation: u64) -> Result<()> {
        let mut prepared = self.w.prepare_commit()?;
        prepared.set_payload(&generation.to_string());
        prepared.commit()?;
        self.w.wait_merging_threads()?;
        Ok(())
    }

    /// Drops pending changes.
    pub fn rollback(mut self) -> Result<()> {
        self.w.rollback()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stemming_stopwords_and_hostile_queries() {
        assert_eq!(LexicalIndex::terms("The Running dogs"), vec!["run", "dog"]);
        let tmp = tempfile::tempdir().unwrap();
        let idx = LexicalIndex::open_or_create(tmp.path()).unwrap();
        let mut w = idx.writer().unwrap();
        w.add_chunk(1, "a", "Dogs are running in the park", "")
            .unwrap();
        w.add_chunk(2, "b", "Cats sleep all day long", "").unwrap();
        w.add_chunk(3, "b", "A dog and a cat", "").unwrap();
        w.commit(1).unwrap();
        idx.reload().unwrap();
        assert_eq!(idx.committed_generation().unwrap(), Some(1));
        let r = idx.search("running dog", 10).unwrap();
        assert_eq!(r[0].0, 1);
        assert_eq!(r.len(), 2);
        for q in ["", "the and of", "((( AND OR NOT \" :", "C++ AND ("] {
            assert!(idx.search(q, 10).is_ok(), "{q}");
        }
        assert!(idx.search("the and of", 10).unwrap().is_empty());
        // Delete by document.
        let mut w = idx.writer().unwrap();
        w.delete_doc("b");
        w.commit(2).unwrap();
        idx.reload().unwrap();
        assert_eq!(idx.all_chunk_ids().unwrap(), vec![1]);
        assert_eq!(idx.committed_generation().unwrap(), Some(2));
    }
}

#[cfg(test)]
mod near_tests {
    use super::*;

    fn add(ix: &LexicalIndex, gen: u64, docs: &[(u64, &str, &str)]) {
        let mut w = ix.writer().unwrap();
        for (id, text, near) in docs {
            w.add_chunk(*id, &format!("d{id}"), text, near).unwrap();
        }
        w.commit(gen).unwrap();
        ix.reload().unwrap();
    }

    #[test]
    fn the_neighbour_field_scores_only_with_its_weight() {
        let dir = tempfile::tempdir().unwrap();
        let ix = LexicalIndex::open_or_create(dir.path()).unwrap();
        assert!(ix.has_near());
        add(
            &ix,
            1,
            &[
                (1, "ocean tides follow the moon", "perigee spring tides"),
                (2, "perigee brings the moon closest", ""),
                (3, "bread rises with yeast", "flour water"),
            ],
        );
        let q = LexicalIndex::weighted_terms("perigee");
        let plain = ix.search_expanded(&q, 10, 0.0).unwrap();
        assert_eq!(plain.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
        let expanded = ix.search_expanded(&q, 10, 0.1).unwrap();
        assert_eq!(expanded.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
        // Own words count in full, a neighbour's at the weight: well below.
        assert!(expanded[1].1 < 0.5 * expanded[0].1, "{expanded:?}");
        // Rewriting one chunk (delete by id, add again) leaves the others alone.
        let mut w = ix.writer().unwrap();
        w.delete_chunk(1);
        w.add_chunk(1, "d1", "ocean tides follow the moon", "flour")
            .unwrap();
        w.commit(2).unwrap();
        ix.reload().unwrap();
        assert_eq!(ix.all_chunk_ids().unwrap(), vec![1, 2, 3]);
        let again = ix.search_expanded(&q, 10, 0.1).unwrap();
        assert_eq!(again.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn an_index_written_before_the_neighbour_field_opens_and_searches() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The schema as it was: no neighbour field.
            let (schema, _) = schema(false);
            let mmap = tantivy::directory::MmapDirectory::open(dir.path()).unwrap();
            Index::open_or_create(mmap, schema).unwrap();
        }
        let ix = LexicalIndex::open_or_create(dir.path()).unwrap();
        assert!(!ix.has_near());
        add(&ix, 1, &[(7, "perigee tides", "words that are dropped")]);
        let q = LexicalIndex::weighted_terms("perigee dropped");
        let hits = ix.search_expanded(&q, 10, 0.5).unwrap();
        assert_eq!(hits.iter().map(|x| x.0).collect::<Vec<_>>(), vec![7]);
        assert!(ix
            .search_expanded(&LexicalIndex::weighted_terms("dropped"), 10, 0.5)
            .unwrap()
            .is_empty());
    }
}
