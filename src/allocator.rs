//! Asks the process's allocator to hand the memory it keeps back to the OS, between the
//! stages of a large build.
//!
//! Why: the binary runs on mimalloc (embedding throughput, `main.rs`), which keeps freed
//! pages for reuse and purges them only when the thread that freed them next allocates or
//! frees. A build's embedding and fold stages free gigabytes on rayon's threads, and the
//! graph build that follows allocates little on those threads, so the freed pages stayed
//! resident under the next stage's own memory: the 1M scale bench peaked at 4.75 GB of RSS,
//! 4.20 GB with `MIMALLOC_PURGE_DELAY=0` (every free purged at once, which cost the
//! embedding stage 24 % of its speed). Purging on every thread where a large commit's
//! write, graph and neighbour stages start gets the lower peak without that cost
//! (docs/decisions.md, "The allocator's kept pages").
//!
//! The library does not choose the allocator (a program linking it may use another), so
//! the program installs the purge ([`set_purge`]); without one, [`purge`] does nothing.

use std::sync::OnceLock;

static PURGE: OnceLock<fn()> = OnceLock::new();

/// A commit of fewer new chunks than this does not purge before its write and neighbour
/// stages: it freed little, and a purge walks every thread's heap (a one-file commit is
/// tens of milliseconds). A graph build purges whatever its size (it only runs on a
/// segment of [`crate::dense::HnswParams::min_points`] or more).
pub const PURGE_MIN_ROWS: usize = 10_000;

/// Installs `f` as the purge: a function that hands the calling thread's freed memory
/// back to the OS. Returns false (and keeps the first) when one is installed already.
pub fn set_purge(f: fn()) -> bool {
    PURGE.set(f).is_ok()
}

/// Runs the installed purge on every thread of rayon's pool and on the calling thread
/// (each thread's allocator heap is its own); nothing without one. Returns how many
/// threads it ran on.
pub fn purge() -> usize {
    let Some(&f) = PURGE.get() else { return 0 };
    let pool = rayon::broadcast(|_| f()).len();
    f();
    pool + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn the_purge_runs_on_every_pool_thread_and_the_caller() {
        assert!(set_purge(count));
        assert!(!set_purge(count), "a second purge replaced the first");
        let ran = purge();
        assert_eq!(ran, rayon::current_num_threads() + 1);
        assert_eq!(CALLS.load(Ordering::SeqCst), ran);
    }
}
