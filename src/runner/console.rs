//! The live console on a terminal: one screen, redrawn a few times a
//! second, that a game-day facilitator can put in front of a team.
//!
//! ```text
//! faultline 20261206-141203-ab12 · checkout survives a slow database
//! METHOD · step 2/4 slow db · 12s of 30s · run 1m04s
//! PROBES
//!  ✓ api       up since 14:12:31 (33s)                          p95 12.3ms
//!              before 3/3 ok · during 41/50 = 82% ≥ 60%
//! ABORT WHEN
//!  api: 2/3 consecutive failures
//! FAULTS
//!  2 network_delay on lo: in effect (delay 100ms)
//! EVENTS
//!     45.1s  injected network_delay on lo (3.1ms)
//! q stop and roll back · space details
//! ```
//!
//! It is a view: it consumes the event stream (plus what the experiment
//! says about requirements and abort conditions) and never drives the run,
//! except that a confirmed `q`/Ctrl-C sends the runner SIGINT, which rolls
//! everything back exactly as a Ctrl-C without the console does.
//!
//! The screen is the terminal's alternate screen; the terminal is put back
//! (raw mode off, cursor shown, main screen) when the run finishes, when the
//! console is dropped, and from the panic hook ([`restore_terminal`]).
//! After it, the plain event log (what a run without a terminal prints) is
//! written to stderr so the scrollback keeps the story of the run.

use super::events::{Event, EventSink, TimedEvent};
use super::live::LiveView;
use crate::experiment::model::{AbortCondition, Experiment};
use crate::report::record::{Phase, SamplePhase, SampleStatus};
use crate::sys::text::escape;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use unicode_width::UnicodeWidthChar;

/// How often the screen is redrawn (and the terminal's size checked).
const REDRAW: Duration = Duration::from_millis(200);
/// Log lines kept for the EVENTS panel and the dump after the run.
const MAX_LOG: usize = 5000;
/// Latencies kept per probe and phase for the p95 shown.
const MAX_LATENCIES: usize = 20_000;

/// Set while this process has the terminal in raw mode / alternate screen.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back if the console has it: raw mode off, cursor
/// shown, main screen. Safe to call from a panic hook, more than once.
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
        let mut e = std::io::stderr();
        let _ = e.write_all(b"\x1b[0m\x1b[?25h\x1b[?1049l");
        let _ = e.flush();
    }
}

/// What the console needs to know from the experiment.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    probes: Vec<ProbeSpec>,
    aborts: Vec<AbortCondition>,
    /// Each step's duration (faults and pauses), in ms.
    steps: Vec<Option<f64>>,
}

#[derive(Clone, Debug)]
struct ProbeSpec {
    /// No `during` requirement: its samples during the method are only shown.
    observe_only: bool,
    /// `during.min_success` as a fraction.
    min_success: Option<f64>,
    requirement: String,
}

