//! `pinpoint eval`'s report as text: the metrics table, intervals and paired tests, where
//! relevant documents were lost, and the worst queries; the same for the CLI and for a
//! program that calls [`super::evaluate`].

use std::io::{self, Write};

use super::stats::RESAMPLES;
use super::{loss_counts, Evaluation, QueryFunnel, Report, TESTED_METRICS};

/// What the text report shows beyond the evaluation itself.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Seconds the index took to build (`None`: it was cached or given).
    pub build_secs: Option<f64>,
    /// How many of the worst queries to show with their relevant documents' ranks.
    pub failures: usize,
}

impl Evaluation {
    /// Writes the report `pinpoint eval` prints.
    pub fn render(&self, out: &mut dyn Write, opts: &RenderOptions) -> io::Result<()> {
        let ev = self;
        let r = &ev.report;
        writeln!(
            out,
            "dataset {}  split {}  queries {}  ranking {}",
            r.dataset,
            r.split,
            r.queries,
            match r.granularity.as_str() {
                "chunk" => "chunks, as query does (files judged by path)",
                _ => "documents (each by its best chunk)",
            }
        )?;
        match opts.build_secs {
            Some(secs) => writeln!(out, "index built in {secs:.1} s")?,
            None => writeln!(out, "index: cached")?,
        }
        writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "mode",
            "nDCG@10",
            "R@10",
            "R@100",
            "MRR@10",
            "MAP@100",
            "P@5",
            "CP@5",
            "PP@5",
            "#P@5",
            "q/s"
        )?;
        let shown: Vec<&str> = ev.modes.iter().map(String::as_str).collect();
        for mode in &shown {
            if let Some(m) = r.modes.get(*mode) {
                writeln!(
                out,
                "{:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.2} {:>8.1}",
                mode.trim(),
                m.ndcg10,
                m.recall10,
                m.recall100,
                m.mrr10,
                m.map100,
                m.p5,
                m.context_precision5,
                m.passage_precision5,
                m.passages5,
                m.qps
            )?;
            }
        }
        significance(out, r, &shown)?;
        for mode in &shown {
            match r.modes.get(*mode) {
                Some(m) if m.abstained > 0.0 => writeln!(
                    out,
                    "{}: abstained on {:.0} of {} queries (no word in the index, no close passage)",
                    mode.trim(),
                    m.abstained * r.queries as f64,
                    r.queries
                )?,
                _ => {}
            }
        }
        writeln!(
            out,
            "\nwhere relevant documents ended up ({}):",
            ev.funnel_mode
        )?;
        for (class, n) in loss_counts(&ev.funnel) {
            writeln!(out, "  {:<36} {n}", class.to_string())?;
        }
        if opts.failures > 0 {
            let mut worst: Vec<&QueryFunnel> = ev.funnel.iter().collect();
            worst.sort_by(|x, y| x.ndcg10.total_cmp(&y.ndcg10).then(x.id.cmp(&y.id)));
            writeln!(
                out,
                "\n{} worst queries ({}):",
                opts.failures, ev.funnel_mode
            )?;
            let rank = |r: Option<usize>| r.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
            for q in worst.into_iter().take(opts.failures) {
                writeln!(out, "\n[{}] nDCG@10 {:.3}  {}", q.id, q.ndcg10, q.text)?;
                for e in &q.relevant {
                    writeln!(
                    out,
                    "    relevant {:<12} lexical {:>3}  dense {:>3}  fused {:>3}  final {:>3}  ({})",
                    e.doc,
                    rank(e.lexical),
                    rank(e.dense),
                    rank(e.fused),
                    rank(e.final_rank),
                    e.class()
                )?;
                }
                for (i, (d, t)) in q.top.iter().enumerate() {
                    let t: String = t.chars().take(90).collect();
                    writeln!(out, "    top {} {:<12} {}", i + 1, d, t)?;
                }
            }
        }
        Ok(())
    }
}

/// Per tested metric: each mode's 95% interval, and its paired comparison with the
/// baseline, so a reader sees which differences the queries can tell apart.
fn significance(out: &mut dyn Write, r: &Report, shown: &[&str]) -> io::Result<()> {
    if r.queries < 2 {
        return Ok(());
    }
    let base = r.baseline.as_deref().unwrap_or("");
    let label = |key: &str| {
        match key {
            "ndcg@10" => "nDCG@10",
            "recall@100" => "R@100",
            "context_precision@5" => "CP@5",
            other => other,
        }
        .to_string()
    };
    writeln!(
        out,
        "\n95% intervals over the {} queries (bootstrap, {RESAMPLES} resamples); each mode \
         against {base} query by query (paired randomisation test, two-sided p):",
        r.queries
    )?;
    for key in TESTED_METRICS {
        writeln!(
            out,
            "  {:<12} {:>8} {:>17} {:>9} {:>19} {:>8} {:>13}",
            label(key),
            "mean",
            "interval",
            "diff",
            "interval",
            "p",
            "better/worse"
        )?;
        for mode in shown {
            let Some(iv) = r.intervals.get(*mode).and_then(|m| m.get(key)) else {
                continue;
            };
            let span = format!("{:.4}-{:.4}", iv.low, iv.high);
            write!(out, "  {:<12} {:>8.4} {:>17}", mode, iv.mean, span)?;
            if let Some(p) = r.paired.get(*mode).and_then(|m| m.get(key)) {
                let d = &p.delta;
                let dspan = format!("{:+.4}/{:+.4}", d.low, d.high);
                let wl = format!("{}/{}", p.wins, p.losses);
                write!(
                    out,
                    " {:>+9.4} {:>19} {:>8.4} {:>13}",
                    d.mean, dspan, p.p_value, wl
                )?;
            } else if *mode == base {
                write!(out, " {:>9}", "baseline")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
