//! The `pinpoint` binary: the JSON contract, exit codes and the skip report.

use crate::util::*;

#[test]
fn index_query_stats_contract_and_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("docs");
    copy_dir(&samples(), &src);
    std::fs::write(src.join("blob.txt"), [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    std::fs::write(src.join("latin1.txt"), b"caf\xe9 cr\xe8me br\xfbl\xe9e").unwrap();
    let model = real_model();
    let model = model.to_str().unwrap();

    let o = pinpoint(
        work.path(),
        &["index", "docs", "--index", "idx", "--model", model],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("skipped 2"), "{out}");
    assert!(out.contains("blob.txt: binary file"), "{out}");
    assert!(out.contains("latin1.txt: invalid UTF-8 at byte 3"), "{out}");

    let o = pinpoint(
        work.path(),
        &[
            "query",
            "why does the sea level go up and down each day",
            "--index",
            "idx",
            "-k",
            "3",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["query"], "why does the sea level go up and down each day");
    assert_eq!(v["mode"], "hybrid");
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    for (i, h) in hits.iter().enumerate() {
        let keys: Vec<&str> = h.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "rank",
            "path",
            "line_start",
            "line_end",
            "heading",
            "score",
            "text",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(h["rank"].as_u64().unwrap() as usize, i + 1);
        assert!(h["line_start"].as_u64().unwrap() <= h["line_end"].as_u64().unwrap());
    }
    assert_eq!(hits[0]["path"], "tides.txt");

    // Human output: path:lines  score, then an indented snippet.
    let o = pinpoint(
        work.path(),
        &[
            "query",
            "stretch and fold the dough",
            "--index",
            "idx",
            "-k",
            "1",
            "--mode",
            "lexical",
        ],
    );
    let out = stdout(&o);
    assert!(out.starts_with("sourdough.txt:"), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("    "), "{out}");

    let o = pinpoint(work.path(), &["stats", "--index", "idx"]);
    let out = stdout(&o);
    assert!(
        out.contains("documents   22") && out.contains("dimension   384"),
        "{out}"
    );

    // User errors: exit 1 with a message, no backtrace.
    let o = pinpoint(work.path(), &["query", "x", "--index", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = pinpoint(
        work.path(),
        &["query", "x", "--index", "idx", "--mode", "psychic"],
    );
    assert_eq!(o.status.code(), Some(1));
    let o = pinpoint(
        work.path(),
        &["index", "docs", "--index", "idx2", "--model", "docs"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    let o = pinpoint(work.path(), &["query", "x", "--index", "docs"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a pinpoint index"),
        "{}",
        stderr(&o)
    );
    let o = pinpoint(work.path(), &["frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
}