impl Spec {
    pub fn of(exp: &Experiment) -> Spec {
        let probes = exp
            .steady_state
            .probes
            .iter()
            .map(|p| {
                let during = p.during.as_ref().filter(|d| !d.is_empty());
                let mut req = vec![format!(
                    "before: {} samples, {} ok",
                    p.before.samples, p.before.min_success
                )];
                if let Some(d) = during {
                    let mut parts = Vec::new();
                    if let Some(m) = d.min_success {
                        parts.push(format!("≥ {m} ok"));
                    }
                    if let Some(o) = d.max_outage {
                        parts.push(format!("outage ≤ {o}"));
                    }
                    for (pc, lim) in d.latency_limits() {
                        parts.push(format!("p{pc} ≤ {lim}"));
                    }
                    req.push(format!("during: {}", parts.join(", ")));
                } else {
                    req.push("during: observed only".into());
                }
                req.push(format!(
                    "after: {} ok in a row within {}",
                    p.after.successes, p.after.within
                ));
                ProbeSpec {
                    observe_only: during.is_none(),
                    min_success: during.and_then(|d| d.min_success).map(|m| m.fraction()),
                    requirement: req.join(" · "),
                }
            })
            .collect();
        let steps = exp
            .method
            .iter()
            .map(|s| {
                s.duration
                    .or(s.pause)
                    .map(|d| d.std().as_secs_f64() * 1000.0)
            })
            .collect();
        Spec {
            probes,
            aborts: exp.abort.clone(),
            steps,
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: u32,
    n: u32,
    lat: Vec<f64>,
}

impl Counts {
    fn add(&mut self, ok: bool, latency: f64) {
        self.n += 1;
        if ok {
            self.ok += 1;
        }
        if self.lat.len() < MAX_LATENCIES {
            self.lat.push(latency);
        }
    }
}

#[derive(Default)]
struct ProbeView {
    name: String,
    kind: String,
    target: String,
    up: Option<bool>,
    /// When it last changed between up and down (wall clock, elapsed ms).
    since: Option<(chrono::DateTime<chrono::Local>, f64)>,
    before: Counts,
    during: Counts,
    after: Counts,
    /// Failing samples in a row during the method.
    consecutive: u32,
    /// Recent samples during the method: (failed, latency).
    recent: VecDeque<(bool, f64)>,
    last_detail: String,
}

struct FaultView {
    step: usize,
    kind: String,
    target: String,
    state: String,
    bad: bool,
    /// Crash-loop rounds and restarts seen (from its activity events).
    rounds: u32,
    restarts: u32,
}

struct StepView {
    label: String,
    kind: String,
}

#[derive(Default)]
struct State {
    run_id: String,
    title: String,
    phase: String,
    probes: Vec<ProbeView>,
    steps: Vec<StepView>,
    step: Option<(usize, f64)>,
    faults: Vec<FaultView>,
    /// Elapsed ms at the last event and when it came.
    clock: Option<(f64, Instant)>,
    sample_phase: Option<SamplePhase>,
    confirming: bool,
    stopping: bool,
    details: bool,
    abort: Option<String>,
    finished: bool,
    /// The escalating step's current level: step, level, levels, what, since (ms).
    level: Option<(usize, usize, usize, String, f64)>,
}

/// The console's sink. Dropping it (or `RunFinished`) ends the screen.
pub struct Console {
    spec: Spec,
    state: Arc<Mutex<State>>,
    log: Arc<Mutex<VecDeque<String>>>,
    inner: LiveView,
    thread: Option<std::thread::JoinHandle<()>>,
    done: Arc<AtomicBool>,
    color: bool,
    keys: bool,
}

impl Console {
    /// A console for a terminal on stderr; `keys` when stdin is that
    /// terminal too (raw mode, `q`, Ctrl-C, space).
    pub fn new(spec: Spec, color: bool, keys: bool) -> Console {
        let log = Arc::new(Mutex::new(VecDeque::new()));
        Console {
            spec,
            state: Arc::default(),
            inner: LiveView::capturing(log.clone(), MAX_LOG),
            log,
            thread: None,
            done: Arc::new(AtomicBool::new(false)),
            color,
            keys,
        }
    }

    fn start(&mut self) {
        if self.thread.is_some() {
            return;
        }
        if self.keys && crossterm::terminal::enable_raw_mode().is_err() {
            self.keys = false;
        }
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let mut e = std::io::stderr();
        let _ = e.write_all(b"\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
        let _ = e.flush();
        let (state, log, done, spec) = (
            self.state.clone(),
            self.log.clone(),
            self.done.clone(),
            self.spec.clone(),
        );
        let (color, keys) = (self.color, self.keys);
        self.thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || screen_loop(&state, &log, &done, &spec, color, keys))
            .ok();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            restore_terminal();
            // The story of the run, for the scrollback.
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let mut e = std::io::stderr().lock();
            for l in log.iter() {
                let _ = writeln!(e, "{l}");
            }
        }
        restore_terminal();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop();
    }
}

fn screen_loop(
    state: &Mutex<State>,
    log: &Mutex<VecDeque<String>>,
    done: &AtomicBool,
    spec: &Spec,
    color: bool,
    keys: bool,
) {
    let mut size = (0u16, 0u16);
    while !done.load(Ordering::SeqCst) {
        if keys {
            for k in read_keys(REDRAW) {
                key(state, k);
            }
        } else {
            std::thread::sleep(REDRAW);
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
        // The size is read at every redraw: a resize (SIGWINCH) shows at the
        // next one, with the screen cleared first.
        let now = crossterm::terminal::size().unwrap_or((80, 24));
        let clear = now != size;
        size = now;
        let lines = {
            let st = state.lock().unwrap_or_else(|p| p.into_inner());
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            render(&st, spec, &log, size.0 as usize, size.1 as usize)
        };
        draw(&lines, size.0 as usize, clear, color);
    }
}

/// Bytes typed within `wait` (none when nothing was typed).
fn read_keys(wait: Duration) -> Vec<u8> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::NONE);
    match poll(&mut fds, ms) {
        Ok(n) if n > 0 => {
            let mut buf = [0u8; 64];
            match nix::unistd::read(fd, &mut buf) {
                Ok(n) if n > 0 => buf[..n].to_vec(),
                // EOF or an error: no more keys; do not spin.
                _ => {
                    std::thread::sleep(wait);
                    vec![]
                }
            }
        }
        _ => vec![],
    }
}

