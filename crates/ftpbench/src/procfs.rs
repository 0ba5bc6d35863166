//! Procfs: what /proc says about a server's process tree (PSS, RSS, process count) and the
//! descriptor limit a thousand sessions need.

use std::collections::HashMap;
use std::fs;
use std::io;

/// Memory of a whole process tree, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeMemory {
    /// Proportional set size: shared pages divided among the processes sharing them.
    pub pss_kib: u64,
    /// Resident set size summed (counts shared pages once per process).
    pub rss_kib: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The pids of `root` and all its descendants.
pub fn process_tree(root: u32) -> io::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if let Some(parent) = parent_of(pid) {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids);
        }
        next += 1;
    }
    Ok(tree)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state, then ppid.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// PSS and RSS summed over `root`'s process tree, from /proc/PID/smaps_rollup. Processes
/// that exit while being read are skipped.
pub fn tree_memory(root: u32) -> io::Result<TreeMemory> {
    let pids = process_tree(root)?;
    let mut memory = TreeMemory::default();
    for pid in pids {
        let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        memory.pss_kib += rollup_field(&rollup, "Pss:").unwrap_or(0);
        memory.rss_kib += rollup_field(&rollup, "Rss:").unwrap_or(0);
        memory.processes += 1;
    }
    if memory.processes == 0 {
        return Err(io::Error::other(format!(
            "cannot read /proc/{root}/smaps_rollup: no such process or no permission"
        )));
    }
    Ok(memory)
}

/// A `Name:   N kB` field of smaps_rollup, in KiB.
fn rollup_field(rollup: &str, field: &str) -> Option<u64> {
    rollup
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Lifts the soft descriptor limit to the hard one (servers started later inherit it):
/// a thousand sessions are a thousand descriptors here and as many in the server.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_tree_has_memory() {
        let memory = tree_memory(std::process::id()).unwrap();
        assert!(memory.processes >= 1);
        assert!(memory.pss_kib > 0 && memory.rss_kib >= memory.pss_kib);
    }

    #[test]
    fn rollup_fields_are_read() {
        let rollup = "00400000-7fff [rollup]\nRss:  1234 kB\nPss:  567 kB\n";
        assert_eq!(rollup_field(rollup, "Pss:"), Some(567));
        assert_eq!(rollup_field(rollup, "Rss:"), Some(1234));
        assert_eq!(rollup_field(rollup, "Swap:"), None);
    }
}
