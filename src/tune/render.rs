//! `pinpoint tune`'s report as text: the same tables for the CLI and for a program that
//! runs [`super::run`] itself.

use std::io::{self, Write};

use super::{Handed, Joint, JointStage, TuneReport};
use crate::engine::RerankKind;
use crate::eval::Paired;

/// A setting as compact JSON (these types always serialise).
fn json<T: serde::Serialize>(v: &T) -> io::Result<String> {
    serde_json::to_string(v).map_err(io::Error::other)
}

/// One reranker's joint search in `pinpoint tune`'s report.
fn joint_stage(out: &mut dyn Write, j: &JointStage, folds: usize) -> io::Result<()> {
    let show = |s: &Joint| -> io::Result<String> {
        Ok(format!(
            "expansion {} depth {} fusion {} rerank depth {} weight {:.1}",
            s.expansion,
            s.depth,
            json(&s.fusion)?,
            s.rerank_depth,
            s.rerank_weight
        ))
    };
    let mut per = |what: &str, v: Vec<String>| -> std::io::Result<()> {
        if v.len() > 1 {
            writeln!(out, "best train score at each {what}: {}", v.join(", "))?;
        }
        Ok(())
    };
    per(
        "expansion weight",
        j.tuned
            .per_expansion
            .iter()
            .map(|(w, s)| format!("{w} {s:.4}"))
            .collect(),
    )?;
    per(
        "candidate depth",
        j.tuned
            .per_depth
            .iter()
            .map(|(d, s)| format!("{d} {s:.4}"))
            .collect(),
    )?;
    if !j.every_candidate {
        writeln!(
            out,
            "(this reranker encodes passages at query time: only its depth and weight are searched)"
        )?;
    }
    writeln!(
        out,
        "index's retrieval ({}), no reranking: {:.4}",
        show(&j.current)?,
        j.tuned.none_score
    )?;
    for (what, c) in [
        ("rerank stage alone", &j.tuned.fixed),
        ("all searched together", &j.tuned.joint),
    ] {
        writeln!(
            out,
            "{what}: {}  train {:.4}, {folds}-fold held-out {:.4}",
            show(&c.setting)?,
            c.train_score,
            c.cv_score
        )?;
        for (i, f) in c.fold_choices.iter().enumerate() {
            writeln!(out, "  fold {i} chose {}", show(f)?)?;
        }
    }
    let mut paired = |what: &str, p: Option<Paired>| -> io::Result<()> {
        if let Some(p) = p {
            writeln!(
                out,
                "  held out, {what}: {:+.4} ({:+.4}/{:+.4}), paired p {:.4}, better/worse {}/{}",
                p.delta.mean, p.delta.low, p.delta.high, p.p_value, p.wins, p.losses
            )?;
        }
        Ok(())
    };
    paired(
        "all searched together against the rerank stage alone",
        j.tuned.joint_against_fixed(),
    )?;
    if j.rerank.is_some() {
        paired(
            "the rerank stage alone against no reranking",
            j.tuned.against_none(&j.tuned.fixed),
        )?;
        if j.every_candidate {
            paired(
                "the reranked choice against the best without reranking",
                j.rerank_worth.clone(),
            )?;
        }
    }
    if !j.retrieval_changed && !j.tuned.joint.setting.same_retrieval(&j.current) {
        writeln!(
            out,
            "  kept the index's expansion, depth and fusion: no held-out gain from changing them"
        )?;
    }
    if j.rerank.is_some() && !j.rerank_adopted {
        let u = &j.tuned.unreranked;
        writeln!(
            out,
            "  reranking not adopted: no held-out gain over not reranking; searched without \
             it: {}  train {:.4}, {folds}-fold held-out {:.4}{}",
            show(&u.setting)?,
            u.train_score,
            u.cv_score,
            if j.retrieval_changed {
                " (adopted)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

fn rerank_name(k: &RerankKind) -> String {
    match k {
        RerankKind::Tokens => "tokens".into(),
        RerankKind::Sentence => "sentence".into(),
        RerankKind::CrossEncoder { model } => format!("cross-encoder {}", model.display()),
    }
}

impl TuneReport {
    /// The report `pinpoint tune` prints: each stage's search, its held-out figures and
    /// what it chose; `metric` names the target in the header.
    pub fn render(&self, out: &mut dyn Write, metric: &str) -> io::Result<()> {
        render(self, out, metric)
    }
}

fn render(r: &TuneReport, out: &mut dyn Write, metric: &str) -> io::Result<()> {
    let folds = r.folds;
    let t = &r.fusion;
    writeln!(
        out,
        "fusion, best five on all {} queries ({metric}):",
        r.queries
    )?;
    for (f, s) in &t.top {
        writeln!(out, "  {:.4}  {}", s, json(f)?)?;
    }
    writeln!(
        out,
        "best on the fused list alone: {}  train {:.4}  {folds}-fold held-out {:.4} (searched \
         again below, with the rest)",
        json(&t.fusion)?,
        t.train_score,
        t.cv_score
    )?;
    for (i, f) in t.fold_choices.iter().enumerate() {
        writeln!(out, "  fold {i} chose {}", json(f)?)?;
    }
    writeln!(
        out,
        "pseudo-relevance feedback: off {:.4}, on {:.4}",
        r.prf.off, r.prf.on
    )?;
    for (i, j) in std::iter::once(&r.joint).chain(&r.others).enumerate() {
        if !r.others.is_empty() {
            writeln!(
                out,
                "reranker {}: held-out {:.4}{}",
                j.rerank
                    .as_ref()
                    .map_or_else(|| "none".to_string(), rerank_name),
                j.held_out,
                match (i, j.rerank_adopted) {
                    (0, true) => " (adopted)",
                    (0, false) => " (best, but not better than no reranking)",
                    _ => "",
                }
            )?;
        }
        joint_stage(out, j, folds)?;
    }
    if let Some(c) = &r.cutoff {
        let show = |h: &Handed| {
            format!(
                "precision {:.4} recall {:.4} passages {:.2}",
                h.precision, h.recall, h.passages
            )
        };
        let ct = &c.tuned;
        writeln!(
            out,
            "cut-off (top {}, recall loss at most {}, after the similarity guard at {}): no \
             cut-off, no guard: {}",
            c.k,
            c.max_recall_loss,
            c.guard,
            show(&ct.off)
        )?;
        writeln!(out, "  best {}: train {}", ct.setting, show(&ct.train))?;
        writeln!(out, "  {folds}-fold held-out: {}", show(&ct.held_out))?;
        for (i, choice) in ct.fold_choices.iter().enumerate() {
            writeln!(out, "  fold {i} chose {choice}")?;
        }
        if !c.adopted {
            writeln!(
                out,
                "  not adopted: no held-out precision gain within the recall allowance"
            )?;
        }
    }
    Ok(())
}