/// One key: `q`/Ctrl-C asks, `y` (or `q`/Ctrl-C again) confirms, anything
/// else cancels; space shows or hides details.
fn key(state: &Mutex<State>, k: u8) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if st.finished {
        return;
    }
    let stop_key = k == b'q' || k == b'Q' || k == 0x03;
    if st.stopping {
        if stop_key {
            // Again: as a second Ctrl-C, do not wait for probes.
            interrupt();
        }
        return;
    }
    if st.confirming {
        st.confirming = false;
        if stop_key || k == b'y' || k == b'Y' {
            st.stopping = true;
            drop(st);
            interrupt();
        }
        return;
    }
    if stop_key {
        st.confirming = true;
    } else if k == b' ' {
        st.details = !st.details;
    }
}

/// Asks the runner to stop and roll back, as Ctrl-C does.
fn interrupt() {
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGINT);
}

/// A line and its color.
type Line = (String, &'static str);

fn draw(lines: &[Line], width: usize, clear: bool, color: bool) {
    let mut out = String::from(if clear { "\x1b[H\x1b[2J" } else { "\x1b[H" });
    for (i, (text, sgr)) in lines.iter().enumerate() {
        let t = fit(text, width);
        if color && !sgr.is_empty() {
            out.push_str(&format!("\x1b[{sgr}m{t}\x1b[0m"));
        } else {
            out.push_str(&t);
        }
        out.push_str("\x1b[K");
        if i + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    out.push_str("\x1b[J");
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(out.as_bytes());
    let _ = e.flush();
}

/// `s` cut to `width` terminal columns (with `…` when cut).
pub fn fit(s: &str, width: usize) -> String {
    let mut w = 0;
    let mut out = String::new();
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return s.to_string();
    }
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        w += cw;
        out.push(c);
    }
    out.push('…');
    out
}

fn secs(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0);
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

fn latency(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Nearest-rank percentile.
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    Some(s[rank.min(s.len()) - 1])
}

fn counts(c: &Counts) -> String {
    if c.n == 0 {
        "–".into()
    } else {
        format!("{}/{}", c.ok, c.n)
    }
}

fn pct(c: &Counts) -> f64 {
    if c.n == 0 {
        0.0
    } else {
        100.0 * c.ok as f64 / c.n as f64
    }
}

