//! Network namespaces and traffic helpers shared by the network fault tests
//! (on the host as root, and inside the test VM).
//!
//! A [`NsPair`] is two namespaces joined by a veth pair: `va` (10.201.0.1/24)
//! in `a`, `vb` (10.201.0.2/24) in `b`. Traffic is generated from threads that
//! entered a namespace with `setns` ([`in_netns`]), so no helper processes.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const A_IP: &str = "10.201.0.1";
pub const B_IP: &str = "10.201.0.2";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this process and call (`fl<pid>-<n>`).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a command, panicking with its stderr when it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; deleted on drop (also on panic).
pub struct NsPair {
    pub a: String,
    pub b: String,
}

impl NsPair {
    pub fn new() -> NsPair {
        let base = unique("flt");
        let pair = NsPair {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        sh(&["ip", "netns", "add", &pair.a]);
        sh(&["ip", "netns", "add", &pair.b]);
        sh(&[
            "ip", "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
            "netns", &pair.b,
        ]);
        sh(&[
            "ip",
            "-n",
            &pair.a,
            "addr",
            "add",
            "10.201.0.1/24",
            "dev",
            "va",
        ]);
        sh(&[
            "ip",
            "-n",
            &pair.b,
            "addr",
            "add",
            "10.201.0.2/24",
            "dev",
            "vb",
        ]);
        for (ns, dev) in [(&pair.a, "va"), (&pair.b, "vb")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// `tc qdisc show` and `nft list ruleset` of both namespaces.
    pub fn snapshot(&self) -> String {
        let mut s = String::new();
        for ns in [&self.a, &self.b] {
            s.push_str(&sh(&["tc", "-n", ns, "qdisc", "show"]));
            s.push_str(&sh(&["tc", "-n", ns, "class", "show", "dev", "lo"]));
            if which("nft") {
                s.push_str(&sh(&["ip", "netns", "exec", ns, "nft", "list", "ruleset"]));
            }
            // Link names only: carrier state changes as traffic flows.
            for l in sh(&["ip", "-n", ns, "-o", "link", "show"]).lines() {
                s.push_str(l.split(':').nth(1).unwrap_or(""));
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub fn which(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(tool).exists())
}

/// Runs `f` on a thread that entered network namespace `ns`. Sockets created
/// there stay in that namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// A UDP socket bound in `ns` to `ip:port` (port 0: any).
pub fn udp_in(ns: &str, ip: &str, port: u16) -> UdpSocket {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_netns(ns, move || {
        UdpSocket::bind(addr).expect("binding a UDP socket")
    })
}

/// A TCP listener bound in `ns` to `ip:port` that accepts and drains
/// connections on a background thread (until the process exits).
pub fn tcp_server_in(ns: &str, ip: &str, port: u16) -> SocketAddr {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let l = in_netns(ns, move || {
        TcpListener::bind(addr).expect("binding a TCP listener")
    });
    let local = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let _ = std::io::copy(&mut c, &mut std::io::sink());
            });
        }
    });
    local
}

/// Connects from `ns` to `to` (optionally from a fixed local port); the
/// result and how long it took.
pub fn tcp_connect_from(
    ns: &str,
    to: SocketAddr,
    local_port: Option<u16>,
    timeout: Duration,
) -> (std::io::Result<TcpStream>, Duration) {
    in_netns(ns, move || {
        let start = Instant::now();
        let r = match local_port {
            None => TcpStream::connect_timeout(&to, timeout),
            Some(p) => connect_from_port(to, p, timeout),
        };
        (r, start.elapsed())
    })
}

fn connect_from_port(to: SocketAddr, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let SocketAddr::V4(v4) = to else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let check = |r: i32| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket syscalls on a descriptor owned here.
    unsafe {
        let fd = OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0))?);
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        // Linux applies SO_SNDTIMEO to a blocking connect(2).
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ))?;
        let local = sockaddr(A_IP.parse().unwrap(), port);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(libc::bind(
            fd.as_raw_fd(),
            &local as *const _ as *const libc::sockaddr,
            len,
        ))?;
        let remote = sockaddr(*v4.ip(), v4.port());
        check(libc::connect(
            fd.as_raw_fd(),
            &remote as *const _ as *const libc::sockaddr,
            len,
        ))?;
        Ok(TcpStream::from(fd))
    }
}

