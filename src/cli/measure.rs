//! `eval`, `tune` and `bench`: measuring an index; the reports render themselves
//! (`Evaluation::render`, `TuneReport::render`, `BenchReport::render`).

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;

use super::progress::Bars;
use super::*;

pub(super) fn eval(a: EvalArgs) -> Result<()> {
    use pinpoint::eval::{self, EvalConfig};
    for m in a.modes.iter().chain(&a.baseline) {
        if !eval::MODE_NAMES.contains(&m.trim()) {
            anyhow::bail!(pinpoint::Error::invalid(
                "mode",
                format!("{m:?} (use {})", eval::MODE_NAMES.join(", "))
            ));
        }
    }
    let mut ecfg = EvalConfig {
        modes: a.modes.iter().map(|m| m.trim().to_string()).collect(),
        limit: a.limit,
        expansion: a.expansion,
        baseline: a.baseline.as_ref().map(|b| b.trim().to_string()),
        runs: a.runs.clone(),
        ..Default::default()
    };
    let mut cfg = a.common.config()?;
    if a.granularity.as_deref() == Some("chunk") {
        ecfg.granularity = pinpoint::Granularity::Chunk;
    }
    let (engine, build_secs, name, split, labelled) = if let Some(dir) = &a.beir {
        let ds = eval::Dataset::load_beir(dir, &a.split)?;
        cfg.chunking = ChunkConfig {
            max_tokens: a.chunk_tokens,
            overlap: a.overlap,
        };
        a.token_codes.apply(&mut cfg)?;
        if !a.json {
            eprintln!(
                "{}: {} documents, {} judged queries in split {}",
                ds.name,
                ds.corpus.len(),
                ds.judged_queries().len(),
                ds.split
            );
        }
        let progress = Arc::new(Bars::new());
        let (mut engine, secs) = {
            let dir = eval::cache_dir(a.common.index()?, &ds, &cfg)?;
            if !dir.join("manifest.json").exists() && !a.json {
                eprintln!(
                    "building index in {} (cached for later runs)",
                    dir.display()
                );
            }
            eval::open_or_build_with_progress(a.common.index()?, &ds, cfg, progress.clone())?
        };
        engine.set_progress(progress);
        let labelled = eval::beir_labelled(&ds);
        (engine, secs, ds.name.clone(), ds.split.clone(), labelled)
    } else {
        let path = a.queries.clone().unwrap_or_default();
        let labelled = eval::load_user_queries(&path)?;
        let engine = Engine::open_read_only(a.common.index()?, cfg)?;
        let unknown = eval::unknown_labels(&engine, &labelled)?;
        if !unknown.is_empty() {
            eprintln!(
                "warning: {} labelled documents are not in the index (first: {})",
                unknown.len(),
                unknown[0]
            );
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        // The user's own questions run what `query` runs: chunks, judged by path.
        ecfg.granularity = pinpoint::Granularity::Chunk;
        if a.granularity.as_deref() == Some("document") {
            ecfg.granularity = pinpoint::Granularity::Document;
        }
        (engine, 0.0, name, "user".to_string(), labelled)
    };
    let ev = eval::evaluate(&engine, &name, &split, &labelled, &ecfg)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &ev.report)?;
        writeln!(out)?;
        return Ok(());
    }
    ev.render(
        &mut out,
        &eval::RenderOptions {
            build_secs: (build_secs > 0.0).then_some(build_secs),
            failures: a.failures,
        },
    )?;
    Ok(())
}

pub(super) fn tune(a: TuneArgs) -> Result<()> {
    use pinpoint::{eval, tune};
    let target: tune::Target = a.metric.parse()?;
    // Checked before minutes of work.
    let named_kinds: Vec<RerankKind> = a
        .rerank
        .iter()
        .map(|r| r.trim().parse())
        .collect::<pinpoint::Result<_>>()?;
    let cfg = a.common.config()?;
    let (mut engine, labelled) = if let Some(dir) = &a.beir {
        let ds = eval::Dataset::load_beir(dir, &a.split)?;
        let progress = Arc::new(Bars::new());
        let (engine, _) = eval::open_or_build_with_progress(a.common.index()?, &ds, cfg, progress)?;
        (engine, eval::beir_labelled(&ds))
    } else {
        let path = a.queries.clone().unwrap_or_default();
        let labelled = eval::load_user_queries(&path)?;
        (Engine::open(a.common.index()?, cfg)?, labelled)
    };
    let opts = tune::TuneOptions {
        target,
        folds: a.folds,
        rerank: named_kinds,
        max_recall_loss: a.max_recall_loss,
    };
    let r = tune::run(&engine, &labelled, &opts, &|what| eprintln!("{what} ..."))?;
    let mut out = std::io::stdout().lock();
    r.render(&mut out, &a.metric)?;
    let chosen = r.settings;
    writeln!(out, "settings: {}", serde_json::to_string(&chosen)?)?;
    if a.dry_run {
        writeln!(out, "(dry run: nothing stored)")?;
    } else {
        engine.set_default_pipeline(&chosen)?;
        writeln!(out, "stored as the defaults of {}", engine.dir().display())?;
    }
    Ok(())
}

pub(super) fn bench(a: BenchArgs) -> Result<()> {
    let cfg = pinpoint::bench::BenchConfig {
        beir: a.beir.clone(),
        docs: a.docs,
        queries: a.queries,
        dense_vectors: a.dense_vectors,
        real_vectors: a.real_vectors,
        efs: vec![16, 32, 64, 128, 256],
        query_index: a.query_index.clone(),
        exe: std::env::current_exe().ok(),
        export_vectors: a.export_vectors.clone(),
        rerank: match &a.rerank {
            Some(kind) => Some(RerankConfig::new(kind.parse()?)),
            None => None,
        },
        expansion: a.expansion,
    };
    let ecfg = EngineConfig {
        model_dir: Some(
            a.model
                .clone()
                .unwrap_or_else(|| PathBuf::from(pinpoint::models::DEFAULT_MODEL_DIR)),
        ),
        device: a.device.parse::<DeviceChoice>()?,
        vector_precision: a.vectors.parse()?,
        ..Default::default()
    };
    std::fs::create_dir_all(&a.work)?;
    let quiet = a.json;
    if let Some(chunks) = a.scale {
        let scfg = pinpoint::bench::scale::ScaleConfig {
            chunks,
            base: a.scale_base,
            batch: a.scale_batch,
            queries: if a.queries == 0 { 200 } else { a.queries },
            sigma: pinpoint::bench::scale::DEFAULT_SIGMA,
            beir: a.beir.clone(),
            exe: std::env::current_exe().ok(),
            export: a.export_vectors.clone(),
            token_codes: !a.no_token_codes,
        };
        let r = pinpoint::bench::scale::run(&scfg, ecfg, &a.work, &|m| {
            if !quiet {
                eprintln!("{m}");
            }
        })?;
        let mut out = std::io::stdout().lock();
        if a.json {
            serde_json::to_writer(&mut out, &serde_json::json!({ "scale": r }))?;
            writeln!(out)?;
        } else {
            r.render(&mut out)?;
        }
        return Ok(());
    }
    let r = pinpoint::bench::run(&cfg, ecfg, &a.work, &|m| {
        if !quiet {
            eprintln!("{m}");
        }
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    r.render(&mut out, a.rerank.as_deref())?;
    Ok(())
}
