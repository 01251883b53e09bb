//! Query expansion.
//!
//! - Pseudo-relevance feedback for the lexical leg (RM3-style): the analysed terms of the
//!   top documents of a first pass, weighted by term frequency times idf, are added to the
//!   query with a smaller weight. It bridges vocabulary gaps (a question says "heart
//!   attack", the abstract says "myocardial infarction") using the collection itself.
//! - Multi-query: a query holding several questions is split, each is answered, and the
//!   results are interleaved, so one question does not drown the others.
//! - An external command hook (`--expand-cmd`): the query goes to the command's stdin and
//!   every non-empty stdout line is an extra query (HyDE-style rewriting by a local LLM).
//!
//! Not for: document expansion at index time ([`crate::near`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use unicode_segmentation::UnicodeSegmentation;

use crate::error::{Error, Result};
use crate::lexical::LexicalIndex;

/// Pseudo-relevance feedback settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PrfConfig {
    /// Feedback documents taken from the first pass.
    pub docs: usize,
    /// Expansion terms added.
    pub terms: usize,
    /// Weight of the expansion terms relative to an original term (1.0).
    pub weight: f32,
}

impl Default for PrfConfig {
    fn default() -> Self {
        PrfConfig {
            docs: 3,
            terms: 10,
            weight: 0.3,
        }
    }
}

