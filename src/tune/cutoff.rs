//! The adaptive cut-off, replayed over what the tuned pipeline hands over
//! ([`tune_cutoff`]).

use std::collections::HashMap;

use super::*;
use crate::engine::{Engine, Granularity, Mode, Pipeline, SearchRequest};
use crate::error::Result;
use crate::eval::Labelled;

/// Passages handed over per query by the pipeline tuned so far, with the cut-off off:
/// what the cut-off stage replays.
#[derive(Debug, Clone)]
pub struct CutoffFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// The documents handed over (at most `k`), best first, the query's own id left out.
    pub docs: Vec<String>,
    /// Their scores.
    pub scores: Vec<f32>,
    /// The top score of the final ranking.
    pub top: f32,
    /// The score the relative cut-off measures against: the lowest of the final
    /// ranking's first [`crate::select::FLOOR_RANK`].
    pub floor: f32,
}

/// The settings the cut-off stage searches, as [`crate::select::SelectConfig`] holds
/// them. The similarity guard ([`crate::select::SelectConfig::min_similarity_share`]) is
/// not among them: it is a filter the replayed passages have been through already, and a
/// collection whose first candidates are all on its topic cannot say where a guard
/// against off-topic passages belongs (docs/decisions.md, "Similarity guard").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cutoff {
    /// [`crate::select::SelectConfig::min_relative`].
    pub min_relative: f32,
    /// [`crate::select::SelectConfig::max_gap`].
    pub max_gap: f32,
}

impl Cutoff {
    /// No cut-off.
    pub const OFF: Cutoff = Cutoff {
        min_relative: 0.0,
        max_gap: 1.0,
    };

    /// Writes the settings into `cfg`.
    pub fn apply(&self, cfg: &mut crate::select::SelectConfig) {
        cfg.min_relative = self.min_relative;
        cfg.max_gap = self.max_gap;
    }
}

impl std::fmt::Display for Cutoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min_relative {} max_gap {}",
            self.min_relative, self.max_gap
        )
    }
}

/// What a cut-off hands over, averaged over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Handed {
    /// Share of handed passages that are relevant (0 for a query handed nothing relevant).
    pub precision: f64,
    /// Relevant handed over the relevant that fit (`min(relevant, k)`).
    pub recall: f64,
    /// Passages handed.
    pub passages: f64,
}

/// The tuned adaptive cut-off.
#[derive(Debug, Clone)]
pub struct TunedCutoff {
    /// Chosen on all queries; [`Cutoff::OFF`] is off.
    pub setting: Cutoff,
    /// Its figures on all queries (optimistic).
    pub train: Handed,
    /// Held-out figures of the settings chosen on the other folds.
    pub held_out: Handed,
    /// Without a cut-off.
    pub off: Handed,
    /// Each fold's choice.
    pub fold_choices: Vec<Cutoff>,
}

/// Replays the cut-off `setting` over each query's handed passages.
pub fn evaluate_cutoff(qs: &[&CutoffFeatures], setting: Cutoff, k: usize) -> Handed {
    let mut cfg = crate::select::SelectConfig::default();
    setting.apply(&mut cfg);
    let mut h = Handed::default();
    for q in qs {
        let mut n = 0;
        let mut prev = q.top;
        for &score in q.scores.iter().take(k) {
            let rel = crate::select::relative(score, q.top, q.floor);
            if n > 0 && cfg.stops_before(rel, prev, score) {
                break;
            }
            n += 1;
            prev = score;
        }
        let hits = metrics::relevant_in(&q.docs, &q.rels, n);
        let fit = metrics::n_relevant(&q.rels).min(k);
        if n > 0 {
            h.precision += hits as f64 / n as f64;
        }
        if fit > 0 {
            h.recall += hits as f64 / fit as f64;
        }
        h.passages += n as f64;
    }
    let c = qs.len().max(1) as f64;
    Handed {
        precision: h.precision / c,
        recall: h.recall / c,
        passages: h.passages / c,
    }
}

/// Settings searched for the cut-off: relative thresholds and relative gaps.
pub fn cutoff_grid() -> Vec<Cutoff> {
    let mut g = Vec::new();
    for min_relative in [0.0f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
        for max_gap in [1.0f32, 0.3, 0.2, 0.15, 0.1, 0.05] {
            g.push(Cutoff {
                min_relative,
                max_gap,
            });
        }
    }
    g
}

