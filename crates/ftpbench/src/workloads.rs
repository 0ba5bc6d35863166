//! Workloads: the measured runs of the issue, each against one [`Target`], each verifying
//! what it moved (byte counts, SHA-256 of the mid file, reply codes) before it records a
//! figure. A workload that fails records nothing and says why.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use std::io;

use crate::client::{Client, Credentials};
use crate::fixture::{self, Profile, SESSION_THREADS, SMALL_FILE};
use crate::procfs;
use crate::report::{Metric, Results};
use crate::servers::Target;
use crate::tls_client;

/// Read buffer of the throughput clients: large, as the issue asks.
const READ_BUFFER: usize = 1 << 20;

/// What every workload needs besides its target.
pub struct Plan {
    pub profile: Profile,
    /// SHA-256 of the mid file, from the generator.
    pub mid_sha256: String,
    /// The STOR block, generated once.
    pub stor_chunk: Vec<u8>,
}

impl Plan {
    /// A plan for `profile`: hashes and buffers computed once, outside any timing.
    pub fn new(profile: Profile) -> Plan {
        Plan {
            mid_sha256: fixture::mid_sha256(&profile),
            stor_chunk: fixture::stor_chunk(),
            profile,
        }
    }
}

/// Every workload, in the order a round runs them.
pub const ALL: [Workload; 9] = [
    Workload::RetrBig,
    Workload::RetrBigTls,
    Workload::RetrMid,
    Workload::Stor,
    Workload::SessionsSequential,
    Workload::SessionsThreaded,
    Workload::SmallFiles,
    Workload::Listings,
    Workload::Concurrency,
];

/// One measured run; [`Workload::Memory`] runs apart, only with a known server pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    RetrBig,
    /// Only for a server this run started with a certificate (ours): what TLS costs.
    RetrBigTls,
    RetrMid,
    Stor,
    SessionsSequential,
    SessionsThreaded,
    SmallFiles,
    Listings,
    Concurrency,
    Memory,
}

impl Workload {
    /// Runs this workload once against `target`, recording its figures (round `round`)
    /// or a failure naming the workload and server.
    pub fn run(self, target: &Target, plan: &Plan, round: usize, results: &mut Results) {
        let outcome = match self {
            Workload::RetrBig => retr_big(target, plan, results),
            Workload::RetrBigTls => retr_big_tls(target, plan, results),
            Workload::RetrMid => retr_mid(target, plan, results),
            Workload::Stor => stor(target, plan, round, results),
            Workload::SessionsSequential => sessions_sequential(target, plan, results),
            Workload::SessionsThreaded => sessions_threaded(target, plan, results),
            Workload::SmallFiles => small_files(target, plan, results),
            Workload::Listings => listings(target, plan, results),
            Workload::Concurrency => concurrency(target, plan, results),
            Workload::Memory => memory(target, plan, results),
        };
        if let Err(error) = outcome {
            results.fail(format!(
                "round {}: {self:?} against {}: {error}",
                round + 1,
                target.name
            ));
        }
    }
}

fn gb_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e9
}

fn check_count(what: &str, got: u64, expected: u64) -> io::Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: received {got} bytes, expected {expected}"
        )))
    }
}

fn retr_big(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let mut client = Client::connect_logged_in(target.addr, &target.credentials)?;
    let mut buffer = vec![0u8; READ_BUFFER];
    let started = Instant::now();
    let received = client.retrieve(fixture::BIG, &mut buffer, &mut |_| {})?;
    let elapsed = started.elapsed();
    check_count(fixture::BIG, received, plan.profile.big)?;
    client.quit()?;
    results.record(
        &target.name,
        Metric::RetrBig,
        gb_per_second(received, elapsed),
    );
    Ok(())
}

fn retr_big_tls(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let Some(tls) = &target.tls else {
        return Ok(());
    };
    let mut buffer = vec![0u8; READ_BUFFER];
    let started = Instant::now();
    let received = tls_client::retrieve(
        target.addr,
        tls,
        &target.credentials,
        fixture::BIG,
        &mut buffer,
    )?;
    let elapsed = started.elapsed();
    check_count(fixture::BIG, received, plan.profile.big)?;
    results.record(
        &target.name,
        Metric::RetrBigTls,
        gb_per_second(received, elapsed),
    );
    Ok(())
}

/// A buffer of `length` bytes with every page already faulted in, so receiving into it
/// costs what receiving into any warm buffer costs.
fn touched_buffer(length: u64) -> Vec<u8> {
    vec![0xa5u8; length as usize]
}

