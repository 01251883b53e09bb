//! Times one-file commits on an existing index, stage by stage: where a commit's time goes
//! at scale (`pinpoint bench --scale` leaves its index in `<work>/scale-index`).
//!
//! `cargo run --release --example commit_probe -- <index> [rounds]`

use std::sync::Mutex;
use std::time::Instant;

use pinpoint::engine::{Engine, EngineConfig, Progress};

#[derive(Default)]
struct Clock {
    cur: Mutex<Option<(String, Instant)>>,
    out: Mutex<Vec<(String, f64)>>,
}

impl Clock {
    fn close(&self) {
        if let (Ok(mut c), Ok(mut o)) = (self.cur.lock(), self.out.lock()) {
            if let Some((s, t)) = c.take() {
                o.push((s, t.elapsed().as_secs_f64() * 1000.0));
            }
        }
    }
}

impl Progress for Clock {
    fn start(&self, stage: &str, _total: u64) {
        self.close();
        if let Ok(mut c) = self.cur.lock() {
            *c = Some((stage.to_string(), Instant::now()));
        }
    }
    fn finish(&self) {
        self.close();
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: commit_probe <index> [rounds]"))?;
    let rounds: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let quiet = std::env::var_os("COMMIT_PROBE_QUIET").is_some();
    let t = Instant::now();
    let mut e = Engine::open(std::path::Path::new(dir), EngineConfig::default())?;
    println!("open: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    let t = Instant::now();
    let n = e.documents()?.len();
    println!(
        "document table ({n}): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let clock = std::sync::Arc::new(Clock::default());
    e.set_progress(clock.clone());
    for i in 0..rounds {
        let t = Instant::now();
        e.add_document(
            &format!("probe-{i}.txt"),
            "probe",
            "Spring tides follow the full and the new moon.",
        )?;
        let r = e.commit()?;
        clock.close();
        let stages = std::mem::take(&mut *clock.out.lock().map_err(|_| anyhow::anyhow!("lock"))?);
        if !quiet {
            println!(
                "add {i}: {:.0} ms; report {:?}; stages {:?}",
                t.elapsed().as_secs_f64() * 1000.0,
                r.timings,
                stages
            );
        }
        let t = Instant::now();
        e.remove_document(&format!("probe-{i}.txt"))?;
        let r = e.commit()?;
        clock.close();
        let stages = std::mem::take(&mut *clock.out.lock().map_err(|_| anyhow::anyhow!("lock"))?);
        println!(
            "delete {i}: {:.0} ms; report {:?}; stages {:?}",
            t.elapsed().as_secs_f64() * 1000.0,
            r.timings,
            stages
        );
    }
    Ok(())
}
