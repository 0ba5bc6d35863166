//! Common: the pieces every gopl network tool shares, so each binary stays a thin `main`.
//!
//! Flag handling ([`args`]), listening and accepting ([`listen`]), time zones ([`zone`]), the
//! clock session that clock1 and clock2 both serve ([`clock`]), copying a stream to stdout
//! ([`copy`]) and log set-up ([`logging`]).

#![deny(clippy::disallowed_methods)]

pub mod args;
pub mod clock;
pub mod copy;
pub mod listen;
pub mod logging;
pub mod zone;
