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

/// A listening TCP socket: its local address and port, and its inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// Every listening socket in a /proc/net/tcp (`v6 == false`) or tcp6 text.
pub fn parse_listening(table: &str, v6: bool) -> Vec<Listening> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((a, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        let (Ok(port), Ok(inode)) = (u16::from_str_radix(p, 16), f[9].parse::<u64>()) else {
            continue;
        };
        let Some(addr) = parse_hex_addr(a, v6) else {
            continue;
        };
        out.push(Listening { addr, port, inode });
    }
    out
}

/// /proc/net/tcp addresses are the kernel's words printed in host order
/// (little-endian here): 0100007F is 127.0.0.1.
fn parse_hex_addr(a: &str, v6: bool) -> Option<std::net::IpAddr> {
    let words: Vec<u32> = (0..a.len() / 8)
        .map(|i| u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut bytes = Vec::with_capacity(16);
    for w in &words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    match (v6, bytes.len()) {
        (false, 4) => Some(std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
        (true, 16) => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(b).into())
        }
        _ => None,
    }
}

/// Every listening TCP socket of this network namespace, with the pids that
/// hold it (as far as this process may see them), by port.
pub fn all_listening() -> Vec<(Listening, Vec<i32>)> {
    let root = crate::sys::proc::proc_root();
    let mut socks = Vec::new();
    for (t, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(root.join(t)) {
            socks.extend(parse_listening(&text, v6));
        }
    }
    let owners = socket_owners(&root);
    let mut out: Vec<(Listening, Vec<i32>)> = socks
        .into_iter()
        .map(|l| {
            let pids = owners.get(&l.inode).cloned().unwrap_or_default();
            (l, pids)
        })
        .collect();
    out.sort_by_key(|a| (a.0.port, a.0.addr));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Socket inode -> the pids holding it.
fn socket_owners(proc_root: &Path) -> std::collections::HashMap<u64, Vec<i32>> {
    let mut map: std::collections::HashMap<u64, Vec<i32>> = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return map;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let inode = std::fs::read_link(fd.path()).ok().and_then(|l| {
                let l = l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
                l.parse::<u64>().ok()
            });
            if let Some(i) = inode {
                let v = map.entry(i).or_default();
                if !v.contains(&pid) {
                    v.push(pid);
                }
            }
        }
    }
    map
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
    fn parses_every_listening_socket_with_its_address() {
        let l = parse_listening(TCP, false);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].addr, std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!((l[0].port, l[0].inode), (8080, 4242));
        assert_eq!(l[1].addr, std::net::IpAddr::from([0, 0, 0, 0]));
        let v6 = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
";
        let l = parse_listening(v6, true);
        assert_eq!(
            l[0].addr,
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        );
        assert_eq!(l[0].port, 8080);
    }

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
