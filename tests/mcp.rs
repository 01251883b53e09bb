//! `pinpoint mcp` driven over stdio as an agent's client drives it: initialize, list the
//! tools, call each, a bad argument, and a closed stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::util::*;

/// A running `pinpoint mcp` and its numbered requests.
struct Client {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    next: u64,
}

impl Client {
    fn start(index: &std::path::Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pinpoint"))
            .args(["mcp", "--index", index.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            out,
            next: 1,
        }
    }

    fn send(&mut self, msg: &Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and reads lines until its response (one JSON object per line).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "server closed stdout"
            );
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    fn tool(&mut self, name: &str, arguments: Value) -> Value {
        self.call("tools/call", json!({"name": name, "arguments": arguments}))["result"].clone()
    }
}

#[test]
fn an_agent_searches_reads_and_is_told_what_it_got_wrong() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let s = samples();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            s.to_str().unwrap(),
            "--index",
            "idx",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = work.path().join("idx");
    let mut c = Client::start(&idx);

    let init = c.call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "test", "version": "1"}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "pinpoint", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let tools = c.call("tools/list", json!({}));
    let list = tools["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["get", "list_collections", "search", "status"]);
    for t in list {
        assert!(
            t["inputSchema"].is_object() && t["outputSchema"].is_object(),
            "{t}"
        );
        assert_eq!(t["annotations"]["readOnlyHint"], true, "{t}");
        assert_eq!(t["inputSchema"]["additionalProperties"], false, "{t}");
    }

    // search: the same hits as `query --json`.
    let r = c.tool("search", json!({"query": "how do tides work", "k": 3}));
    assert_ne!(r["isError"], true, "{r}");
    let got = &r["structuredContent"];
    let q = pinpoint(
        work.path(),
        &[
            "query",
            "how do tides work",
            "--index",
            "idx",
            "-k",
            "3",
            "--json",
        ],
    );
    let want: Value = serde_json::from_str(stdout(&q).trim()).unwrap();
    assert_eq!(
        got["hits"].as_array().unwrap().len(),
        want["hits"].as_array().unwrap().len()
    );
    for (g, w) in got["hits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(want["hits"].as_array().unwrap())
    {
        for key in [
            "rank",
            "path",
            "line_start",
            "line_end",
            "unit",
            "heading",
            "text",
        ] {
            assert_eq!(g[key], w[key], "{key}");
        }
    }
    assert_eq!(got["hits"][0]["path"], "tides.txt");

    // get: the passage's file by location, bounded.
    let r = c.tool("get", json!({"path": "tides.txt", "start": 1, "end": 3}));
    assert_ne!(r["isError"], true, "{r}");
    let g = &r["structuredContent"];
    assert!(g["text"].as_str().unwrap().contains("Tides"), "{g}");
    assert_eq!(g["unit"], "line");
    assert!(g["line_start"].as_u64().unwrap() <= 3);
    let r = c.tool("get", json!({"path": "nowhere.txt"}));
    assert_eq!(r["isError"], true, "{r}");
    assert!(r["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("not in the index"));

    // status.
    let r = c.tool("status", json!({}));
    assert_eq!(
        r["structuredContent"]["documents"].as_u64().unwrap() as usize,
        22,
        "{r}"
    );

    // A misspelt argument is an error naming it, not silently ignored.
    let r = c.tool("search", json!({"query": "tides", "max_token": 10}));
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("max_token"),
        "{r}"
    );
    // Numbers sent as strings (the MCP Inspector's command line does) are read as numbers;
    // a string that is not one is an error.
    let r = c.tool(
        "search",
        json!({"query": "how do tides work", "k": "1", "explain": "true"}),
    );
    assert_ne!(r["isError"], true, "{r}");
    assert_eq!(
        r["structuredContent"]["hits"].as_array().unwrap().len(),
        1,
        "{r}"
    );
    assert!(
        r["structuredContent"]["hits"][0]["explain"].is_object(),
        "{r}"
    );
    let r = c.tool("search", json!({"query": "tides", "k": "many"}));
    assert_eq!(r["isError"], true, "{r}");
    // An absurd size is refused with its limit.
    let r = c.tool("search", json!({"query": "tides", "k": 100000000}));
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{r}"
    );

    // The server follows the index: a commit is seen by the next call.
    std::fs::write(
        work.path().join("quokka.txt"),
        "Quokkas live on Rottnest Island.",
    )
    .unwrap();
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    copy_dir(&s, &extra);
    std::fs::copy(work.path().join("quokka.txt"), extra.join("quokka.txt")).unwrap();
    let o = pinpoint(
        work.path(),
        &["index", extra.to_str().unwrap(), "--index", "idx"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = c.tool("status", json!({}));
    assert_eq!(
        r["structuredContent"]["documents"].as_u64().unwrap(),
        23,
        "{r}"
    );

    // Closing stdin ends the server.
    drop(c.child.stdin.take());
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// One POST to `/mcp` with optional extra headers: status and body.
fn post_mcp(addr: std::net::SocketAddr, headers: &str, body: &Value) -> (u16, String) {
    let headers = format!("Content-Type: application/json\r\n{headers}");
    crate::serve::http_with(addr, "POST", "/mcp", &headers, &body.to_string())
}

#[test]
fn serve_answers_mcp_over_streamable_http_to_local_origins_only() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = pinpoint::Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    drop(e);
    let (server, _t) = crate::serve::start(idx.path());
    let addr = server.addr().unwrap();
    let rpc = |id: u64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});

    let (st, body) = post_mcp(
        addr,
        "Origin: http://localhost:5173\r\n",
        &rpc(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "t", "version": "1"}}),
        ),
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(v["result"]["serverInfo"]["name"], "pinpoint");
    // A notification is accepted without an answer.
    let (st, body) = post_mcp(
        addr,
        "",
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!((st, body.as_str()), (202, ""));

    let (_, body) = post_mcp(addr, "", &rpc(2, "tools/list", json!({})));
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["get", "list_collections", "search", "status"]);

    // search answers as POST /query does.
    let (_, body) = post_mcp(
        addr,
        "",
        &rpc(
            3,
            "tools/call",
            json!({"name": "search", "arguments": {"query": "volcano magma", "k": 2}}),
        ),
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["isError"], false, "{v}");
    let (_, q) = crate::serve::post(addr, r#"{"query": "volcano magma", "k": 2}"#);
    let q: Value = serde_json::from_str(&q).unwrap();
    let paths = |hits: &Value| -> Vec<String> {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        paths(&v["result"]["structuredContent"]["hits"]),
        paths(&q["hits"])
    );

    // A misspelt argument is a tool error naming it; an unknown tool a protocol error.
    let (_, body) = post_mcp(
        addr,
        "",
        &rpc(
            4,
            "tools/call",
            json!({"name": "search", "arguments": {"query": "x", "kk": 2}}),
        ),
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("kk"),
        "{v}"
    );
    let (_, body) = post_mcp(
        addr,
        "",
        &rpc(5, "tools/call", json!({"name": "delete_all"})),
    );
    assert!(body.contains("-32602"), "{body}");

    // Another site's page may not call it (DNS rebinding); GET opens no stream.
    let (st, _) = post_mcp(
        addr,
        "Origin: http://evil.example\r\n",
        &rpc(6, "ping", json!({})),
    );
    assert_eq!(st, 403);
    let (st, _) = crate::serve::http(addr, "GET", "/mcp", "", "");
    assert_eq!(st, 405);
    server.stop();
}

