//! clock1: a sequential TCP time server (gopl.io §8.2). One client at a time: the next one is
//! accepted by the kernel but hears nothing until the current one leaves.

#![deny(clippy::disallowed_methods)]

use std::process::ExitCode;

use clap::Parser;
use common::clock::{self, Clock, ClockArgs};
use common::listen::{accept_forever, listen_announced, ConnectionLimit};

/// Sequential TCP time server: writes the time once a second to one client at a time
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    clock: ClockArgs,
}

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    common::logging::init();
    let clock = match Clock::from_args(&args.clock) {
        Ok(clock) => clock,
        Err(error) => {
            eprintln!("clock1: cannot start the ticker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listen = &args.clock.listen;
    let listener = match listen_announced(&listen.host, listen.port) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "clock1: cannot listen on {}:{}: {error}",
                listen.host, listen.port
            );
            return ExitCode::FAILURE;
        }
    };
    log::info!("serving {} one client at a time", clock.zone());
    let one_at_a_time = ConnectionLimit::new(1);
    accept_forever(&listener, |stream, peer| {
        if let Some(slot) = clock::admit(&one_at_a_time, peer) {
            clock::serve_session(stream, peer, &clock, slot);
        }
    })
}
