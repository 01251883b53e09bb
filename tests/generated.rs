//! Generated, minified and lock files are skipped with a reason (and indexed on request),
//! on small fixtures of each kind and on the toolchain's own documentation folders.

use std::path::{Path, PathBuf};

use pinpoint::ingest::{self, generated::Generated, IngestConfig, SkipReason};
use pinpoint::Engine;

use crate::util::*;

fn fixtures() -> PathBuf {
    root().join("tests/data/generated")
}

fn rule_of(r: &pinpoint::IndexReport, name: &str) -> Option<Generated> {
    r.skipped.iter().find_map(|s| match &s.reason {
        SkipReason::Generated { rule } if s.path.ends_with(name) => Some(*rule),
        _ => None,
    })
}

#[test]
fn each_kind_of_generated_file_is_skipped_with_its_rule() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(fixtures()).unwrap();
    assert_eq!(
        rule_of(&r, "searchindex-0a1b2c3d.js"),
        Some(Generated::SearchIndex)
    );
    assert_eq!(rule_of(&r, "bundle.js"), Some(Generated::Minified));
    assert_eq!(rule_of(&r, "vendor.min.js"), Some(Generated::Minified));
    assert_eq!(rule_of(&r, "generated_pb.go"), Some(Generated::Marked));
    assert_eq!(rule_of(&r, "package-lock.json"), Some(Generated::LockFile));
    // Ordinary code and data are indexed: a long source file, a JSON config.
    let mut keys: Vec<String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    keys.sort();
    assert_eq!(keys, ["config.json", "long_source.rs"]);
    let reason = r
        .skipped
        .iter()
        .find(|s| s.path.ends_with("bundle.js"))
        .unwrap();
    assert!(
        reason.reason.to_string().contains("--include-generated"),
        "{}",
        reason.reason
    );

    // Asked for, they are indexed; asked no more, the next sync removes them again.
    let mut cfg = fake_config();
    cfg.ingest.include_generated = true;
    let idx2 = tempfile::tempdir().unwrap();
    let mut all = Engine::create(idx2.path(), cfg).unwrap();
    let r = all.add_folder(fixtures()).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(all.documents().unwrap().len(), 7);
    drop(all);
    let mut again = Engine::open(idx2.path(), fake_config()).unwrap();
    let r = again.add_folder(fixtures()).unwrap();
    assert_eq!(r.removed, 5, "{r:?}");
}

#[test]
fn the_cli_lists_generated_files_and_indexes_them_on_request() {
    let work = tempfile::tempdir().unwrap();
    let m = real_model();
    let f = fixtures();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            f.to_str().unwrap(),
            "--index",
            "i",
            "--model",
            m.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("indexed 2 files"), "{out}");
    assert!(out.contains("skipped 5"), "{out}");
    assert!(out.contains("a documentation search index"), "{out}");
    let o = pinpoint(
        work.path(),
        &[
            "index",
            f.to_str().unwrap(),
            "--index",
            "j",
            "--model",
            m.to_str().unwrap(),
            "--include-generated",
        ],
    );
    assert!(stdout(&o).contains("indexed 7 files"), "{}", stdout(&o));
}

/// The toolchain's documentation (`rustc --print sysroot`/share/doc/rust/html), as
/// installed: mdBook books with their search indexes and bundles, rustdoc's `std`.
fn toolchain_docs() -> Option<PathBuf> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("share/doc/rust/html");
    p.join("book").is_dir().then_some(p)
}

