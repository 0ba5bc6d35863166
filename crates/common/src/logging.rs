//! Logging: server logs on stderr, `info` unless `RUST_LOG` says otherwise.

/// Sets up `env_logger` once per process; later calls are ignored.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format_target(false)
        .try_init();
}
