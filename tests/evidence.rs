//! Document evidence ([`pinpoint::evidence`]) on a documentation folder: a FAQ answers the
//! question in one entry, the command's own page in several sections. The page is handed
//! over first, the FAQ's entry still comes along, and `--explain` says what the page's
//! other sections added; without the stage, the FAQ's entry is first.

use pinpoint::{DeviceChoice, Engine, EngineConfig, SearchRequest};

use crate::util::real_model;

fn write_docs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("commands")).unwrap();
    let mut faq = String::from("# Frequently Asked Questions\n\n");
    for (q, a) in [
        (
            "Why is Cargo written in Rust?",
            "Cargo is a Rust program, built with the toolchain it serves.",
        ),
        (
            "Does Cargo work on Windows?",
            "Yes: every release is tested on Windows, Linux and macOS.",
        ),
        (
            "Why do binaries keep a Cargo.lock?",
            "So that every build of an application uses the same versions.",
        ),
        (
            "How do I build offline?",
            "For offline builds, vendor all dependencies of the \
            project beforehand (or fetch them), then build with --offline: Cargo will not touch \
            the network and uses the vendored dependencies.",
        ),
        (
            "Can Cargo build C code?",
            "A build script can compile C sources with the cc crate.",
        ),
        (
            "Why are my builds slow?",
            "Try incremental compilation and a faster linker.",
        ),
    ] {
        faq.push_str(&format!("## {q}\n\n{a}\n\n"));
    }
    std::fs::write(dir.join("faq.md"), faq).unwrap();
    std::fs::write(
        dir.join("commands/cargo-vendor.md"),
        "# cargo-vendor\n\n## Name\n\ncargo-vendor: vendor all dependencies locally.\n\n\
         ## Description\n\nThis cargo subcommand vendors all crates.io and git dependencies \
         for a project into the specified directory. After it finishes, the vendored \
         sources can be used by the build instead of the network.\n\n\
         ## Options\n\n--no-delete: do not delete the older vendor directory. \
         --versioned-dirs: always include the version in the directory name. \
         --respect-source-config: use the source replacement of the configuration.\n\n\
         ## Examples\n\nVendor all dependencies into a local vendor folder for offline \
         builds: cargo vendor. Then point the build configuration at the vendored sources.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("commands/cargo-fetch.md"),
        "# cargo-fetch\n\n## Description\n\nFetch dependencies of a package from the network, \
         so that later commands can run without it.\n",
    )
    .unwrap();
}

fn first_paths(e: &Engine, req: &SearchRequest) -> Vec<String> {
    e.search(req).unwrap().into_iter().map(|h| h.path).collect()
}

#[test]
fn the_page_with_several_matching_sections_comes_before_a_lone_faq_entry() {
    let work = tempfile::tempdir().unwrap();
    let docs = work.path().join("docs");
    write_docs(&docs);
    let cfg = EngineConfig {
        model_dir: Some(real_model()),
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let mut e = Engine::create(work.path().join("idx"), cfg).unwrap();
    e.add_folder(&docs).unwrap();
    let q = "How do I vendor all dependencies for offline builds?";
    let mut req = SearchRequest::new(q, 5);
    req.pipeline = e.default_pipeline();
    req.explain = true;
    let hits = e.search(&req).unwrap();
    let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(
        paths.first(),
        Some(&"commands/cargo-vendor.md"),
        "{paths:?}"
    );
    assert!(paths.contains(&"faq.md"), "{paths:?}");
    let added = hits[0].explain.as_ref().and_then(|x| x.doc_evidence);
    assert!(added.is_some_and(|a| a > 0.0), "{:?}", hits[0].explain);

    let mut alone = req.clone();
    alone.pipeline.doc_evidence = None;
    let paths = first_paths(&e, &alone);
    assert_eq!(
        paths.first().map(String::as_str),
        Some("faq.md"),
        "{paths:?}"
    );
}
