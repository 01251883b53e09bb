//! Progress as a user sees it: an indicatif bar per stage under one for the whole run, or
//! the same events as JSON lines for a program (`--progress json`); and the process's peak
//! memory for the summaries.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pinpoint::{Progress, RunStatus};

/// How `index` reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ProgressFormat {
    /// Bars on stderr (hidden when stderr is not a terminal).
    Bar,
    /// One JSON object per line on stderr.
    Json,
    /// Nothing.
    None,
}

/// The progress sink for `format`.
pub(super) fn sink(format: ProgressFormat) -> std::sync::Arc<dyn Progress> {
    match format {
        ProgressFormat::Bar => std::sync::Arc::new(Bars::new()),
        ProgressFormat::Json => std::sync::Arc::new(JsonLines::new()),
        ProgressFormat::None => std::sync::Arc::new(pinpoint::NoProgress),
    }
}

/// indicatif bars: one per stage, and above them one for the whole run's chunks.
pub(super) struct Bars {
    pub(super) bar: Mutex<Option<ProgressBar>>,
    multi: MultiProgress,
    run: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub(super) fn new() -> Bars {
        Bars {
            bar: Mutex::new(None),
            multi: MultiProgress::new(),
            run: Mutex::new(None),
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Ok(mut r) = self.run.lock() {
            if let Some(pb) = r.take() {
                pb.finish_and_clear();
            }
        }
    }
}

impl Progress for Bars {
    fn run(&self, st: &RunStatus) {
        let Ok(mut r) = self.run.lock() else { return };
        let pb = r.get_or_insert_with(|| {
            let pb = self.multi.insert(0, ProgressBar::new(st.chunks_estimated));
            pb.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/~{len} chunks {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_prefix("run");
            pb
        });
        pb.set_length(st.chunks_estimated);
        pb.set_position(st.chunks_embedded);
        // The engine's estimate, over the whole run (indicatif's own would restart with
        // each checkpoint's stages).
        pb.set_message(match st.eta_s {
            Some(s) => format!("checkpoint {}, eta {}", st.checkpoint, human_secs(s)),
            None => format!("checkpoint {}", st.checkpoint),
        });
    }

    fn start(&self, stage: &str, total: u64) {
        self.finish();
        if total == 0 {
            return;
        }
        let pb = self.multi.add(ProgressBar::new(total));
        pb.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(stage.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
    fn inc(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(pb) = b.as_ref() {
                pb.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(pb) = b.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// `95 s`, `6m 05s`, `1h 02m`.
fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The same events as JSON lines on stderr, for a program to follow:
/// `{"event":"stage","stage":"embedding","total":N}`, then
/// `{"event":"progress","stage":..,"done":n,"total":N}` at most every 200 ms per stage (and
/// at its end), `{"event":"run",...}` with the fields of [`RunStatus`] (as often), and
/// `{"event":"finish","stage":..}`.
pub(super) struct JsonLines {
    state: Mutex<JsonState>,
}

struct JsonState {
    stage: String,
    total: u64,
    done: u64,
    last: Instant,
    last_run: Instant,
}

const EVERY: Duration = Duration::from_millis(200);

impl JsonLines {
    pub(super) fn new() -> JsonLines {
        let long_ago = Instant::now()
            .checked_sub(EVERY)
            .unwrap_or_else(Instant::now);
        JsonLines {
            state: Mutex::new(JsonState {
                stage: String::new(),
                total: 0,
                done: 0,
                last: long_ago,
                last_run: long_ago,
            }),
        }
    }

    fn emit(v: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        // A closed stderr must not stop the index run.
        let _ = writeln!(err, "{v}");
    }
}

impl Progress for JsonLines {
    fn start(&self, stage: &str, total: u64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.stage = stage.to_string();
        st.total = total;
        st.done = 0;
        Self::emit(serde_json::json!({"event": "stage", "stage": stage, "total": total}));
    }

    fn inc(&self, n: u64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.done += n;
        if st.last.elapsed() >= EVERY || st.done >= st.total {
            st.last = Instant::now();
            Self::emit(serde_json::json!({
                "event": "progress", "stage": st.stage, "done": st.done, "total": st.total
            }));
        }
    }

    fn finish(&self) {
        let Ok(st) = self.state.lock() else { return };
        Self::emit(serde_json::json!({"event": "finish", "stage": st.stage}));
    }

    fn run(&self, status: &RunStatus) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let last_of_checkpoint = st.stage == "embedding" && st.done >= st.total;
        if st.last_run.elapsed() >= EVERY || last_of_checkpoint || status.chunks_embedded == 0 {
            st.last_run = Instant::now();
            let mut v = serde_json::to_value(status).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), "run".into());
            }
            Self::emit(v);
        }
    }
}

/// Peak resident memory of this process (Linux: VmHWM), for the index report.
pub(super) fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
