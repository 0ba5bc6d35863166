//! clockwall: shows the time from several clock servers side by side (gopl.io exercise 8.1).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clockwall::{parse_targets, parse_timeout, Config, Outcome};

/// Live wall of clocks: shows the latest time from each clock server, side by side
#[derive(Parser, Debug)]
#[command(version, override_usage = "clockwall [OPTIONS] NAME=HOST:PORT...")]
struct Args {
    /// Clock servers, one column each in this order, as NAME=HOST:PORT (IPv6: NAME=[::1]:8020)
    // Not `required`: clap's error for that spans lines, and the usage error keeps only one.
    // An empty list is refused by `parse_targets` with a one-line message instead.
    #[arg(value_name = "NAME=HOST:PORT")]
    clocks: Vec<String>,
    /// Print one table once every clock has sent a line (or --timeout passed) and exit:
    /// 0 if every clock answered, 1 if any did not
    #[arg(long)]
    once: bool,
    /// How long --once waits: seconds (3, 2.5s) or milliseconds (500ms)
    #[arg(long, default_value = "3", value_parser = parse_timeout)]
    timeout: Duration,
}

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    let config = match parse_targets(&args.clocks) {
        Ok(targets) => Config {
            targets,
            once: args.once,
            timeout: args.timeout,
        },
        Err(message) => common::args::usage_error::<Args>(message),
    };
    match clockwall::run(&config) {
        Ok(Outcome::AllAnswered | Outcome::OutputClosed) => ExitCode::SUCCESS,
        Ok(Outcome::SomeSilent) => ExitCode::FAILURE,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprintln!("clockwall: {error}");
            ExitCode::FAILURE
        }
    }
}
