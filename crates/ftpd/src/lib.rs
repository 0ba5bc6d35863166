//! ftpd: a concurrent FTP server (gopl.io exercise 8.2) that stock clients just work with.
//!
//! [`command`] parses control lines and [`reply`] encodes answers, both without I/O;
//! [`session`] runs one control connection over [`control`] and reaches files only through
//! [`storage`] (the local disk, where [`jail`] is the only code that touches it, or an S3
//! bucket); [`path`] is the pure virtual path the
//! session shows; [`config`] holds the settings, fixed at start-up, and [`registry`] the
//! live sessions beside them.

#![deny(clippy::disallowed_methods)]

/// Serde for a type that flags and config values both write as text: through its `FromStr`
/// and `Display`, so a config value reads exactly like the flag.
macro_rules! serde_as_string {
    ($type:ty) => {
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$type, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_string())
            }
        }
    };
}

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