/// The cut-off that hands over the most precise context while losing at most
/// `max_recall_loss` of the handed recall that no cut-off keeps (the mission: precision
/// without losing recall), chosen with `folds`-fold cross-validation; `k` passages.
///
/// `qs` are the passages the pipeline's similarity guard lets through, `unguarded` the same
/// queries' passages without it (the same slice when there is no guard): the allowance is
/// measured from no cut-off at all, so what the guard loses counts against it.
pub fn tune_cutoff(
    qs: &[CutoffFeatures],
    unguarded: &[CutoffFeatures],
    k: usize,
    max_recall_loss: f64,
    folds: usize,
) -> TunedCutoff {
    let grid = cutoff_grid();
    let pick = |idx: &[usize]| -> Vec<&CutoffFeatures> { idx.iter().map(|&i| &qs[i]).collect() };
    let pick_off =
        |idx: &[usize]| -> Vec<&CutoffFeatures> { idx.iter().map(|&i| &unguarded[i]).collect() };
    // Precision where the recall bound holds; an infeasible setting ranks below "off".
    let objective = |idx: &[usize], g: &Cutoff| {
        let off = evaluate_cutoff(&pick_off(idx), Cutoff::OFF, k);
        let h = evaluate_cutoff(&pick(idx), *g, k);
        if h.recall + 1e-12 >= off.recall - max_recall_loss {
            h.precision
        } else {
            h.precision - 10.0
        }
    };
    let rels: Vec<&HashMap<String, i32>> = qs.iter().map(|q| &q.rels).collect();
    let splits = fold_split(&rels, folds);
    let (_, fold_choices) = cross_validate_on(&splits, &grid, objective);
    // Held-out figures of each fold's choice.
    let mut held_out = Handed::default();
    for ((held, _), choice) in splits.iter().zip(&fold_choices) {
        let h = evaluate_cutoff(&pick(held), *choice, k);
        let w = held.len() as f64 / qs.len() as f64;
        held_out.precision += h.precision * w;
        held_out.recall += h.recall * w;
        held_out.passages += h.passages * w;
    }
    let all: Vec<usize> = (0..qs.len()).collect();
    let mut best = (grid[0], objective(&all, &grid[0]));
    for g in &grid[1..] {
        let s = objective(&all, g);
        if s > best.1 + 1e-12 {
            best = (*g, s);
        }
    }
    TunedCutoff {
        setting: best.0,
        train: evaluate_cutoff(&pick(&all), best.0, k),
        held_out,
        off: evaluate_cutoff(&pick_off(&all), Cutoff::OFF, k),
        fold_choices,
    }
}

