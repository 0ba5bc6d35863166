//! Transfers: data connections (PASV/EPSV/PORT/EPRT), and the commands that use one (LIST,
//! NLST, MLSD, RETR, STOR, APPE, STOU). Everything that can fail with a `550` or `425` fails
//! before the `150`; the work then runs on a transfer thread that sends the final reply
//! itself, so ABOR and STAT are heard meanwhile.

use std::io::{self, BufWriter, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::listings::{self, ListingStyle};
use super::{Context, Flow, Replied, Session, THREAD_STACK_SIZE};
use crate::accounts::{Meter, Metered, QuotaCharge, QuotaLimits, Way};
use crate::command::TransferType;
use crate::control::Control;
use crate::data::DataStream;
use crate::events::EventKind;
use crate::metrics::Direction;
use crate::registry::shutting_down_reply;
use crate::reply::{fs_error, Code, Reply};
use crate::storage;
use crate::tls::DataTlsError;
use crate::transfer;
use crate::upload::{StoreMode, Upload};
use crate::users::Permission;
use crate::xferlog::{Outcome, TransferRecord};

/// How long an upload's end waits to see whether the control connection closes too. A
/// killed client's two connections close in no order the kernel promises (their descriptors
/// are released from deferred work), so the data EOF can come a moment before the control
/// one; a client that finished its upload keeps the control connection open for the `226`.
const CLIENT_EXIT_GRACE: Duration = Duration::from_millis(5);

/// A transfer running on its own thread.
#[derive(Debug)]
pub(super) struct RunningTransfer {
    thread: JoinHandle<()>,
    aborted: Arc<AtomicBool>,
    /// A handle on the data connection, so ABOR can shut it down.
    data: TcpStream,
    what: String,
}

impl RunningTransfer {
    /// True once the thread has sent its final reply.
    pub(super) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// What it moves, for STAT.
    pub(super) fn what(&self) -> &str {
        &self.what
    }
}

/// How a transfer ended, and so its final reply.
#[derive(Debug)]
enum TransferEnd {
    Complete(String),
    Aborted,
    Broken(String),
    Local(Reply),
}

impl TransferEnd {
    fn from_network(result: io::Result<u64>, done: &str) -> (TransferEnd, u64) {
        match result {
            Ok(bytes) => (TransferEnd::Complete(done.to_owned()), bytes),
            Err(error) => (
                Self::storage_failure(&error)
                    .unwrap_or_else(|| TransferEnd::Broken(error.to_string())),
                0,
            ),
        }
    }

    /// A failure of the object storage under a transfer is ours, not the network's: 451.
    fn storage_failure(error: &io::Error) -> Option<TransferEnd> {
        storage::backend_failure(error).map(|failure| {
            TransferEnd::Local(Reply::new(
                Code::LocalError,
                format!("object storage failed: {failure}; transfer aborted"),
            ))
        })
    }

    fn from_upload_error(error: &io::Error) -> TransferEnd {
        match error.kind() {
            ErrorKind::StorageFull => TransferEnd::Local(Reply::new(
                Code::InsufficientStorage,
                "insufficient storage space; upload discarded",
            )),
            ErrorKind::FileTooLarge => TransferEnd::Local(Reply::new(
                Code::ExceededStorage,
                "file too large; upload discarded",
            )),
            ErrorKind::QuotaExceeded => TransferEnd::Local(Reply::new(
                Code::ExceededStorage,
                format!("{error}; upload discarded"),
            )),
            _ => Self::storage_failure(error)
                .unwrap_or_else(|| TransferEnd::Broken(error.to_string())),
        }
    }

    fn reply(&self) -> Reply {
        match self {
            TransferEnd::Complete(text) => Reply::new(Code::TransferComplete, text.clone()),
            TransferEnd::Aborted => {
                Reply::new(Code::TransferAborted, "Connection closed; transfer aborted")
            }
            TransferEnd::Broken(why) => Reply::new(
                Code::TransferAborted,
                format!("Connection closed; transfer aborted: {why}"),
            ),
            TransferEnd::Local(reply) => reply.clone(),
        }
    }

    /// The plain value the transfer log records.
    fn outcome(&self) -> Outcome {
        match self {
            TransferEnd::Complete(_) => Outcome::Complete,
            TransferEnd::Aborted => Outcome::Aborted,
            TransferEnd::Broken(why) => Outcome::Broken(why.clone()),
            TransferEnd::Local(reply) => Outcome::Failed(
                String::from_utf8_lossy(&reply.to_bytes())
                    .trim_end()
                    .to_owned(),
            ),
        }
    }
}

impl Session {
    /// The rate limiter a transfer going `way` passes through, if the user has a cap.
    fn meter(&self, way: Way) -> Meter {
        let Some(identity) = self.identity() else {
            return Meter::default();
        };
        let rate = match way {
            Way::Download => identity.policy.download_rate,
            Way::Upload => identity.policy.upload_rate,
        };
        Meter {
            quota: None,
            rate: rate.map(|rate| {
                self.context
                    .accounts
                    .throttles
                    .limiter(&identity.name, way, rate)
            }),
        }
    }

    /// An upload's claim on its user's quota (none without a quota); `552` when a new file
    /// would pass the files quota.
    fn quota_charge(&self, new_file: bool, replaces: u64) -> Replied<Option<QuotaCharge>> {
        let Some(identity) = self.identity().filter(|id| id.policy.has_quota()) else {
            return Ok(None);
        };
        let limits = QuotaLimits {
            bytes: identity.policy.quota_bytes,
            files: identity.policy.quota_files,
        };
        let quotas = Arc::clone(&self.context.accounts.quotas);
        QuotaCharge::open(quotas, &identity.name, limits, new_file, replaces)
            .map(Some)
            .map_err(|error| Reply::new(Code::ExceededStorage, format!("{error}; nothing stored")))
    }

    /// LIST, NLST and MLSD. The names are chosen (and sorted) before the `150`.
    pub(super) fn listing(
        &mut self,
        argument: Option<&[u8]>,
        style: ListingStyle,
    ) -> Replied<Flow> {
        self.check(Permission::List)?;
        let storage = self.storage();
        let argument = argument.unwrap_or(b"");
        let globbing = style != ListingStyle::Facts;
        let selection = listings::select(&storage, &self.cwd, argument, globbing)?;
        let target = self.cwd.resolve(argument);
        if style == ListingStyle::Facts && matches!(selection, listings::Selection::Single { .. }) {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: not a directory", target.display()),
            ));
        }
        let writable = self.can_write();
        let data = self.open_data()?;
        self.send_or_fail(Reply::new(
            Code::OpeningData,
            "Here comes the directory listing",
        ))?;
        let verb = match style {
            ListingStyle::Long => "LIST",
            ListingStyle::Names => "NLST",
            ListingStyle::Facts => "MLSD",
        };
        let record = self.record(verb, &target, false);
        self.start_transfer(data, record, move |data, _aborted, _stall| {
            let mut out = BufWriter::with_capacity(64 * 1024, data);
            let mut write_line = |line: &[u8]| {
                out.write_all(line)?;
                out.write_all(b"\r\n")
            };
            let result = selection
                .write(&storage, style, writable, &mut write_line)
                .and_then(|sent| out.flush().map(|()| sent));
            TransferEnd::from_network(result, "Directory send OK")
        });
        Ok(Flow::Continue)
    }

    pub(super) fn retrieve(&mut self, argument: &[u8]) -> Replied<Flow> {
        let offset = self.restart_at.take().unwrap_or(0);
        let (storage, target) = self.permitted(Permission::Download, argument)?;
        let (mut reader, length) = storage
            .open_read_at(&target, offset)
            .map_err(|error| fs_error(&error, &target))?;
        let data = self.open_data()?;
        let kind = self.transfer_type;
        let mode = if kind == TransferType::Ascii {
            "ASCII"
        } else {
            "BINARY"
        };
        self.send_or_fail(Reply::new(
            Code::OpeningData,
            format!(
                "Opening {mode} mode data connection for {} ({length} bytes)",
                target.display()
            ),
        ))?;
        let record = self.record("RETR", &target, false);
        let mut meter = self.meter(Way::Download);
        self.start_transfer(data, record, move |data, _aborted, stall| {
            let sent = match (kind, data) {
                // A capped user's bytes go through the meter, in small chunks.
                (TransferType::Image, data) if !meter.is_free() => {
                    transfer::copy_exact(&mut Metered::new(&mut reader, &mut meter), data)
                }
                (TransferType::Ascii, data) if !meter.is_free() => {
                    transfer::copy_to_crlf(&mut Metered::new(&mut reader, &mut meter), data)
                }
                // File to socket in the clear: sendfile, no copy through user space.
                (TransferType::Image, DataStream::Plain(socket)) => match reader.as_file() {
                    Some(file) => transfer::send_file(file, socket, stall),
                    None => transfer::copy_filled(&mut reader, &mut &*socket),
                },
                (TransferType::Image, data) => io::copy(&mut reader, data),
                (TransferType::Ascii, data) => transfer::copy_to_crlf(&mut reader, data),
            };
            TransferEnd::from_network(sent, "Transfer complete")
        });
        Ok(Flow::Continue)
    }

    pub(super) fn store(&mut self, argument: &[u8], mode: StoreMode) -> Replied<Flow> {
        let offset = self.restart_at.take().unwrap_or(0);
        self.check(Permission::Upload)?;
        let storage = self.storage();
        let target = match mode {
            StoreMode::Unique => self.cwd.clone(),
            _ => self.cwd.resolve(argument),
        };
        if mode != StoreMode::Unique && target.is_root() {
            return Err(Reply::new(
                Code::NameNotAllowed,
                "cannot store over a directory",
            ));
        }
        // Adding to a file (APPE, or STOR after REST) needs `append`; replacing one that
        // exists needs `overwrite`; a new name needs only `upload`.
        let existing = match mode {
            StoreMode::Unique => None,
            _ => storage.file_size(&target).ok().flatten(),
        };
        if mode == StoreMode::Append || offset > 0 {
            self.check(Permission::Append)?;
        } else if existing.is_some() {
            self.check(Permission::Overwrite)?;
        }
        // What the upload frees when it lands: all of a replaced file, the tail after a
        // REST offset, nothing for an append or a new file.
        let replaces = existing.map_or(0, |old| match mode {
            StoreMode::Replace => old.saturating_sub(offset),
            _ => 0,
        });
        let mut meter = self.meter(Way::Upload);
        meter.quota = self.quota_charge(existing.is_none(), replaces)?;
        // The pre-upload hook decides before anything is created (for STOU it sees the
        // directory: the name is chosen later). This session holds no shared lock here.
        if let Some(event) = self.event(EventKind::PreUpload, &target) {
            self.context
                .events
                .allow_upload(&event)
                .map_err(|text| Reply::new(Code::NameNotAllowed, text))?;
        }
        let upload = Upload::open(&storage, &target, mode, offset)
            .map_err(|error| fs_error(&error, &target))?;
        let data = match self.open_data() {
            Ok(data) => data,
            Err(reply) => {
                upload.discard(&storage);
                return Err(reply);
            }
        };
        let shown = upload.final_path.display();
        let opening = match mode {
            StoreMode::Unique => format!(
                "FILE: {}",
                upload
                    .final_path
                    .file_name()
                    .map_or(shown.clone(), |name| name.to_string_lossy().into_owned())
            ),
            _ => format!("Ok to send data for {shown}"),
        };
        if let Err(reply) = self.send_or_fail(Reply::new(Code::OpeningData, opening)) {
            upload.discard(&storage);
            return Err(reply);
        }
        let kind = self.transfer_type;
        let control = Arc::clone(&self.control);
        let record = self.record(mode.verb(), &upload.final_path, true);
        let event = self.event(EventKind::Upload, &upload.final_path);
        let context = Arc::clone(&self.context);
        self.start_transfer(data, record, move |data, aborted, stall| {
            let mut upload = upload;
            let mut meter = meter;
            let received = match (kind, data) {
                // A user with a quota or a cap: every chunk is claimed (and paced) first.
                (TransferType::Image, data) if !meter.is_free() => {
                    transfer::copy_exact(data, &mut Metered::new(&mut upload.sink, &mut meter))
                }
                (TransferType::Ascii, data) if !meter.is_free() => {
                    transfer::copy_from_crlf(data, &mut Metered::new(&mut upload.sink, &mut meter))
                }
                // Socket to file in the clear: splice, one copy instead of two.
                (TransferType::Image, DataStream::Plain(socket)) => match upload.sink.as_file() {
                    Some(file) => transfer::receive_file(socket, file, stall),
                    None => transfer::copy_exact(&mut &*socket, &mut upload.sink),
                },
                (TransferType::Image, data) => transfer::copy_exact(data, &mut upload.sink),
                (TransferType::Ascii, data) => transfer::copy_from_crlf(data, &mut upload.sink),
            };
            let received = received.and_then(|count| {
                // An EOF on the data connection also happens when the client dies or ABOR
                // shuts it down: only a live client's EOF ends a complete upload.
                if aborted.load(Ordering::Acquire) {
                    return Err(io::Error::new(ErrorKind::Interrupted, "aborted"));
                }
                if control.peer_closes_within(CLIENT_EXIT_GRACE) {
                    return Err(io::Error::new(
                        ErrorKind::ConnectionAborted,
                        "client left during upload",
                    ));
                }
                Ok(count)
            });
            match received {
                Ok(count) => {
                    let final_path = upload.final_path.clone();
                    match upload.commit(&storage) {
                        Ok(()) => {
                            meter.commit();
                            // Committed. Here only an open and a push; the worker hashes.
                            if let Some(mut event) = event {
                                event.size = Some(count);
                                let committed = storage
                                    .open_read_at(&final_path, 0)
                                    .map(|(reader, _)| reader);
                                context.events.upload(event, committed);
                            }
                            (
                                TransferEnd::Complete(format!("Transfer complete: {shown}")),
                                count,
                            )
                        }
                        Err(error) => (TransferEnd::Local(fs_error(&error, &final_path)), 0),
                    }
                }
                Err(error) => {
                    upload.discard(&storage);
                    (TransferEnd::from_upload_error(&error), 0)
                }
            }
        });
        Ok(Flow::Continue)
    }

    /// Sends a preliminary reply, turning a dead control connection into an error.
    fn send_or_fail(&self, reply: Reply) -> Replied<()> {
        self.send(reply).map_err(|error| {
            Reply::new(
                Code::ServiceUnavailable,
                format!("control connection failed: {error}"),
            )
        })
    }

    /// What the logs will say about a transfer of `path` by this session's user.
    fn record(
        &self,
        verb: &'static str,
        path: &crate::path::VirtualPath,
        incoming: bool,
    ) -> TransferRecord {
        let (user, anonymous) = match self.identity() {
            Some(identity) => (identity.name.clone(), identity.name == "anonymous"),
            None => (String::from("-"), true),
        };
        TransferRecord {
            session: self.id,
            verb,
            path: path.display(),
            incoming,
            ascii: self.transfer_type == TransferType::Ascii,
            user,
            anonymous,
        }
    }

    /// Runs `work` on a transfer thread that sends the final reply itself, then logs it.
    fn start_transfer<F>(&mut self, data: TcpStream, record: TransferRecord, work: F)
    where
        F: FnOnce(&mut DataStream, &AtomicBool, std::time::Duration) -> (TransferEnd, u64)
            + Send
            + 'static,
    {
        let aborted = Arc::new(AtomicBool::new(false));
        // ABOR shuts the connection down through this handle.
        let data_handle = match data.try_clone() {
            Ok(handle) => handle,
            Err(error) => {
                let _ = self.send(Reply::new(
                    Code::CantOpenData,
                    format!("data connection unusable: {error}"),
                ));
                return;
            }
        };
        let job = TransferJob {
            control: Arc::clone(&self.control),
            context: Arc::clone(&self.context),
            aborted: Arc::clone(&aborted),
            transferring: Arc::clone(&self.transferring),
            peer: self.peer,
            private: self.private_data(),
            record,
        };
        let what = format!("{} {}", job.record.verb, job.record.path);
        self.transferring.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK_SIZE)
            .spawn(move || job.run(data, work));
        match spawned {
            Ok(thread) => {
                self.running = Some(RunningTransfer {
                    thread,
                    aborted,
                    data: data_handle,
                    what,
                })
            }
            Err(error) => {
                self.transferring.store(false, Ordering::Release);
                log::error!("{}: cannot start transfer thread: {error}", self.peer);
                let _ = data_handle.shutdown(std::net::Shutdown::Both);
                let _ = self.send(Reply::new(Code::LocalError, "server busy, try again"));
            }
        }
    }

    /// Waits for the running transfer (if any) to send its final reply.
    pub(super) fn finish_transfer(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.thread.join();
            // The end of a transfer counts as activity, however long it took.
            self.last_command = Instant::now();
        }
    }

    /// ABOR during a transfer: stop it (its thread replies 426), then 226.
    pub(super) fn abort_transfer(&mut self) -> Flow {
        let Some(running) = self.running.take() else {
            return self.reply(Reply::new(Code::NoTransfer, "No transfer to abort"));
        };
        if running.thread.is_finished() {
            let _ = running.thread.join();
            return self.reply(Reply::new(Code::NoTransfer, "No transfer to abort"));
        }
        running.aborted.store(true, Ordering::Release);
        let _ = running.data.shutdown(std::net::Shutdown::Both);
        let _ = running.thread.join();
        self.reply(Reply::new(Code::TransferComplete, "ABOR successful"))
    }
}

