//! The MCP server (`pinpoint mcp`): the index as tools an AI agent calls (Claude Code,
//! Claude Desktop, Cursor), over the Model Context Protocol's stdio transport, one JSON-RPC
//! message per line on stdout, logs on stderr, done when stdin closes.
//!
//! Built on the official Rust SDK (`rmcp`). Tools, each with an input and an output JSON
//! Schema and marked read-only; an argument a tool does not know is an error naming it (an
//! agent's misspelt `max_token` must not silently change nothing):
//! - `search`: a question, answered as `pinpoint query --json` answers it (the same hits);
//! - `get`: a file's passage by location (`path`, `start`, `end`: lines, or pages, slides,
//!   cells for packaged formats), at most [`MAX_GET_BYTES`];
//! - `status`: what the index holds.
//!
//! The server follows the index ([`crate::follow`]): after `pinpoint index` or `watch`
//! commits, the next call sees the new generation. The same tools answer over MCP's
//! Streamable HTTP transport at `pinpoint serve`'s `/mcp` ([`http`]).
//!
//! Not for: the question's options and answer shape ([`crate::api`], shared with `query
//! --json` and `serve`); writing to the index.

use std::path::PathBuf;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerInfo};
use rmcp::{tool, tool_handler, tool_router, Json, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{kind_of, Answer, QueryOptions};
use crate::engine::EngineConfig;
use crate::error::{Error, Result};
use crate::follow::Follower;

pub mod http;

/// Most bytes of text `get` hands back at once; a longer range is cut at a passage
/// boundary and the answer says where it stopped.
pub const MAX_GET_BYTES: usize = 64 * 1024;

/// A number sent as a JSON number or as a string of digits: some clients (the MCP
/// Inspector's command line among them) send every argument as a string.
fn number<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText<T> {
        Number(T),
        Text(String),
    }
    match Option::<NumberOrText<T>>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrText::Number(n)) => Ok(Some(n)),
        Some(NumberOrText::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

/// A flag sent as a JSON boolean or as `"true"` / `"false"` (see [`number`]).
fn flag<'de, D>(d: D) -> std::result::Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FlagOrText {
        Flag(bool),
        Text(String),
    }
    match FlagOrText::deserialize(d)? {
        FlagOrText::Flag(b) => Ok(b),
        FlagOrText::Text(t) => match t.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{t:?} is not true or false"
            ))),
        },
    }
}

/// Arguments of `search`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// The question, in plain words.
    pub query: String,
    /// Passages at most (default 5; the adaptive cut-off may hand over fewer).
    #[serde(default, deserialize_with = "number")]
    pub k: Option<usize>,
    /// `hybrid` (default), `dense` or `lexical`.
    pub mode: Option<String>,
    /// Token budget of all passages together.
    #[serde(default, deserialize_with = "number")]
    pub max_tokens: Option<usize>,
    /// Hand over all `k` passages: no adaptive cut-off.
    #[serde(default, deserialize_with = "flag")]
    pub no_cutoff: bool,
    /// Per passage, each stage's ranks and scores and why it was kept.
    #[serde(default, deserialize_with = "flag")]
    pub explain: bool,
    /// Only these collections (names from `list_collections`; default: all).
    #[serde(default)]
    pub collections: Vec<String>,
    /// Only documents passing this filter, in the `--where` grammar, e.g.
    /// `ext IN (md,rs) AND modified >= 2025-01-01 AND tag:rust AND NOT path:drafts/**`.
    #[serde(default, rename = "where")]
    pub where_: Option<String>,
    /// Only documents passing this filter tree: `{"and": [..]}`, `{"or": [..]}`,
    /// `{"not": ..}`, `{"eq": {"field", "value"}}`, `{"in": {"field", "values"}}`,
    /// `{"range": {"field", "gt"|"gte"|"lt"|"lte"}}`, `{"glob": {"field", "pattern"}}`,
    /// `{"exists": {"field"}}`. Fields: collection, path, ext, kind, modified, size,
    /// title, or a front-matter key (tags, status, date, ...).
    #[serde(default)]
    pub filter: Option<crate::filter::Filter>,
    /// `auto`: send the question to the collection that can answer it (the answer's
    /// `route` says where and why); `off` (default): search what is asked.
    pub route: Option<String>,
}

