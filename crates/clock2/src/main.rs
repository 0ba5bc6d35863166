//! clock2: a concurrent TCP time server (gopl.io §8.2). Exactly clock1, except that each
//! session runs on its own thread (Go's `go handleConn(conn)`).

#![deny(clippy::disallowed_methods)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::clock::{self, Clock, ClockArgs, SESSION_STACK_SIZE};
use common::listen::{accept_forever, listen_announced, spawn_small, ConnectionLimit};

/// Concurrent TCP time server: writes the time once a second to every client
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    clock: ClockArgs,
    /// Most clients served at once; more are closed at once with a log line
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
}

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    common::logging::init();
    let clock = match Clock::from_args(&args.clock) {
        Ok(clock) => Arc::new(clock),
        Err(error) => {
            eprintln!("clock2: cannot start the ticker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listen = &args.clock.listen;
    let listener = match listen_announced(&listen.host, listen.port) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "clock2: cannot listen on {}:{}: {error}",
                listen.host, listen.port
            );
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "serving {} to at most {} clients",
        clock.zone(),
        args.max_clients
    );
    let limit = ConnectionLimit::new(args.max_clients);
    accept_forever(&listener, |stream, peer| {
        if let Some(slot) = clock::admit(&limit, peer) {
            let clock = Arc::clone(&clock);
            let session = move || clock::serve_session(stream, peer, &clock, slot);
            if let Err(error) = spawn_small(SESSION_STACK_SIZE, session) {
                log::error!("refused {peer}: cannot start a thread: {error}");
            }
        }
    })
}
