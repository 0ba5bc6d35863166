//! ftpbench: parse flags, validate them into a `Config`, run the benchmark, exit 0 when every
//! workload verified what it moved.

use std::io::{self, ErrorKind};
use std::process::ExitCode;

use ftpbench::{run, Args, Config};

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(message) => common::args::usage_error::<Args>(message),
    };
    let mut stdout = io::stdout().lock();
    match run(&config, &mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // A reader that went away (ftpbench | head) is not a failure.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ftpbench: {error}");
            ExitCode::FAILURE
        }
    }
}
