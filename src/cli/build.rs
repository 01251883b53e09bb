//! `index`, `watch`, `verify` and `compact`: building and keeping an index.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::*;

use super::ask::human_bytes;
use super::progress::peak_rss_bytes;

pub(super) fn index(a: IndexArgs) -> Result<()> {
    let t0 = Instant::now();
    let mut cfg = a.common.config()?;
    cfg.chunking = ChunkConfig {
        max_tokens: a.chunk_tokens,
        overlap: a.overlap,
    };
    cfg.without_token_codes = a.no_token_codes;
    a.token_codes.apply(&mut cfg)?;
    cfg.vector_precision = a.vectors.parse()?;
    cfg.ingest.include_generated = a.include_generated;
    if a.no_expansion {
        cfg.neighbours = Some(0);
    }
    let bars = super::progress::sink(a.progress);
    let r = if a.rebuild {
        // Built beside the old index, which is replaced only once the new one is committed.
        Engine::rebuild(a.common.index()?, cfg, &a.folder, bars)?.1
    } else {
        let mut engine = Engine::open_or_create(a.common.index()?, cfg)?;
        engine.set_progress(bars);
        match &a.collection {
            Some(name) => {
                engine.add_collection(name, &a.folder, a.description.as_deref().unwrap_or(""))?
            }
            None => engine.add_folder(&a.folder)?,
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["peak_rss_bytes"] = serde_json::json!(peak_rss_bytes());
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    print_summary(&mut out, &r, secs)?;
    Ok(())
}

fn print_summary(out: &mut impl Write, r: &pinpoint::IndexReport, secs: f64) -> Result<()> {
    let indexed = r.added + r.updated + r.unchanged + r.renamed;
    let rss = peak_rss_bytes()
        .map(|b| format!(", peak memory {}", human_bytes(b)))
        .unwrap_or_default();
    // Files of other types are not errors, but saying how many tells a user why a `.docx`
    // they expected is not found.
    let other = match r.unsupported {
        0 => String::new(),
        1 => ", 1 file of an unsupported type left out".to_string(),
        n => format!(", {n} files of unsupported types left out"),
    };
    let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
    let reused = match r.chunks_reused {
        0 => String::new(),
        n => format!(", {n} reused"),
    };
    writeln!(
        out,
        "indexed {} (added {}, updated {}, renamed {}, removed {}, unchanged {}), skipped {}{other}, {} ({} embedded{reused}) in {secs:.1} s{rss}",
        count(indexed, "file"),
        r.added,
        r.updated,
        r.renamed,
        r.removed,
        r.unchanged,
        r.skipped.len(),
        count(r.chunks_total, "chunk"),
        r.chunks_embedded
    )?;
    for s in r.skipped.iter().take(5) {
        writeln!(out, "  skipped {}: {}", s.path.display(), s.reason)?;
    }
    if r.skipped.len() > 5 {
        writeln!(out, "  ... and {} more skipped", r.skipped.len() - 5)?;
    }
    Ok(())
}

pub(super) fn watch(a: WatchArgs) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let mut cfg = a.common.config()?;
    cfg.ingest.include_generated = a.include_generated;
    let mut engine = Engine::open_or_create(a.common.index()?, cfg)?;
    let sync = |e: &mut Engine| match &a.collection {
        Some(name) => e.add_collection(name, &a.folder, ""),
        None => e.add_folder(&a.folder),
    };
    let t = Instant::now();
    let r = sync(&mut engine)?;
    let mut out = std::io::stdout();
    print_summary(&mut out, &r, t.elapsed().as_secs_f64())?;
    out.flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    // Events under the index folder (when it lives inside the watched one) are our own writes.
    let index_dir = {
        let index = a.common.index()?;
        std::fs::canonicalize(index).unwrap_or_else(|_| index.clone())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| !p.starts_with(&index_dir)) {
                let _ = tx.send(());
            }
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&a.folder, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", a.folder.display()))?;
    eprintln!("watching {} (Ctrl-C to stop)", a.folder.display());
    let debounce = Duration::from_millis(a.debounce_ms);
    let mut pending: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => pending = Some(Instant::now()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(last) = pending {
            // Let a burst of changes settle, then sync them in one commit.
            if last.elapsed() >= debounce {
                while rx.try_recv().is_ok() {}
                pending = None;
                let t = Instant::now();
                let r = sync(&mut engine)?;
                if r.added + r.updated + r.removed + r.renamed > 0 {
                    print_summary(&mut out, &r, t.elapsed().as_secs_f64())?;
                    out.flush()?;
                }
            }
        }
    }
    eprintln!(
        "stopped; index consistent at generation {}",
        engine.manifest().generation
    );
    Ok(())
}

pub(super) fn verify(a: StatsArgs) -> Result<()> {
    let engine = Engine::open_read_only(a.common.index()?, a.common.config()?)?;
    let problems = engine.verify()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"ok": problems.is_empty(), "problems": problems}),
        )?;
        writeln!(out)?;
    } else if problems.is_empty() {
        writeln!(
            out,
            "ok: generation {}, {} files checked, stores agree on {} chunks",
            engine.manifest().generation,
            engine.manifest().files.len(),
            engine.segments().len()
        )?;
    } else {
        for p in &problems {
            writeln!(out, "problem: {p}")?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(pinpoint::Error::corrupt(
            a.common.index()?,
            format!("{} problem(s) found", problems.len()),
        )
        .into())
    }
}

pub(super) fn forget(a: ForgetArgs) -> Result<()> {
    let mut engine = Engine::open(a.common.index()?, a.common.config()?)?;
    let n = engine.remove_collection(&a.collection)?;
    engine.commit()?;
    println!("removed the collection {:?} ({n} documents)", a.collection);
    Ok(())
}

pub(super) fn compact(a: StatsArgs) -> Result<()> {
    let mut engine = Engine::open(a.common.index()?, a.common.config()?)?;
    let t = Instant::now();
    engine.compact()?;
    println!(
        "compacted to generation {} in {:.1} s",
        engine.manifest().generation,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
