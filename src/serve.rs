//! `pinpoint serve`: the index over local HTTP, for programs that are not written in Rust
//! (an LLM application asking for context, an editor plugin).
//!
//! Why a small synchronous server (`tiny_http`, one thread per worker) rather than an async
//! stack: every request is CPU-bound (one query embedding, two index searches, a rerank),
//! so more concurrency than cores buys nothing, and the async runtime would add a minute to
//! a cold build for no gain. The engine is `Send + Sync` and shared by the workers.
//!
//! The server follows the index: before each request it reads the manifest's generation,
//! and when a writer (`pinpoint index`, `pinpoint watch`) has committed a newer one it opens
//! that one, so answers never lag a sync and never mix two generations. The model is
//! loaded once and kept across reopenings.
//!
//! The API ([`QueryOptions`] in, [`Answer`] out) is the one `pinpoint query --json` prints:
//! - `POST /query` with a JSON body `{"query": "...", "k": 5, ...}` (any [`QueryOptions`]
//!   field); `GET /query?q=...&k=5&explain` the same from a URL.
//! - `GET /health`: generation, documents and chunks. `GET /stats`: what `pinpoint stats
//!   --json` prints. `GET /`: the list of endpoints.
//!
//! Errors are JSON `{"error": "..."}` with a status that says whose fault it is: 400 for a
//! bad question or option, 403 for options that would run a program or read a folder on
//! this machine (`expand_cmd`, `cross_encoder`: a web page can make a browser send requests
//! to a local port), 404/405 for a wrong endpoint or method, 413 for a body over 1 MiB,
//! 415 for a body that is not declared JSON (which also keeps browsers from sending
//! cross-site requests without asking first), 500 for an index that cannot be read.
//!
//! Not for: the request options and answer JSON ([`crate::api`]), which `query --json` shares.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::api::{Answer, QueryOptions};
use crate::engine::EngineConfig;
use crate::error::{Error, Result};
use std::sync::Arc;

use crate::follow::Follower;
use crate::mcp::McpServer;

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How often an idle worker looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// An HTTP server over one index folder. Bind it, then [`Server::run`] it on as many
/// worker threads as wanted; [`Server::stop`] (from any thread, e.g. a Ctrl-C handler) makes
/// `run` return once the requests in flight are answered.
pub struct Server {
    http: tiny_http::Server,
    index: Arc<Follower>,
    /// MCP's Streamable HTTP transport at `/mcp`, over the same followed index.
    mcp: McpServer,
    stop: AtomicBool,
    log: bool,
    /// Options under every request's own (set by whoever started the server).
    defaults: Map<String, Value>,
}

/// An answer: status and JSON body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    /// 200 with `body` serialised as it is (not through a `Value`, whose map would sort
    /// the keys of an [`Answer`] that tools read in order).
    fn ok(body: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec(body) {
            Ok(body) => Reply { status: 200, body },
            Err(e) => Reply::error(500, format!("cannot write the answer: {e}")),
        }
    }

    fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "error": msg.into() }).to_string().into_bytes(),
        }
    }
}

