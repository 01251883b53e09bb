//! `query`, `serve`, `mcp` and `stats`: asking an index.

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;

use super::*;

pub(super) fn query(a: QueryArgs) -> Result<()> {
    let (mode, found) = if a.common.indexes.len() > 1 {
        // Several indexes: each answers; separate indexes' answers are fused by rank, the
        // shards of one folder merged by score.
        let multi =
            pinpoint::multi::MultiIndex::open_read_only(&a.common.indexes, a.common.config()?)?
                .plain_paths(a.shards);
        multi.search(&a.text, &a.options())?
    } else {
        let engine = Engine::open_read_only(a.common.index()?, a.common.config()?)?;
        let req = a.options().request(&engine, &a.text)?;
        (req.mode, engine.search_detailed(&req)?)
    };
    if let Some(note) = &found.note {
        eprintln!("note: {note}");
    }
    let hits = &found.hits;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = Answer::new(&a.text, mode, &found);
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    for h in hits {
        let heading = h
            .heading
            .as_deref()
            .map(|x| format!("  [{x}]"))
            .unwrap_or_default();
        let page = kind_of(&h.path).location_prefix();
        writeln!(
            out,
            "{}:{page}{}-{}  {:.4}{heading}",
            h.path, h.line_start, h.line_end, h.score
        )?;
        if let Some(e) = &h.explain {
            let r = |x: Option<usize>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let f = |x: Option<f32>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "    [lexical rank {} bm25 {} | dense rank {} cos {} | fused {:.4} (rank {}) | rerank {} (weight {:.2}) | document +{} | rules x{:.2} | final {:.4} | {}]",
                r(e.lexical_rank),
                f(e.lexical_score),
                r(e.dense_rank),
                f(e.dense_score),
                e.fused_score,
                e.fused_rank,
                f(e.rerank_score),
                e.rerank_weight,
                f(e.doc_evidence),
                e.rule_factor,
                e.final_score,
                e.kept
            )?;
        }
        for line in snippet(&h.text, 4, 300) {
            writeln!(out, "    {line}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The first `lines` non-empty lines of `text`, cut at `chars` characters in all.
fn snippet(text: &str, lines: usize, chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut left = chars;
    for l in text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(lines)
    {
        if left == 0 {
            break;
        }
        let cut: String = l.chars().take(left).collect();
        left -= cut.chars().count();
        let more = cut.len() < l.len();
        out.push(if more { format!("{cut}…") } else { cut });
    }
    out
}

pub(super) fn serve(a: ServeArgs) -> Result<()> {
    let mut server = pinpoint::serve::Server::bind(&a.addr, a.common.index()?, a.common.config()?)?;
    server.set_log(!a.quiet);
    server.set_defaults(&QueryOptions {
        expand_cmd: a.expand_cmd.clone(),
        cross_encoder: a.cross_encoder.clone(),
        ..Default::default()
    })?;
    let server = Arc::new(server);
    let s2 = server.clone();
    ctrlc::set_handler(move || s2.stop()).context("installing the Ctrl-C handler")?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let addr = server
        .addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| a.addr.clone());
    // One line a script can wait for (and read the port from, with --addr 127.0.0.1:0).
    eprintln!(
        "listening on http://{addr} (index {}, generation {}, {threads} threads); Ctrl-C stops",
        a.common.index()?.display(),
        server.generation()
    );
    server.run(threads);
    eprintln!("stopped");
    Ok(())
}

pub(super) fn stats(a: StatsArgs) -> Result<()> {
    let engine = Engine::open_read_only(a.common.index()?, a.common.config()?)?;
    let s = engine.stats()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &s)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "index       {}", s.index)?;
    writeln!(out, "generation  {}", s.generation)?;
    writeln!(out, "documents   {}", s.documents)?;
    writeln!(out, "chunks      {}", s.chunks)?;
    writeln!(out, "model       {} ({})", s.model, s.model_dir)?;
    writeln!(out, "dimension   {}", s.dimension)?;
    writeln!(out, "encoder     {}", s.encoder)?;
    for c in &s.collections {
        let name = if c.name.is_empty() {
            "(unnamed)"
        } else {
            c.name.as_str()
        };
        writeln!(
            out,
            "collection  {name}: {} documents, {} chunks{}{}",
            c.documents,
            c.chunks,
            if c.root.is_empty() {
                String::new()
            } else {
                format!(", {}", c.root)
            },
            if c.description.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.description)
            },
        )?;
    }
    writeln!(
        out,
        "chunking    {} tokens, overlap {}",
        s.chunk_tokens, s.chunk_overlap
    )?;
    let graphs = s.segments.iter().filter(|x| x.graph.is_some()).count();
    let deleted: u64 = s.segments.iter().map(|x| x.deleted).sum();
    writeln!(
        out,
        "segments    {} ({graphs} with an HNSW graph, the rest scanned exactly; {deleted} deleted chunks awaiting a merge)",
        s.segments.len()
    )?;
    match s.token_codes {
        Some(n) => writeln!(
            out,
            "token codes {n} tokens, {} bits each ({}, {}; reranking by MaxSim)",
            s.token_code_bits.unwrap_or(0),
            match s.token_units {
                Some(pinpoint::late::TokenUnits::Distinct) => {
                    "one per distinct word piece of a chunk"
                }
                _ => "one per word piece",
            },
            if s.token_codes_projected {
                "signs of a fixed projection"
            } else {
                "signs of every dimension"
            }
        )?,
        None => writeln!(out, "token codes none (built with --no-token-codes)")?,
    }
    if let (Some(n), Some(r), Some(sh)) = (s.token_codes, s.token_references, s.token_sharing) {
        writeln!(
            out,
            "            {r} of the {n} are their word piece's shared code (within {} bits of their own); near-copies within {} bits kept once",
            sh.near_bits, sh.copy_bits
        )?;
        if let (true, Some(b)) = (sh.borrow, s.token_borrows) {
            writeln!(
                out,
                "            {b} of the {n} are borrowed from the chunk before (within {} bits of their own)",
                sh.copy_bits
            )?;
        }
    }
    match s.neighbours {
        0 => writeln!(
            out,
            "expansion   none (built with --no-expansion, or before it existed: `index --rebuild` adds it)"
        )?,
        1 => writeln!(
            out,
            "expansion   each chunk holds its nearest chunk's words (another file's, at cosine {} or more)",
            pinpoint::near::MIN_COSINE
        )?,
        n => writeln!(
            out,
            "expansion   each chunk holds its {n} nearest chunks' words (other files', at cosine {} or more)",
            pinpoint::near::MIN_COSINE
        )?,
    }
    let total: u64 = s.bytes_on_disk.iter().map(|x| x.1).sum();
    writeln!(out, "on disk     {} total", human_bytes(total))?;
    for (part, b) in &s.bytes_on_disk {
        writeln!(out, "  {part:<9} {}", human_bytes(*b))?;
    }
    Ok(())
}

pub(super) fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

pub(super) fn mcp(a: StatsArgs) -> Result<()> {
    // Nothing may be printed on stdout but the protocol's messages.
    let server = pinpoint::mcp::McpServer::open(a.common.index()?, a.common.config()?)?;
    pinpoint::mcp::serve_stdio(server)?;
    Ok(())
}
