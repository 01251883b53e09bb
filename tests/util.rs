//! Shared helpers: temp corpora, the real model's location, the CLI runner.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use pinpoint::{EngineConfig, HashEmbedder};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled sample folder.
pub fn samples() -> PathBuf {
    root().join("samples")
}

/// The real model folder; panics with the fix when it is missing, because CI fetches it and
/// a silently skipped model test would hide a broken setup.
pub fn real_model() -> PathBuf {
    let p = root().join("models/all-MiniLM-L6-v2");
    assert!(
        p.join("model.safetensors").is_file(),
        "the real model is missing: run scripts/fetch-models.sh (the README's test command does)"
    );
    p
}

/// Engine config with the deterministic hashing embedder.
pub fn fake_config() -> EngineConfig {
    EngineConfig {
        embedder: Some(Arc::new(HashEmbedder::new(128))),
        ..Default::default()
    }
}

/// Copies a folder tree (files only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Runs the `pinpoint` binary with `args` in `cwd`.
pub fn pinpoint(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinpoint"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run pinpoint")
}

/// stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// stderr as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Largest element-wise absolute difference of two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
