//! Writing generations: a commit turns staged changes into the next generation and makes it
//! visible at the one commit point (the protocol is in the parent module's docs); compaction
//! rewrites the current content the same way.
//!
//! Not for: searching, the names of the files it writes (`artifacts.rs`), or removing the
//! files of older generations (`cleanup.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;

use rayon::prelude::*;

use super::artifacts::{self, pending_manifest, MANIFEST};
use super::segment_write::{Codes, SegmentVectors};
use super::{Engine, IndexReport};
use crate::chunk::{chunk_document, contextual_text};
use crate::collection::DocMeta;
use crate::delta::TableDelta;
use crate::error::{Error, IoContext, Result};
use crate::ingest::Document;
use crate::late::PassageCodes;
use crate::near::NeighbourTable;
use crate::segment::{DeadRows, Segment, SegmentMeta, Segments};
use crate::store::{file_sum, sync_dir, ChunkRecord, Counts, DocRecord};

impl Engine {
    /// Applies staged changes as a new generation (see the `engine` module docs for the protocol).
    pub fn commit(&mut self) -> Result<IndexReport> {
        self.require_writer()?;
        let mut report = IndexReport::default();
        let staged = std::mem::take(&mut self.staged);
        // The document table is taken out of the cache rather than copied (a million
        // documents are ~200 MB a copy); `documents()` reads it again if the commit fails.
        self.documents()?;
        let old_docs: Vec<DocRecord> = self.docs.take().unwrap_or_default();
        // The table is ordered by key (`tables::read_docs` orders it, commits keep the
        // order), so a document is found by binary search: a map of a million keys cost
        // more than the rest of a one-file commit.
        let find = |k: &str| -> Option<usize> {
            old_docs.binary_search_by(|d| d.key.as_str().cmp(k)).ok()
        };
        let old_by_key = |k: &str| find(k).map(|i| &old_docs[i]);

        // Last staged version of each key wins.
        let mut upserts: Vec<Document> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for d in staged.upserts {
            match index_of.get(&d.key) {
                Some(&i) => upserts[i] = d,
                None => {
                    index_of.insert(d.key.clone(), upserts.len());
                    upserts.push(d);
                }
            }
        }
        let upsert_keys: HashSet<String> = upserts.iter().map(|d| d.key.clone()).collect();
        let removed: HashSet<String> = staged
            .removes
            .into_iter()
            .filter(|k| find(k).is_some() && !upsert_keys.contains(k))
            .collect();
        if upserts.is_empty() && removed.is_empty() && self.manifest.generation > 0 {
            report.documents_total = old_docs.len();
            report.chunks_total = self.segs.len();
            let _ = self.docs.set(old_docs);
            return Ok(report);
        }

        // Documents that leave (removed or replaced) can donate their chunks to a new
        // document with the same content (a rename).
        let mut donors: HashMap<&str, &DocRecord> = HashMap::new();
        for k in &removed {
            if let Some(d) = old_by_key(k) {
                donors.entry(d.hash.as_str()).or_insert(d);
            }
        }

        enum Plan {
            Keep(DocRecord),
            Fresh(Document),
            Renamed(Document, DocRecord),
        }
        let mut plans: Vec<Plan> = Vec::new();
        // Chunks that leave: those of removed documents and of replaced versions. Rows of
        // the current table that leave it (removed or staged again); the others move over.
        let mut dead: Vec<u64> = Vec::new();
        let mut leaving: Vec<usize> = Vec::new();
        for k in &removed {
            if let Some(i) = find(k) {
                dead.extend(&old_docs[i].chunks);
                leaving.push(i);
            }
        }
        for k in &upsert_keys {
            leaving.extend(find(k));
        }
        leaving.sort_unstable();
        let mut lex_deletes: Vec<String> = removed.iter().cloned().collect();
        // Each staged document's metadata replaces what the index had for its key.
        let mut staged_meta: HashMap<String, DocMeta> = HashMap::new();
        for doc in upserts {
            staged_meta.insert(
                doc.key.clone(),
                DocMeta {
                    collection: doc.collection.clone(),
                    fields: doc.front_matter.clone(),
                },
            );
            match old_by_key(doc.key.as_str()) {
                Some(old) if old.hash == doc.hash => {
                    let mut rec = old.clone();
                    rec.mtime = doc.mtime;
                    rec.size = doc.size;
                    rec.title = doc.title.clone();
                    report.unchanged += 1;
                    plans.push(Plan::Keep(rec));
                }
                Some(old) => {
                    report.updated += 1;
                    dead.extend(&old.chunks);
                    lex_deletes.push(doc.key.clone());
                    plans.push(Plan::Fresh(doc));
                }
                None => match donors.remove(doc.hash.as_str()) {
                    Some(old) => {
                        report.renamed += 1;
                        plans.push(Plan::Renamed(doc, old.clone()));
                    }
                    None => {
                        report.added += 1;
                        plans.push(Plan::Fresh(doc));
                    }
                },
            }
        }
        report.removed = removed.len() - report.renamed.min(removed.len());

        // Chunk fresh documents in parallel.
        let t_chunk = Instant::now();
        let fresh: Vec<&Document> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Fresh(d) => Some(d),
                _ => None,
            })
            .collect();
        let chunking = self.manifest.chunking.clone();
        let need_embed = !fresh.is_empty();
        let embedder = if need_embed {
            Some(self.embedder()?.clone())
        } else {
            None
        };
        self.progress.start("chunking", fresh.len() as u64);
        let drafts: Vec<Vec<crate::chunk::ChunkDraft>> = fresh
            .par_iter()
            .map(|d| {
                let spans = |t: &str| match &embedder {
                    Some(e) => e.token_spans(t),
                    None => crate::embed::whitespace_spans(t),
                };
                let r = chunk_document(d, &spans, &chunking);
                self.progress.inc(1);
                r
            })
            .collect();
        self.progress.finish();
        let chunk_secs = t_chunk.elapsed().as_secs_f64();

        // Assign ids and build records; old chunks keep their ids (and rows).
        let mut next_id = self.manifest.next_chunk_id;
        let mut records: Vec<ChunkRecord> = Vec::new();
        // The key of the text each record's vector was computed from (`TextKeys`).
        let mut keys: Vec<u64> = Vec::new();
        let mut rows_from_old: Vec<Option<usize>> = Vec::new();
        let mut embed_texts: Vec<String> = Vec::new();
        // Per record: which embedded text gives its vector (`None`: a row of the current
        // generation does, `rows_from_old`), and how many records use each text.
        let mut embed_of: Vec<Option<usize>> = Vec::new();
        let mut uses: Vec<usize> = Vec::new();
        // Each distinct chunk is embedded once: the text the model reads (title, heading
        // trail, text), hashed, finds a chunk of the current generation or of this commit
        // that has it (a copied or moved file, a page repeated in another).
        let indexes = if fresh.is_empty() {
            Vec::new()
        } else {
            self.text_indexes(
                &|k| old_by_key(k).map_or(String::new(), |d| d.title.clone()),
                true,
            )?
        };
        let existing = |key: u64| self.embedded_position(&indexes, key);
        let mut this_commit: HashMap<u64, usize> = HashMap::new();
        let mut new_docs: Vec<DocRecord> = Vec::new();
        // What changed in the document table: written as a delta ([`crate::delta`]).
        let mut docs_delta: TableDelta<String, DocRecord> = TableDelta {
            upserts: Vec::new(),
            removed: removed.iter().cloned().collect(),
        };
        let mut lex_adds: Vec<usize> = Vec::new();
        let mut drafts_iter = drafts.into_iter();
        for plan in plans {
            match plan {
                Plan::Keep(rec) => {
                    docs_delta.upserts.push(rec.clone());
                    new_docs.push(rec);
                }
                Plan::Fresh(doc) => {
                    let ds = drafts_iter.next().unwrap_or_default();
                    let mut ids = Vec::with_capacity(ds.len());
                    for dr in ds {
                        let id = next_id;
                        next_id += 1;
                        ids.push(id);
                        let text = contextual_text(&doc.title, dr.heading.as_deref(), &dr.text);
                        let key = text_key(&text);
                        let (from_old, from_new) = match existing(key) {
                            Some(pos) => (Some(pos), None),
                            None => {
                                let k = *this_commit.entry(key).or_insert_with(|| {
                                    embed_texts.push(text);
                                    uses.push(0);
                                    embed_texts.len() - 1
                                });
                                uses[k] += 1;
                                (None, Some(k))
                            }
                        };
                        lex_adds.push(records.len());
                        keys.push(key);
                        records.push(ChunkRecord {
                            id,
                            doc: doc.key.clone(),
                            byte_range: (dr.byte_range.0 as u64, dr.byte_range.1 as u64),
                            line_range: dr.line_range,
                            heading: dr.heading,
                            text: dr.text,
                        });
                        rows_from_old.push(from_old);
                        embed_of.push(from_new);
                    }
                    let rec = doc_record(doc, ids, &staged.external);
                    docs_delta.upserts.push(rec.clone());
                    new_docs.push(rec);
                }
                Plan::Renamed(doc, old) => {
                    let mut ids = Vec::new();
                    for oid in &old.chunks {
                        if let Some(pos) = self.segs.position(*oid) {
                            let mut r = self.segs.get(pos)?;
                            let id = next_id;
                            next_id += 1;
                            ids.push(id);
                            r.id = id;
                            r.doc = doc.key.clone();
                            lex_adds.push(records.len());
                            // Its vector was computed under the old title.
                            keys.push(text_key(&contextual_text(
                                &old.title,
                                r.heading.as_deref(),
                                &r.text,
                            )));
                            records.push(r);
                            rows_from_old.push(Some(pos));
                            embed_of.push(None);
                        }
                    }
                    let rec = doc_record(doc, ids, &staged.external);
                    docs_delta.upserts.push(rec.clone());
                    new_docs.push(rec);
                }
            }
        }
        // Embed new chunks.
        let t_embed = Instant::now();
        let dim = self.spec.dim;
        let mut new_vecs = vec![0f32; embed_texts.len() * dim];
        let want_codes = self.manifest.token_codes;
        let coder = self.passage_coder();
        let mut new_codes: Vec<PassageCodes> = vec![PassageCodes::default(); embed_texts.len()];
        if let Some(e) = &embedder {
            self.progress.start("embedding", embed_texts.len() as u64);
            let in_checkpoint = embed_texts.len() as u64;
            let mut done = 0u64;
            self.report_run(in_checkpoint, done);
            // Small parts keep the progress bar moving; forward batches inside are smaller still.
            let batch = 64;
            // Sort by length globally so each slice of the work is length-homogeneous.
            let mut order: Vec<usize> = (0..embed_texts.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(embed_texts[i].len()));
            for part in order.chunks(batch) {
                let texts: Vec<&str> = part.iter().map(|&i| embed_texts[i].as_str()).collect();
                let v = if want_codes {
                    // Vectors and token codes from one forward pass over the passage text.
                    let prefix = &e.spec().passage_prefix;
                    let full: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
                    let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
                    let (v, toks) = e.embed_with_tokens(&refs)?;
                    let codes: Vec<PassageCodes> = full
                        .par_iter()
                        .zip(&toks)
                        .map(|(t, m)| coder.code(t, &e.token_spans(t), m))
                        .collect();
                    for (&i, c) in part.iter().zip(codes) {
                        new_codes[i] = c;
                    }
                    v
                } else {
                    e.embed_passages(&texts)?
                };
                for (j, &i) in part.iter().enumerate() {
                    new_vecs[i * dim..(i + 1) * dim].copy_from_slice(&v[j * dim..(j + 1) * dim]);
                }
                self.progress.inc(part.len() as u64);
                done += part.len() as u64;
                self.report_run(in_checkpoint, done);
            }
            self.progress.finish();
        }
        let (mut new_codes, book) = self.share_codes(new_codes);
        self.borrow_codes(&records, &embed_of, &uses, &mut new_codes, &book);
        report.chunks_embedded = embed_texts.len();
        report.chunks_reused = rows_from_old.iter().filter(|r| r.is_some()).count()
            + uses.iter().map(|u| u - 1).sum::<usize>();
        let embed_secs = t_embed.elapsed().as_secs_f64();

        // The new segment: this commit's chunks (ids ascending), their vectors and codes.
        let mut seg_vecs = Vec::with_capacity(records.len() * dim);
        let mut seg_codes: Vec<Codes> = Vec::new();
        for (slot, rec) in records.iter().enumerate() {
            match (rows_from_old[slot], embed_of[slot]) {
                (Some(pos), _) => {
                    seg_vecs.extend_from_slice(self.segs.row(pos));
                    if want_codes {
                        seg_codes.push(Codes::Old(pos));
                    }
                }
                (None, Some(k)) => {
                    seg_vecs.extend_from_slice(&new_vecs[k * dim..(k + 1) * dim]);
                    if want_codes {
                        // The last record to use a text takes its codes; the others copy.
                        uses[k] -= 1;
                        let codes = if uses[k] == 0 {
                            std::mem::take(&mut new_codes[k])
                        } else {
                            new_codes[k].clone()
                        };
                        seg_codes.push(Codes::New {
                            codes,
                            book: book.clone(),
                        });
                    }
                }
                (None, None) => {
                    return Err(Error::invalid(
                        "commit",
                        format!("chunk {} has neither a vector nor a text to embed", rec.id),
                    ))
                }
            }
        }
        // A map of the documents this commit changed (every new chunk's is one), not a scan
        // of every document per chunk: a large build was quadratic here.
        let title_of: HashMap<&str, &str> = new_docs
            .iter()
            .map(|d| (d.key.as_str(), d.title.as_str()))
            .collect();
        let lex_texts: Vec<(u64, String, String)> = lex_adds
            .iter()
            .map(|&slot| {
                let r = &records[slot];
                let title = title_of.get(r.doc.as_str()).copied().unwrap_or("");
                (
                    r.id,
                    r.doc.clone(),
                    contextual_text(title, r.heading.as_deref(), &r.text),
                )
            })
            .collect();
        new_docs.sort_by(|a, b| a.key.cmp(&b.key));
        drop(indexes);
        // The new table: the current one without the rows that leave, merged in key order
        // with the changed ones.
        let new_docs = merge_docs(old_docs, &leaving, new_docs);
        let meta_delta = TableDelta {
            upserts: staged_meta
                .iter()
                .map(|(k, m)| (k.clone(), m.clone()))
                .collect(),
            removed: docs_delta.removed.clone(),
        };
        // Each staged document's metadata replaces what the index had for its key; the
        // map is taken out of its cache and changed in place, not rebuilt.
        self.doc_meta()?;
        let mut meta = self.meta.take().unwrap_or_default();
        for k in &meta_delta.removed {
            meta.remove(k);
        }
        meta.extend(staged_meta);
        report.documents_total = new_docs.len();
        report.chunks_total = (self.segs.len() + records.len()).saturating_sub(dead.len());
        let t_write = Instant::now();
        let gen = self.manifest.generation + 1;
        self.write_generation(
            gen,
            Generation {
                records,
                keys,
                vecs: seg_vecs,
                codes: seg_codes,
                dead,
                docs: new_docs,
                meta,
                docs_delta,
                meta_delta,
                lex_deletes,
                lex_adds: lex_texts,
                next_chunk_id: next_id,
            },
        )?;
        let write_secs = t_write.elapsed().as_secs_f64();
        // Small segments merge as they accumulate (`merge.rs`), each merge its own commit.
        let t_merge = Instant::now();
        let before = self.manifest.next_segment;
        self.merge_by_policy()?;
        if self.manifest.next_segment != before {
            // A merged segment's text index is built now, from the keys the merge just
            // wrote, rather than by the next one-file commit (0.1 s at a million chunks).
            self.warm_text_indexes()?;
        }
        report.timings = vec![
            ("chunk".into(), chunk_secs),
            ("embed".into(), embed_secs),
            ("write+commit".into(), write_secs),
            ("merge".into(), t_merge.elapsed().as_secs_f64()),
        ];
        Ok(report)
    }

    /// Writes generation `gen` and commits it: a new segment for the new chunks, a
    /// deletion bitset for each older segment that loses chunks, the per-generation tables,
    /// then the manifest. No older segment's file is written again.
    pub(super) fn write_generation(&mut self, gen: u64, data: Generation) -> Result<()> {
        let Generation {
            records,
            keys,
            vecs,
            codes,
            dead,
            docs,
            meta,
            docs_delta,
            meta_delta,
            lex_deletes,
            lex_adds,
            next_chunk_id,
        } = data;
        let first_new_id = self.manifest.next_chunk_id;
        let new_rows = records.len();
        let added: Vec<u64> = records.iter().map(|r| r.id).collect();
        let dim = self.spec.dim;
        let dir = self.dir.clone();
        self.progress.start("write", 0);
        // A large commit's embedding freed gigabytes that the write's own memory would
        // otherwise grow on top of ([`crate::allocator`]).
        if new_rows >= crate::allocator::PURGE_MIN_ROWS {
            crate::allocator::purge();
        }
        // Segment numbers continue past those of an index from before segments (its one
        // segment is number 0).
        let mut next_segment = self.manifest.next_segment.max(1);
        let mut metas = self.segment_metas_after(gen, &dead)?;
        let mut new_segment = None;
        if !records.is_empty() {
            let id = next_segment;
            next_segment += 1;
            let current: Vec<SegmentMeta> = self
                .segs
                .segments()
                .iter()
                .map(|s| s.meta().clone())
                .collect();
            let fold = super::merge::fold_target(
                &current,
                &metas,
                new_rows as u64,
                self.cfg.hnsw.min_points,
            )
            .filter(|_| self.manifest.segmented);
            let (meta, seg) = match fold {
                // A checkpoint's chunks join the last segment's graph
                // ([`super::merge::FOLD_RATIO`]).
                Some(last) => {
                    let folded = self.write_fold(id, &docs, (records, vecs, codes, keys))?;
                    metas.truncate(last);
                    folded
                }
                None => self.write_segment(
                    id,
                    &records,
                    SegmentVectors::Owned(vecs),
                    &codes,
                    &keys,
                    None,
                )?,
            };
            metas.push(meta);
            new_segment = Some(seg);
        }
        for sub in ["chunks", "dense", "del"] {
            if dir.join(sub).is_dir() {
                sync_dir(&dir.join(sub))?;
            }
        }
        // The next generation's segments: older ones reopened with their new deletions
        // (their files are mapped, not read), the new one as written.
        let mut segs: Vec<Segment> = Vec::with_capacity(metas.len());
        let mut fresh = new_segment;
        for m in &metas {
            match fresh.take() {
                Some(seg) if seg.meta().id == m.id => segs.push(seg),
                other => {
                    fresh = other;
                    segs.push(Segment::open(&dir, m, self.manifest.dims(), false)?);
                }
            }
        }
        let segs = Segments::new(segs, dim);

        // Document expansion: the neighbour table of this generation, and the kept chunks
        // whose lexical entry must be written again because their neighbours changed.
        let mut near_text: HashMap<u64, String> = HashMap::new();
        let mut rewrites: Vec<(u64, String, String)> = Vec::new();
        let k = self.manifest.neighbours;
        let expand = k > 0 && self.lexical.has_near();
        let mut near_table = None;
        let mut near_delta = TableDelta::default();
        if expand {
            self.progress.start("neighbours", 0);
            if new_rows >= crate::allocator::PURGE_MIN_ROWS {
                crate::allocator::purge();
            }
            let old = self.previous_neighbours()?;
            let rows = segs.len();
            // A document by key: the table is ordered by key.
            let doc_at = |key: &str| docs.binary_search_by(|d| d.key.as_str().cmp(key)).ok();
            // Each row's document, to keep a document's own chunks out of its lists: a
            // table of every row when much of the index is new (a build), else read for the
            // rows the update looks at (a one-file commit looks at a few dozen).
            let full = new_rows * 20 >= rows;
            let mut doc_table = Vec::new();
            if full {
                doc_table = vec![u32::MAX; rows];
                for (i, d) in docs.iter().enumerate() {
                    for c in &d.chunks {
                        if let Some(p) = segs.position(*c) {
                            doc_table[p] = i as u32;
                        }
                    }
                }
            }
            let memo: std::cell::RefCell<HashMap<usize, u32>> = Default::default();
            let doc_of = |p: usize| -> u32 {
                if full {
                    return doc_table.get(p).copied().unwrap_or(u32::MAX);
                }
                if let Some(&d) = memo.borrow().get(&p) {
                    return d;
                }
                let d = segs
                    .get(p)
                    .ok()
                    .and_then(|r| doc_at(&r.doc))
                    .map_or(u32::MAX, |i| i as u32);
                memo.borrow_mut().insert(p, d);
                d
            };
            // Graphs load before the search, so that the search itself cannot fail.
            segs.load_graphs()?;
            let ef = crate::near::SEARCH_EF.min(self.cfg.hnsw.ef_search);
            let search = |rows: &[usize], m: usize| {
                segs.neighbours(rows, m, ef)
                    .unwrap_or_else(|_| vec![Vec::new(); rows.len()])
            };
            // The rows changed by the dead chunks leaving and the new ones arriving at the
            // end; a table that does not line up with the segments is aligned row by row.
            let id_at = |p: usize| segs.id_at(p);
            let change = crate::near::Change {
                dead: &dead,
                added: &added,
                rows,
                id_at: &id_at,
            };
            let up = match crate::near::update_delta(k, &change, &doc_of, old, &search) {
                Ok(up) => up,
                Err(old) => {
                    let mut ids: Vec<u64> = Vec::with_capacity(rows);
                    for seg in segs.segments() {
                        ids.extend((0..seg.live()).map(|i| seg.store().id_at(seg.live_row(i))));
                    }
                    crate::near::update(k, &ids, &doc_of, old, &search)
                }
            };
            let ids = &up.table.ids;
            let text_of = |id: u64| -> Result<Option<(String, String)>> {
                let Some(p) = segs.position(id) else {
                    return Ok(None);
                };
                let r = segs.get(p)?;
                let title = doc_at(&r.doc)
                    .and_then(|i| docs.get(i))
                    .map_or("", |d| d.title.as_str());
                let text = contextual_text(title, r.heading.as_deref(), &r.text);
                Ok(Some((r.doc, text)))
            };
            let adds: HashSet<u64> = lex_adds.iter().map(|a| a.0).collect();
            for &p in &up.changed {
                let mut text = Vec::new();
                for &(nb, _) in &up.table.lists[p] {
                    if let Some((_, t)) = text_of(nb)? {
                        text.push(t);
                    }
                }
                near_text.insert(ids[p], text.join("\n"));
                if !adds.contains(&ids[p]) {
                    if let Some((doc, own)) = text_of(ids[p])? {
                        rewrites.push((ids[p], doc, own));
                    }
                }
            }
            near_delta = TableDelta {
                upserts: up
                    .changed
                    .iter()
                    .map(|&p| (ids[p], up.table.lists[p].clone()))
                    .collect(),
                removed: dead.clone(),
            };
            near_table = Some(up.table);
            // The search read every segment's vectors: they need not stay resident.
            segs.release_pages();
            self.progress.finish();
        }

        self.progress.start("tables", 0);
        // The tables: a delta on the current chain, or a new base ([`super::tables`]).
        // Every generation this code writes keeps the metadata table, an index from before
        // it included (its documents: the unnamed collection, no front matter yet).
        let mut next = self.manifest.clone();
        let current = match (&self.docs_file, &self.meta_file) {
            (Some(d), Some(m)) if self.manifest.segmented && self.manifest.generation > 0 => {
                Some((&self.manifest, [d, m], self.near_file.as_ref()))
            }
            _ => None,
        };
        super::tables::write(
            &dir,
            gen,
            current,
            super::tables::TableChanges {
                docs: &docs,
                meta: &meta,
                near: near_table.as_ref(),
                docs_delta,
                meta_delta,
                near_delta,
            },
            &mut next,
        )?;

        next.generation = gen;
        next.model = self.spec.clone();
        next.counts = Counts {
            documents: docs.len() as u64,
            chunks: segs.len() as u64,
        };
        next.doc_meta = true;
        next.segments = metas;
        next.next_segment = next_segment;
        next.next_chunk_id = next_chunk_id.max(first_new_id);
        let pending = self.write_pending(&mut next)?;

        // The commit point.
        self.progress.start("commit", 0);
        let mut w = self.lexical.writer()?;
        for k in &lex_deletes {
            w.delete_doc(k);
        }
        for (id, doc, text) in &lex_adds {
            let near = near_text.get(id).map_or("", |s| s.as_str());
            w.add_chunk(*id, doc, text, near)?;
        }
        for (id, doc, text) in &rewrites {
            // A kept chunk: its own text is unchanged, its neighbours' are not.
            let near = near_text.get(id).map_or("", |s| s.as_str());
            w.delete_chunk(*id);
            w.add_chunk(*id, doc, text, near)?;
        }
        w.commit(gen)?;

        self.progress.start("publish", 0);
        std::fs::rename(&pending, dir.join(MANIFEST)).at(dir.join(MANIFEST))?;
        sync_dir(&dir)?;
        self.lexical.reload()?;
        self.segs = segs;
        self.manifest = next;
        self.docs = OnceLock::new();
        self.near = OnceLock::new();
        self.pin_tables()?;
        if let Some(t) = near_table {
            let _ = self.near.set(Some(t));
        }
        self.doc_index = OnceLock::new();
        let _ = self.docs.set(docs);
        self.meta = OnceLock::new();
        let _ = self.meta.set(meta);
        self.centroids = OnceLock::new();
        self.remove_stray_files(true)?;
        self.progress.finish();
        Ok(())
    }

    /// The current segments as the next generation `gen` lists them: each one that loses
    /// chunks in `dead` with a new deletion bitset (written here), one that loses all of
    /// them left out.
    fn segment_metas_after(&self, gen: u64, dead: &[u64]) -> Result<Vec<SegmentMeta>> {
        let mut by_segment: Vec<Vec<usize>> = vec![Vec::new(); self.segs.segments().len()];
        for &id in dead {
            if let Some(p) = self.segs.position(id) {
                if let Some((s, row)) = self.segs.locate(p) {
                    by_segment[s].push(row);
                }
            }
        }
        let mut metas = Vec::with_capacity(by_segment.len());
        for (seg, rows) in self.segs.segments().iter().zip(by_segment) {
            let mut m = seg.meta().clone();
            if !rows.is_empty() {
                let mut d = seg
                    .dead()
                    .cloned()
                    .unwrap_or_else(|| DeadRows::new(seg.store().len()));
                for r in rows {
                    d.set(r);
                }
                m.deleted = d.count() as u64;
                if m.live() == 0 {
                    continue;
                }
                let f = crate::segment::deletes_file(m.id, gen);
                d.write(&self.dir.join(&f))?;
                m.deletes = Some(f);
            }
            metas.push(m);
        }
        Ok(metas)
    }

    /// Completes `next` (a segmented manifest of the next generation, its segments set) with
    /// the file lists and checksums, and writes it as the pending manifest (fsynced): the
    /// last step before a commit point, shared by commits and merges.
    pub(super) fn write_pending(
        &self,
        next: &mut crate::store::Manifest,
    ) -> Result<std::path::PathBuf> {
        next.segmented = true;
        next.hnsw = None;
        next.previous_files = artifacts::generation_files(&self.manifest, self.lexical.has_near());
        next.files = self.checksums(&artifacts::generation_files(next, self.lexical.has_near()))?;
        let pending = self.dir.join(pending_manifest(next.generation));
        next.write_to(&pending)?;
        sync_dir(&self.dir)?;
        Ok(pending)
    }

    /// Checksums of `files`: carried over from the current manifest for the files of its
    /// segments (a segment's files never change after they are written), computed for the
    /// others (new files, and the per-generation tables).
    pub(super) fn checksums(&self, files: &[String]) -> Result<Vec<crate::store::FileSum>> {
        let old: HashSet<String> = artifacts::segments_of(&self.manifest)
            .iter()
            .flat_map(|s| s.files())
            .collect();
        let known: HashMap<&str, &crate::store::FileSum> = self
            .manifest
            .files
            .iter()
            .filter(|f| old.contains(&f.path))
            .map(|f| (f.path.as_str(), f))
            .collect();
        files
            .iter()
            .map(|f| match known.get(f.as_str()) {
                Some(s) => Ok((*s).clone()),
                None => file_sum(&self.dir, f),
            })
            .collect()
    }

    /// Builds the text index of each segment that has text keys and none cached yet.
    pub(super) fn warm_text_indexes(&self) -> Result<()> {
        self.text_indexes(&|_| String::new(), false).map(|_| ())
    }
}

