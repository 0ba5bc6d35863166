//! Queue: the live side of events. [`Events`] holds a bounded queue (a mutex and a condvar;
//! the lock is held only to push or pop, never while a hook runs) drained by a fixed number
//! of worker threads. Emitting is a push that never waits: a full queue drops the event with
//! a log line and a metric. Dropping `Events` closes the queue; its workers finish what is
//! queued and end.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::hook::{self, HookChildren, Verdict};
use super::{Event, EventKind, EventSettings};
use crate::metrics::Metrics;
use crate::storage::Reader;

/// Stack for event workers: they hash files and run hooks, nothing deep.
const WORKER_STACK_SIZE: usize = 256 * 1024;

/// One queued event, with the committed file to hash for an upload.
struct Job {
    event: Event,
    content: Option<Reader>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// What the workers share with the emitters.
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next job; `None` once the queue is closed and empty.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The event hooks of one generation of settings: the pre-upload check, and the queue and
/// workers of the after-the-fact hooks.
pub struct Events {
    settings: EventSettings,
    /// `None` when no after-the-fact hook is configured: nothing is queued or hashed.
    queue: Option<Arc<Queue>>,
    metrics: Arc<Metrics>,
    children: Arc<HookChildren>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("settings", &self.settings)
            .field("running", &self.queue.is_some())
            .finish()
    }
}

impl Events {
    /// Starts the workers the settings ask for (none when no after-the-fact hook is set).
    /// A worker the OS refuses is a log line; with none at all, events are dropped.
    pub fn start(
        settings: &EventSettings,
        metrics: Arc<Metrics>,
        children: Arc<HookChildren>,
    ) -> Events {
        let queue = settings.any_after().then(|| {
            Arc::new(Queue {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                capacity: settings.queue.max(1),
            })
        });
        if let Some(queue) = &queue {
            for number in 0..settings.workers.max(1) {
                let worker = Worker {
                    queue: Arc::clone(queue),
                    settings: settings.clone(),
                    metrics: Arc::clone(&metrics),
                    children: Arc::clone(&children),
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("ftpd-events-{number}"))
                    .stack_size(WORKER_STACK_SIZE)
                    .spawn(move || worker.run());
                if let Err(error) = spawned {
                    log::error!("cannot start event worker {number}: {error}");
                }
            }
        }
        Events {
            settings: settings.clone(),
            queue,
            metrics,
            children,
        }
    }

    /// True when events of `kind` go somewhere.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.queue.is_some() && self.settings.hook_for(kind).is_some()
    }

    /// Queues an upload event; the worker hashes `committed`, the uploaded file opened for
    /// reading right after the rename, so a later rename, delete or replacement of the name
    /// cannot change what is hashed.
    pub fn upload(&self, event: Event, committed: io::Result<Reader>) {
        let content = match committed {
            Ok(file) => Some(file),
            Err(error) => {
                log::warn!("cannot reopen upload {} to hash it: {error}", event.path);
                None
            }
        };
        self.push(Job { event, content });
    }

    /// Queues a delete or rename event.
    pub fn emit(&self, event: Event) {
        self.push(Job {
            event,
            content: None,
        });
    }

    fn push(&self, mut job: Job) {
        // The event's time is when it was emitted: for an upload, the commit, not the STOR.
        job.event.time = super::now();
        let kind = job.event.event;
        let Some(queue) = self.queue.as_ref().filter(|_| self.wants(kind)) else {
            return;
        };
        let mut state = queue.lock();
        if state.jobs.len() >= queue.capacity {
            drop(state);
            self.metrics.event_dropped();
            log::warn!(
                event = "event_dropped", kind = kind.word(), path = job.event.path.as_str();
                "event queue full ({} waiting): dropped the {} event for {}",
                queue.capacity, kind.word(), job.event.path
            );
            return;
        }
        state.jobs.push_back(job);
        drop(state);
        queue.ready.notify_one();
    }

    /// Asks the `pre-upload` hook, if any, whether `event`'s upload may start; the refusal's
    /// text otherwise. Runs on the session's thread under the hook timeout, holding no lock.
    /// A hook that cannot run, times out or fails refuses (it is a gate: it fails closed).
    pub fn allow_upload(&self, event: &Event) -> Result<(), String> {
        let Some(hook) = &self.settings.pre_upload else {
            return Ok(());
        };
        let verdict = hook::run(hook, event, self.settings.timeout, false, &self.children);
        self.metrics
            .event(EventKind::PreUpload.word(), verdict.label());
        match verdict {
            Verdict::Ok => Ok(()),
            Verdict::Refused(text) => {
                log::info!("pre-upload hook refused {}: {text}", event.path);
                Err(text)
            }
            Verdict::TimedOut => {
                log::warn!(
                    "pre-upload hook for {} timed out after {:?}",
                    event.path,
                    self.settings.timeout
                );
                Err("upload refused: the pre-upload check timed out".into())
            }
            Verdict::Failed(why) => {
                log::warn!("pre-upload hook for {} failed: {why}", event.path);
                Err("upload refused: the pre-upload check failed".into())
            }
        }
    }
}

impl Drop for Events {
    /// Closes the queue: the workers finish what is queued, then end.
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.lock().closed = true;
            queue.ready.notify_all();
        }
    }
}

/// One worker thread's share.
struct Worker {
    queue: Arc<Queue>,
    settings: EventSettings,
    metrics: Arc<Metrics>,
    children: Arc<HookChildren>,
}

impl Worker {
    fn run(self) {
        while let Some(job) = self.queue.next() {
            self.deliver(job);
        }
    }

    fn deliver(&self, job: Job) {
        let Job { mut event, content } = job;
        let Some(hook) = self.settings.hook_for(event.event) else {
            return;
        };
        if let Some(file) = content {
            match digest(file) {
                Ok((size, sha256)) => {
                    event.size = Some(size);
                    event.sha256 = Some(sha256);
                }
                Err(error) => log::warn!("cannot hash upload {}: {error}", event.path),
            }
        }
        let started = Instant::now();
        let verdict = hook::run(hook, &event, self.settings.timeout, true, &self.children);
        let kind = event.event.word();
        self.metrics.event(kind, verdict.label());
        let took = started.elapsed().as_millis() as u64;
        match &verdict {
            Verdict::Ok => log::debug!("{kind} hook for {} ok in {took} ms", event.path),
            Verdict::Refused(text) | Verdict::Failed(text) => log::warn!(
                event = "hook_failed", kind = kind, path = event.path.as_str();
                "{kind} hook for {} failed: {text}", event.path
            ),
            Verdict::TimedOut => log::warn!(
                event = "hook_timeout", kind = kind, path = event.path.as_str();
                "{kind} hook for {} killed after {:?}", event.path, self.settings.timeout
            ),
        }
    }
}

/// The size and SHA-256 of a committed upload, read from its start.
fn digest(mut file: Reader) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                hasher.update(&buffer[..count]);
                size += count as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((size, hex))
}