/// The screen as lines, for a terminal `width` x `height`.
fn render(
    st: &State,
    spec: &Spec,
    log: &VecDeque<String>,
    width: usize,
    height: usize,
) -> Vec<Line> {
    let wide = width >= 120;
    let now_ms = st
        .clock
        .map(|(ms, at)| {
            if st.finished {
                ms
            } else {
                ms + at.elapsed().as_secs_f64() * 1000.0
            }
        })
        .unwrap_or(0.0);
    let mut top: Vec<Line> = Vec::new();
    top.push((
        format!("faultline {} · {}", escape(&st.run_id), escape(&st.title)),
        "1",
    ));
    let mut head = st.phase.to_uppercase();
    if let Some((i, started)) = st.step {
        if let Some(s) = st.steps.get(i) {
            head.push_str(&format!(
                " · step {}/{} {} [{}]",
                i + 1,
                st.steps.len(),
                escape(&s.label),
                escape(&s.kind)
            ));
        }
        let at = now_ms - started;
        match (spec.steps.get(i).copied().flatten(), &st.level) {
            (_, Some((step, level, levels, what, since))) if *step == i => head.push_str(&format!(
                " · level {}/{levels}: {} · {} in it",
                level + 1,
                escape(what),
                secs(now_ms - since)
            )),
            (Some(d), _) => head.push_str(&format!(" · {} of {}", secs(at.min(d)), secs(d))),
            (None, _) => head.push_str(&format!(" · {}", secs(at))),
        }
    }
    head.push_str(&format!(" · run {}", secs(now_ms)));
    top.push((head, "1;36"));
    if let Some(a) = &st.abort {
        top.push((format!("ABORTING: {}", escape(a)), "1;31"));
    }

    // Probes.
    top.push(("PROBES".into(), "1"));
    let name_w = st
        .probes
        .iter()
        .map(|p| escape(&p.name).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 20);
    for (i, p) in st.probes.iter().enumerate() {
        let ps = spec.probes.get(i);
        let observe = ps.is_some_and(|s| s.observe_only);
        let (mark, word, sgr) = match p.up {
            None => ("·", "no sample yet", ""),
            Some(true) => ("✓", "up", "32"),
            // An observe-only probe failing during the method is not a failure.
            Some(false) if observe && st.sample_phase == Some(SamplePhase::During) => {
                ("○", "down (observed only)", "33")
            }
            Some(false) => ("✗", "DOWN", "1;31"),
        };
        let since = p
            .since
            .map(|(t, ms)| format!(" since {} ({})", t.format("%H:%M:%S"), secs(now_ms - ms)))
            .unwrap_or_default();
        let current = match st.sample_phase {
            Some(SamplePhase::Before) | None => &p.before,
            Some(SamplePhase::During) => &p.during,
            Some(SamplePhase::After) => &p.after,
        };
        let p95 = percentile(&current.lat, 95.0)
            .map(|l| format!("p95 {}", latency(l)))
            .unwrap_or_default();
        let mut during = format!("during {}", counts(&p.during));
        if p.during.n > 0 {
            let got = pct(&p.during);
            match ps.and_then(|s| s.min_success) {
                Some(min) => {
                    let ok = got + 1e-9 >= min * 100.0;
                    during.push_str(&format!(
                        " = {got:.0}% {} {:.0}%",
                        if ok { "≥" } else { "<" },
                        min * 100.0
                    ));
                }
                None if observe => during.push_str(&format!(" = {got:.0}% (observed only)")),
                None => during.push_str(&format!(" = {got:.0}%")),
            }
        } else if observe {
            during.push_str(" (observed only)");
        }
        let mut phases = format!("before {} · {during}", counts(&p.before));
        if p.after.n > 0 {
            phases.push_str(&format!(" · after {}", counts(&p.after)));
        }
        let name = format!("{:<name_w$}", fit(&escape(&p.name), name_w));
        if wide {
            top.push((
                format!(" {mark} {name}  {word}{since:<28}  {phases}  {p95}"),
                sgr,
            ));
        } else {
            let first = format!(" {mark} {name}  {word}{since}");
            let pad = width.saturating_sub(first.chars().count() + p95.chars().count() + 1);
            top.push((format!("{first}{} {p95}", " ".repeat(pad)), sgr));
            top.push((format!("   {:name_w$}  {phases}", ""), ""));
        }
        if st.details {
            top.push((
                format!(
                    "   {:name_w$}  {} {}",
                    "",
                    escape(&p.kind),
                    escape(&p.target)
                ),
                "2",
            ));
            if let Some(s) = ps {
                top.push((
                    format!("   {:name_w$}  {}", "", escape(&s.requirement)),
                    "2",
                ));
            }
            if !p.last_detail.is_empty() {
                top.push((
                    format!("   {:name_w$}  last: {}", "", escape(&p.last_detail)),
                    "2",
                ));
            }
        }
    }

    // Abort conditions: how close each is.
    if !spec.aborts.is_empty() {
        top.push(("ABORT WHEN".into(), "1"));
        for a in &spec.aborts {
            let p = st.probes.iter().find(|p| p.name == a.probe);
            top.push(abort_line(a, p));
        }
    }

    // Faults.
    if !st.faults.is_empty() {
        top.push(("FAULTS".into(), "1"));
        for f in &st.faults {
            let mut acts = String::new();
            if f.rounds > 0 {
                acts = format!(" [{} kills, {} restarts]", f.rounds, f.restarts);
            }
            top.push((
                format!(
                    " {} {} on {}{acts}: {}",
                    f.step + 1,
                    f.kind,
                    escape(&f.target),
                    escape(&f.state)
                ),
                if f.bad { "1;33" } else { "" },
            ));
        }
    }

    let footer: Line = if st.finished {
        ("finished".into(), "1")
    } else if st.stopping {
        (
            "stopping: rolling back… (q again: do not wait for probes)".into(),
            "1;33",
        )
    } else if st.confirming {
        (
            "Stop the run and roll everything back? y = yes, any other key = go on".into(),
            "1;7;31",
        )
    } else {
        (
            format!(
                "q stop and roll back · space {} details",
                if st.details { "hide" } else { "show" }
            ),
            "2",
        )
    };

    // Events fill what is left (at least 3 lines; the top gives way).
    let room = height.saturating_sub(1);
    let min_events = 3.min(room);
    let top_room = room.saturating_sub(min_events + 1);
    if top.len() > top_room {
        top.truncate(top_room.saturating_sub(1));
        top.push(("… (make the terminal taller to see more)".into(), "2"));
    }
    let ev_room = room.saturating_sub(top.len() + 1);
    let mut lines = top;
    lines.push(("EVENTS".into(), "1"));
    let skip = log.len().saturating_sub(ev_room);
    for l in log.iter().skip(skip) {
        lines.push((l.clone(), event_sgr(l)));
    }
    while lines.len() < room {
        lines.push((String::new(), ""));
    }
    lines.truncate(room);
    lines.push(footer);
    lines
}

