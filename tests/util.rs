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

/// Runs `pinpoint` with `args`, expecting a user error: exit code 1 and a message on
/// stderr that contains `needle`. Returns the message.
pub fn user_error(cwd: &Path, args: &[&str], needle: &str) -> String {
    let o = pinpoint(cwd, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    err
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

/// A PDF with one page per entry of `pages`, each line of a page drawn as its own text line
/// (as a typesetter would), in a standard font. Written with lopdf, the library the PDF
/// reader is built on, so the reader under test parses a file from an independent writer.
pub fn write_pdf(path: &Path, pages: &[&[&str]]) {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};

    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids: Vec<Object> = Vec::new();
    for lines in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![72.into(), 770.into()]),
        ];
        for line in lines.iter() {
            ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops }.encode().unwrap();
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    doc.save(path).unwrap();
}

/// The graph file (relative to the index folder) of the first segment that has one.
pub fn graph_base(e: &pinpoint::Engine) -> Option<String> {
    e.manifest()
        .segments
        .iter()
        .find_map(|s| s.graph_file.clone())
}

/// Rows the segments' graphs cover together (each graph file mapped for this), deleted
/// chunks that a graph still holds included.
pub fn graph_points(e: &pinpoint::Engine) -> usize {
    e.segments()
        .segments()
        .iter()
        .filter_map(|s| s.graph_file().unwrap())
        .map(|g| g.rows())
        .sum()
}
