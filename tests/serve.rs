//! `pinpoint serve` over real sockets: the answers are the library's, the server follows a
//! writer's commits, and bad requests get the status that names the fault.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use pinpoint::api::QueryOptions;
use pinpoint::serve::Server;
use pinpoint::Engine;
use serde_json::Value;

use crate::util::*;

/// One HTTP/1.1 exchange (`Connection: close`): status and body.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: &str,
    body: &str,
) -> (u16, String) {
    let ctype = if ctype.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ctype}\r\n")
    };
    http_with(addr, method, path, &ctype, body)
}

/// [`http`] with any header lines (each ending in `\r\n`).
pub(crate) fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

pub(crate) fn post(addr: SocketAddr, body: &str) -> (u16, String) {
    http(addr, "POST", "/query", "application/json", body)
}

pub(crate) fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn paths(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn start(dir: &std::path::Path) -> (Arc<Server>, JoinHandle<()>) {
    let mut s = Server::bind("127.0.0.1:0", dir, fake_config()).unwrap();
    s.set_log(false);
    let s = Arc::new(s);
    let s2 = s.clone();
    let t = std::thread::spawn(move || s2.run(2));
    (s, t)
}

#[test]
fn serve_answers_as_the_library_does_and_follows_the_index() {
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let mut writer = Engine::create(idx.path(), fake_config()).unwrap();
    let first = writer.add_folder(src.path()).unwrap();
    let (server, thread) = start(idx.path());
    let addr = server.addr().unwrap();

    let (code, body) = http(addr, "GET", "/health", "", "");
    assert_eq!(code, 200, "{body}");
    let health = json(&body);
    assert_eq!(health["documents"], first.added as u64);
    let generation = health["generation"].as_u64().unwrap();

    // The same answer as the library gives for the same options, keys in the CLI's order.
    let (code, body) = post(addr, r#"{"query": "waggle dance of bees", "k": 3}"#);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with(
            r#"{"query":"waggle dance of bees","mode":"hybrid","hits":[{"rank":1,"path":"#
        ),
        "{body}"
    );
    let reader = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let opts = QueryOptions {
        k: Some(3),
        ..Default::default()
    };
    let want: Vec<String> = reader
        .search(&opts.request(&reader, "waggle dance of bees").unwrap())
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect();
    let served = json(&body);
    assert_eq!(paths(&served), want);
    assert_eq!(want[0], "honeybees.txt");
    // A URL says the same; `explain` as a bare flag.
    let (code, body) = http(
        addr,
        "GET",
        "/query?q=waggle+dance+of%20bees&k=3&explain",
        "",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let by_url = json(&body);
    assert_eq!(paths(&by_url), want);
    assert!(
        by_url["hits"][0]["explain"]["fused_rank"].is_u64(),
        "{body}"
    );

    // A writer commits a new file: the next question sees it, without a restart.
    std::fs::write(
        src.path().join("zeppelins.txt"),
        "Zeppelin airships were rigid dirigibles filled with hydrogen.\n",
    )
    .unwrap();
    writer.add_folder(src.path()).unwrap();
    let (_, body) = post(
        addr,
        r#"{"query": "zeppelin airships hydrogen", "k": 1, "mode": "lexical"}"#,
    );
    assert_eq!(paths(&json(&body)), ["zeppelins.txt"], "{body}");
    let health = json(&http(addr, "GET", "/health", "", "").1);
    assert!(
        health["generation"].as_u64().unwrap() > generation,
        "{health}"
    );
    assert_eq!(health["documents"], first.added as u64 + 1);

    server.stop();
    thread.join().unwrap();
}

#[test]
fn bad_requests_get_the_status_that_names_the_fault() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    drop(e);
    let (server, thread) = start(idx.path());
    let addr = server.addr().unwrap();
    let error = |(code, body): (u16, String), want: u16, needle: &str| {
        assert_eq!(code, want, "{body}");
        let msg = json(&body)["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{msg}");
    };
    error(post(addr, "{not json"), 400, "not valid JSON");
    error(post(addr, r#"["a list"]"#), 400, "JSON object");
    error(post(addr, r#"{"k": 2}"#), 400, "no question");
    error(post(addr, r#"{"query": "   "}"#), 400, "query");
    error(
        post(addr, r#"{"query": "bees", "max_token": 9}"#),
        400,
        "max_token",
    );
    error(post(addr, r#"{"query": "bees", "k": 0}"#), 400, "k");
    error(
        post(addr, r#"{"query": "bees", "mode": "fuzzy"}"#),
        400,
        "fuzzy",
    );
    error(
        post(
            addr,
            r#"{"query": "bees", "expand_cmd": "touch /tmp/pwned"}"#,
        ),
        403,
        "--expand-cmd",
    );
    error(
        post(addr, r#"{"query": "bees", "cross_encoder": "/"}"#),
        403,
        "--cross-encoder",
    );
    error(
        http(addr, "POST", "/query", "text/plain", r#"{"query": "bees"}"#),
        415,
        "JSON",
    );
    error(
        http(addr, "GET", "/query?k=2&k=3&q=bees", "", ""),
        400,
        "twice",
    );
    error(http(addr, "GET", "/nothing", "", ""), 404, "/nothing");
    error(http(addr, "DELETE", "/query", "", ""), 405, "DELETE");
    // The server still answers after all that.
    assert_eq!(post(addr, r#"{"query": "bees"}"#).0, 200);
    server.stop();
    thread.join().unwrap();
}

#[test]
fn an_empty_index_answers_with_a_note() {
    let idx = tempfile::tempdir().unwrap();
    drop(Engine::create(idx.path(), fake_config()).unwrap());
    let (server, thread) = start(idx.path());
    let (code, body) = post(server.addr().unwrap(), r#"{"query": "anything"}"#);
    assert_eq!(code, 200, "{body}");
    let a = json(&body);
    assert_eq!(a["hits"].as_array().unwrap().len(), 0);
    assert!(
        a["note"].as_str().unwrap().contains("pinpoint index"),
        "{body}"
    );
    server.stop();
    thread.join().unwrap();
}

#[test]
fn serve_fails_at_start_on_a_missing_index_or_a_taken_port() {
    let idx = tempfile::tempdir().unwrap();
    let Err(e) = Server::bind("127.0.0.1:0", idx.path().join("none"), fake_config()) else {
        panic!("served a missing index")
    };
    assert!(e.to_string().contains("none"), "{e}");
    drop(Engine::create(idx.path(), fake_config()).unwrap());
    let (server, thread) = start(idx.path());
    let taken = server.addr().unwrap().to_string();
    let Err(e) = Server::bind(&taken, idx.path(), fake_config()) else {
        panic!("bound a taken port")
    };
    assert!(e.to_string().contains(&taken), "{e}");
    server.stop();
    thread.join().unwrap();
}

/// The binary: `pinpoint serve` prints where it listens, answers with exactly the bytes
/// `pinpoint query --json` prints, and stops cleanly on Ctrl-C.
#[cfg(unix)]
#[test]
fn the_cli_server_answers_what_query_json_prints() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let model = model.to_str().unwrap();
    let samples = samples();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            samples.to_str().unwrap(),
            "--index",
            "idx",
            "--model",
            model,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let question = "why does the sea level go up and down each day";
    let o = pinpoint(
        work.path(),
        &[
            "query",
            question,
            "--index",
            "idx",
            "-k",
            "3",
            "--explain",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);

    let mut child = Command::new(env!("CARGO_BIN_EXE_pinpoint"))
        .args([
            "serve",
            "--index",
            "idx",
            "--addr",
            "127.0.0.1:0",
            "--quiet",
        ])
        .current_dir(work.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening on http://")
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let (code, body) = post(
        addr,
        &format!(r#"{{"query": "{question}", "k": 3, "explain": true}}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, printed.trim_end());
    assert_eq!(paths(&json(&body))[0], "tides.txt");

    // Ctrl-C, signalled directly (see Cargo.toml on procps-ng 4.0.2).
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert!(pid > 1);
    // SAFETY: sends SIGINT to one process, our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn an_index_built_again_in_place_is_followed_too() {
    let idx = tempfile::tempdir().unwrap();
    let dir = idx.path().join("index");
    let mut e = Engine::create(&dir, fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let before = e.manifest().generation;
    drop(e);
    let (server, thread) = start(&dir);
    // Deleted and built again from another folder: it starts over at the same generation.
    std::fs::remove_dir_all(&dir).unwrap();
    let src = idx.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("zeppelins.txt"),
        "Zeppelin airships were rigid dirigibles.\n",
    )
    .unwrap();
    let mut e = Engine::create(&dir, fake_config()).unwrap();
    e.add_folder(&src).unwrap();
    assert_eq!(e.manifest().generation, before);
    let (code, body) = post(
        server.addr().unwrap(),
        r#"{"query": "zeppelin airships", "mode": "lexical"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(paths(&json(&body)), ["zeppelins.txt"], "{body}");
    server.stop();
    thread.join().unwrap();
}