fn retr_mid(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let mut client = Client::connect_logged_in(target.addr, &target.credentials)?;
    let mut into = touched_buffer(plan.profile.mid);
    let started = Instant::now();
    let received = client.retrieve_into(fixture::MID, &mut into)?;
    let elapsed = started.elapsed();
    check_count(fixture::MID, received, plan.profile.mid)?;
    check_sha(&into, &plan.mid_sha256)?;
    client.quit()?;
    results.record(
        &target.name,
        Metric::RetrMid,
        gb_per_second(received, elapsed),
    );
    Ok(())
}

fn check_sha(bytes: &[u8], expected: &str) -> io::Result<()> {
    let got = fixture::sha256_hex(bytes);
    if got == expected {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{}: SHA-256 {got}, expected {expected}",
            fixture::MID
        )))
    }
}

fn stor(target: &Target, plan: &Plan, round: usize, results: &mut Results) -> io::Result<()> {
    let mut client = Client::connect_logged_in(target.addr, &target.credentials)?;
    let path = format!(
        "{}/stor-{}-{}-{round}.bin",
        fixture::UPLOAD_DIR,
        target.name,
        std::process::id()
    );
    let started = Instant::now();
    let sent = client.store(&path, &plan.stor_chunk, plan.profile.stor)?;
    let elapsed = started.elapsed();
    let stored = client.size(&path)?;
    // The server's copy is not needed; a refused DELE only leaves a file in the temp root.
    let _ = client.command(&format!("DELE {path}"));
    check_count(&path, stored, sent)?;
    client.quit()?;
    results.record(&target.name, Metric::Stor, gb_per_second(sent, elapsed));
    Ok(())
}

/// Blocks a client thread until the measurement starts; a dropped gate means it never will.
fn wait_for_start(start: &Receiver<()>) -> io::Result<()> {
    start
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| io::Error::other("workload abandoned before it started"))
}

/// Starts every waiting client thread at once and returns the start time.
fn open_gates(gates: Vec<Sender<()>>) -> Instant {
    let started = Instant::now();
    for gate in gates {
        let _ = gate.send(());
    }
    started
}

/// One full short session: connect, USER, PASS, PWD, QUIT, every reply checked.
fn one_session(addr: SocketAddr, credentials: &Credentials) -> io::Result<()> {
    let mut client = Client::connect(addr)?;
    client.login(credentials)?;
    client.expect("PWD", &[257])?;
    client.quit()
}