fn event_sgr(l: &str) -> &'static str {
    if l.contains("ABORT") || l.contains("ROLLBACK FAILED") || l.contains("could not be injected") {
        "1;31"
    } else if l.contains("injected ") || l.contains("round ") || l.contains("restarted") {
        "33"
    } else if l.contains("rolled back") {
        "32"
    } else {
        ""
    }
}

fn abort_line(a: &AbortCondition, p: Option<&ProbeView>) -> Line {
    let name = escape(&a.probe);
    let Some(p) = p else {
        return (format!(" {}", escape(&a.describe())), "");
    };
    let window = a.window();
    let recent: Vec<(bool, f64)> = p.recent.iter().rev().take(window).copied().collect();
    let (text, close) = if let Some(n) = a.consecutive_failures {
        (
            format!(" {name}: {}/{n} consecutive failures", p.consecutive),
            n > 0 && p.consecutive * 2 >= n,
        )
    } else if let Some(r) = a.failure_ratio {
        let failed = recent.iter().filter(|(f, _)| *f).count();
        let share = if recent.is_empty() {
            0.0
        } else {
            100.0 * failed as f64 / recent.len() as f64
        };
        (
            format!(
                " {name}: {failed} of last {} failed ({share:.0}%; aborts above {r})",
                recent.len()
            ),
            share * 2.0 > r.0,
        )
    } else if let Some(l) = a.latency_above {
        let pc = a.percentile.unwrap_or(95.0);
        let lat: Vec<f64> = recent.iter().map(|(_, l)| *l).collect();
        let limit = l.std().as_secs_f64() * 1000.0;
        match percentile(&lat, pc) {
            Some(v) => (
                format!(
                    " {name}: p{pc} of last {} = {} (aborts above {l})",
                    lat.len(),
                    latency(v)
                ),
                v * 2.0 > limit,
            ),
            None => (format!(" {name}: p{pc} — (aborts above {l})"), false),
        }
    } else {
        (format!(" {}", escape(&a.describe())), false)
    };
    (text, if close { "1;33" } else { "" })
}

