//! The cross-encoder path, tested with a tiny generated `BertForSequenceClassification`
//! against an independent forward pass written here with plain arithmetic (no candle ops).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::bert::{BertModel, Config};
use pinpoint::rerank::{CrossEncoder, Reranker};
use pinpoint::DeviceChoice;

use crate::tiny_bert::{write_tiny_bert, WORDS};

fn write_tiny_cross_encoder(dir: &Path, labels: usize) {
    write_tiny_bert(dir); // config.json + tokenizer.json; weights replaced below
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    cfg["num_labels"] = serde_json::json!(labels);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let bert_cfg: Config = serde_json::from_value(cfg).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    BertModel::load(vb.pp("bert"), &bert_cfg).unwrap();
    candle_nn::linear(32, 32, vb.pp("bert.pooler.dense")).unwrap();
    candle_nn::linear(32, labels, vb.pp("classifier")).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
}

/// Weights as flat f32 vectors.
struct W(HashMap<String, Vec<f32>>);

impl W {
    fn load(path: &Path) -> W {
        let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
        W(t.into_iter()
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect())
    }
    fn get(&self, k: &str) -> &[f32] {
        self.0.get(k).unwrap_or_else(|| panic!("no tensor {k}"))
    }
    /// y = W x + b, W stored [out, in].
    fn linear(&self, prefix: &str, x: &[f32]) -> Vec<f32> {
        let w = self.get(&format!("{prefix}.weight"));
        let b = self.get(&format!("{prefix}.bias"));
        let n_in = x.len();
        (0..b.len())
            .map(|o| b[o] + (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum::<f32>())
            .collect()
    }
    fn layer_norm(&self, prefix: &str, x: &[f32]) -> Vec<f32> {
        let g = self.get(&format!("{prefix}.weight"));
        let b = self.get(&format!("{prefix}.bias"));
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * g[i] + b[i])
            .collect()
    }
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let x = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    s * y as f32
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The network by hand: embeddings, 2 encoder layers, pooler, classifier.
fn reference_logits(w: &W, ids: &[usize], types: &[usize], labels: usize) -> Vec<f32> {
    let (h, heads) = (32, 4);
    let hd = h / heads;
    let row = |name: &str, i: usize| w.get(name)[i * h..(i + 1) * h].to_vec();
    let mut x: Vec<Vec<f32>> = (0..ids.len())
        .map(|t| {
            let e = add(
                &row("bert.embeddings.word_embeddings.weight", ids[t]),
                &row("bert.embeddings.position_embeddings.weight", t),
            );
            let e = add(
                &e,
                &row("bert.embeddings.token_type_embeddings.weight", types[t]),
            );
            w.layer_norm("bert.embeddings.LayerNorm", &e)
        })
        .collect();
    for l in 0..2 {
        let p = format!("bert.encoder.layer.{l}");
        let q: Vec<Vec<f32>> = x
            .iter()
            .map(|v| w.linear(&format!("{p}.attention.self.query"), v))
            .collect();
        let k: Vec<Vec<f32>> = x
            .iter()
            .map(|v| w.linear(&format!("{p}.attention.self.key"), v))
            .collect();
        let v: Vec<Vec<f32>> = x
            .iter()
            .map(|v| w.linear(&format!("{p}.attention.self.value"), v))
            .collect();
        let n = x.len();
        let mut ctx = vec![vec![0f32; h]; n];
        for hh in 0..heads {
            let r = hh * hd..(hh + 1) * hd;
            for i in 0..n {
                let scores: Vec<f32> = (0..n)
                    .map(|j| {
                        q[i][r.clone()]
                            .iter()
                            .zip(&k[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for j in 0..n {
                    for d in r.clone() {
                        ctx[i][d] += e[j] / z * v[j][d];
                    }
                }
            }
        }
        x = (0..n)
            .map(|i| {
                let a = w.linear(&format!("{p}.attention.output.dense"), &ctx[i]);
                let a = w.layer_norm(&format!("{p}.attention.output.LayerNorm"), &add(&a, &x[i]));
                let inter: Vec<f32> = w
                    .linear(&format!("{p}.intermediate.dense"), &a)
                    .into_iter()
                    .map(gelu)
                    .collect();
                let o = w.linear(&format!("{p}.output.dense"), &inter);
                w.layer_norm(&format!("{p}.output.LayerNorm"), &add(&o, &a))
            })
            .collect();
    }
    let pooled: Vec<f32> = w
        .linear("bert.pooler.dense", &x[0])
        .into_iter()
        .map(f32::tanh)
        .collect();
    let logits = w.linear("classifier", &pooled);
    assert_eq!(logits.len(), labels);
    logits
}

fn word_id(wd: &str) -> usize {
    4 + WORDS.iter().position(|x| *x == wd).unwrap()
}

fn pair_ids(q: &str, p: &str) -> (Vec<usize>, Vec<usize>) {
    let mut ids = vec![2];
    ids.extend(q.split_whitespace().map(word_id));
    ids.push(3);
    let first = ids.len();
    ids.extend(p.split_whitespace().map(word_id));
    ids.push(3);
    let types = (0..ids.len()).map(|i| usize::from(i >= first)).collect();
    (ids, types)
}

#[test]
fn cross_encoder_logits_match_an_independent_computation() {
    for labels in [1, 2] {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_cross_encoder(tmp.path(), labels);
        let ce = CrossEncoder::load(tmp.path(), DeviceChoice::Cpu).unwrap();
        let w = W::load(&tmp.path().join("model.safetensors"));
        let query = "the cat";
        // Different lengths, so the batch is padded.
        let passages = [
            "a big red ball",
            "the dog sat on the mat and ran fast",
            "sky",
        ];
        let got = ce.score(query, &passages).unwrap();
        for (p, g) in passages.iter().zip(&got) {
            let (ids, types) = pair_ids(query, p);
            let l = reference_logits(&w, &ids, &types, labels);
            let want = if labels == 1 { l[0] } else { l[1] - l[0] };
            assert!(
                (g - want).abs() < 1e-4,
                "labels {labels}, {p:?}: got {g}, want {want}"
            );
        }
        // Scores differ between passages (the test would pass vacuously otherwise).
        assert!((got[0] - got[1]).abs() > 1e-6);
    }
}

#[test]
fn a_bi_encoder_folder_is_not_taken_for_a_cross_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_bert(tmp.path());
    let e = CrossEncoder::load(tmp.path(), DeviceChoice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a cross-encoder"), "{e}");
}