/// The weighted term query for `query`: original terms (weight = count) plus the best
/// expansion terms from `feedback` texts.
pub fn rm3_terms(
    lex: &LexicalIndex,
    query: &str,
    feedback: &[String],
    cfg: &PrfConfig,
) -> Result<Vec<(String, f32)>> {
    let original = LexicalIndex::weighted_terms(query);
    if feedback.is_empty() || cfg.terms == 0 || cfg.weight <= 0.0 {
        return Ok(original);
    }
    // Relevance model: average over feedback docs of P(term | doc), times idf to keep
    // collection-wide common words out.
    let mut model: HashMap<String, f32> = HashMap::new();
    for text in feedback {
        let terms = LexicalIndex::terms(text);
        if terms.is_empty() {
            continue;
        }
        let n = terms.len() as f32;
        let mut tf: HashMap<String, f32> = HashMap::new();
        for t in terms {
            *tf.entry(t).or_insert(0.0) += 1.0;
        }
        for (t, c) in tf {
            *model.entry(t).or_insert(0.0) += c / n / feedback.len() as f32;
        }
    }
    let mut scored: Vec<(String, f32)> = Vec::new();
    for (t, p) in model {
        if original.iter().any(|(o, _)| *o == t)
            || t.len() < 3
            || t.chars().all(|c| c.is_ascii_digit())
        {
            continue;
        }
        let (df, n) = lex.doc_freq(&t)?;
        if df < 2 {
            // A term only in one chunk cannot bring new documents.
            continue;
        }
        let idf = ((n as f32 + 1.0) / (df as f32 + 0.5)).ln().max(0.0);
        scored.push((t, p * idf));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(cfg.terms);
    let top = scored.first().map(|x| x.1).unwrap_or(1.0).max(1e-9);
    let mut out = original;
    out.extend(scored.into_iter().map(|(t, s)| (t, cfg.weight * s / top)));
    Ok(out)
}

/// Sub-queries of a query that asks several questions: one per question, each carrying the
/// query's other sentences, so that "Using tokio. How do I spawn a task? How do I cancel
/// it?" asks both questions about tokio. A query with fewer than two questions yields none
/// (it is searched as it is).
pub fn split_questions(query: &str) -> Vec<String> {
    let parts: Vec<&str> = query
        .split_sentence_bounds()
        .map(str::trim)
        .filter(|s| s.chars().filter(|c| c.is_alphanumeric()).count() >= 3)
        .collect();
    let is_question = |s: &str| s.ends_with('?');
    let questions: Vec<&str> = parts.iter().copied().filter(|s| is_question(s)).collect();
    if questions.len() < 2 {
        return Vec::new();
    }
    let context: Vec<&str> = parts.iter().copied().filter(|s| !is_question(s)).collect();
    questions
        .iter()
        .map(|q| {
            let mut s = context.join(" ");
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(q);
            s
        })
        .collect()
}

/// How long an expansion command may run. A local LLM writing a hypothetical answer
/// takes seconds; a command that hangs must not hang the query with it.
pub const EXPAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` through the shell with the query on stdin; each non-empty output line is
/// an extra query. Fails when the command cannot start, exits unsuccessfully or runs
/// longer than [`EXPAND_TIMEOUT`] (it is then killed, with what it started).
pub fn external(cmd: &str, query: &str) -> Result<Vec<String>> {
    external_within(cmd, query, EXPAND_TIMEOUT)
}

fn external_within(cmd: &str, query: &str, timeout: Duration) -> Result<Vec<String>> {
    let failed = |why: String| Error::invalid("expand-cmd", format!("{cmd:?} {why}"));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Its own process group, so that a timeout kills what the shell started too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start: {e}")))?;
    // Writing and reading on their own threads: a command that writes before it has read
    // all of a long query cannot deadlock with us, and the wait below can time out.
    if let Some(mut stdin) = child.stdin.take() {
        let q = query.to_string();
        // A command that ignores its input may close stdin early: not an error.
        std::thread::spawn(move || {
            let _ = stdin.write_all(q.as_bytes());
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = stdout.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(r);
        });
    }
    let output = match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| failed(format!("failed: {e}")))?,
        Err(_) => {
            kill_tree(&mut child);
            return Err(failed(format!(
                "did not finish within {} s; killed",
                timeout.as_secs_f32()
            )));
        }
    };
    let status = child.wait().map_err(|e| failed(format!("failed: {e}")))?;
    if !status.success() {
        return Err(failed(format!("exited with {status}")));
    }
    Ok(String::from_utf8_lossy(&output)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Kills `child` and, on Unix, the process group it leads.
fn kill_tree(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // 0 would be our own group and 1 init's: never signal those.
        if pgid > 1 {
            // SAFETY: killpg only sends a signal. `pgid` is the group the child leads (it was
            // spawned with `process_group(0)` and not yet reaped, so the id is still its own),
            // checked above to be neither our group nor every process.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_expansion_command_gives_lines_fails_loudly_and_times_out() {
        let t = Duration::from_secs(20);
        let got = external_within("tr a-z A-Z; echo; echo second line", "moon tides", t).unwrap();
        assert_eq!(got, vec!["MOON TIDES", "second line"]);
        let e = external_within("exit 3", "q", t).unwrap_err().to_string();
        assert!(e.contains("exit status: 3"), "{e}");
        // A command that hangs, with a child of its own: killed at the deadline.
        let start = std::time::Instant::now();
        let e = external_within("sleep 30 & sleep 30", "q", Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not finish within 0.3 s"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn questions_are_split_only_when_there_are_several() {
        assert!(split_questions("What is BM25?").is_empty());
        assert!(split_questions("Explain BM25. Be brief.").is_empty());
        assert_eq!(
            split_questions("What is BM25? How does HNSW work?"),
            vec!["What is BM25?", "How does HNSW work?"]
        );
    }

    #[test]
    fn each_question_keeps_the_statements_around_it() {
        assert_eq!(
            split_questions("Using tokio. How do I spawn a task? How do I cancel it? Thanks!"),
            vec![
                "Using tokio. Thanks! How do I spawn a task?",
                "Using tokio. Thanks! How do I cancel it?"
            ]
        );
        // A long argument with rhetorical questions: every sub-query is nearly all of it.
        let q = "Taxes fund schools. Schools train workers. Who else would pay? Why not \
                 the users? The state must act.";
        let subs = split_questions(q);
        assert_eq!(subs.len(), 2);
        for s in subs {
            assert!(s.starts_with("Taxes fund schools. Schools train workers. The state must act."));
        }
    }

    #[test]
    fn external_command_lines_become_queries() {
        let q = external("tr a-z A-Z; echo; echo second", "hello").unwrap();
        assert_eq!(q, vec!["HELLO", "second"]);
        assert!(external("exit 3", "x").is_err());
    }

    #[test]
    fn rm3_adds_weighted_feedback_terms() {
        let tmp = tempfile::tempdir().unwrap();
        let idx = LexicalIndex::open_or_create(tmp.path()).unwrap();
        let mut w = idx.writer().unwrap();
        let docs = [
            "heart attack risk factors",
            "myocardial infarction and heart attack outcomes",
            "myocardial infarction treatment",
            "infarction imaging",
            "unrelated gardening text",
        ];
        for (i, d) in docs.iter().enumerate() {
            w.add_chunk(i as u64, &format!("d{i}"), d, "").unwrap();
        }
        w.commit(1).unwrap();
        idx.reload().unwrap();
        let fb = vec![docs[1].to_string()];
        let terms = rm3_terms(&idx, "heart attack", &fb, &PrfConfig::default()).unwrap();
        assert_eq!(terms[0], ("heart".to_string(), 1.0));
        assert_eq!(terms[1], ("attack".to_string(), 1.0));
        let added: Vec<&str> = terms[2..].iter().map(|t| t.0.as_str()).collect();
        assert!(
            added.contains(&"myocardi") && added.contains(&"infarct"),
            "{added:?}"
        );
        assert!(terms[2..].iter().all(|t| t.1 > 0.0 && t.1 <= 0.3 + 1e-6));
        // The expanded query now finds the document without the query's words.
        let hits = idx.search_weighted(&terms, 10).unwrap();
        assert!(hits.iter().any(|h| h.0 == 2));
    }
}
