//! clockwall: a live wall of clocks (gopl.io exercise 8.1) that reads several clock servers at
//! once and shows their times side by side, and never shows a dead server's time as live.
//!
//! Pure parts, each unit-tested: [`target`] (the `NAME=HOST:PORT` arguments), [`sanitize`]
//! (a server's line made safe to print) and [`render`] (a snapshot of states as a table or a
//! line). The I/O: [`watch`] (one thread per server, reconnecting with backoff) and [`wall`]
//! (the display loop that owns stdout).

pub mod render;
pub mod sanitize;
pub mod target;
pub mod wall;
pub mod watch;

pub use target::{parse_targets, parse_timeout, Target};
pub use wall::{run, Config, Outcome};
