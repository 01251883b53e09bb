//! MCP's Streamable HTTP transport, as `pinpoint serve` answers it at `/mcp`.
//!
//! A client POSTs one JSON-RPC message per request. A request gets its response as
//! `application/json` (the transport allows a plain JSON answer instead of an event stream,
//! and every tool here answers at once); a notification or a client's response gets `202`
//! with no body. `GET /mcp` is `405`: the server opens no stream of its own. The server is
//! stateless (no `Mcp-Session-Id`): each call reads the index as it is then.
//!
//! Every request's `Origin`, when sent, must be a local one (`localhost`, `127.0.0.1`,
//! `[::1]`): a web page on another site could otherwise make the user's browser call a
//! server bound to localhost (DNS rebinding); `403` otherwise.
//!
//! The same tools, schemas and argument checks as the stdio server: the tool list is the
//! `rmcp` router's, and each call runs the same code.
//!
//! Not for: stdio ([`super::serve_stdio`]); the HTTP server itself ([`crate::serve`]).

use serde::Serialize;
use serde_json::{json, Value};

use super::{GetArgs, McpServer, SearchArgs, StatusArgs, INSTRUCTIONS};

/// Protocol versions this server answers in; a client asking for another is answered in
/// the newest.
pub const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What `/mcp` answers: a status and, for a request, its JSON-RPC response.
#[derive(Debug)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// The body, when there is one.
    pub body: Option<Value>,
}

/// Whether `origin` (an `Origin` header) is a page on this machine.
pub fn local_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().map(|h| format!("[{h}]"))
    } else {
        rest.split([':', '/']).next().map(String::from)
    };
    matches!(host.as_deref(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Answers one POSTed body.
pub fn handle(server: &McpServer, origin: Option<&str>, body: &[u8]) -> HttpReply {
    if let Some(o) = origin {
        if !local_origin(o) {
            return HttpReply {
                status: 403,
                body: Some(json!({ "error": format!("origin {o:?} is not local") })),
            };
        }
    }
    let msg: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return rpc_error(400, Value::Null, -32700, format!("not JSON: {e}")),
    };
    let Some(obj) = msg.as_object() else {
        return rpc_error(
            400,
            Value::Null,
            -32600,
            "send one JSON-RPC message (an object) per request",
        );
    };
    let id = obj.get("id").cloned();
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        // A client's response to a server request (none are sent): accepted.
        return HttpReply {
            status: 202,
            body: None,
        };
    };
    let Some(id) = id else {
        // A notification (`notifications/initialized`, cancellations): nothing to answer.
        return HttpReply {
            status: 202,
            body: None,
        };
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or("");
            let version = if VERSIONS.contains(&asked) {
                asked
            } else {
                VERSIONS[0]
            };
            result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": {} },
                    "serverInfo": { "name": "pinpoint", "version": env!("CARGO_PKG_VERSION") },
                    "instructions": INSTRUCTIONS,
                }),
            )
        }
        "ping" => result(id, json!({})),
        "tools/list" => match serde_json::to_value(server.tool_router.list_all()) {
            Ok(tools) => result(id, json!({ "tools": tools })),
            Err(e) => rpc_error(500, id, -32603, e.to_string()),
        },
        "tools/call" => {
            let name = params["name"].as_str().unwrap_or("");
            let args = match params.get("arguments") {
                Some(Value::Null) | None => json!({}),
                Some(a) => a.clone(),
            };
            match name {
                "search" => call(id, args, |a: SearchArgs| server.run_search(a)),
                "get" => call(id, args, |a: GetArgs| server.run_get(a)),
                "status" => call(id, args, |_: StatusArgs| Ok(server.run_status())),
                other => rpc_error(200, id, -32602, format!("no tool {other:?}")),
            }
        }
        other => rpc_error(200, id, -32601, format!("no method {other:?}")),
    }
}

/// A tool call: its arguments read strictly (a misspelt one is an error naming it), then
/// its result as text and as structured content, or its error as a tool error.
fn call<A, R>(id: Value, args: Value, run: impl FnOnce(A) -> crate::Result<R>) -> HttpReply
where
    A: serde::de::DeserializeOwned,
    R: Serialize,
{
    let outcome = serde_json::from_value::<A>(args)
        .map_err(|e| format!("failed to deserialize parameters: {e}"))
        .and_then(|a| run(a).map_err(|e| e.to_string()))
        .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string()));
    match outcome {
        Ok(v) => result(
            id,
            json!({
                "content": [{ "type": "text", "text": v.to_string() }],
                "structuredContent": v,
                "isError": false,
            }),
        ),
        Err(msg) => result(
            id,
            json!({ "content": [{ "type": "text", "text": msg }], "isError": true }),
        ),
    }
}

fn result(id: Value, result: Value) -> HttpReply {
    HttpReply {
        status: 200,
        body: Some(json!({ "jsonrpc": "2.0", "id": id, "result": result })),
    }
}

fn rpc_error(status: u16, id: Value, code: i64, message: impl Into<String>) -> HttpReply {
    HttpReply {
        status,
        body: Some(json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": code, "message": message.into() },
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_origins_pass() {
        for o in [
            "http://localhost",
            "http://localhost:3000",
            "http://127.0.0.1:7700",
            "https://[::1]:8080",
        ] {
            assert!(local_origin(o), "{o}");
        }
        for o in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "null",
        ] {
            assert!(!local_origin(o), "{o}");
        }
    }
}
