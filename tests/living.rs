//! A living index: hostile folders, concurrent readers, stale locks, watch, verify, compact.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinpoint::dense::HnswParams;
use pinpoint::{Engine, Mode, SearchRequest};

use crate::util::*;

#[cfg(unix)]
#[test]
fn hostile_folder_is_indexed_without_panic_or_escape() {
    use std::ffi::OsStr;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("good.md"),
        "# Good\nA normal document about lighthouses and their keepers.",
    )
    .unwrap();
    std::fs::write(root.join("binary.txt"), [7u8, 0, 1, 2, 0, 255]).unwrap();
    std::fs::write(root.join("invalid.md"), b"valid start \xc3\x28 broken").unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    // 200 MB of text and one 50 MB line.
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join("big.txt")).unwrap());
        let line = "all work and no play makes a dull index\n".repeat(1000);
        while f.get_ref().metadata().unwrap().len() < 200 * 1024 * 1024 {
            f.write_all(line.as_bytes()).unwrap();
            f.flush().unwrap();
        }
    }
    std::fs::write(root.join("oneline.txt"), "x".repeat(50 * 1024 * 1024)).unwrap();
    // 60 levels deep.
    let mut deep = root.clone();
    for _ in 0..60 {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(
        deep.join("deep.txt"),
        "A file at the bottom of a very deep folder tree about submarines.",
    )
    .unwrap();
    // Links: a loop, and a file outside the root.
    symlink(".", root.join("loop")).unwrap();
    let outside = work.path().join("secret.txt");
    std::fs::write(&outside, "xylophonist secret outside the root").unwrap();
    symlink(&outside, root.join("outside.txt")).unwrap();
    // Odd names.
    std::fs::write(
        root.join("new\nline.txt"),
        "A file whose name holds a newline, about glaciers.",
    )
    .unwrap();
    std::fs::write(
        root.join(OsStr::from_bytes(b"bad\xffname.txt")),
        "A file whose name is not UTF-8, about volcanoes.",
    )
    .unwrap();
    // Unreadable (root ignores permission bits, so as root the file is simply read).
    let locked = root.join("locked.txt");
    std::fs::write(&locked, "locked content about owls").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);

    let model = real_model();
    let o = Command::new(env!("CARGO_BIN_EXE_pinpoint"))
        .args([
            "index",
            root.to_str().unwrap(),
            "--index",
            "idx",
            "--json",
            "--model",
            model.to_str().unwrap(),
        ])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let skipped = v["skipped"].as_array().unwrap();
    let reason_of = |name: &str| -> String {
        skipped
            .iter()
            .find(|s| s["path"].as_str().unwrap_or("").ends_with(name))
            .map(|s| s["reason"]["reason"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(reason_of("binary.txt"), "binary");
    assert_eq!(reason_of("invalid.md"), "invalid_utf8");
    assert_eq!(reason_of("empty.txt"), "empty");
    assert_eq!(reason_of("big.txt"), "too_large");
    assert_eq!(reason_of("oneline.txt"), "too_large");
    assert_eq!(reason_of("loop"), "symlink");
    assert_eq!(reason_of("outside.txt"), "symlink");
    if !is_root {
        assert_eq!(reason_of("locked.txt"), "unreadable");
    }
    let peak = v["peak_rss_bytes"].as_u64().unwrap();
    println!(
        "hostile folder: {} skipped, peak RSS {} MiB",
        skipped.len(),
        peak >> 20
    );
    assert!(
        peak < 1024 * 1024 * 1024,
        "memory not bounded: {peak} bytes"
    );

    let e = Engine::open_read_only(
        work.path().join("idx"),
        pinpoint::EngineConfig {
            model_dir: Some(model.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let keys: Vec<String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    assert!(keys.iter().any(|k| k.ends_with("deep.txt")), "{keys:?}");
    assert!(keys.iter().any(|k| k == "new\nline.txt"), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("bad") && k.ends_with("name.txt")),
        "{keys:?}"
    );
    // Nothing from outside the root.
    let hits = e
        .search(&SearchRequest::new("xylophonist secret", 20).mode(Mode::Lexical))
        .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    assert!(e.verify().unwrap().is_empty());
}

#[test]
fn stale_lock_of_a_dead_process_is_taken_over() {
    let idx = tempfile::tempdir().unwrap();
    drop(Engine::create(idx.path(), fake_config()).unwrap());
    // A pid that cannot be alive (above the kernel's pid_max default).
    std::fs::write(idx.path().join("LOCK"), "4194305\n").unwrap();
    let mut e = Engine::open(idx.path(), fake_config()).unwrap();
    e.add_document("a", "A", "alpha text").unwrap();
    e.commit().unwrap();
}

#[test]
fn readers_keep_working_while_a_writer_commits() {
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let mut w = Engine::create(idx.path(), fake_config()).unwrap();
    w.add_folder(src.path()).unwrap();
    let reader = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let before = reader
        .search(&SearchRequest::new("volcano magma", 5).mode(Mode::Dense))
        .unwrap();
    let n_before = reader.documents().unwrap().len();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            for round in 0..4 {
                std::fs::write(
                    src.path().join(format!("new{round}.txt")),
                    format!("round {round} about otters"),
                )
                .unwrap();
                std::fs::remove_file(src.path().join(format!("new{}.txt", round.max(1) - 1))).ok();
                w.add_folder(src.path()).unwrap();
            }
        });
        while !h.is_finished() {
            // The reader's generation stays usable and unchanged while the writer commits.
            let r = reader
                .search(&SearchRequest::new("volcano magma", 5).mode(Mode::Dense))
                .unwrap();
            assert_eq!(r, before);
            assert!(reader.search(&SearchRequest::new("otters", 5)).is_ok());
        }
    });
    assert_eq!(reader.documents().unwrap().len(), n_before);
    let fresh = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let hits = fresh
        .search(&SearchRequest::new("otters round 3", 3).mode(Mode::Lexical))
        .unwrap();
    assert_eq!(hits[0].path, "new3.txt");
}

