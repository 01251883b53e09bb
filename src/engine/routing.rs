//! The engine's side of routing ([`crate::route`]): each collection's centroid, and a
//! search that asks the route first.
//!
//! Not for: the decision itself ([`crate::route::decide`]).

use std::collections::HashMap;

use super::{Engine, SearchOutput, SearchRequest};
use crate::error::Result;
use crate::filter::{Filter, Scalar};
use crate::route::{decide, Decision, Route, RouteConfig};

impl Engine {
    /// Each collection's centroid: the normalised mean of its chunks' vectors, computed
    /// once per open generation (one pass over the vectors).
    pub(crate) fn centroids(&self) -> Result<&Vec<(String, Vec<f32>)>> {
        if let Some(c) = self.centroids.get() {
            return Ok(c);
        }
        let dim = self.spec.dim;
        let meta = self.doc_meta()?;
        let mut sums: HashMap<&str, Vec<f32>> = HashMap::new();
        for d in self.documents()? {
            let c = meta.get(&d.key).map_or("", |m| m.collection.as_str());
            let sum = sums.entry(c).or_insert_with(|| vec![0.0; dim]);
            for id in &d.chunks {
                if let Some(pos) = self.segs.position(*id) {
                    for (s, v) in sum.iter_mut().zip(self.segs.row(pos)) {
                        *s += v;
                    }
                }
            }
        }
        let mut out: Vec<(String, Vec<f32>)> = sums
            .into_iter()
            .map(|(c, mut v)| {
                crate::embed::normalize(&mut v);
                (c.to_string(), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(self.centroids.get_or_init(|| out))
    }

    /// Runs `req` routed: searches every collection first, decides from that head and the
    /// centroids ([`crate::route::decide`]), then restricts the search to one collection or
    /// boosts it when confident. The route taken comes back with the answer.
    pub fn search_routed(
        &self,
        req: &SearchRequest,
        cfg: &RouteConfig,
    ) -> Result<(SearchOutput, Route)> {
        let first = self.search_detailed(req)?;
        let centroids = self.centroids()?;
        let meta = self.doc_meta()?;
        let collection_of = |name: &str| -> Result<String> {
            // Chunk searches name chunks by id, document searches by key.
            let key = match name.parse::<u64>() {
                Ok(id) if req.granularity == super::Granularity::Chunk => {
                    self.document_of_chunk(id)?.unwrap_or("").to_string()
                }
                _ => name.to_string(),
            };
            Ok(meta
                .get(&key)
                .map_or(String::new(), |m| m.collection.clone()))
        };
        let head: Vec<String> = first
            .ranked
            .iter()
            .take(cfg.head)
            .map(|(n, _)| collection_of(n))
            .collect::<Result<_>>()?;
        let head: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
        let q = if centroids.len() >= 2 {
            self.embedder()?.embed_query(&req.query)?
        } else {
            Vec::new()
        };
        let cos: Vec<(String, f32)> = centroids
            .iter()
            .map(|(c, v)| (c.clone(), crate::embed::dot(&q, v)))
            .collect();
        // What the user says each collection holds, when every one says something.
        let described: HashMap<&str, &str> = self
            .manifest
            .collections
            .iter()
            .filter(|c| !c.description.trim().is_empty())
            .map(|c| (c.name.as_str(), c.description.as_str()))
            .collect();
        let descriptions: Vec<Option<f32>> =
            if !q.is_empty() && cos.iter().all(|(c, _)| described.contains_key(c.as_str())) {
                let texts: Vec<&str> = cos.iter().map(|(c, _)| described[c.as_str()]).collect();
                let e = self.embedder()?;
                let v = e.embed_passages(&texts)?;
                v.chunks(e.dim())
                    .map(|d| Some(crate::embed::dot(&q, d)))
                    .collect()
            } else {
                Vec::new()
            };
        let (decision, route) = decide(&head, &cos, &descriptions, cfg);
        let out = match decision {
            Decision::All => first,
            Decision::Restrict(c) => {
                let mut r = req.clone();
                r.filter = Filter::both(
                    r.filter.take(),
                    Some(Filter::Eq {
                        field: "collection".into(),
                        value: Scalar::Text(c),
                    }),
                );
                self.search_detailed(&r)?
            }
            Decision::Boost(c) if c.is_empty() => first,
            Decision::Boost(c) => {
                let mut r = req.clone();
                r.pipeline.rules.boosts.push((format!("{c}/**"), cfg.boost));
                self.search_detailed(&r)?
            }
        };
        Ok((out, route))
    }
}
