//! netcat1: a read-only TCP client (gopl.io §8.2) that copies a connection to stdout.

use std::io;
use std::net::TcpStream;
use std::process::ExitCode;

use clap::Parser;

/// Read-only TCP client: copies everything a server sends to stdout
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Server to read from, as HOST:PORT ([::1]:8000 for IPv6 literals)
    #[arg(default_value = "localhost:8000", value_parser = parse_address)]
    address: String,
}

/// Checks the HOST:PORT shape up front, so a missing port is a usage error, not a network one.
fn parse_address(value: &str) -> Result<String, String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("'{value}' has no port: expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("'{value}' has no host: expected HOST:PORT"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "'{value}': write IPv6 addresses in brackets, like [::1]:8000"
        ));
    }
    port.parse::<u16>()
        .map_err(|_| format!("'{value}' has a bad port '{port}'"))?;
    Ok(value.to_owned())
}

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    let mut connection = match TcpStream::connect(&args.address) {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!(
                "netcat1: cannot connect to {}: {}",
                args.address,
                describe(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    match common::copy::copy_until_closed(&mut connection, &mut io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "netcat1: reading from {}: {}",
                args.address,
                describe(&error)
            );
            ExitCode::FAILURE
        }
    }
}

/// The reason without Rust's "(os error N)" suffix, which means nothing to a user.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_numeric_port() {
        for good in [
            "localhost:8000",
            "[::1]:8000",
            "127.0.0.1:0",
            "example.org:80",
        ] {
            assert_eq!(parse_address(good).as_deref(), Ok(good));
        }
        for bad in [
            "localhost",
            ":8000",
            "localhost:http",
            "::1:8000",
            "host:70000",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} accepted");
        }
    }
}