/// Sets SO_SNDBUF on a socket.
fn set_sndbuf(s: &impl std::os::fd::AsRawFd, bytes: i32) {
    // SAFETY: setsockopt with a valid int on an open socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &bytes as *const _ as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Sends `n` UDP datagrams from `ns_from` to `to` and counts how many arrive
/// at `receiver` (already bound in the destination namespace), reading
/// while sending so the receive buffer never overflows.
pub fn udp_delivery(ns_from: &str, receiver: &UdpSocket, n: usize) -> usize {
    let to = receiver.local_addr().unwrap();
    let sender = udp_in(ns_from, "0.0.0.0", 0);
    let rx = receiver.try_clone().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    while rx.recv(&mut buf).is_ok() {}
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let counter = std::thread::spawn(move || {
        let mut got = 0;
        let mut quiet_since: Option<Instant> = None;
        loop {
            match rx.recv(&mut buf) {
                Ok(_) => {
                    got += 1;
                    quiet_since = None;
                }
                Err(_) => {
                    if done2.load(Ordering::SeqCst) {
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if q.elapsed() > Duration::from_millis(300) {
                            return got;
                        }
                    }
                }
            }
        }
    });
    for i in 0..n {
        let _ = sender.send_to(&(i as u32).to_be_bytes(), to);
        std::thread::sleep(Duration::from_micros(200));
    }
    done.store(true, Ordering::SeqCst);
    counter.join().unwrap()
}

/// Round trip of one UDP echo (server: [`udp_echo_in`]), or `None` on timeout.
pub fn udp_rtt(ns_from: &str, to: SocketAddr, timeout: Duration) -> Option<Duration> {
    let s = udp_in(ns_from, "0.0.0.0", 0);
    s.set_read_timeout(Some(timeout)).unwrap();
    let start = Instant::now();
    s.send_to(b"ping", to).ok()?;
    let mut buf = [0u8; 16];
    s.recv(&mut buf).ok()?;
    Some(start.elapsed())
}

/// A UDP echo server in `ns` on `ip:port` (background thread).
pub fn udp_echo_in(ns: &str, ip: &str, port: u16) -> SocketAddr {
    let s = udp_in(ns, ip, port);
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Median of `n` UDP echo round trips (lost ones skipped).
pub fn median_rtt(ns_from: &str, to: SocketAddr, n: usize) -> Option<Duration> {
    let mut v: Vec<Duration> = (0..n)
        .filter_map(|_| udp_rtt(ns_from, to, Duration::from_secs(2)))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2])
}

/// Sends as fast as TCP allows from `ns_from` to a receiver in `ns_to` on
/// `to_ip` for `secs` seconds (+1) and returns the rate the receiver saw in
/// bits/s, counted from one second after the first byte (so a token
/// bucket's initial burst does not count).
pub fn tcp_throughput(ns_from: &str, ns_to: &str, to_ip: &str, secs: f64) -> f64 {
    use std::io::{Read, Write};
    let addr: SocketAddr = format!("{to_ip}:0").parse().unwrap();
    let l = in_netns(ns_to, move || {
        TcpListener::bind(addr).expect("binding a TCP listener")
    });
    let to = l.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 65536];
        let mut first: Option<Instant> = None;
        let mut mark: Option<(Instant, u64)> = None;
        let mut total = 0u64;
        let mut last = Instant::now();
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            let f = *first.get_or_insert(now);
            if mark.is_none() && now.duration_since(f) >= Duration::from_secs(1) {
                mark = Some((now, total));
            }
            total += n as u64;
            last = now;
        }
        match mark {
            Some((t, b)) => (total - b) as f64 * 8.0 / last.duration_since(t).as_secs_f64(),
            None => 0.0,
        }
    });
    in_netns(ns_from, move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect");
        // A small send buffer, so what is queued at the end drains quickly.
        set_sndbuf(&c, 32768);
        let buf = vec![0u8; 8192];
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs + 1.0 {
            if c.write_all(&buf).is_err() {
                break;
            }
        }
    });
    receiver.join().expect("receiver thread")
}