/// One passage of a `search` answer: the fields of `pinpoint query --json`'s hits.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchHit {
    /// 1-based rank.
    pub rank: usize,
    /// File path relative to the indexed folder (or a program's document id).
    pub path: String,
    /// First location (see `unit`).
    pub line_start: u32,
    /// Last location.
    pub line_end: u32,
    /// What the locations count: line, page, paragraph, slide or cell.
    pub unit: String,
    /// Heading trail.
    pub heading: Option<String>,
    /// Final score.
    pub score: f32,
    /// The passage.
    pub text: String,
    /// Stage-by-stage explanation, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<serde_json::Value>,
}

/// A `search` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchAnswer {
    /// The question as asked.
    pub query: String,
    /// The mode that answered.
    pub mode: String,
    /// Passages, best first.
    pub hits: Vec<SearchHit>,
    /// Why fewer passages than asked came back, when the reason is not the ranking (empty
    /// index, abstention, the index holds no more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The route taken: where a `route: auto` question was sent and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::route::Route>,
}

/// Arguments of `get`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    /// File path as `search` returns it.
    pub path: String,
    /// First location wanted (default: the file's first).
    #[serde(default, deserialize_with = "number")]
    pub start: Option<u32>,
    /// Last location wanted (default: the file's last).
    #[serde(default, deserialize_with = "number")]
    pub end: Option<u32>,
}

/// A `get` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GetAnswer {
    /// The file.
    pub path: String,
    /// First location handed back.
    pub line_start: u32,
    /// Last location handed back.
    pub line_end: u32,
    /// What the locations count.
    pub unit: String,
    /// The text of the indexed passages covering the range, in order, overlaps removed.
    pub text: String,
    /// Whether the range was cut at [`MAX_GET_BYTES`].
    pub truncated: bool,
}

/// Arguments of `status` (none).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

/// Arguments of `list_collections` (none).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCollectionsArgs {}

/// A `list_collections` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CollectionsAnswer {
    /// Each collection: name (empty for the unnamed one), folder, description, documents
    /// and chunks.
    pub collections: Vec<crate::engine::CollectionStats>,
}

/// A `status` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StatusAnswer {
    /// The index folder.
    pub index: String,
    /// Its committed generation.
    pub generation: u64,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// The embedding model.
    pub model: String,
    /// The collections' names (empty string: the unnamed one).
    pub collections: Vec<String>,
}

/// The MCP server over one index folder.
#[derive(Clone)]
pub struct McpServer {
    index: std::sync::Arc<Follower>,
    tool_router: ToolRouter<McpServer>,
}

#[tool_router]
impl McpServer {
    /// A server over the index in `dir` (opened now: a missing index or model fails here).
    pub fn open(dir: impl Into<PathBuf>, cfg: EngineConfig) -> Result<McpServer> {
        let index = Follower::open(dir, cfg)?;
        index.set_log(false);
        Ok(Self::following(std::sync::Arc::new(index)))
    }

    /// A server over an index already followed (by `serve`, which answers MCP at `/mcp`).
    pub fn following(index: std::sync::Arc<Follower>) -> McpServer {
        McpServer {
            index,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Search the indexed documents with a question in plain words; returns a few precise passages (path, location, heading, text), best first.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> std::result::Result<Json<SearchAnswer>, String> {
        self.run_search(args).map(Json).map_err(|e| e.to_string())
    }

    #[tool(
        description = "Read a file's text by location (path as search returns it, start and end lines or pages); bounded in size.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get(
        &self,
        Parameters(args): Parameters<GetArgs>,
    ) -> std::result::Result<Json<GetAnswer>, String> {
        self.run_get(args).map(Json).map_err(|e| e.to_string())
    }

    #[tool(
        description = "The collections (named sources) of the index: name, folder, description, documents and chunks. Pass names to search's `collections`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_collections(
        &self,
        Parameters(_): Parameters<ListCollectionsArgs>,
    ) -> std::result::Result<Json<CollectionsAnswer>, String> {
        let e = self.index.engine();
        e.collections()
            .map(|collections| Json(CollectionsAnswer { collections }))
            .map_err(|e| e.to_string())
    }

    #[tool(
        description = "What the index holds: documents, chunks, model, generation, collections.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn status(
        &self,
        Parameters(_): Parameters<StatusArgs>,
    ) -> std::result::Result<Json<StatusAnswer>, String> {
        Ok(Json(self.run_status()))
    }
}

