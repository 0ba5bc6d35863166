//! ftpd: a concurrent FTP server (gopl.io exercise 8.2) that stock clients just work with.
//!
//! [`command`] parses control lines and [`reply`] encodes answers, both without I/O;
//! [`session`] runs one control connection over [`control`] and reaches files only through
//! [`storage`] (the local disk, where [`jail`] is the only code that touches it, or an S3
//! bucket); [`path`] is the pure virtual path the
//! session shows; [`config`] holds the settings, fixed at start-up, and [`registry`] the
//! live sessions beside them.

#![deny(clippy::disallowed_methods)]

pub mod accounts;
pub mod cidr;
pub mod cli;
pub mod command;
pub mod config;
pub mod control;
pub mod data;
pub mod deadline;
pub mod defender;
pub mod events;
pub mod glob;
pub mod jail;
pub mod listing;
pub mod metrics;
pub mod passive;
pub mod path;
pub mod proxy;
pub mod registry;
pub mod reply;
pub mod server;
pub mod service;
pub mod session;
pub mod settings;
pub mod storage;
pub mod tls;
pub mod transfer;
pub mod upload;
pub mod users;
pub mod xferlog;
