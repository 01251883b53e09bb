//! Locating and validating a model folder.
//!
//! A model folder is what Hugging Face publishes for a BERT-family model: `config.json`,
//! `tokenizer.json` and `model.safetensors` (plus, for sentence-transformers models,
//! `sentence_bert_config.json` and `1_Pooling/config.json`). Validation happens here, before
//! anything is memory-mapped, so that a missing or malformed file is an error that names it
//! instead of a failure deep inside candle.
//!
//! Not for: running a model ([`crate::embed`] and its CPU encoder).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Default model folder, relative to the working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the tokens under the attention mask (sentence-transformers default).
    Mean,
    /// The vector of the first (`[CLS]`) token (BGE family).
    Cls,
}

/// What a model needs besides its weights: pooling, length limit and the prefixes that
/// asymmetric models (E5, BGE) expect in front of queries and passages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct ModelSpec {
    /// Stable identity: folder name plus a hash of its config and weights size.
    pub id: String,
    /// Output dimension (hidden size).
    pub dim: usize,
    /// Pooling mode.
    pub pooling: Pooling,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: usize,
    /// Text put before a query.
    pub query_prefix: String,
    /// Text put before a passage.
    pub passage_prefix: String,
}

/// A validated model folder.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config_path: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer_path: PathBuf,
    /// `model.safetensors`.
    pub weights_path: PathBuf,
    /// Raw `config.json` contents (parsed again by the model that loads it).
    pub config_json: String,
    /// Derived model facts.
    pub spec: ModelSpec,
}

#[derive(Deserialize)]
struct HfConfig {
    hidden_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    _name_or_path: Option<String>,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

impl ModelDir {
    /// Validates `dir` and reads what the engine needs to know about the model.
    pub fn open(dir: impl AsRef<Path>) -> Result<ModelDir> {
        let dir = dir.as_ref().to_path_buf();
        let err = |what: String| Error::Model {
            dir: dir.clone(),
            what,
        };
        if !dir.is_dir() {
            // The fetch script only helps when it is the default model that is missing.
            let hint = if dir.ends_with(DEFAULT_MODEL_DIR) {
                " (fetch it with scripts/fetch-models.sh)"
            } else {
                ""
            };
            return Err(err(format!("folder does not exist{hint}")));
        }
        let config_path = dir.join("config.json");
        let tokenizer_path = dir.join("tokenizer.json");
        let weights_path = dir.join("model.safetensors");
        for p in [&config_path, &tokenizer_path, &weights_path] {
            if !p.is_file() {
                return Err(err(format!("missing file {}", p.display())));
            }
        }
        let config_json = std::fs::read_to_string(&config_path)
            .map_err(|e| err(format!("cannot read {}: {e}", config_path.display())))?;
        let cfg: HfConfig = serde_json::from_str(&config_json)
            .map_err(|e| err(format!("malformed {}: {e}", config_path.display())))?;
        let dim = cfg
            .hidden_size
            .ok_or_else(|| err(format!("{} has no hidden_size", config_path.display())))?;
        let weights_len = std::fs::metadata(&weights_path)
            .map_err(|e| err(format!("cannot stat {}: {e}", weights_path.display())))?
            .len();
        if weights_len < 16 {
            return Err(err(format!(
                "{} is truncated ({weights_len} bytes)",
                weights_path.display()
            )));
        }

        let sbert_max = read_json_opt::<SbertConfig>(&dir.join("sentence_bert_config.json"))
            .map_err(err)?
            .and_then(|c| c.max_seq_length);
        let pos_max = cfg.max_position_embeddings.unwrap_or(512);
        let max_tokens = sbert_max.unwrap_or(pos_max).min(pos_max);

        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into());
        let origin = cfg._name_or_path.clone().unwrap_or_default().to_lowercase();
        let lname = format!("{} {}", name.to_lowercase(), origin);

        let pooling_cfg =
            read_json_opt::<PoolingConfig>(&dir.join("1_Pooling/config.json")).map_err(err)?;
        let pooling = match pooling_cfg {
            Some(p) if p.pooling_mode_cls_token => Pooling::Cls,
            Some(_) => Pooling::Mean,
            None if lname.contains("bge") => Pooling::Cls,
            None => Pooling::Mean,
        };
        let (query_prefix, passage_prefix) = if lname.contains("e5") {
            ("query: ".to_string(), "passage: ".to_string())
        } else if lname.contains("bge") && lname.contains("en") {
            (
                "Represent this sentence for searching relevant passages: ".to_string(),
                String::new(),
            )
        } else {
            (String::new(), String::new())
        };

        let mut h = Sha256::new();
        h.update(config_json.as_bytes());
        h.update(weights_len.to_le_bytes());
        let digest = h.finalize();
        let id = format!("{name}@{}", hex(&digest[..6]));

        Ok(ModelDir {
            dir,
            config_path,
            tokenizer_path,
            weights_path,
            config_json,
            spec: ModelSpec {
                id,
                dim,
                pooling,
                max_tokens,
                query_prefix,
                passage_prefix,
            },
        })
    }
}

fn read_json_opt<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> std::result::Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| format!("malformed {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_and_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = ModelDir::open(tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(tmp.path().join("config.json"), "{\"hidden_size\": 8}").unwrap();
        let e = ModelDir::open(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::write(tmp.path().join("tokenizer.json"), "{}").unwrap();
        let e = ModelDir::open(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        std::fs::write(tmp.path().join("model.safetensors"), vec![0u8; 64]).unwrap();
        std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
        let e = ModelDir::open(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("malformed") && e.contains("config.json"), "{e}");
    }
}
