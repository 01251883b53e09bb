//! Serve an index over local HTTP from your own program (what `pinpoint serve` runs), and
//! stop it from another thread.
//!
//! `cargo run --release --example serve_embedded -- index-data 127.0.0.1:7700`, then
//! `curl --json '{"query": "how do tides work", "k": 3}' localhost:7700/query`.
//! Build the index first (`pinpoint index samples`). Ctrl-C, or 60 s, stops it.

use std::sync::Arc;

use pinpoint::serve::Server;
use pinpoint::EngineConfig;

fn main() -> pinpoint::Result<()> {
    let mut args = std::env::args().skip(1);
    let index = args.next().unwrap_or_else(|| "index-data".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7700".into());
    let server = Arc::new(Server::bind(&addr, &index, EngineConfig::default())?);
    println!("listening on {:?}", server.addr());

    // The server follows the index: a commit by `pinpoint index` or `watch` is answered
    // from the next request on. Here a timer stops it; a program would stop it on its own
    // shutdown.
    let stopper = server.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        stopper.stop();
    });
    server.run(2);
    Ok(())
}
