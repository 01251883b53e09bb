//! Routing a question to the collection that can answer it (`--route auto`).
//!
//! RAG practice classifies a question before retrieval and sends it to the source that can
//! answer it. pinpoint decides from signals it already has, per collection:
//! - its share of the unfiltered hybrid head (the top [`RouteConfig::head`] passages):
//!   what both legs together say;
//! - the cosine of the question to the collection's centroid (the mean of its chunk
//!   vectors), turned into a share by a softmax: what the collection is about overall,
//!   which a head of near-ties does not show;
//! - when every collection has a description (`index --collection NAME --description`),
//!   the cosine of the question to it, as a share the same way: what the user says it
//!   holds. It is averaged with the centroid share.
//!
//! The mean of the head share and that meaning share is the confidence. At or above [`RouteConfig::restrict_at`] the search is
//! restricted to the top collection (its own top `k`, deeper than its share of the mixed
//! list); between [`RouteConfig::boost_at`] and that, every collection is searched and the
//! top one's passages are boosted; below, nothing changes. The decision and its figures
//! come back with the answer ([`Route`]), so an agent sees where it searched.
//!
//! Not for: running the searches (`engine::routing`), filters ([`crate::filter`]).

use serde::Serialize;

/// How a question is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteMode {
    /// Search what the request names (the default: routing is not adopted, see
    /// docs/decisions.md "Routing").
    #[default]
    Off,
    /// Decide from the signals above.
    Auto,
}

impl std::str::FromStr for RouteMode {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "off" => Ok(RouteMode::Off),
            "auto" => Ok(RouteMode::Auto),
            other => Err(crate::error::Error::invalid(
                "route",
                format!("{other:?} (use off or auto)"),
            )),
        }
    }
}

/// Thresholds of the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteConfig {
    /// Passages of the unfiltered head whose collections are counted.
    pub head: usize,
    /// Softmax temperature over centroid cosines.
    pub temperature: f32,
    /// Confidence at which the search is restricted to the top collection.
    pub restrict_at: f32,
    /// Confidence at which the top collection's passages are boosted.
    pub boost_at: f32,
    /// The boost factor.
    pub boost: f32,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            head: 10,
            temperature: 0.02,
            restrict_at: 0.9,
            boost_at: 0.6,
            boost: 1.3,
        }
    }
}

/// Where a question was sent, with the figures that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Route {
    /// `auto` (the only mode that reports a route).
    pub mode: String,
    /// The collection the signals favour (`None`: the index has fewer than two).
    pub top: Option<String>,
    /// What was done: `all` (every collection, unchanged), `boost` (every collection,
    /// the top one boosted) or `restrict` (the top one only).
    pub action: String,
    /// The confidence in `top`: mean of its head share and its meaning share.
    pub confidence: f32,
    /// Per collection, what decided.
    pub signals: Vec<Signal>,
}

/// One collection's signals.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Signal {
    /// The collection.
    pub collection: String,
    /// Its share of the unfiltered head.
    pub head: f32,
    /// Its softmax share of the question's cosine to the centroids.
    pub centroid: f32,
    /// Its softmax share of the question's cosine to the descriptions (`None` unless every
    /// collection has one).
    pub description: Option<f32>,
}

/// Softmax shares of cosines at `temperature`.
fn shares(cos: &[f32], temperature: f32) -> Vec<f32> {
    let max = cos.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = cos
        .iter()
        .map(|c| ((c - max) / temperature.max(1e-6)).exp())
        .collect();
    let z: f32 = exp.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    exp.iter().map(|e| e / z).collect()
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Search as asked.
    All,
    /// Search every collection, boosting this one.
    Boost(String),
    /// Search only this one.
    Restrict(String),
}

