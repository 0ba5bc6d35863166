//! Listen: binding, announcing and accepting, the part of every server that must never die.
//!
//! The accept loop survives `EMFILE`, `ENFILE` and other accept errors by backing off (10 ms
//! growing to 1 s) and logging once per burst, instead of spinning a core as a bare `loop
//! { accept }` does. [`ConnectionLimit`] counts live connections with a guard that gives its
//! place back on drop, so the count cannot leak.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// `-host`/`-port`, as every server here takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenArgs {
    /// Host name or address to listen on
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// TCP port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
}

/// Pending connections the kernel may queue before `accept`. std's `bind` asks for 128, which
/// overflows when thousands of clients arrive at once (each overflow costs the client a 1 s
/// SYN retry); the kernel caps this at `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds the first address `host:port` resolves to and prints `listening on ADDR` on stderr,
/// the line tests and scripts wait for (with the real port when `port` is 0).
pub fn listen_announced(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        match bind(addr) {
            Ok(listener) => {
                announce(&listener)?;
                return Ok(listener);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(ErrorKind::NotFound, format!("{host} has no address"))))
}

/// Prints the `listening on ADDR` line for a listener bound elsewhere (one handed over by
/// systemd's socket activation, say), so every listener is announced the same way.
pub fn announce(listener: &TcpListener) -> io::Result<()> {
    eprintln!("listening on {}", listener.local_addr()?);
    Ok(())
}

/// Binds like std's `TcpListener::bind` (with `SO_REUSEADDR`, so a restarted server gets its
/// port back while old connections linger in TIME_WAIT), but with [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Accepts connections forever, handing each to `handle`; accept errors back off and log once
/// per burst rather than killing or spinning the loop.
pub fn accept_forever<F>(listener: &TcpListener, mut handle: F) -> !
where
    F: FnMut(TcpStream, SocketAddr),
{
    let mut backoff = AcceptBackoff::default();
    let never = AtomicBool::new(false);
    loop {
        if let Some((stream, peer)) = accept_one(listener, &mut backoff, &never) {
            handle(stream, peer);
        }
    }
}

/// Like [`accept_forever`], until `stop` is set. Whoever sets it should also call
/// [`wake_accept`], so a blocked `accept` returns at once.
pub fn accept_until<F>(listener: &TcpListener, stop: &AtomicBool, mut handle: F)
where
    F: FnMut(TcpStream, SocketAddr),
{
    let mut backoff = AcceptBackoff::default();
    while !stop.load(Ordering::Acquire) {
        if let Some((stream, peer)) = accept_one(listener, &mut backoff, stop) {
            if stop.load(Ordering::Acquire) {
                return;
            }
            handle(stream, peer);
        }
    }
}

/// Makes a thread blocked in `accept` on this listener return (Linux answers `EINVAL` once
/// a listening socket is shut down), for a graceful stop.
pub fn wake_accept(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown on a descriptor the listener owns; it stays open until dropped.
    unsafe {
        libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD);
    }
}

/// One accept; `None` after an error (having backed off when the error was not the peer's,
/// unless `stop` says the error is our own wake-up).
fn accept_one(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    stop: &AtomicBool,
) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept() {
        Ok(accepted) => {
            backoff.recovered();
            Some(accepted)
        }
        // The peer gave up before we accepted it; nothing is wrong with the listener.
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::Interrupted | ErrorKind::ConnectionAborted
            ) =>
        {
            None
        }
        Err(_) if stop.load(Ordering::Acquire) => None,
        Err(error) => {
            thread::sleep(backoff.failed(&error));
            None
        }
    }
}

/// Exponential back-off state for a failing `accept`, with one log line per burst.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u64,
    delay: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    /// Records a failure and returns how long to wait before the next accept.
    fn failed(&mut self, error: &io::Error) -> Duration {
        if self.failures == 0 {
            log::error!("accept failed: {error}; backing off until it recovers");
            self.delay = Self::FIRST;
        } else {
            self.delay = (self.delay * 2).min(Self::LONGEST);
        }
        self.failures += 1;
        self.delay
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            log::warn!("accept recovered after {} failed attempts", self.failures);
            self.failures = 0;
        }
    }
}

/// Spawns a connection thread with a small stack, reporting (not panicking) when the OS refuses.
pub fn spawn_small<F>(stack_size: usize, work: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    thread::Builder::new()
        .stack_size(stack_size)
        .spawn(work)
        .map(drop)
}

/// A cap on live connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    live: Arc<AtomicUsize>,
    max: usize,
}

/// One live connection's place under a [`ConnectionLimit`]; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    live: Arc<AtomicUsize>,
}

impl ConnectionLimit {
    /// A limit of `max` simultaneous connections.
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// The same live count under a new maximum (a reloaded setting); places already taken
    /// stay taken.
    pub fn with_max(&self, max: usize) -> ConnectionLimit {
        ConnectionLimit {
            live: Arc::clone(&self.live),
            max,
        }
    }

    /// Takes a place, or `None` when all `max` are in use.
    pub fn try_acquire(&self) -> Option<ConnectionSlot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            })
            .ok()
            .map(|_| ConnectionSlot {
                live: Arc::clone(&self.live),
            })
    }

    /// Connections alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl ConnectionSlot {
    /// Connections alive now, this one included.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refuses_beyond_max_and_frees_on_drop() {
        let limit = ConnectionLimit::new(2);
        let first = limit.try_acquire().unwrap();
        let second = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!(second.live(), 2);
        drop(first);
        assert_eq!(limit.live(), 1);
        let third = limit.try_acquire();
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(limit.live(), 0);
    }

    #[test]
    fn backoff_grows_to_a_ceiling_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let error = io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<_> = (0..10).map(|_| backoff.failed(&error)).collect();
        assert_eq!(delays[0], AcceptBackoff::FIRST);
        assert_eq!(delays[1], AcceptBackoff::FIRST * 2);
        assert_eq!(*delays.last().unwrap(), AcceptBackoff::LONGEST);
        backoff.recovered();
        assert_eq!(backoff.failed(&error), AcceptBackoff::FIRST);
    }

    #[test]
    fn accept_until_returns_once_stopped_and_woken() {
        let listener = listen_announced("127.0.0.1", 0).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = std::sync::Mutex::new(0);
        thread::scope(|scope| {
            let waiter = scope
                .spawn(|| accept_until(&listener, &stop, |_, _| *accepted.lock().unwrap() += 1));
            TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            while *accepted.lock().unwrap() == 0 {
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Release);
            wake_accept(&listener);
            waiter.join().unwrap();
        });
        assert_eq!(*accepted.lock().unwrap(), 1);
    }

    #[test]
    fn announced_listener_binds_a_free_port() {
        let listener = listen_announced("127.0.0.1", 0).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }
}