impl Server {
    /// Opens the index in `dir` read-only, loads its model when it holds anything, and
    /// listens on `addr` (e.g. `127.0.0.1:7700`; port 0 picks a free one, see
    /// [`Server::addr`]). Fails here, not on the first request, when the index or the model
    /// cannot be read.
    pub fn bind(addr: &str, dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Server> {
        let index = Arc::new(Follower::open(dir.as_ref(), cfg)?);
        let mcp = McpServer::following(index.clone());
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::invalid("addr", format!("cannot listen on {addr}: {e}")))?;
        no_delay(&listener);
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| Error::invalid("addr", format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            http,
            index,
            mcp,
            stop: AtomicBool::new(false),
            log: true,
            defaults: Map::new(),
        })
    }

    /// Whether to print one line per request on stderr (on by default).
    pub fn set_log(&mut self, on: bool) {
        self.log = on;
        self.index.set_log(on);
    }

    /// Options applied to every request unless it sets them itself. The only way to give
    /// `expand_cmd` and `cross_encoder`, which requests may not carry.
    pub fn set_defaults(&mut self, defaults: &QueryOptions) -> Result<()> {
        match serde_json::to_value(defaults) {
            Ok(Value::Object(m)) => {
                self.defaults = m;
                Ok(())
            }
            _ => Err(Error::invalid("defaults", "not an object")),
        }
    }

    /// The address listened on (with the port chosen when 0 was asked for).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.http.server_addr().to_ip()
    }

    /// The generation being served.
    pub fn generation(&self) -> u64 {
        self.index.current().manifest().generation
    }

    /// Answers requests on `threads` workers until [`Server::stop`].
    pub fn run(&self, threads: usize) {
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| self.work());
            }
        });
    }

    /// Makes [`Server::run`] return after the requests in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn work(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.http.recv_timeout(POLL) {
                Ok(Some(req)) => self.handle(req),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("serve: cannot accept a request: {e}");
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    fn handle(&self, mut req: Request) {
        let t = Instant::now();
        let reply = self.route(&mut req);
        if self.log {
            eprintln!(
                "{} {} {} {:.1} ms",
                req.method(),
                req.url(),
                reply.status,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let mut resp = Response::from_data(reply.body).with_status_code(reply.status);
        if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
            resp = resp.with_header(h);
        }
        if reply.status == 405 {
            let allow: &[u8] = if req.url().starts_with("/query") {
                b"GET, POST"
            } else {
                b"GET"
            };
            if let Ok(h) = Header::from_bytes(&b"Allow"[..], allow) {
                resp = resp.with_header(h);
            }
        }
        // The client may have gone; nothing to do about it.
        let _ = req.respond(resp);
    }

    fn route(&self, req: &mut Request) -> Reply {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        match (req.method(), path) {
            (Method::Get, "/") => Reply::ok(&json!({
                "endpoints": {
                    "POST /query": "JSON body {\"query\": \"...\", \"k\": 5, ...}: the answer",
                    "GET /query?q=...&k=5": "the same from a URL",
                    "GET /health": "generation, documents and chunks served",
                    "GET /stats": "what `pinpoint stats --json` prints",
                    "POST /mcp": "the MCP server (Streamable HTTP): tools search, get, status",
                }
            })),
            (Method::Get, "/health") => {
                let e = self.index.engine();
                let m = e.manifest();
                Reply::ok(&json!({
                    "status": "ok",
                    "generation": m.generation,
                    "documents": m.counts.documents,
                    "chunks": m.counts.chunks,
                }))
            }
            (Method::Get, "/stats") => match self.index.engine().stats() {
                Ok(s) => Reply::ok(&s),
                Err(e) => Reply::error(500, e.to_string()),
            },
            (Method::Get, "/query") => match params(query) {
                Ok(p) => self.answer(p),
                Err(r) => r,
            },
            (Method::Post, "/query") => match body(req) {
                Ok(p) => self.answer(p),
                Err(r) => r,
            },
            (Method::Post, "/mcp") => {
                let origin = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Origin"))
                    .map(|h| h.value.as_str().to_string());
                match raw_body(req) {
                    Ok(bytes) => {
                        let r = crate::mcp::http::handle(&self.mcp, origin.as_deref(), &bytes);
                        Reply {
                            status: r.status,
                            body: r
                                .body
                                .map(|b| b.to_string().into_bytes())
                                .unwrap_or_default(),
                        }
                    }
                    Err(r) => r,
                }
            }
            (_, "/mcp") => Reply::error(
                405,
                "POST JSON-RPC messages to /mcp; this server opens no event stream",
            ),
            (_, "/" | "/health" | "/stats" | "/query") => {
                Reply::error(405, format!("{} is not allowed on {path}", req.method()))
            }
            _ => Reply::error(
                404,
                format!("no endpoint {path}: use POST /query, GET /query?q=..., /health, /stats"),
            ),
        }
    }

    /// Answers the question in `fields` (`query` or `q`, plus [`QueryOptions`] fields).
    fn answer(&self, mut fields: Map<String, Value>) -> Reply {
        let text = match (fields.remove("query"), fields.remove("q")) {
            (Some(Value::String(t)), None) | (None, Some(Value::String(t))) => t,
            (Some(_), Some(_)) => return Reply::error(400, "give the question once: query or q"),
            (None, None) => return Reply::error(400, "no question: give \"query\""),
            _ => return Reply::error(400, "the question must be a string"),
        };
        for (field, flag, why) in [
            ("expand_cmd", "--expand-cmd CMD", "runs a program"),
            (
                "cross_encoder",
                "--cross-encoder DIR",
                "reads a model folder",
            ),
        ] {
            if fields.contains_key(field) {
                return Reply::error(
                    403,
                    format!(
                        "{field} {why} on this machine and is not taken over HTTP; \
                         start the server with `pinpoint serve {flag}`"
                    ),
                );
            }
        }
        let mut merged = self.defaults.clone();
        if fields.get("no_rerank") == Some(&Value::Bool(true)) {
            // Not reranking wins over the server's reranker.
            merged.remove("cross_encoder");
        }
        merged.extend(fields);
        let opts: QueryOptions = match serde_json::from_value(Value::Object(merged)) {
            Ok(o) => o,
            Err(e) => return Reply::error(400, format!("bad option: {e}")),
        };
        let engine = self.index.engine();
        let result = opts
            .request(&engine, &text)
            .and_then(|r| Ok((engine.search_detailed(&r)?, r.mode)));
        match result {
            Ok((out, mode)) => Reply::ok(&Answer::new(&text, mode, &out)),
            Err(e @ Error::Invalid { .. }) => Reply::error(400, e.to_string()),
            Err(e) => Reply::error(500, e.to_string()),
        }
    }
}