/// Decides from the collections of the head's passages (`head`, best first, already cut to
/// [`RouteConfig::head`]), each collection's centroid cosine (`centroids`), and its
/// description cosine (`descriptions`, same order; `None` where it has none).
pub fn decide(
    head: &[&str],
    centroids: &[(String, f32)],
    descriptions: &[Option<f32>],
    cfg: &RouteConfig,
) -> (Decision, Route) {
    let n_head = head.len().max(1) as f32;
    let cos: Vec<f32> = centroids.iter().map(|(_, c)| *c).collect();
    let cent = shares(&cos, cfg.temperature);
    let desc: Option<Vec<f32>> = (descriptions.len() == centroids.len()
        && !descriptions.is_empty()
        && descriptions.iter().all(|d| d.is_some()))
    .then(|| {
        let d: Vec<f32> = descriptions.iter().map(|d| d.unwrap_or(0.0)).collect();
        shares(&d, cfg.temperature)
    });
    let signals: Vec<Signal> = centroids
        .iter()
        .enumerate()
        .map(|(i, (n, _))| Signal {
            collection: n.clone(),
            head: head.iter().filter(|h| **h == n.as_str()).count() as f32 / n_head,
            centroid: cent[i],
            description: desc.as_ref().map(|d| d[i]),
        })
        .collect();
    let best = signals
        .iter()
        .map(|s| {
            let meaning = match s.description {
                Some(d) => (s.centroid + d) / 2.0,
                None => s.centroid,
            };
            (s.collection.clone(), (s.head + meaning) / 2.0)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let (decision, top, confidence) = match best {
        Some((name, conf)) if signals.len() >= 2 => {
            let d = if conf >= cfg.restrict_at {
                Decision::Restrict(name.clone())
            } else if conf >= cfg.boost_at {
                Decision::Boost(name.clone())
            } else {
                Decision::All
            };
            (d, Some(name), conf)
        }
        _ => (Decision::All, None, 0.0),
    };
    let action = match decision {
        Decision::All => "all",
        Decision::Boost(_) => "boost",
        Decision::Restrict(_) => "restrict",
    };
    (
        decision,
        Route {
            mode: "auto".into(),
            top,
            action: action.into(),
            confidence,
            signals,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(v: &[(&str, f32)]) -> Vec<(String, f32)> {
        v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn agreeing_signals_restrict_and_split_ones_do_not() {
        let cfg = RouteConfig::default();
        let c = cents(&[("code", 0.45), ("papers", 0.20)]);
        let (d, r) = decide(&["code"; 10], &c, &[], &cfg);
        assert_eq!(d, Decision::Restrict("code".into()));
        assert!(r.confidence > 0.99 && r.action == "restrict");
        // Half the head each, centroids close: no restriction.
        let head = [
            "code", "papers", "code", "papers", "code", "papers", "code", "papers", "code",
            "papers",
        ];
        let c = cents(&[("code", 0.30), ("papers", 0.29)]);
        let (d, r) = decide(&head, &c, &[], &cfg);
        assert_eq!(d, Decision::All, "{r:?}");
        // A clear centroid and a 7/3 head: a boost, not a restriction.
        let head = [
            "code", "code", "papers", "code", "code", "papers", "code", "code", "papers", "code",
        ];
        let c = cents(&[("code", 0.40), ("papers", 0.20)]);
        let (d, _) = decide(&head, &c, &[], &cfg);
        assert_eq!(d, Decision::Boost("code".into()));
    }

    #[test]
    fn descriptions_count_only_when_every_collection_has_one() {
        let cfg = RouteConfig::default();
        let head = [
            "code", "papers", "code", "papers", "code", "papers", "code", "papers", "code",
            "papers",
        ];
        let c = cents(&[("code", 0.30), ("papers", 0.30)]);
        // Centroids tie; descriptions point to papers: papers leads, boosted not restricted.
        let (d, r) = decide(&head, &c, &[Some(0.1), Some(0.5)], &cfg);
        assert_eq!(d, Decision::Boost("papers".into()), "{r:?}");
        assert!(r.signals[1].description.unwrap() > 0.99);
        // One collection without a description: descriptions are left out.
        let (d, r) = decide(&head, &c, &[None, Some(0.5)], &cfg);
        assert_eq!(d, Decision::All);
        assert!(r.signals.iter().all(|s| s.description.is_none()));
    }

    #[test]
    fn one_collection_is_never_routed() {
        let (d, r) = decide(
            &["only"; 3],
            &cents(&[("only", 0.9)]),
            &[],
            &RouteConfig::default(),
        );
        assert_eq!(d, Decision::All);
        assert_eq!(r.top, None);
        assert!("sideways".parse::<RouteMode>().is_err());
    }
}
