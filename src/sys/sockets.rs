//! Who listens on a TCP port: /proc/net/tcp{,6} gives the socket inode,
//! /proc/*/fd gives the process holding it.

use std::collections::BTreeSet;
use std::path::Path;

/// A process with a listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// Its command line, escaped for a terminal.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// Inodes of sockets listening on `port` in a /proc/net/tcp{,6} text.
pub fn listening_inodes(table: &str, port: u16) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16) == Ok(port) {
            if let Ok(inode) = f[9].parse::<u64>() {
                if inode != 0 {
                    out.insert(inode);
                }
            }
        }
    }
    out
}

/// The processes listening on TCP `port` (IPv4 or IPv6), as far as this
/// process may see them. Empty when nobody listens or /proc is not readable.
pub fn listeners(port: u16) -> Vec<Holder> {
    listeners_in(&crate::sys::proc::proc_root(), port)
}

fn listeners_in(proc_root: &Path, port: u16) -> Vec<Holder> {
    let mut inodes = BTreeSet::new();
    for t in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc_root.join(t)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| {
                    let l = l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
                    l.parse::<u64>().ok()
                })
                .is_some_and(|i| inodes.contains(&i))
        });
        if holds {
            let raw = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let mut command = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            if command.is_empty() {
                command = std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| format!("[{}]", c.trim()))
                    .unwrap_or_default();
            }
            if command.chars().count() > 200 {
                command = command.chars().take(200).collect::<String>() + "...";
            }
            out.push(Holder {
                pid,
                command: crate::sys::text::escape(&command).into_owned(),
            });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_listening_sockets_by_port() {
        assert_eq!(listening_inodes(TCP, 8080), BTreeSet::from([4242]));
        assert_eq!(listening_inodes(TCP, 22), BTreeSet::from([99]));
        assert!(listening_inodes(TCP, 9).is_empty());
    }

    #[test]
    fn names_this_process_for_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let found = listeners(port);
        assert!(found.iter().any(|h| h.pid == me), "{found:?}");
    }
}