impl McpServer {
    fn run_status(&self) -> StatusAnswer {
        let e = self.index.engine();
        let m = e.manifest();
        StatusAnswer {
            index: e.dir().display().to_string(),
            generation: m.generation,
            documents: m.counts.documents,
            chunks: m.counts.chunks,
            model: m.model.id.clone(),
            collections: e
                .collections()
                .map(|c| c.into_iter().map(|c| c.name).collect())
                .unwrap_or_default(),
        }
    }

    fn run_search(&self, a: SearchArgs) -> Result<SearchAnswer> {
        let engine = self.index.engine();
        let opts = QueryOptions {
            k: a.k,
            mode: a.mode,
            max_tokens: a.max_tokens,
            no_cutoff: a.no_cutoff,
            explain: a.explain,
            collections: a.collections.clone(),
            where_: a.where_.clone(),
            filter: a.filter.clone(),
            route: a.route.clone(),
            ..Default::default()
        };
        let req = opts.request(&engine, &a.query)?;
        let out = engine.search_detailed(&req)?;
        let answer = Answer::new(&a.query, req.mode, &out);
        let hits = answer
            .hits
            .iter()
            .map(|h| {
                Ok(SearchHit {
                    rank: h.rank,
                    path: h.path.to_string(),
                    line_start: h.line_start,
                    line_end: h.line_end,
                    unit: h.unit.to_string(),
                    heading: h.heading.map(String::from),
                    score: h.score,
                    text: h.text.to_string(),
                    explain: match h.explain {
                        Some(x) => Some(
                            serde_json::to_value(x)
                                .map_err(|e| Error::invalid("explain", e.to_string()))?,
                        ),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchAnswer {
            query: a.query.clone(),
            mode: answer.mode,
            hits,
            note: answer.note.map(String::from),
            route: answer.route.cloned(),
        })
    }

    fn run_get(&self, a: GetArgs) -> Result<GetAnswer> {
        let engine = self.index.engine();
        let doc = engine
            .documents()?
            .iter()
            .find(|d| d.key == a.path)
            .cloned()
            .ok_or_else(|| Error::invalid("path", format!("{:?} is not in the index", a.path)))?;
        let (lo, hi) = (a.start.unwrap_or(1), a.end.unwrap_or(u32::MAX));
        if lo > hi {
            return Err(Error::invalid("start", format!("{lo} is after end {hi}")));
        }
        let store = engine.segments();
        let mut text = String::new();
        let (mut first, mut last, mut covered) = (u32::MAX, 0u32, 0u64);
        let mut truncated = false;
        for id in &doc.chunks {
            let Some(pos) = store.position(*id) else {
                continue;
            };
            let c = store.get(pos)?;
            if c.line_range.1 < lo || c.line_range.0 > hi {
                continue;
            }
            // Chunks overlap (by design): hand over only what the previous did not.
            let mut skip = (covered.saturating_sub(c.byte_range.0) as usize).min(c.text.len());
            while !c.text.is_char_boundary(skip) {
                skip += 1;
            }
            let part = &c.text[skip..];
            if !text.is_empty() && text.len() + part.len() > MAX_GET_BYTES {
                truncated = true;
                break;
            }
            if !text.is_empty() && skip == 0 {
                text.push('\n');
            }
            text.push_str(part);
            covered = covered.max(c.byte_range.1);
            first = first.min(c.line_range.0);
            last = last.max(c.line_range.1);
        }
        if text.is_empty() {
            return Err(Error::invalid(
                "start",
                format!("{} has nothing indexed between {lo} and {hi}", a.path),
            ));
        }
        if text.len() > MAX_GET_BYTES {
            let mut cut = MAX_GET_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            truncated = true;
        }
        Ok(GetAnswer {
            unit: kind_of(&a.path).location_unit().to_string(),
            path: a.path,
            line_start: first,
            line_end: last,
            text,
            truncated,
        })
    }
}

/// What the server says of itself at initialisation.
const INSTRUCTIONS: &str = "Local retrieval over the user's indexed folder: call `search` \
    with a question for a few precise passages, `get` to read more of a file around one.";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pinpoint", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Serves `server` on stdin/stdout until the client closes stdin.
pub fn serve_stdio(server: McpServer) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::invalid("mcp", format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let running = server
            .serve(rmcp::transport::io::stdio())
            .await
            .map_err(|e| Error::invalid("mcp", format!("initialisation failed: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| Error::invalid("mcp", format!("server stopped: {e}")))?;
        Ok(())
    })
}