#[test]
fn real_generated_files_of_the_toolchain_docs_are_recognised() {
    let Some(docs) = toolchain_docs() else {
        // The rust-docs component is part of the default profile; a minimal toolchain
        // lacks it, and the fixtures above still cover every rule.
        eprintln!("note: no toolchain docs (rustup component add rust-docs); skipped");
        return;
    };
    let cfg = IngestConfig::default();
    for book in ["book", "cargo", "reference"] {
        let root = docs.join(book);
        let walked = ingest::walk(&root, &cfg);
        let (mut search, mut minified, mut chapters) = (0, 0, 0);
        for p in &walked.files {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let r = ingest::read_document(&root, p, &cfg);
            if name.starts_with("searchindex") {
                assert!(
                    matches!(
                        r,
                        Err(SkipReason::Generated {
                            rule: Generated::SearchIndex
                        })
                    ),
                    "{}",
                    p.display()
                );
                search += 1;
            } else if name.ends_with(".min.js")
                || (name.starts_with("highlight-") && name.ends_with(".js"))
            {
                assert!(
                    matches!(
                        r,
                        Err(SkipReason::Generated {
                            rule: Generated::Minified
                        })
                    ),
                    "{}: {:?}",
                    p.display(),
                    r.err()
                );
                minified += 1;
            } else if name.ends_with(".html") {
                // Every page is indexed, the aggregate print.html included (its copies
                // are told apart at query time).
                assert!(r.is_ok(), "{}: {:?}", p.display(), r.err());
                chapters += 1;
            }
        }
        assert!(
            search >= 1 && minified >= 2 && chapters >= 20,
            "{book}: {search} {minified} {chapters}"
        );
    }
    // rustdoc: the search index folder and the sidebar data are generated; pages are not.
    let std_root = docs.clone();
    let cfg = IngestConfig::default();
    let sidebar = docs.join("std/sidebar-items1.95.0.js");
    if sidebar.is_file() {
        assert!(matches!(
            ingest::read_document(&std_root, &sidebar, &cfg),
            Err(SkipReason::Generated { .. })
        ));
    }
    if let Some(first) = std::fs::read_dir(docs.join("search.index"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
    {
        let r = ingest::read_document(&std_root, &first.path(), &cfg);
        assert!(
            matches!(
                r,
                Err(SkipReason::Generated {
                    rule: Generated::SearchIndex
                })
            ),
            "{:?}",
            r.err()
        );
    }
    let page = docs.join("std/vec/struct.Vec.html");
    if page.is_file() {
        assert!(ingest::read_document(&std_root, &page, &cfg).is_ok());
    }
}

/// A folder of Cargo-like reference pages that repeat one option section word for word
/// (Cargo's command pages all hold "Feature Selection") and the concept page that answers
/// a question about features, indexed with the real model in `work/idx`.
fn index_feature_pages(work: &Path) {
    let docs = work.join("docs");
    std::fs::create_dir_all(docs.join("commands")).unwrap();
    let section = "## Feature Selection\n\nThe feature flags allow you to control which \
        features are enabled. When no feature options are given, the default feature is \
        activated for every selected package. See the features documentation for more \
        details.\n\n-F features, --features features: space or comma separated list of \
        features to activate. Features of workspace members may be enabled with \
        package-name/feature-name syntax. This flag may be specified multiple times, which \
        enables all specified features.\n\n--all-features: activate all available features \
        of all selected packages.\n\n--no-default-features: do not activate the default \
        feature of the selected packages.\n";
    let verbs = [
        "build", "check", "test", "bench", "run", "doc", "fix", "tree", "package", "publish",
        "install", "rustc", "rustdoc", "metadata", "vendor", "clippy", "update", "fetch", "clean",
        "add", "remove", "search", "login", "owner", "yank", "report",
    ];
    for v in verbs {
        std::fs::write(
            docs.join(format!("commands/cargo-{v}.md")),
            format!("# cargo-{v}\n\nThe {v} command of the package manager.\n\n{section}"),
        )
        .unwrap();
    }
    std::fs::write(
        docs.join("features.md"),
        "# Features\n\nCargo features provide a mechanism to express conditional compilation \
         and optional dependencies. A package defines a set of named features in the \
         [features] table of Cargo.toml, and each feature can either be enabled or \
         disabled.\n\n## Optional dependencies\n\nDependencies can be marked optional, \
         which means they will not be compiled by default. An optional dependency \
         implicitly defines a feature of the same name. You turn it on by listing it in \
         another feature or by asking for it when the crate is used as a dependency.\n",
    )
    .unwrap();
    let model = real_model();
    let o = pinpoint(
        work,
        &[
            "index",
            "docs",
            "--index",
            "idx",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The paths `query -k k` hands over for the features question on [`index_feature_pages`].
fn feature_hits(work: &Path, k: usize) -> Vec<String> {
    let o = pinpoint(
        work,
        &[
            "query",
            "What are optional features and how do I enable them?",
            "--index",
            "idx",
            "-k",
            &k.to_string(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

/// Reference pages that repeat one option section word for word must not fill the
/// reranked head: the concept page that answers the question is reranked and handed over,
/// and the copies once.
#[test]
fn copies_of_a_section_do_not_crowd_the_concept_page_out_of_the_reranked_head() {
    let work = tempfile::tempdir().unwrap();
    index_feature_pages(work.path());
    let paths = feature_hits(work.path(), 5);
    assert!(paths.iter().any(|p| p == "features.md"), "{paths:?}");
    let copies = paths.iter().filter(|p| p.starts_with("commands/")).count();
    assert!(
        copies <= 1,
        "the section handed over {copies} times: {paths:?}"
    );
}

/// The relative cut-off is measured against the score of the 20th *distinct* passage, so a
/// question is cut at the same place whatever `k` asks for. With 26 copies of a section
/// near the top, a selection that read only 4k entries (20 for `-k 5`) found a dozen
/// distinct texts, a higher floor, and cut the copy it hands over at `-k 8` and above.
#[test]
fn copies_near_the_top_do_not_make_the_cut_off_depend_on_k() {
    let work = tempfile::tempdir().unwrap();
    index_feature_pages(work.path());
    let wide = feature_hits(work.path(), 12);
    assert!(
        wide.len() < 12,
        "the cut-off should stop this question: {wide:?}"
    );
    for k in [wide.len() + 1, 5, 8] {
        assert_eq!(feature_hits(work.path(), k), wide, "-k {k} against -k 12");
    }
}