impl Console {
    fn update(&mut self, ev: &TimedEvent) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.clock = Some((ev.elapsed_ms, Instant::now()));
        match &ev.event {
            Event::RunStarted {
                title,
                probes,
                steps,
                ..
            } => {
                st.run_id = ev.run_id.clone();
                st.title = title.clone();
                st.probes = probes
                    .iter()
                    .map(|p| ProbeView {
                        name: p.name.clone(),
                        kind: p.kind.clone(),
                        target: p.target.clone(),
                        ..Default::default()
                    })
                    .collect();
                st.steps = steps
                    .iter()
                    .map(|s| StepView {
                        label: s.label.clone(),
                        kind: s.kind.clone(),
                    })
                    .collect();
            }
            Event::PhaseStarted { phase } => {
                st.phase = phase.name().to_string();
                if *phase != Phase::Method {
                    st.step = None;
                }
            }
            Event::StepStarted { index, .. } => st.step = Some((*index, ev.elapsed_ms)),
            Event::EscalationLevel {
                step,
                level,
                levels,
                param,
                value,
                ..
            } => {
                st.level = Some((
                    *step,
                    *level,
                    *levels,
                    format!("{param} {value}"),
                    ev.elapsed_ms,
                ))
            }
            Event::EscalationJudged { .. } => {}
            Event::Sample {
                probe,
                phase,
                status,
                latency_ms,
                detail,
                ..
            } => {
                st.sample_phase = Some(*phase);
                let local = ev.at.with_timezone(&chrono::Local);
                if let Some(p) = st.probes.get_mut(*probe) {
                    let ok = *status == SampleStatus::Success;
                    if p.up != Some(ok) {
                        p.up = Some(ok);
                        p.since = Some((local, ev.elapsed_ms));
                    }
                    p.last_detail = detail.clone();
                    match phase {
                        SamplePhase::Before => p.before.add(ok, *latency_ms),
                        SamplePhase::During => {
                            p.during.add(ok, *latency_ms);
                            p.consecutive = if ok { 0 } else { p.consecutive + 1 };
                            p.recent.push_back((!ok, *latency_ms));
                            if p.recent.len() > 10_000 {
                                p.recent.pop_front();
                            }
                        }
                        SamplePhase::After => p.after.add(ok, *latency_ms),
                    }
                }
            }
            Event::FaultInjected {
                step, kind, target, ..
            } => st.faults.push(FaultView {
                step: *step,
                kind: kind.clone(),
                target: target.clone(),
                state: "injected".into(),
                bad: false,
                rounds: 0,
                restarts: 0,
            }),
            Event::FaultInjectFailed {
                step,
                kind,
                target,
                error,
            } => st.faults.push(FaultView {
                step: *step,
                kind: kind.clone(),
                target: target.clone(),
                state: format!("NOT injected: {error}"),
                bad: true,
                rounds: 0,
                restarts: 0,
            }),
            Event::FaultVerified { step, evidence, .. } => {
                if let Some(f) = fault(&mut st, *step) {
                    f.state = format!("in effect ({evidence})");
                }
            }
            Event::FaultVerifyFailed { step, error } => {
                if let Some(f) = fault(&mut st, *step) {
                    f.state = format!("NOT in effect: {error}");
                    f.bad = true;
                }
            }
            Event::FaultHealth { step, point } => {
                if let Some(f) = fault(&mut st, *step) {
                    let mut s = if point.present {
                        "in effect".to_string()
                    } else {
                        "MISSING".to_string()
                    };
                    if let (Some(a), Some(t)) = (point.achieved, point.target) {
                        if t > 0.0 {
                            s.push_str(&format!(" ({:.0}% of target)", 100.0 * a / t));
                        }
                    }
                    if !point.detail.is_empty() {
                        s.push_str(&format!(": {}", point.detail));
                    }
                    s.push_str(&format!(" · checked at {:.0}s", point.at_s));
                    f.bad = !point.present;
                    f.state = s;
                }
            }
            Event::FaultEffect { step, effect } => {
                if let Some(f) = fault(&mut st, *step) {
                    if let Some(p) = &effect.problem {
                        f.state = p.message().to_string();
                        f.bad = true;
                    }
                }
            }
            Event::FaultRolledBack {
                step,
                ok,
                rollback_ms,
                error,
                ..
            } => {
                if let Some(f) = fault(&mut st, *step) {
                    if *ok {
                        f.state = format!("rolled back ({rollback_ms:.1}ms)");
                        f.bad = false;
                    } else {
                        f.state = format!("ROLLBACK FAILED: {}", error.clone().unwrap_or_default());
                        f.bad = true;
                    }
                }
            }
            Event::FaultActivity { step, message, .. } => {
                if let Some(f) = fault(&mut st, *step) {
                    if message.starts_with("round ") {
                        f.rounds += 1;
                    } else if message.contains(" restarted as ") {
                        f.restarts += 1;
                    }
                }
            }
            Event::AbortTriggered {
                condition, reason, ..
            } => st.abort = Some(format!("{condition} ({reason})")),
            Event::Interrupted { .. } => st.stopping = true,
            Event::RunFinished { .. } => st.finished = true,
            Event::PhaseEnded { .. }
            | Event::SetupStarted { .. }
            | Event::SetupReady { .. }
            | Event::SetupStopped { .. }
            | Event::SetupExited { .. }
            | Event::Sampling { .. }
            | Event::SteadyState { .. }
            | Event::StepEnded { .. }
            | Event::ActionFinished { .. }
            | Event::Recovered { .. }
            | Event::Note { .. }
            | Event::Inconclusive { .. } => {}
        }
    }
}

