//! The `pinpoint` command: parses arguments, calls the library, prints. Exit codes: 0 on
//! success, 1 on a user error, 2 on an internal error. A closed pipe is success.

mod cli;

use std::process::ExitCode;

/// candle allocates and frees large tensors for every op; glibc returns them to the OS each
/// time. mimalloc keeps them: +45-58% embedding throughput measured (docs/decisions.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's own collect (`mimalloc.h`), linked from the mimalloc crate's static
    /// library; the crate exposes it only behind a feature that needs another dependency.
    fn mi_collect(force: bool);
}

/// Hands the calling thread's freed pages back to the OS (`pinpoint::allocator`).
fn purge_freed() {
    // SAFETY: `mi_collect` takes a plain bool, touches only mimalloc's own state, and is
    // safe to call from any thread at any time (it is part of mimalloc's public API).
    unsafe { mi_collect(true) }
}

fn main() -> ExitCode {
    pinpoint::allocator::set_purge(purge_freed);
    let args = match <cli::Cli as clap::Parser>::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {}", cli::error_message(&e));
            let user = e
                .downcast_ref::<pinpoint::Error>()
                .map(|pe| pe.is_user_error())
                .unwrap_or(false);
            ExitCode::from(if user { 1 } else { 2 })
        }
    }
}