/// Runs every query through `pipeline` with its cut-off off and records the `k`
/// passages handed over with the scores the cut-off sees.
pub fn collect_cutoff(
    engine: &Engine,
    queries: &Labelled,
    pipeline: &Pipeline,
    k: usize,
) -> Result<Vec<CutoffFeatures>> {
    let mut p = pipeline.clone();
    let Some(sel) = p.select.as_mut() else {
        return Ok(Vec::new());
    };
    // The similarity guard stays as the pipeline has it: the replay is of what the
    // relative threshold and gap would cut from what the guard lets through.
    Cutoff::OFF.apply(sel);
    sel.max_tokens = None;
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            // As `eval` does: the ranking covers 100 documents at least.
            depth: p.depth.max(100),
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: p.clone(),
            // As in `eval`: the query's own document (BEIR) is left out before selection.
            exclude: vec![qid.clone()],
            ..SearchRequest::new(text.as_str(), k)
        };
        let o = engine.search_detailed(&req)?;
        // The cut-off measures scores against the final ranking's first `FLOOR_RANK`.
        let seen = &o.ranked[..o.ranked.len().min(crate::select::FLOOR_RANK)];
        let top = seen.first().map(|x| x.1).unwrap_or(0.0);
        let floor = seen.iter().map(|x| x.1).fold(top, f32::min);
        let (docs, scores): (Vec<String>, Vec<f32>) =
            o.hits.iter().map(|h| (h.path.clone(), h.score)).unzip();
        out.push(CutoffFeatures {
            rels: rels.clone(),
            docs,
            scores,
            top,
            floor,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query `q`, whose first passage is relevant with score `top`, then passages scored
    /// `rest` (relevant where `rel`), the floor at 0. Documents are the query's own.
    fn handed(q: usize, top: f32, rest: &[(f32, bool)]) -> CutoffFeatures {
        let mut docs = vec![format!("q{q}-r0")];
        let mut scores = vec![top];
        let mut rels = HashMap::from([(docs[0].clone(), 1)]);
        for (i, (s, r)) in rest.iter().enumerate() {
            let d = format!("q{q}-d{i}");
            if *r {
                rels.insert(d.clone(), 1);
            }
            docs.push(d);
            scores.push(*s);
        }
        CutoffFeatures {
            rels,
            docs,
            scores,
            top,
            floor: 0.0,
        }
    }

    fn setting(min_relative: f32, max_gap: f32) -> Cutoff {
        Cutoff {
            min_relative,
            max_gap,
        }
    }

    #[test]
    fn cutoff_replay_counts_what_is_handed_over() {
        // Relative shares 1, 0.9, 0.4, 0.3; the second passage is relevant.
        let q = handed(0, 1.0, &[(0.9, true), (0.4, false), (0.3, false)]);
        let off = evaluate_cutoff(&[&q], Cutoff::OFF, 5);
        assert_eq!(off.passages, 4.0);
        assert!((off.precision - 0.5).abs() < 1e-12);
        assert_eq!(off.recall, 1.0);
        // Keep shares of at least 0.5: two passages, both relevant.
        let cut = evaluate_cutoff(&[&q], setting(0.5, 1.0), 5);
        assert_eq!((cut.passages, cut.precision, cut.recall), (2.0, 1.0, 1.0));
        // A relative drop above 0.5 stops at 0.9 -> 0.4 as well.
        assert_eq!(evaluate_cutoff(&[&q], setting(0.0, 0.5), 5).passages, 2.0);
        // The first passage is always handed over, and k bounds the rest.
        assert_eq!(evaluate_cutoff(&[&q], setting(0.99, 1.0), 5).passages, 1.0);
        assert_eq!(evaluate_cutoff(&[&q], Cutoff::OFF, 3).passages, 3.0);
    }

    #[test]
    fn cutoff_tuning_buys_precision_only_within_the_recall_allowance() {
        // Clear gaps after the relevant passages: cutting at them loses nothing.
        let clean: Vec<CutoffFeatures> = (0..20)
            .map(|q| {
                handed(
                    q,
                    1.0,
                    &[(0.95, true), (0.3, false), (0.2, false), (0.1, false)],
                )
            })
            .collect();
        let t = tune_cutoff(&clean, &clean, 5, 0.01, 5);
        assert_ne!(t.setting, Cutoff::OFF);
        assert_eq!(t.train.recall, t.off.recall);
        assert!(t.train.precision > t.off.precision);
        assert!(t.held_out.precision > t.off.precision);
        // A relevant passage hides behind every gap: any cut loses recall, so none wins.
        let hidden: Vec<CutoffFeatures> = (0..20)
            .map(|q| {
                handed(
                    q,
                    1.0,
                    &[(0.3, false), (0.25, true), (0.2, false), (0.1, true)],
                )
            })
            .collect();
        let t = tune_cutoff(&hidden, &hidden, 5, 0.01, 5);
        assert_eq!(t.setting, Cutoff::OFF);
        assert_eq!(t.train, t.off);
        // What a guard before the cut-off lost counts against the allowance: with the
        // second relevant passage of one query in ten filtered out (recall 0.95 against 1),
        // no setting stays within 0.01 of no cut-off, not even the guard alone.
        let guarded: Vec<CutoffFeatures> = clean
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let mut q = q.clone();
                if i % 10 == 0 {
                    q.docs.remove(1);
                    q.scores.remove(1);
                }
                q
            })
            .collect();
        let t = tune_cutoff(&guarded, &clean, 5, 0.01, 5);
        assert_eq!(t.off.recall, 1.0);
        assert!(t.train.recall < t.off.recall - 0.01, "{t:?}");
        assert!(t.held_out.recall < t.off.recall - 0.01, "{t:?}");
    }
}
