//! Sampling and the INCONCLUSIVE verdict, end to end with the built binary
//! against real TCP/HTTP servers on loopback: a service that answers slowly,
//! one that accepts and never answers, and what the verdict says about them.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{text, Sandbox};

/// An HTTP server on 127.0.0.1 that answers 200 after `delay` (one thread per
/// connection), or, with `delay: None`, accepts and never answers (a hung
/// target: connections stay open until the server is dropped).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(delay: Option<Duration>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let Some(delay) = delay else {
                            held.lock().unwrap().push(s);
                            continue;
                        };
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || answer(s, delay, &stop3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server { port, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn answer(mut s: TcpStream, delay: Duration, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
    let end = Instant::now() + delay;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn reasons(j: &serde_json::Value) -> Vec<(String, String)> {
    j["inconclusive"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap_or_default().to_string(),
                        r["subject"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A slow service (1.5 s per answer) and a method much shorter than one
/// sample: the `during` requirement rests on no finished sample, or on one.
/// That is not a failure of the hypothesis: the run is INCONCLUSIVE (exit 5),
/// and every report says why.
#[test]
fn a_method_shorter_than_one_sample_is_inconclusive_not_deviated() {
    let sb = Sandbox::new();
    let slow = Server::start(Some(Duration::from_millis(1500)));
    let f = sb.write(
        "short.yaml",
        &format!(
            r#"title: short method
hypothesis: the slow service answers while nothing happens
steady_state:
  interval: 1s
  probes:
    - name: slow
      http: {{url: "{}"}}
      timeout: 5s
      before: {{samples: 1}}
      during: {{min_success: 90%}}
      after: {{within: 10s, successes: 1}}
method:
  - pause: 200ms
"#,
            slow.url()
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("INCONCLUSIVE (exit 5): the experiment did not test what it said"),
        "{}",
        text(&o)
    );
    assert!(out.contains("probe `slow` (too_few_samples)"), "{out}");
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "inconclusive", "{j:#}");
    assert_eq!(j["outcome"]["exit_code"], 5);
    assert_eq!(
        reasons(&j),
        vec![("too_few_samples".to_string(), "probe `slow`".to_string())]
    );
    assert!(j["inconclusive"][0]["at_ms"].as_f64().unwrap() > 0.0);
    // Untested is not failed.
    assert_ne!(j["probes"][0]["during"]["met"], false, "{j:#}");

    let junit = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<error "), "{junit}");
    assert!(junit.contains("type=\"inconclusive\""), "{junit}");
    assert!(
        junit.contains("probe `slow` (too_few_samples)"),
        "the reasons are in the JUnit error: {junit}"
    );
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(md.contains("**Verdict: INCONCLUSIVE (exit 5)**"), "{md}");
    assert!(md.contains("too_few_samples"), "{md}");

    // `report` renders the journal again, verdict and reasons included.
    let r = sb.cmd().args(["report", "journal.json"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert!(String::from_utf8_lossy(&r.stdout).contains("INCONCLUSIVE (exit 5)"));
}

/// DEVIATED wins: a probe that failed its requirement while the method ran
/// decides the verdict even when another probe's requirement went untested.
#[test]
fn a_failed_hypothesis_is_deviated_even_with_a_reason_for_inconclusive() {
    let sb = Sandbox::new();
    let flaky = support::FlagServer::start(sb.path());
    let slow = Server::start(Some(Duration::from_millis(1500)));
    let flag = flaky.fail_flag.display().to_string();
    let f = sb.write(
        "deviated.yaml",
        &format!(
            r#"title: deviated beats inconclusive
hypothesis: the service keeps answering while its flag is set
steady_state:
  interval: 100ms
  probes:
    - name: flaky
      http: {{url: "{}"}}
      timeout: 2s
      before: {{samples: 1}}
      during: {{min_success: 100%}}
      after: {{within: 10s, successes: 1}}
    - name: slow
      http: {{url: "{}"}}
      timeout: 5s
      before: {{samples: 1}}
      during: {{min_success: 90%}}
      after: {{within: 10s, successes: 1}}
method:
  - command: {{run: [touch, "{flag}"]}}
  - pause: 500ms
  - command: {{run: [rm, -f, "{flag}"]}}
"#,
            flaky.url(),
            slow.url()
        ),
    );
    let o = sb.run(&f, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = sb.journal();
    assert_eq!(j["outcome"]["verdict"], "deviated", "{j:#}");
    assert_eq!(j["probes"][0]["during"]["met"], false, "{j:#}");
    // The untested requirement is still recorded, for whoever reads the journal.
    assert!(
        reasons(&j).contains(&("too_few_samples".to_string(), "probe `slow`".to_string())),
        "{j:#}"
    );
}