/// An agent over an index of two collections: it lists them, searches one, filters by
/// front matter (the `where` grammar and a filter tree) and is told what it got wrong.
#[test]
fn an_agent_searches_and_filters_two_collections() {
    let work = tempfile::tempdir().unwrap();
    let notes = work.path().join("notes");
    let code = work.path().join("code");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        notes.join("async.md"),
        "---\ntags: [rust, async]\nstatus: draft\n---\n# Async in Rust\nTokio schedules futures on a work-stealing thread pool.\n",
    )
    .unwrap();
    std::fs::write(
        notes.join("tides.md"),
        "---\ntags: [sea]\n---\n# Tides\nThe moon's gravity raises the sea twice a day.\n",
    )
    .unwrap();
    std::fs::write(
        code.join("pool.rs"),
        "/// A work-stealing thread pool for futures.\npub struct Pool { workers: usize }\n",
    )
    .unwrap();
    let model = real_model();
    for (dir, name, what) in [
        (&notes, "notes", "my notes"),
        (&code, "code", "a Rust crate"),
    ] {
        let o = pinpoint(
            work.path(),
            &[
                "index",
                dir.to_str().unwrap(),
                "--index",
                "idx",
                "--model",
                model.to_str().unwrap(),
                "--collection",
                name,
                "--description",
                what,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let mut c = Client::start(&work.path().join("idx"));
    c.call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "test", "version": "1"}}),
    );
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let r = c.tool("list_collections", json!({}));
    let cols = r["structuredContent"]["collections"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["code", "notes"], "{r}");
    assert_eq!(cols[1]["description"], "my notes");
    assert_eq!(cols[1]["documents"], 2);
    let s = c.tool("status", json!({}));
    assert_eq!(
        s["structuredContent"]["collections"],
        json!(["code", "notes"])
    );

    let paths = |r: &Value| -> Vec<String> {
        r["structuredContent"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect()
    };
    let q = "work-stealing thread pool";
    let all = c.tool("search", json!({"query": q, "k": 5, "no_cutoff": true}));
    assert!(paths(&all).contains(&"code/pool.rs".to_string()), "{all}");
    assert!(paths(&all).contains(&"notes/async.md".to_string()), "{all}");
    let only_code = c.tool(
        "search",
        json!({"query": q, "collections": ["code"], "no_cutoff": true}),
    );
    assert_eq!(paths(&only_code), ["code/pool.rs"], "{only_code}");
    let tagged = c.tool(
        "search",
        json!({"query": q, "where": "tag:rust AND status:draft", "no_cutoff": true}),
    );
    assert_eq!(paths(&tagged), ["notes/async.md"], "{tagged}");
    let tree = c.tool(
        "search",
        json!({"query": "sea", "no_cutoff": true,
               "filter": {"and": [{"eq": {"field": "collection", "value": "notes"}},
                                   {"not": {"in": {"field": "tags", "values": ["rust"]}}}]}}),
    );
    assert_eq!(paths(&tree), ["notes/tides.md"], "{tree}");

    // It reads the passage it found, by the path search gave, and asks for a route.
    let got = c.tool("get", json!({"path": "notes/async.md"}));
    assert!(
        got["structuredContent"]["text"]
            .as_str()
            .unwrap()
            .contains("work-stealing"),
        "{got}"
    );
    let routed = c.tool(
        "search",
        json!({"query": "pub struct Pool workers", "route": "auto"}),
    );
    let route = &routed["structuredContent"]["route"];
    assert_eq!(route["mode"], "auto", "{routed}");
    assert_eq!(route["signals"].as_array().unwrap().len(), 2, "{routed}");

    // What it got wrong, in words it can act on.
    let bad = c.tool("search", json!({"query": q, "where": "tag:rust AND"}));
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(bad.to_string().contains("position 12"), "{bad}");
    let bad = c.tool("search", json!({"query": q, "collections": ["papers"]}));
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(bad.to_string().contains("it has: code, notes"), "{bad}");
    let bad = c.call(
        "tools/call",
        json!({"name": "search", "arguments": {"query": q, "filter": {"like": {"field": "ext"}}}}),
    );
    assert!(bad.to_string().contains("like"), "{bad}");
}