impl Engine {
    /// For each current segment, the key of the text the model read for each of its chunks
    /// with the chunk's row, ordered by key: what a new chunk with the same text reuses.
    /// Kept per segment id across commits (a segment's rows never change), so a commit
    /// builds it only for segments it has not seen; a map of every chunk's key, rebuilt
    /// by each commit, cost a million-chunk index 0.1 s a commit. `title` gives a document's
    /// title, for a segment from before text keys, whose chunks are read; without
    /// `legacy`, such a segment is left out (of the cache and of the answer).
    fn text_indexes(
        &self,
        title: &dyn Fn(&str) -> String,
        legacy: bool,
    ) -> Result<Vec<Arc<TextIndex>>> {
        let mut cache = self.text_index.lock().map_err(|_| {
            Error::invalid("commit", "a commit failed while it held the text index")
        })?;
        let mut out = Vec::with_capacity(self.segs.segments().len());
        for seg in self.segs.segments() {
            let id = seg.meta().id;
            if let Some(ix) = cache.get(&id) {
                out.push(ix.clone());
                continue;
            }
            let keys = match seg.text_keys(&self.dir)? {
                Some(k) => k,
                None if !legacy => continue,
                None => (0..seg.store().len())
                    .map(|row| {
                        let r = seg.store().get(row)?;
                        let t = title(r.doc.as_str());
                        Ok(text_key(&contextual_text(
                            &t,
                            r.heading.as_deref(),
                            &r.text,
                        )))
                    })
                    .collect::<Result<Vec<u64>>>()?,
            };
            let mut ix: Vec<(u64, u32)> = keys
                .into_iter()
                .enumerate()
                .map(|(r, k)| (k, r as u32))
                .collect();
            ix.sort_unstable();
            let ix = Arc::new(ix);
            cache.insert(id, ix.clone());
            out.push(ix);
        }
        let ids: HashSet<u64> = self.segs.segments().iter().map(|s| s.meta().id).collect();
        cache.retain(|id, _| ids.contains(id));
        Ok(out)
    }

