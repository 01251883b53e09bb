//! The folder walk: which files are candidates, which are skipped on the way (links,
//! unreadable entries), and the key each file is indexed under.
//!
//! Not for: reading a file's content ([`super::read_document`]).

use std::path::{Path, PathBuf};

use super::{DocKind, IngestConfig, SkipReason, Skipped};

/// What a walk found: candidate files of a supported type, and files skipped on the way.
#[derive(Debug, Default)]
pub struct WalkResult {
    /// Files of a supported type, sorted by path.
    pub files: Vec<PathBuf>,
    /// Entries that could not be visited or were links.
    pub skipped: Vec<Skipped>,
    /// Files whose type is not indexed.
    pub unsupported: usize,
}

/// Walks `root`, honouring `.gitignore`/`.ignore` (even outside a git repository) and
/// skipping hidden entries unless configured otherwise. Symbolic links are reported, not
/// followed, so nothing outside `root` is ever read.
pub fn walk(root: &Path, cfg: &IngestConfig) -> WalkResult {
    let mut out = WalkResult::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(!cfg.hidden)
        .git_ignore(true)
        .git_exclude(true)
        .ignore(true)
        .require_git(false)
        .follow_links(false)
        .build();
    for entry in walker {
        match entry {
            Ok(e) => {
                let Some(ft) = e.file_type() else { continue };
                if ft.is_symlink() {
                    out.skipped.push(Skipped {
                        path: e.path().to_path_buf(),
                        reason: SkipReason::Symlink,
                    });
                    continue;
                }
                if ft.is_dir() {
                    continue;
                }
                if !ft.is_file() {
                    out.skipped.push(Skipped {
                        path: e.into_path(),
                        reason: SkipReason::NotRegular,
                    });
                    continue;
                }
                if DocKind::from_path(e.path()).is_some() {
                    out.files.push(e.into_path());
                } else {
                    out.unsupported += 1;
                }
            }
            Err(err) => {
                let path = match &err {
                    ignore::Error::WithPath { path, .. } => path.clone(),
                    _ => root.to_path_buf(),
                };
                out.skipped.push(Skipped {
                    path,
                    reason: SkipReason::Unreadable {
                        error: err.to_string(),
                    },
                });
            }
        }
    }
    out.files.sort();
    out
}

/// The key of `path` under `root`: relative and `/`-separated. UTF-8 names are kept as
/// they are; in other names (possible on Unix) each byte that is not UTF-8 is written
/// `\xNN`, so that two names differing only there keep distinct keys (replacing them with
/// U+FFFD made `a\xff.txt` and `a\xfe.txt` one document, indexed in turn).
pub fn key_for(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| name_for_key(c.as_os_str()))
        .collect::<Vec<_>>()
        .join("/")
}

fn name_for_key(name: &std::ffi::OsStr) -> String {
    if let Some(s) = name.to_str() {
        return s.to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::new();
        for chunk in name.as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().into_owned()
    }
}

/// File metadata used to decide whether a file must be read again.
pub fn stat(path: &Path) -> std::io::Result<(u64, i64)> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok((md.len(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::*;

    #[test]
    fn walk_respects_gitignore_hidden_and_reports_links() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::write(r.join(".gitignore"), "ignored/\n*.log\n").unwrap();
        std::fs::create_dir_all(r.join("ignored")).unwrap();
        std::fs::create_dir_all(r.join(".hidden")).unwrap();
        std::fs::create_dir_all(r.join("sub")).unwrap();
        std::fs::write(r.join("ignored/a.txt"), "x").unwrap();
        std::fs::write(r.join(".hidden/b.txt"), "x").unwrap();
        std::fs::write(r.join("sub/c.md"), "x").unwrap();
        std::fs::write(r.join("d.txt"), "x").unwrap();
        std::fs::write(r.join("e.png"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", r.join("link.txt")).unwrap();
        // A named pipe: reading it would block for ever, so it is reported, not read.
        #[cfg(unix)]
        let fifo = std::process::Command::new("mkfifo")
            .arg(r.join("pipe.txt"))
            .status()
            .is_ok_and(|s| s.success());
        let w = walk(r, &IngestConfig::default());
        let keys: Vec<String> = w.files.iter().map(|p| key_for(r, p)).collect();
        assert_eq!(keys, vec!["d.txt", "sub/c.md"]);
        assert_eq!(w.unsupported, 1);
        #[cfg(unix)]
        {
            let mut reasons: Vec<(String, SkipReason)> = w
                .skipped
                .iter()
                .map(|s| (key_for(r, &s.path), s.reason.clone()))
                .collect();
            reasons.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected = vec![("link.txt".to_string(), SkipReason::Symlink)];
            if fifo {
                expected.push(("pipe.txt".to_string(), SkipReason::NotRegular));
            }
            assert_eq!(reasons, expected);
        }
    }
}
