//! Service: what running under a service manager needs beyond serving: listening sockets
//! handed over by systemd (socket activation, so port 21 needs no privilege in the process),
//! and dropping from root to a service user once the ports are bound.

use std::ffi::CString;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};

/// Listening sockets systemd passed us (`LISTEN_FDS` for our pid), in order: the plain
/// listener first, then an implicit-TLS one. Empty when we were not socket-activated.
pub fn inherited_listeners() -> Result<Vec<TcpListener>, String> {
    let fds = sd_notify::listen_fds()
        .map_err(|error| format!("cannot use the sockets systemd passed: {error}"))?;
    let mut listeners = Vec::new();
    for fd in fds {
        // SAFETY: systemd hands descriptors 3.. to this process (LISTEN_PID is ours) for it to
        // own; nothing else in the process has taken them, and each is taken once here.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listening = rustix::net::sockopt::socket_acceptconn(&owned).unwrap_or(false);
        if !listening {
            return Err(format!(
                "descriptor {fd} from systemd is not a listening socket"
            ));
        }
        listeners.push(TcpListener::from(owned));
    }
    Ok(listeners)
}

/// True when the process runs with root's user id.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Becomes `user` (its uid, its primary group, and no other groups) for good, and checks
/// that root cannot be had back. Called after binding and before serving anyone.
pub fn drop_privileges(user: &str) -> Result<(), String> {
    let (uid, gid) = lookup(user)?;
    let current = rustix::process::geteuid().as_raw();
    if current != 0 {
        if current == uid {
            return Ok(());
        }
        return Err(format!("cannot switch to user {user}: not running as root"));
    }
    let failed = |what: &str| {
        format!(
            "cannot switch to user {user}: {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: plain syscalls through glibc, which applies the id changes to every thread;
    // the group list is one valid gid for the call.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(failed("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(failed("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(failed("setuid"));
        }
        let regained = libc::setuid(0) == 0;
        if regained || libc::getuid() != uid || libc::geteuid() != uid || libc::getegid() != gid {
            return Err(format!("switching to user {user} did not stick"));
        }
    }
    Ok(())
}

/// The uid and primary gid of `user` from the system's user database.
fn lookup(user: &str) -> Result<(u32, u32), String> {
    let name = CString::new(user).map_err(|_| format!("bad user name '{user}'"))?;
    // SAFETY: `passwd` is plain data (integers and pointers); all zeroes is a valid value,
    // and getpwnam_r fills it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory we own for the call's duration, with its true size.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return Err(format!("no such user '{user}'"));
    }
    Ok((entry.pw_uid, entry.pw_gid))
}
