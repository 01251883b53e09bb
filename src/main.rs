//! The `pinpoint` command: parses arguments, calls the library, prints. Exit codes: 0 on
//! success, 1 on a user error, 2 on an internal error. A closed pipe is success.

mod cli;

use std::process::ExitCode;

/// candle allocates and frees large tensors for every op; glibc returns them to the OS each
/// time. mimalloc keeps them: +45-58% embedding throughput measured (docs/decisions.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
