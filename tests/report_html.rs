//! `faultline report --format html` as a person sees it: a real run's journal
//! rendered to a page, opened in headless Chromium, which must load it with
//! no console errors and whose screenshot shows the shaded fault window and
//! the latency line.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// RGB pixels of a PNG file.
fn pixels(path: &Path) -> Vec<[u8; 3]> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|c| [c[0], c[1], c[2]])
        .collect()
}

fn hex(c: &str) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    (0..3).all(|i| (a[i] as i32 - b[i] as i32).abs() <= tol)
}

/// Opens `page` in headless Chromium and returns its screenshot, after
/// checking the browser ran and logged no console error.
fn screenshot(browser: &str, page: &Path, dir: &Path) -> std::path::PathBuf {
    let shot = dir.join("shot.png");
    // Bounded: a browser that hangs fails the test instead of stalling CI.
    let o = Command::new("timeout")
        .args(["120", browser])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1100",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .env("HOME", dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium: {log}");
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );
    shot
}

#[test]
fn the_html_report_opens_in_chromium_and_shows_the_fault_window_and_the_latency_line() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: the run's web server needs python3");
        return;
    }
    let Some(browser) = chromium() else {
        eprintln!("skipped: no headless Chromium (Debian: apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A web server paused for 2 s: its samples fail while the fault is on.
    let exp = dir.path().join("e.yaml");
    std::fs::write(
        &exp,
        format!(
            r#"title: "paused <web> server"
hypothesis: it answers again after the pause
setup:
  - name: web
    start: [python3, -m, http.server, "{port}", --bind, 127.0.0.1]
    ready:
      tcp: {{host: 127.0.0.1, port: {port}}}
      timeout: 10s
steady_state:
  interval: 200ms
  probes:
    - name: web answers
      http: {{url: "http://127.0.0.1:{port}/"}}
      timeout: 500ms
      after: {{within: 10s, successes: 2}}
method:
  - name: pause the web server
    fault:
      process_pause:
        target: {{setup: web}}
    duration: 2s
"#
        ),
    )
    .unwrap();
    let journal = dir.path().join("j.json");
    let o = Command::new(BIN)
        .args(["run", "--yes", "-q", "--journal"])
        .arg(&journal)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg(&exp)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "the run held: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let page = dir.path().join("report.html");
    let o = Command::new(BIN)
        .args(["report", "--format", "html", "-o"])
        .arg(&page)
        .arg(&journal)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("paused &lt;web&gt; server"),
        "the title is escaped"
    );
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("http-equiv") && !html.contains("src=\"http"),
        "no external assets"
    );
    assert!(html.contains("class=\"fault-window\"") && html.contains("class=\"latency-line\""));
    assert!(
        html.contains("class=\"failed-sample\""),
        "samples failed while paused"
    );

    let shot = screenshot(browser, &page, dir.path());

    let px = pixels(&shot);
    let shade = hex(faultline::report::html::FAULT_SHADE);
    let line = hex(faultline::report::html::LATENCY_LINE);
    let shaded = px.iter().filter(|p| near(**p, shade, 6)).count();
    let drawn = px.iter().filter(|p| near(**p, line, 40)).count();
    assert!(
        shaded > 5_000,
        "the fault window is shaded: {shaded} pixels"
    );
    assert!(drawn > 200, "the latency line is drawn: {drawn} pixels");
}

/// `faultline history --format html` over journals of repeated runs: the page
/// loads in Chromium with no console errors, and its screenshot shows the
/// verdict strip and the probe's p95 trend line.
#[test]
fn the_history_page_opens_in_chromium_and_shows_the_trends() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no headless Chromium (Debian: apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-held.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir(&journals).unwrap();
    // Six runs of one experiment whose p95 grows run by run; the fourth deviated.
    for day in 1..=6u32 {
        let mut j = fixture.clone();
        j["experiment"]["title"] = "checkout <api> under delay".into();
        j["run_id"] = format!("run-{day}").into();
        j["started_at"] = format!("2026-11-{day:02}T10:00:00Z").into();
        j["probes"][0]["during"]["latency_ms"]["p95"] = (100.0 * day as f64).into();
        if day == 4 {
            j["outcome"]["verdict"] = "deviated".into();
        }
        std::fs::write(
            journals.join(format!("faultline-run-{day}.json")),
            serde_json::to_string(&j).unwrap(),
        )
        .unwrap();
    }
    let page = dir.path().join("history.html");
    let o = Command::new(BIN)
        .args(["history", "--format", "html", "-o"])
        .arg(&page)
        .arg(&journals)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("checkout &lt;api&gt; under delay"),
        "escaped title"
    );
    assert!(!html.contains("<script"));
    assert_eq!(html.matches("class=\"verdict-held\"").count(), 5);
    assert_eq!(html.matches("class=\"verdict-deviated\"").count(), 1);
    assert!(
        html.contains("class=\"latency-line\""),
        "the p95 trend is drawn"
    );

    let shot = screenshot(browser, &page, dir.path());
    let px = pixels(&shot);
    let line = hex(faultline::report::html::LATENCY_LINE);
    let held = hex("#188038");
    let deviated = hex("#d93025");
    let count = |c: [u8; 3], tol| px.iter().filter(|p| near(**p, c, tol)).count();
    assert!(count(line, 40) > 200, "the p95 line is drawn");
    assert!(count(held, 20) > 500, "held runs are green squares");
    assert!(
        count(deviated, 20) > 100,
        "the deviated run is a red square"
    );
}