fn sessions_sequential(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let count = plan.profile.sessions_sequential;
    let started = Instant::now();
    for _ in 0..count {
        one_session(target.addr, &target.credentials)?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    results.record(&target.name, Metric::SessionsSequential, rate);
    Ok(())
}

fn sessions_threaded(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let per_thread = plan.profile.sessions_threaded.div_ceil(SESSION_THREADS);
    let mut threads = Vec::with_capacity(SESSION_THREADS);
    let mut gates = Vec::with_capacity(SESSION_THREADS);
    for index in 0..SESSION_THREADS {
        let (gate, start) = mpsc::channel();
        let (addr, credentials) = (target.addr, target.credentials.clone());
        // A failed spawn returns at once; dropping `gates` sends the started threads home.
        let handle = thread::Builder::new()
            .name(format!("session-{index}"))
            .spawn(move || -> io::Result<usize> {
                wait_for_start(&start)?;
                for _ in 0..per_thread {
                    one_session(addr, &credentials)?;
                }
                Ok(per_thread)
            })?;
        threads.push(handle);
        gates.push(gate);
    }
    let started = open_gates(gates);
    let mut done = 0usize;
    let mut first_error = None;
    for handle in threads {
        match handle.join() {
            Ok(Ok(count)) => done += count,
            Ok(Err(error)) => first_error = first_error.or(Some(error)),
            Err(_) => {
                first_error = first_error.or(Some(io::Error::other("client thread panicked")))
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(error) = first_error {
        return Err(error);
    }
    results.record(
        &target.name,
        Metric::SessionsThreaded,
        done as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

fn small_files(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let mut client = Client::connect_logged_in(target.addr, &target.credentials)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let names: Vec<String> = (0..plan.profile.small_files)
        .map(|index| format!("{}/{}", fixture::SMALL_DIR, fixture::small_name(index)))
        .collect();
    let started = Instant::now();
    for name in &names {
        let received = client.retrieve(name, &mut buffer, &mut |_| {})?;
        check_count(name, received, SMALL_FILE as u64)?;
    }
    let rate = names.len() as f64 / started.elapsed().as_secs_f64();
    client.quit()?;
    results.record(&target.name, Metric::SmallFiles, rate);
    Ok(())
}

fn listings(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let mut client = Client::connect_logged_in(target.addr, &target.credentials)?;
    let mut buffer = vec![0u8; 256 * 1024];
    let expected = plan.profile.listing_entries as u64;
    for (verb, time, bytes) in [
        ("LIST", Metric::ListTime, Metric::ListBytes),
        ("NLST", Metric::NlstTime, Metric::NlstBytes),
    ] {
        let started = Instant::now();
        let (received, lines) = client.listing(verb, fixture::LISTING_DIR, &mut buffer)?;
        let elapsed = started.elapsed();
        if lines != expected {
            return Err(io::Error::other(format!(
                "{verb} {}: {lines} lines, expected {expected}",
                fixture::LISTING_DIR
            )));
        }
        results.record(&target.name, time, elapsed.as_secs_f64() * 1000.0);
        results.record(&target.name, bytes, received as f64);
    }
    client.quit()?;
    Ok(())
}

/// Opens `count` logged-in sessions and keeps them.
fn idle_sessions(target: &Target, count: usize) -> io::Result<Vec<Client>> {
    (0..count)
        .map(|_| Client::connect_logged_in(target.addr, &target.credentials))
        .collect()
}

fn concurrency(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let idle = idle_sessions(target, plan.profile.idle_sessions)?;
    let clients = plan.profile.concurrent_clients;
    let mut threads = Vec::with_capacity(clients);
    let mut gates = Vec::with_capacity(clients);
    let (ready, readied) = mpsc::channel::<()>();
    for index in 0..clients {
        let (gate, start) = mpsc::channel();
        let ready = ready.clone();
        let (addr, credentials) = (target.addr, target.credentials.clone());
        let (length, expected) = (plan.profile.mid, plan.mid_sha256.clone());
        let handle = thread::Builder::new().name(format!("retr-{index}")).spawn(
            move || -> io::Result<(u64, Instant)> {
                let mut into = touched_buffer(length);
                let client = Client::connect_logged_in(addr, &credentials);
                let _ = ready.send(());
                wait_for_start(&start)?;
                let mut client = client?;
                let received = client.retrieve_into(fixture::MID, &mut into)?;
                let finished = Instant::now();
                check_count(fixture::MID, received, length)?;
                check_sha(&into, &expected)?;
                client.quit()?;
                Ok((received, finished))
            },
        )?;
        threads.push(handle);
        gates.push(gate);
    }
    // Every client is logged in (or has failed to) before the clock starts.
    for _ in 0..clients {
        if readied.recv_timeout(Duration::from_secs(120)).is_err() {
            break;
        }
    }
    let started = open_gates(gates);
    let mut bytes = 0u64;
    let mut last = started;
    let mut failures = 0usize;
    let mut first_error = None;
    for handle in threads {
        match handle.join() {
            Ok(Ok((received, finished))) => {
                bytes += received;
                last = last.max(finished);
            }
            Ok(Err(error)) => {
                failures += 1;
                first_error = first_error.or(Some(error.to_string()));
            }
            Err(_) => failures += 1,
        }
    }
    // The idle sessions must still be there, logged in, after the load.
    for mut client in idle {
        if client.expect("NOOP", &[200]).is_err() {
            failures += 1;
        }
    }
    if let Some(error) = first_error {
        results.fail(format!("Concurrency against {}: {error}", target.name));
    }
    results.record(
        &target.name,
        Metric::ConcurrentThroughput,
        gb_per_second(bytes, last - started),
    );
    results.record(&target.name, Metric::ConcurrentFailures, failures as f64);
    Ok(())
}

fn memory(target: &Target, plan: &Plan, results: &mut Results) -> io::Result<()> {
    let Some(pid) = target.pid else {
        return Ok(());
    };
    let count = plan.profile.memory_sessions;
    let before = procfs::tree_memory(pid)?;
    let sessions = idle_sessions(target, count)?;
    // Let forked helpers (vsftpd) finish setting up before reading their maps.
    thread::sleep(Duration::from_millis(300));
    let after = procfs::tree_memory(pid)?;
    drop(sessions);
    let per_session = after.pss_kib.saturating_sub(before.pss_kib) as f64 / count as f64;
    results.record(&target.name, Metric::MemoryPerSession, per_session);
    results.record(
        &target.name,
        Metric::MemoryTotal,
        after.pss_kib as f64 / 1024.0,
    );
    results.record(
        &target.name,
        Metric::MemoryRssPerSession,
        after.rss_kib.saturating_sub(before.rss_kib) as f64 / count as f64,
    );
    results.record(
        &target.name,
        Metric::MemoryProcesses,
        after.processes as f64,
    );
    // Give the server a moment to reap the closed sessions before the next workload.
    thread::sleep(Duration::from_millis(300));
    Ok(())
}