/// Everything a transfer thread needs, moved onto it.
struct TransferJob {
    control: Arc<Control>,
    context: Arc<Context>,
    aborted: Arc<AtomicBool>,
    transferring: Arc<AtomicBool>,
    peer: SocketAddr,
    /// PROT P: handshake on the data connection first.
    private: bool,
    record: TransferRecord,
}

impl TransferJob {
    fn run<F>(self, data: TcpStream, work: F)
    where
        F: FnOnce(&mut DataStream, &AtomicBool, std::time::Duration) -> (TransferEnd, u64),
    {
        let started = Instant::now();
        let config = &self.context.config;
        let stall = config.timeouts.stall;
        let secured = match config.tls.as_ref().filter(|_| self.private) {
            None => Ok(DataStream::Plain(data)),
            Some(settings) => settings
                .secure_data(data, self.record.incoming, started + stall)
                .map(|stream| DataStream::Tls(Box::new(stream))),
        };
        let (end, bytes) = match secured {
            Ok(mut data) => {
                let (end, bytes) = work(&mut data, &self.aborted, stall);
                let _ = data.finish();
                data.close();
                (end, bytes)
            }
            Err(DataTlsError::NotResumed) => (
                TransferEnd::Local(Reply::new(
                    Code::ProtocolNotSupported,
                    format!("TLS session reuse required: {}", DataTlsError::NotResumed),
                )),
                0,
            ),
            Err(error) => {
                self.context.metrics.tls_failure();
                (
                    TransferEnd::Broken(format!("TLS on the data connection failed: {error}")),
                    0,
                )
            }
        };
        let end =
            if self.aborted.load(Ordering::Acquire) && !matches!(end, TransferEnd::Complete(_)) {
                TransferEnd::Aborted
            } else {
                end
            };
        let _ = self.control.send(&end.reply());
        let outcome = end.outcome();
        let direction = if self.record.incoming {
            Direction::Received
        } else {
            Direction::Sent
        };
        let whole_file = outcome == Outcome::Complete
            && matches!(self.record.verb, "RETR" | "STOR" | "APPE" | "STOU");
        self.context.metrics.transfer(
            self.record.verb,
            outcome.label(),
            direction,
            bytes,
            whole_file,
        );
        self.record.log(
            self.context.xferlog.as_deref(),
            self.peer,
            &outcome,
            bytes,
            started.elapsed(),
        );
        self.transferring.store(false, Ordering::Release);
        if self.context.registry.is_shutting_down() {
            self.control.close_with(&shutting_down_reply());
        }
    }
}