#[test]
fn verify_finds_damage_and_open_names_foreign_files() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    assert!(e.verify().unwrap().is_empty());
    let seg = e.manifest().segments[0].clone();
    drop(e);
    // Flip one byte in the middle of the chunk store: same size, wrong checksum.
    let chunks = idx.path().join(&seg.chunks);
    let mut bytes = std::fs::read(&chunks).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&chunks, &bytes).unwrap();
    let e = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let problems = e.verify().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&seg.chunks) && p.contains("checksum")),
        "{problems:?}"
    );
    let o = pinpoint(idx.path(), &["verify", "--index", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("checksum"), "{}", stdout(&o));
    // A foreign file in place of the vectors: a clear error naming it.
    let vecs = idx.path().join(&seg.vectors);
    let len = std::fs::metadata(&vecs).unwrap().len() as usize;
    std::fs::write(&vecs, vec![b'z'; len]).unwrap();
    let err = Engine::open_read_only(idx.path(), fake_config())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&seg.vectors) && err.contains("magic"), "{err}");
}

#[test]
fn compaction_drops_tombstones_and_keeps_answers() {
    let idx = tempfile::tempdir().unwrap();
    let mut cfg = fake_config();
    cfg.hnsw = HnswParams {
        min_points: 10,
        ..Default::default()
    };
    let mut e = Engine::create(idx.path(), cfg.clone()).unwrap();
    for i in 0..60 {
        e.add_document(
            &format!("d{i}"),
            "t",
            &format!("document number {i} about topic {}", i % 7),
        )
        .unwrap();
    }
    e.commit().unwrap();
    for i in 0..4 {
        e.remove_document(&format!("d{i}")).unwrap();
    }
    e.commit().unwrap();
    assert!(
        graph_points(&e) > e.segments().len(),
        "removed chunks stay in the graph as tombstones"
    );
    let q = SearchRequest::new("topic 3", 10).mode(Mode::Dense);
    let before = e.search(&q).unwrap();
    assert!(before
        .iter()
        .all(|h| !["d0", "d1", "d2", "d3"].contains(&h.path.as_str())));
    e.compact().unwrap();
    assert_eq!(e.manifest().segments.len(), 1);
    assert_eq!(graph_points(&e), e.segments().len());
    let after = e.search(&q).unwrap();
    // Many documents tie on score; compare the (path, score) sets.
    let key = |v: &[pinpoint::Hit]| {
        let mut k: Vec<(String, i64)> = v
            .iter()
            .map(|h| (h.path.clone(), (h.score * 1e5).round() as i64))
            .collect();
        k.sort();
        k
    };
    assert_eq!(key(&before), key(&after));
    // Past the deleted share that rewrites a segment (30%), the merge policy rewrites it
    // after the commit, with a graph built afresh.
    for i in 4..26 {
        e.remove_document(&format!("d{i}")).unwrap();
    }
    e.commit().unwrap();
    assert_eq!(e.manifest().segments[0].deleted, 0);
    assert_eq!(graph_points(&e), e.segments().len());
    drop(e);
    let r = Engine::open_read_only(idx.path(), cfg).unwrap();
    assert!(r.verify().unwrap().is_empty());
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lexical_paths(dir: &Path, q: &str) -> Vec<String> {
    let o = pinpoint(
        dir,
        &[
            "query", q, "--index", "idx", "--mode", "lexical", "--json", "-k", "5",
        ],
    );
    if !o.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_default();
    v["hits"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h["path"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(unix)]
#[test]
fn watch_follows_changes_and_stops_cleanly_on_ctrl_c() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("notes");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("a.txt"),
        "Penguins huddle together in the antarctic winter.",
    )
    .unwrap();
    let model = real_model();
    let child = Command::new(env!("CARGO_BIN_EXE_pinpoint"))
        .args([
            "watch",
            "notes",
            "--index",
            "idx",
            "--debounce-ms",
            "200",
            "--model",
            model.to_str().unwrap(),
        ])
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        || lexical_paths(work.path(), "penguins") == vec!["a.txt".to_string()],
        "the initial sync",
    );
    std::fs::write(folder.join("b.txt"), "Zebras have black and white stripes.").unwrap();
    wait_for(
        || {
            lexical_paths(work.path(), "zebras stripes")
                .first()
                .map(String::as_str)
                == Some("b.txt")
        },
        "a new file",
    );
    std::fs::remove_file(folder.join("a.txt")).unwrap();
    wait_for(
        || lexical_paths(work.path(), "penguins").is_empty(),
        "a deleted file to disappear",
    );
    // Ctrl-C. Signalled directly, not through kill(1) (see Cargo.toml on procps-ng 4.0.2).
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert!(pid > 1);
    // SAFETY: sends SIGINT to one process, our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("index consistent"));
    let o = pinpoint(work.path(), &["verify", "--index", "idx"]);
    assert!(o.status.success(), "{}", stdout(&o));
}