/// Turns off Nagle's algorithm for the connections `l` accepts (Linux copies the option
/// from the listening socket to each accepted one; tiny_http gives no hook on them). The
/// server writes a reply's head and body separately, and with Nagle the body's last segment
/// waits for the client's delayed acknowledgement: measured on SciFact with keep-alive
/// clients, 60 ms per question for 17 ms of work.
#[cfg(unix)]
fn no_delay(l: &TcpListener) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: `l` keeps the descriptor open for the call; the option value points at a live
    // c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "serve: cannot set TCP_NODELAY ({}); replies may wait for acknowledgements",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn no_delay(_: &TcpListener) {}

/// The fields of a POST body: a JSON object, declared as JSON, at most
/// [`MAX_BODY_BYTES`].
fn body(req: &mut Request) -> std::result::Result<Map<String, Value>, Reply> {
    let buf = raw_body(req)?;
    match serde_json::from_slice(&buf) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Reply::error(400, "the body must be a JSON object")),
        Err(e) => Err(Reply::error(
            400,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// A POST body declared as JSON, at most [`MAX_BODY_BYTES`].
fn raw_body(req: &mut Request) -> std::result::Result<Vec<u8>, Reply> {
    let json = req.headers().iter().any(|h| {
        h.field.equiv("Content-Type")
            && h.value
                .as_str()
                .trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
    });
    if !json {
        return Err(Reply::error(
            415,
            "send the question as JSON (Content-Type: application/json)",
        ));
    }
    if req.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Reply::error(413, "request body over 1 MiB"));
    }
    let mut buf = Vec::new();
    let read = req
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut buf);
    if let Err(e) = read {
        return Err(Reply::error(400, format!("cannot read the body: {e}")));
    }
    if buf.len() > MAX_BODY_BYTES {
        return Err(Reply::error(413, "request body over 1 MiB"));
    }
    Ok(buf)
}

/// The fields of a URL query string, typed as a JSON body would be: numbers, `true` /
/// `false` (a bare flag such as `&explain` is `true`), text; `boost` may repeat.
fn params(query: &str) -> std::result::Result<Map<String, Value>, Reply> {
    let mut m = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let mut key = k.into_owned();
        // `collection=a&collection=b` (or `collections=`) is the list `collections`.
        if key == "collection" {
            key = "collections".into();
        }
        let list_key = key == "boost" || key == "collections";
        let value = if ["q", "query", "mode", "fusion", "where", "route"].contains(&key.as_str()) {
            Value::String(v.into_owned())
        } else if list_key {
            let mut list = match m.remove(&key) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            list.push(Value::String(v.into_owned()));
            Value::Array(list)
        } else if v.is_empty() || v == "true" {
            Value::Bool(true)
        } else if v == "false" {
            Value::Bool(false)
        } else if let Ok(n) = v.parse::<u64>() {
            Value::from(n)
        } else if let Ok(x) = v.parse::<f64>() {
            Value::from(x)
        } else {
            Value::String(v.into_owned())
        };
        if m.insert(key.clone(), value).is_some() && !list_key {
            return Err(Reply::error(400, format!("{key} is given twice")));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_typed_like_a_json_body() {
        let m = params("q=tide%20tables+now&k=3&explain&no_cutoff=false&recency_days=2.5&boost=a%2F**%3D2&boost=b=1.5")
            .unwrap_or_else(|_| panic!("parsed"));
        assert_eq!(m["q"], json!("tide tables now"));
        assert_eq!(m["k"], json!(3));
        assert_eq!(m["explain"], json!(true));
        assert_eq!(m["no_cutoff"], json!(false));
        assert_eq!(m["recency_days"], json!(2.5));
        assert_eq!(m["boost"], json!(["a/**=2", "b=1.5"]));
        // A question that looks like a number stays text.
        assert_eq!(params("q=42").unwrap_or_default()["q"], json!("42"));
        let m =
            params("q=x&collection=a&collection=b&where=size%3E10&route=auto").unwrap_or_default();
        assert_eq!(m["collections"], json!(["a", "b"]));
        assert_eq!(m["where"], json!("size>10"));
        assert_eq!(m["route"], json!("auto"));
        let o: QueryOptions = serde_json::from_value(Value::Object({
            let mut m = params("k=2&max_tokens=100").unwrap_or_default();
            m.remove("q");
            m
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.k, o.max_tokens), (Some(2), Some(100)));
    }

    #[test]
    fn a_repeated_parameter_is_an_error() {
        let Err(r) = params("k=2&k=3") else {
            panic!("accepted k twice")
        };
        assert_eq!(r.status, 400);
    }
}