    /// The position of the first live chunk of the current generation whose vector was
    /// computed from the text with `key` (`indexes` from [`Engine::text_indexes`]).
    fn embedded_position(&self, indexes: &[Arc<TextIndex>], key: u64) -> Option<usize> {
        for (si, (seg, ix)) in self.segs.segments().iter().zip(indexes).enumerate() {
            let start = ix.partition_point(|x| x.0 < key);
            for &(k, row) in &ix[start..] {
                if k != key {
                    break;
                }
                if let Some(i) = seg.live_index(row as usize) {
                    return Some(self.segs.base_of(si) + i);
                }
            }
        }
        None
    }

    /// The current generation's neighbour table; empty when it has none (a new index, or
    /// one that had no expansion), so that every chunk gets its list computed.
    fn previous_neighbours(&mut self) -> Result<NeighbourTable> {
        if let Some(Some(t)) = self.near.take() {
            return Ok(t);
        }
        match &self.near_file {
            Some(c) if self.manifest.generation > 0 => super::tables::read_near(c),
            _ => Ok(NeighbourTable::default()),
        }
    }
}

/// A segment's chunks' text keys with their rows, ordered by key.
pub(super) type TextIndex = Vec<(u64, u32)>;

/// `old` (ordered by key) without its rows `leaving` (ascending), merged in key order with
/// `changed` (ordered by key).
///
/// A commit of a few documents changes the table in place (a second table of a million rows
/// cost a one-file commit more than the rest of it); a larger one merges into a new table.
fn merge_docs(
    mut old: Vec<DocRecord>,
    leaving: &[usize],
    changed: Vec<DocRecord>,
) -> Vec<DocRecord> {
    if changed.len() + leaving.len() <= 64 {
        crate::delta::remove_rows(&mut old, leaving);
        for c in changed {
            let at = old.partition_point(|d| d.key < c.key);
            old.insert(at, c);
        }
        return old;
    }
    let mut out = Vec::with_capacity(old.len() + changed.len());
    let mut changed = changed.into_iter().peekable();
    let mut leave = leaving.iter().copied().peekable();
    for (i, d) in old.into_iter().enumerate() {
        if leave.peek() == Some(&i) {
            while leave.peek() == Some(&i) {
                leave.next();
            }
            continue;
        }
        while let Some(c) = changed.next_if(|c| c.key < d.key) {
            out.push(c);
        }
        out.push(d);
    }
    out.extend(changed);
    out
}

