//! The writer lock: one writing process per index folder. A `LOCK` file created with
//! `create_new` names the holder's pid, so a lock left by a crashed process is recognised
//! (its pid is gone) and taken over instead of blocking the folder for ever.
//!
//! Not for: readers, which need no lock.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, IoContext, Result};

pub(super) struct WriterLock {
    path: PathBuf,
}

/// Lock files held by this process: a LOCK naming our own pid is only stale when this
/// process does not hold it (pid reuse after a crash).
fn held_locks() -> &'static std::sync::Mutex<HashSet<PathBuf>> {
    static HELD: OnceLock<std::sync::Mutex<HashSet<PathBuf>>> = OnceLock::new();
    HELD.get_or_init(|| std::sync::Mutex::new(HashSet::new()))
}

impl WriterLock {
    pub(super) fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join("LOCK");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id()).at(&path)?;
                    f.sync_all().at(&path)?;
                    if let Ok(mut h) = held_locks().lock() {
                        h.insert(path.clone());
                    }
                    return Ok(WriterLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: u32 = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    let ours = pid == std::process::id();
                    let held_here = held_locks()
                        .lock()
                        .map(|h| h.contains(&path))
                        .unwrap_or(true);
                    if pid != 0 && ((ours && held_here) || (!ours && process_alive(pid))) {
                        return Err(Error::Locked { path, pid });
                    }
                    // Stale lock of a dead process (or unreadable): take it over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Locked { path, pid: 0 })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Ok(mut h) = held_locks().lock() {
            h.remove(&self.path);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid runs, so that a lock it left can be told from a live
/// one. Linux: `/proc` when mounted. Other Unix (macOS, the BSDs), or Linux without `/proc`:
/// `kill(pid, 0)`, which signals nothing and fails for a pid that does not exist; a process
/// of another user makes it fail with "not permitted", and counts as alive. Elsewhere:
/// assumed alive, and the error tells the user which file to remove.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    alive_by_kill(pid)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

#[cfg(unix)]
fn alive_by_kill(pid: u32) -> bool {
    // A pid of 0 or above `pid_t`'s range would address a process group (or all
    // processes), not one process: no live writer has such an id.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that `pid` (positive, so one process)
    // exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_this_process_and_of_a_finished_child() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(alive_by_kill(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!alive_by_kill(pid));
    }
}