fn fault(st: &mut State, step: usize) -> Option<&mut FaultView> {
    st.faults.iter_mut().rev().find(|f| f.step == step)
}

impl EventSink for Console {
    fn emit(&mut self, ev: &TimedEvent) {
        self.inner.emit(ev);
        self.update(ev);
        match &ev.event {
            // After the confirmation prompt, like the spinner it replaces.
            Event::PhaseStarted { phase } if *phase != Phase::Preflight => self.start(),
            Event::RunFinished { .. } => self.stop(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_to_columns_with_an_ellipsis() {
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("日本語", 4), "日…");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn keys_ask_then_confirm_or_cancel() {
        let st = Mutex::new(State::default());
        key(&st, b'x');
        assert!(!st.lock().unwrap().confirming);
        key(&st, b' ');
        assert!(st.lock().unwrap().details);
        key(&st, b'q');
        assert!(st.lock().unwrap().confirming);
        key(&st, b'n');
        let s = st.lock().unwrap();
        assert!(!s.confirming && !s.stopping);
    }

    #[test]
    fn every_line_fits_80_columns() {
        let spec = Spec::default();
        let mut st = State {
            run_id: "20261206-141203-ab12".into(),
            title: "x".repeat(200),
            phase: "method".into(),
            ..Default::default()
        };
        st.probes.push(ProbeView {
            name: "a-very-long-probe-name-indeed".into(),
            up: Some(false),
            ..Default::default()
        });
        let log: VecDeque<String> = (0..50)
            .map(|i| format!("{i} {}", "y".repeat(120)))
            .collect();
        let lines = render(&st, &spec, &log, 80, 24);
        assert_eq!(lines.len(), 24);
        for (l, _) in &lines {
            let l = fit(l, 80);
            assert!(l.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>() <= 80);
        }
    }
}