/// A chunk's identity for reuse: a hash of the text the model reads (title, heading trail
/// and text, [`contextual_text`]). 64 bits of SipHash over texts of one index: a collision
/// would need billions of distinct chunks.
pub(super) fn text_key(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The document-table entry of a staged document with its chunk ids.
fn doc_record(doc: Document, chunks: Vec<u64>, external: &HashSet<String>) -> DocRecord {
    DocRecord {
        external: external.contains(&doc.key),
        key: doc.key,
        title: doc.title,
        hash: doc.hash,
        size: doc.size,
        mtime: doc.mtime,
        chunks,
    }
}

/// Everything a new generation consists of.
#[derive(Default)]
pub(super) struct Generation {
    /// The chunks of the new segment, sorted by id (none: no new segment).
    records: Vec<ChunkRecord>,
    /// The key of the text each one's vector was computed from, same order.
    keys: Vec<u64>,
    /// Their vectors, same order.
    vecs: Vec<f32>,
    /// Their token codes, same order (empty when the index keeps none).
    codes: Vec<Codes>,
    /// Ids of the chunks of the current generation that leave.
    dead: Vec<u64>,
    /// The document table.
    docs: Vec<DocRecord>,
    /// Each document's metadata (a document without an entry has the default).
    meta: HashMap<String, DocMeta>,
    /// The documents this commit adds, changes and removes.
    docs_delta: TableDelta<String, DocRecord>,
    /// Their metadata.
    meta_delta: TableDelta<String, (String, DocMeta)>,
    /// Document keys whose lexical entries go.
    lex_deletes: Vec<String>,
    /// Lexical entries to add: (chunk id, document key, indexed text).
    lex_adds: Vec<(u64, String, String)>,
    /// Next free chunk id after this generation.
    next_chunk_id: u64,
}
