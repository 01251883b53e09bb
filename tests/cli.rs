//! The `pinpoint` binary: the JSON contract, exit codes and the skip report.

use crate::util::*;

#[test]
fn index_query_stats_contract_and_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("docs");
    copy_dir(&samples(), &src);
    std::fs::write(src.join("blob.txt"), [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    std::fs::write(src.join("latin1.txt"), b"caf\xe9 cr\xe8me br\xfbl\xe9e").unwrap();
    // As Notepad and PowerShell write text: UTF-16LE after a byte-order mark.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        "Ginger tea\r\nSimmer sliced ginger root with honey and lemon.\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    std::fs::write(src.join("tea.txt"), utf16).unwrap();
    std::fs::write(src.join("diagram.png"), b"\x89PNG\r\n").unwrap();
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
    assert!(
        out.contains("1 file of an unsupported type left out"),
        "{out}"
    );

    let o = pinpoint(
        work.path(),
        &[
            "query",
            "sliced ginger root",
            "--index",
            "idx",
            "-k",
            "1",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["hits"][0]["path"], "tea.txt");
    assert_eq!(v["hits"][0]["line_start"], 1);
    assert_eq!(v["hits"][0]["line_end"], 2);

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
            // All k, to check the rank numbering and that -k bounds them.
            "--no-cutoff",
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
            "unit",
            "heading",
            "score",
            "text",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(h["rank"].as_u64().unwrap() as usize, i + 1);
        assert!(h["line_start"].as_u64().unwrap() <= h["line_end"].as_u64().unwrap());
        assert_eq!(h["unit"], "line");
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
        out.contains("documents   23") && out.contains("dimension   384"),
        "{out}"
    );
    let codes: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("token codes "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(codes > 100, "a new index keeps token codes: {out}");
    assert!(out.contains("one per word piece"), "{out}");

    // User errors: exit 1 with a message, no backtrace.
    let w = work.path();
    user_error(w, &["query", "x", "--index", "nope"], "does not exist");
    user_error(
        w,
        &["query", "x", "--index", "idx", "--mode", "psychic"],
        "mode",
    );
    user_error(
        w,
        &[
            "index",
            ".",
            "--index",
            "fresh",
            "--token-units",
            "syllables",
        ],
        "token units",
    );
    user_error(
        w,
        &["index", "docs", "--index", "idx2", "--model", "docs"],
        "config.json",
    );
    user_error(
        w,
        &["query", "x", "--index", "docs"],
        "not a pinpoint index",
    );
    user_error(w, &["frobnicate"], "frobnicate");
    user_error(w, &["query", "x", "--index", "idx", "-k", "0"], "k");
    user_error(
        w,
        &["query", "x", "--index", "idx", "--max-tokens", "0"],
        "max_tokens: must be at least 1",
    );
    // Naming a cross-encoder asks for it, even without --rerank: never silently ignored.
    let args = [
        "query",
        "x",
        "--index",
        "idx",
        "--cross-encoder",
        "no-such-model",
    ];
    user_error(w, &args, "no-such-model");

    // A damaged BM25 segment: exit 1, the folder named, the cause told once.
    copy_dir(&work.path().join("idx"), &work.path().join("broken"));
    for e in std::fs::read_dir(work.path().join("broken/lexical")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx") {
            std::fs::write(&p, b"not a term dictionary").unwrap();
        }
    }
    let err = user_error(
        w,
        &["query", "x", "--index", "broken"],
        "broken/lexical is corrupt",
    );
    assert!(err.contains("--rebuild"), "{err}");
    assert_eq!(err.matches("Footer").count(), 1, "{err}");
}

#[test]
fn explain_is_consistent_with_the_final_order() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let s = samples();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            s.to_str().unwrap(),
            "--index",
            "idx",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let check_query = |query: &str, args: &[&str]| {
        let mut full = vec![
            "query",
            query,
            "--index",
            "idx",
            "-k",
            "6",
            "--json",
            "--explain",
        ];
        full.extend_from_slice(args);
        let o = pinpoint(work.path(), &full);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let hits = v["hits"].as_array().unwrap().clone();
        assert!(!hits.is_empty());
        let mut prev = f64::INFINITY;
        for h in &hits {
            let e = &h["explain"];
            let score = h["score"].as_f64().unwrap();
            assert!(
                (e["final_score"].as_f64().unwrap() - score).abs() < 1e-6,
                "{h}"
            );
            assert!(
                score <= prev + 1e-9,
                "hits not in final-score order: {hits:?}"
            );
            prev = score;
            assert!(e["kept"].as_str().is_some_and(|k| !k.is_empty()));
        }
        hits
    };
    let check = |args: &[&str]| check_query("how do storms get their energy from the ocean", args);
    // Without reranking or rules, the final order is the fused order (selection only drops).
    let hits = check(&["--no-rerank"]);
    assert!(hits.iter().all(|h| h["explain"]["rerank_score"].is_null()));
    let fused: Vec<u64> = hits
        .iter()
        .map(|h| h["explain"]["fused_rank"].as_u64().unwrap())
        .collect();
    assert!(fused.windows(2).all(|w| w[0] < w[1]), "{fused:?}");
    assert_eq!(hits[0]["path"], "hurricanes.html");
    for h in &hits {
        let e = &h["explain"];
        assert!(
            e["lexical_rank"].is_u64() || e["dense_rank"].is_u64(),
            "a hit comes from some leg: {e}"
        );
    }
    // The default reranks the fused top 20 with the stored token codes.
    let hits = check(&[]);
    for h in &hits {
        let e = &h["explain"];
        let in_head = e["fused_rank"].as_u64().unwrap() <= 20;
        assert_eq!(e["rerank_score"].is_f64(), in_head, "{e}");
        assert!(
            (e["rerank_weight"].as_f64().unwrap() - 0.6).abs() < 1e-6,
            "{e}"
        );
    }
    assert_eq!(hits[0]["path"], "hurricanes.html");
    // A paragraph-long query is not reranked by token MaxSim (its weight fades to 0 from 64
    // query tokens): no rerank scores, and the final order is the fused order.
    let long = "Hurricanes and typhoons are storms that form over warm tropical oceans, \
        drawing their energy from the heat and moisture of the sea surface; as the warm \
        air rises and condenses it releases latent heat, which lowers the pressure, draws \
        in more air and strengthens the winds, until the storm reaches cooler water or land \
        and weakens because its supply of warm moist air has been cut off.";
    let hits = check_query(long, &[]);
    let mut prev = 0;
    for h in &hits {
        let e = &h["explain"];
        assert!(e["rerank_score"].is_null(), "{e}");
        assert_eq!(e["rerank_weight"].as_f64(), Some(0.0), "{e}");
        let rank = e["fused_rank"].as_u64().unwrap();
        assert!(rank > prev, "not in fused order: {hits:?}");
        prev = rank;
    }
    // The adaptive cut-off: every hit holds at least 0.4 of the top's margin (its reason
    // says so, unless it merged), and `--no-cutoff` hands over all k in the same order.
    let all = check(&["--no-cutoff"]);
    assert_eq!(all.len(), 6);
    assert!(
        hits.len() < all.len(),
        "the default cuts this query: {hits:?}"
    );
    for (h, a) in hits.iter().zip(&all) {
        assert_eq!(h["path"], a["path"]);
    }
    let mut shares = 0;
    for h in &hits {
        let kept = h["explain"]["kept"].as_str().unwrap();
        if let Some(share) = kept
            .strip_prefix("score ")
            .and_then(|r| r.split(' ').next())
            .and_then(|x| x.parse::<f64>().ok())
        {
            assert!(share >= 0.4, "{kept}");
            shares += 1;
        }
    }
    assert!(shares > 0, "no hit gives its share of the margin: {hits:?}");
    // A boost rule reorders, and the explanation shows the factor that did it.
    let hits = check(&["--boost", "tides.txt=50"]);
    assert_eq!(hits[0]["path"], "tides.txt");
    assert!((hits[0]["explain"]["rule_factor"].as_f64().unwrap() - 50.0).abs() < 1e-6);
    // The token-level reranker (the default bi-encoder reranker) scores exactly the head it
    // was given, and the final order stays consistent with the final scores (checked above).
    let hits = check(&["--rerank", "--rerank-depth", "4"]);
    for h in &hits {
        let e = &h["explain"];
        let in_head = e["fused_rank"].as_u64().unwrap() <= 4;
        assert_eq!(e["rerank_score"].is_f64(), in_head, "{e}");
    }
    let args = ["query", "x", "--index", "idx", "--reranker", "bogus"];
    user_error(work.path(), &args, "reranker");
}
