//! The engine's side of collections and filters: each document's metadata, syncing a named
//! collection, and the set of chunks a filter lets through.
//!
//! Not for: what a collection or a filter is ([`crate::collection`], [`crate::filter`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{Engine, IndexReport};
use crate::collection::{self, CollectionInfo, DocMeta};
use crate::error::{Error, Result};
use crate::filter::{DocFacts, Filter};

/// The chunks a filter lets through, for the legs to search within.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    /// Chunk ids that pass (shared with the lexical leg's collector).
    pub(crate) ids: std::sync::Arc<HashSet<u64>>,
    /// Documents that pass.
    pub(crate) documents: usize,
}

/// A collection's figures for `stats` and `list_collections`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CollectionStats {
    /// Name (`""`: the unnamed collection).
    pub name: String,
    /// The folder it mirrors (empty when an index from before collections did not record it).
    pub root: String,
    /// What it holds, in the user's words.
    pub description: String,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
}

impl Engine {
    /// The open generation's document metadata (empty for an index written before it
    /// existed: every document in the unnamed collection).
    pub(crate) fn doc_meta(&self) -> Result<&HashMap<String, DocMeta>> {
        if let Some(m) = self.meta.get() {
            return Ok(m);
        }
        let m = match &self.meta_file {
            Some(f) => super::tables::read_meta(f)?,
            None => HashMap::new(),
        };
        Ok(self.meta.get_or_init(|| m))
    }

    /// The collection each document belongs to.
    fn collection_of<'a>(&'a self, key: &str) -> Result<&'a str> {
        Ok(self
            .doc_meta()?
            .get(key)
            .map_or("", |m| m.collection.as_str()))
    }

    /// The index's collections with their figures. An index that mirrors one folder lists
    /// one unnamed collection.
    pub fn collections(&self) -> Result<Vec<CollectionStats>> {
        let mut out: Vec<CollectionStats> = self
            .manifest
            .collections
            .iter()
            .map(|c| CollectionStats {
                name: c.name.clone(),
                root: c.root.clone(),
                description: c.description.clone(),
                documents: 0,
                chunks: 0,
            })
            .collect();
        for d in self.documents()? {
            let name = self.collection_of(&d.key)?;
            let i = match out.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    out.push(CollectionStats {
                        name: name.to_string(),
                        root: String::new(),
                        description: String::new(),
                        documents: 0,
                        chunks: 0,
                    });
                    out.len() - 1
                }
            };
            out[i].documents += 1;
            out[i].chunks += d.chunks.len() as u64;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Syncs the named collection `name` with the folder `root`: as
    /// [`Engine::add_folder`], but its documents are keyed `name/path` and only they are
    /// added, changed or removed. `description` (when not empty) says what it holds.
    pub fn add_collection(
        &mut self,
        name: &str,
        root: impl AsRef<Path>,
        description: &str,
    ) -> Result<IndexReport> {
        self.require_writer()?;
        collection::check_name(name)?;
        let root = root.as_ref();
        // Keys of the unnamed collection that would be read as this collection's.
        let prefix = format!("{name}/");
        for d in self.documents()? {
            if d.key.starts_with(&prefix) && !d.external && self.collection_of(&d.key)?.is_empty() {
                return Err(Error::invalid(
                    "collection",
                    format!(
                        "{name:?} would mix with the folder {name}/ of this index's unnamed collection ({}); index the folders as named collections in a new index, or pick another name",
                        d.key
                    ),
                ));
            }
        }
        self.record_collection(name, root, description);
        self.sync_folder(root, name)
    }

    /// Stages a document given by a program into collection `name` (keyed `name/id`, as
    /// a folder's files are): the library's way to build a collection of records that are
    /// not files. The collection is recorded without a folder (so `--rebuild` refuses to drop
    /// it); like `add_document`'s, these documents are never removed by a folder sync.
    pub fn add_document_in(&mut self, name: &str, id: &str, title: &str, text: &str) -> Result<()> {
        collection::check_name(name)?;
        let key = collection::key_for(name, id);
        self.add_document(&key, title, text)?;
        if let Some(d) = self.staged.upserts.last_mut() {
            d.collection = name.to_string();
        }
        if !self.manifest.collections.iter().any(|c| c.name == name) {
            self.insert_collection(name, String::new(), "");
        }
        Ok(())
    }

    /// Sets the description of collection `name` (recorded by the next commit).
    pub fn describe_collection(&mut self, name: &str, description: &str) -> Result<()> {
        self.require_writer()?;
        let c = self
            .collection_mut(name)
            .ok_or_else(|| not_a_collection(name))?;
        c.description = description.to_string();
        Ok(())
    }

    /// Stages the removal of every document of collection `name` and forgets it; the next
    /// commit removes them. Returns how many documents go.
    pub fn remove_collection(&mut self, name: &str) -> Result<usize> {
        self.require_writer()?;
        let keys: Vec<String> = self
            .documents()?
            .iter()
            .filter(|d| self.collection_of(&d.key).is_ok_and(|c| c == name))
            .map(|d| d.key.clone())
            .collect();
        let known = self.manifest.collections.iter().any(|c| c.name == name);
        if keys.is_empty() && !known {
            return Err(not_a_collection(name));
        }
        for k in &keys {
            self.remove_document(k)?;
        }
        self.manifest.collections.retain(|c| c.name != name);
        Ok(keys.len())
    }

    /// Records (or updates) a collection in the manifest written by the next commit.
    pub(super) fn record_collection(&mut self, name: &str, root: &Path, description: &str) {
        let root = std::fs::canonicalize(root)
            .unwrap_or_else(|_| root.to_path_buf())
            .to_string_lossy()
            .to_string();
        match self.collection_mut(name) {
            Some(c) => {
                c.root = root;
                if !description.is_empty() {
                    c.description = description.to_string();
                }
            }
            None => self.insert_collection(name, root, description),
        }
    }

    /// The manifest's entry of collection `name`.
    fn collection_mut(&mut self, name: &str) -> Option<&mut CollectionInfo> {
        self.manifest
            .collections
            .iter_mut()
            .find(|c| c.name == name)
    }

    /// Adds a collection to the manifest, keeping the list sorted by name.
    fn insert_collection(&mut self, name: &str, root: String, description: &str) {
        self.manifest.collections.push(CollectionInfo {
            name: name.to_string(),
            root,
            description: description.to_string(),
        });
        self.manifest
            .collections
            .sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The chunks `filter` lets through (`None`: no filter, everything passes).
    pub(crate) fn allowed(&self, filter: Option<&Filter>) -> Result<Option<Allowed>> {
        let Some(f) = filter else { return Ok(None) };
        let p = f.compile()?;
        let meta = self.doc_meta()?;
        let mut ids = HashSet::new();
        let mut documents = 0;
        for d in self.documents()? {
            let m = meta.get(&d.key);
            let c = m.map_or("", |m| m.collection.as_str());
            let facts = DocFacts {
                collection: c,
                key: &d.key,
                rel: collection::rel_of(c, &d.key),
                title: &d.title,
                size: d.size,
                mtime_ns: d.mtime,
                meta: m.map(|m| &m.fields),
            };
            if p.matches(&facts) {
                documents += 1;
                ids.extend(d.chunks.iter().copied());
            }
        }
        Ok(Some(Allowed {
            ids: std::sync::Arc::new(ids),
            documents,
        }))
    }
}

/// The error for a collection name the index does not have.
fn not_a_collection(name: &str) -> Error {
    Error::invalid(
        "collection",
        format!("{name:?} is not a collection of this index"),
    )
}
