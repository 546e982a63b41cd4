//! `faultline report --format html`: one self-contained page (no scripts, no
//! external assets) with the verdict, the hypothesis, a timeline of phases
//! and faults, and per probe a plot of latency over time with the fault
//! windows shaded and failing samples marked, drawn as plain SVG.

use super::record::{RunRecord, SampleStatus, Verdict};
use std::fmt::Write;

/// The shade of a fault window and the colour of the latency line: fixed, so
/// a screenshot can be checked for them.
pub const FAULT_SHADE: &str = "#fde9b6";
pub const LATENCY_LINE: &str = "#1a73e8";
const FAILED_MARK: &str = "#d93025";

const WIDTH: f64 = 900.0;
const PLOT_H: f64 = 180.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 10.0;

/// Text from a journal, safe inside HTML and SVG (elements and attributes).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn verdict_colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Held => "#188038",
        Verdict::Inconclusive => "#b06000",
        _ => "#d93025",
    }
}

fn secs(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// The page for one run.
pub fn render(rec: &RunRecord) -> String {
    let total_ms = rec
        .timings
        .total_ms
        .max(
            rec.probes
                .iter()
                .flat_map(|p| p.samples.iter().map(|s| s.at_ms + s.latency_ms))
                .fold(0.0, f64::max),
        )
        .max(1.0);
    let x = |ms: f64| LEFT + (ms.clamp(0.0, total_ms) / total_ms) * (WIDTH - LEFT - 10.0);
    let windows: Vec<(f64, f64, String)> = rec
        .faults
        .iter()
        .filter_map(|f| {
            let from = f.injected_at_ms?;
            let to = f.rolled_back_at_ms.unwrap_or(total_ms);
            Some((from, to, format!("{} ({})", f.kind, f.label)))
        })
        .collect();

    let mut h = String::new();
    let title = esc(&rec.experiment.title);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} - faultline report</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#202124;max-width:960px}}\
h1{{font-size:1.4em}}.verdict{{font-weight:bold;font-size:1.2em}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #dadce0;padding:4px 8px;text-align:left;vertical-align:top}}\
.muted{{color:#5f6368}}svg{{display:block;margin:0.5em 0 1.5em}}</style></head><body>\n"
    );
    let _ = writeln!(h, "<h1>{title}</h1>");
    let _ = writeln!(
        h,
        "<p><strong>Hypothesis:</strong> {}</p>",
        esc(&rec.experiment.hypothesis)
    );
    let _ = writeln!(
        h,
        "<p class=\"verdict\" style=\"color:{}\">{} (exit {})</p><p>{}</p>",
        verdict_colour(rec.outcome.verdict),
        esc(&format!("{:?}", rec.outcome.verdict).to_uppercase()),
        rec.outcome.exit_code,
        esc(&rec.outcome.reason)
    );
    let _ = writeln!(
        h,
        "<p class=\"muted\">Run {} on {} · started {} · took {} · faultline {}</p>",
        esc(&rec.run_id),
        esc(&rec.host),
        esc(&rec.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        secs(rec.timings.total_ms),
        esc(&rec.faultline_version)
    );

    // Timeline: phases, then fault windows.
    let _ = writeln!(h, "<h2>Timeline</h2>");
    let rows = 1 + windows.len();
    let th = 24.0 * rows as f64 + 24.0;
    let _ = writeln!(
        h,
        "<svg class=\"timeline\" width=\"{WIDTH}\" height=\"{th}\" viewBox=\"0 0 {WIDTH} {th}\" role=\"img\" aria-label=\"timeline\">"
    );
    let palette = ["#e8f0fe", "#e6f4ea", "#fce8e6", "#f1f3f4", "#fef7e0"];
    for (i, p) in rec.phases.iter().enumerate() {
        let from = (p.started_at - rec.started_at).num_milliseconds() as f64;
        let to = (p.ended_at - rec.started_at).num_milliseconds() as f64;
        let (a, b) = (x(from), x(to));
        let name = esc(&format!("{:?}", p.phase).to_lowercase());
        let _ = writeln!(
            h,
            "<rect x=\"{a:.1}\" y=\"4\" width=\"{:.1}\" height=\"20\" fill=\"{}\" stroke=\"#dadce0\"><title>{name} {}–{}</title></rect>\
<text x=\"{:.1}\" y=\"18\" font-size=\"11\">{name}</text>",
            (b - a).max(1.0),
            palette[i % palette.len()],
            secs(from),
            secs(to),
            a + 3.0
        );
    }
    for (i, (from, to, what)) in windows.iter().enumerate() {
        let y = 28.0 + 24.0 * i as f64;
        let (a, b) = (x(*from), x(*to));
        let _ = writeln!(
            h,
            "<rect class=\"fault-window\" x=\"{a:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"20\" fill=\"{FAULT_SHADE}\" stroke=\"#f4b400\"><title>{} {}–{}</title></rect>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            (b - a).max(1.0),
            esc(what),
            secs(*from),
            secs(*to),
            a + 3.0,
            y + 14.0,
            esc(what)
        );
    }
    let _ = writeln!(h, "</svg>");

    // One plot per probe.
    let _ = writeln!(h, "<h2>Probes</h2>");
    for p in &rec.probes {
        let _ = writeln!(
            h,
            "<h3>{}</h3><p class=\"muted\">{} · {}</p>",
            esc(&p.name),
            esc(&p.kind),
            esc(&p.target)
        );
        if p.samples.is_empty() {
            let _ = writeln!(h, "<p>No samples were kept.</p>");
            continue;
        }
        let max_lat = p.samples.iter().map(|s| s.latency_ms).fold(1.0, f64::max) * 1.1;
        let y = |ms: f64| TOP + PLOT_H - (ms.clamp(0.0, max_lat) / max_lat) * PLOT_H;
        let height = TOP + PLOT_H + 30.0;
        let _ = writeln!(
            h,
            "<svg class=\"probe-plot\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"latency of {}\">",
            esc(&p.name)
        );
        for (from, to, what) in &windows {
            let (a, b) = (x(*from), x(*to));
            let _ = writeln!(
                h,
                "<rect class=\"fault-window\" x=\"{a:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\" fill=\"{FAULT_SHADE}\"><title>{}</title></rect>",
                (b - a).max(1.0),
                esc(what)
            );
        }
        // Axes and labels.
        let base = TOP + PLOT_H;
        let _ = writeln!(
            h,
            "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#5f6368\"/>\
<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#5f6368\"/>\
<text x=\"4\" y=\"{:.1}\" font-size=\"10\">{:.0} ms</text><text x=\"4\" y=\"{base}\" font-size=\"10\">0 ms</text>\
<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"10\">0s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            WIDTH - 10.0,
            TOP + 10.0,
            max_lat,
            base + 14.0,
            WIDTH - 10.0,
            base + 14.0,
            secs(total_ms)
        );
        let points: Vec<String> = p
            .samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at_ms), y(s.latency_ms)))
            .collect();
        let _ = writeln!(
            h,
            "<polyline class=\"latency-line\" fill=\"none\" stroke=\"{LATENCY_LINE}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for s in p
            .samples
            .iter()
            .filter(|s| s.status != SampleStatus::Success)
        {
            let _ = writeln!(
                h,
                "<circle class=\"failed-sample\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{FAILED_MARK}\"><title>{} at {}: {}</title></circle>",
                x(s.at_ms),
                y(s.latency_ms),
                esc(&format!("{:?}", s.status).to_lowercase()),
                secs(s.at_ms),
                esc(&s.detail)
            );
        }
        let _ = writeln!(h, "</svg>");
        if p.samples_thinned > 0 {
            let total = p.samples.len() as u64 + p.samples_thinned;
            let _ = writeln!(
                h,
                "<p class=\"muted thinned\">The plot shows {} of {total} samples: the slowest of each stretch, and every failing sample (up to {} per phase). The statistics count all of them.</p>",
                p.samples.len(),
                crate::report::thin::FAILING_PER_PHASE
            );
        }
    }

    // Faults.
    if !rec.faults.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Faults</h2><table><tr><th>#</th><th>fault</th><th>target</th><th>injected</th><th>rolled back</th><th>evidence</th></tr>"
        );
        for f in &rec.faults {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.step + 1,
                esc(&format!("{} ({})", f.kind, f.label)),
                esc(&f.target),
                f.injected_at_ms.map(secs).unwrap_or_else(|| "—".into()),
                if f.irreversible {
                    "irreversible".to_string()
                } else {
                    f.rolled_back_at_ms.map(secs).unwrap_or_else(|| "—".into())
                },
                esc(f.verified.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "</body></html>");
    h
}

/// The colour of a verdict key in the history page.
fn verdict_key_colour(key: &str) -> &'static str {
    match key {
        "held" => "#188038",
        "inconclusive" | "not_steady" => "#b06000",
        "unfinished" | "invalid" | "precondition" | "privileges" => "#80868b",
        _ => "#d93025",
    }
}

/// The trend colour of a probe's during success in the history page.
pub const SUCCESS_LINE: &str = "#188038";

/// One line of a trend plot: css class, colour, name, values in display
/// units (one per run, `None` where a run has none), unit, and a fixed top
/// of the scale (100 for percentages) or `None` to fit the values.
type Series<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<Option<f64>>,
    &'a str,
    Option<f64>,
);

/// A number for an axis label: more digits for small values.
fn axis_num(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A small line plot over runs (x: the run's index, oldest left); each
/// series has its own scale, labelled in its colour at the top left.
fn run_plot(h: &mut String, label: &str, ids: &[String], series: &[Series]) {
    let n = ids.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + (WIDTH - LEFT - 10.0) / 2.0
        } else {
            LEFT + (i as f64 / (n - 1) as f64) * (WIDTH - LEFT - 10.0)
        }
    };
    let height = TOP + PLOT_H + 30.0;
    let _ = writeln!(
        h,
        "<svg class=\"trend-plot\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    let base = TOP + PLOT_H;
    let _ = writeln!(
        h,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#5f6368\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#5f6368\"/>\
<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"10\">run 1</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">run {n}</text>",
        WIDTH - 10.0,
        base + 14.0,
        WIDTH - 10.0,
        base + 14.0
    );
    let series: Vec<&Series> = series
        .iter()
        .filter(|s| s.3.iter().any(Option::is_some))
        .collect();
    for (k, (class, colour, name, values, unit, fixed)) in series.iter().enumerate() {
        let max = values.iter().flatten().copied().fold(0.0, f64::max);
        let max = match fixed {
            Some(m) => *m,
            None if max <= 0.0 => 1.0,
            None => max * 1.1,
        };
        let y = |v: f64| TOP + PLOT_H - (v.clamp(0.0, max) / max) * PLOT_H;
        let _ = writeln!(
            h,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{} {}</text>",
            TOP + 10.0 + 12.0 * k as f64,
            axis_num(max),
            esc(unit)
        );
        // A line through the runs that have the value; a gap where one has none.
        let mut segment: Vec<String> = Vec::new();
        let flush = |seg: &mut Vec<String>, h: &mut String| {
            if seg.len() > 1 {
                let _ = writeln!(
                    h,
                    "<polyline class=\"{class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                    seg.join(" ")
                );
            }
            seg.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    segment.push(format!("{:.1},{:.1}", x(i), y(*v)));
                    let _ = writeln!(
                        h,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {} {:.1} {}</title></circle>",
                        x(i),
                        y(*v),
                        esc(&ids[i]),
                        esc(name),
                        v,
                        esc(unit)
                    );
                }
                None => flush(&mut segment, h),
            }
        }
        flush(&mut segment, h);
    }
    let _ = writeln!(h, "</svg>");
}

/// `faultline history --format html`: one self-contained page with, per
/// experiment, the score, a strip of verdicts over time and trend plots
/// (time to detect and recover, and each probe's during p95 and success).
pub fn render_history(hist: &super::history::History) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>faultline history</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#202124;max-width:960px}}\
h1{{font-size:1.4em}}table{{border-collapse:collapse}}td,th{{border:1px solid #dadce0;padding:4px 8px;text-align:left;vertical-align:top}}\
.muted{{color:#5f6368}}svg{{display:block;margin:0.5em 0 1.5em}}</style></head><body>\n\
<h1>Experiment history</h1>\n<p class=\"muted\">{} journals read, {} skipped · {}</p>\n",
        hist.journals_read,
        hist.skipped.len(),
        esc(super::history::SCORE_FORMULA)
    );
    for e in &hist.experiments {
        let _ = writeln!(
            h,
            "<h2>{}</h2><p class=\"muted\">{} · {} runs</p>",
            esc(&e.title),
            esc(&e.file),
            e.runs
        );
        let score = e
            .score
            .percent
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_else(|| "—".into());
        let ms = |v: Option<f64>| v.map(secs).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            h,
            "<table><tr><th>resilience score</th><th>automatic</th><th>interventions</th><th>time to detect p50 / p95</th><th>time to recover p50 / p95</th></tr>\
<tr><td class=\"score\">{score}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td></tr></table>",
            e.score.automatic,
            e.score.interventions,
            ms(e.time_to_detect_ms.p50),
            ms(e.time_to_detect_ms.p95),
            ms(e.time_to_recover_ms.p50),
            ms(e.time_to_recover_ms.p95)
        );
        // Verdicts over time: one square per run.
        let n = e.timeline.len();
        let cell = ((WIDTH - 20.0) / n.max(1) as f64).clamp(2.0, 18.0);
        let _ = writeln!(
            h,
            "<svg class=\"verdict-strip\" width=\"{WIDTH}\" height=\"24\" viewBox=\"0 0 {WIDTH} 24\" role=\"img\" aria-label=\"verdicts over time\">"
        );
        for (i, r) in e.timeline.iter().enumerate() {
            let when = r
                .started_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<rect class=\"verdict-{}\" x=\"{:.1}\" y=\"2\" width=\"{:.1}\" height=\"20\" fill=\"{}\"><title>{} {} {}</title></rect>",
                r.verdict,
                10.0 + cell * i as f64,
                (cell - 1.0).max(1.0),
                verdict_key_colour(r.verdict),
                esc(&r.run_id),
                esc(&when),
                r.verdict
            );
        }
        let _ = writeln!(h, "</svg>");
        let ids: Vec<String> = e.timeline.iter().map(|r| r.run_id.clone()).collect();
        if e.timeline
            .iter()
            .any(|r| r.time_to_detect_ms.is_some() || r.time_to_recover_ms.is_some())
        {
            let _ = writeln!(
                h,
                "<h3>Time to detect and to recover</h3><p class=\"muted\">per run: time to detect (orange) and time to recover (purple)</p>"
            );
            run_plot(
                &mut h,
                "time to detect and recover",
                &ids,
                &[
                    (
                        "ttd-line",
                        "#b06000",
                        "time to detect",
                        e.timeline
                            .iter()
                            .map(|r| r.time_to_detect_ms.map(|v| v / 1000.0))
                            .collect(),
                        "s",
                        None,
                    ),
                    (
                        "ttr-line",
                        "#9334e6",
                        "time to recover",
                        e.timeline
                            .iter()
                            .map(|r| r.time_to_recover_ms.map(|v| v / 1000.0))
                            .collect(),
                        "s",
                        None,
                    ),
                ],
            );
        }
        for t in &e.probes {
            let _ = writeln!(
                h,
                "<h3>{}</h3><p class=\"muted\">during the faults, over {} runs: p95 latency (blue) and success (green)</p>",
                esc(&t.name),
                t.runs
            );
            let pids: Vec<String> = t.points.iter().map(|p| p.run_id.clone()).collect();
            run_plot(
                &mut h,
                &format!("trend of {}", t.name),
                &pids,
                &[
                    (
                        "latency-line",
                        LATENCY_LINE,
                        "p95",
                        t.points.iter().map(|p| p.p95_ms).collect(),
                        "ms",
                        None,
                    ),
                    (
                        "success-line",
                        SUCCESS_LINE,
                        "success",
                        t.points.iter().map(|p| Some(p.success * 100.0)).collect(),
                        "%",
                        Some(100.0),
                    ),
                ],
            );
        }
    }
    if !hist.skipped.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Skipped files</h2><table><tr><th>file</th><th>why</th></tr>"
        );
        for s in &hist.skipped {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&s.file),
                esc(&s.reason)
            );
        }
        let _ = writeln!(h, "</table>");
    }
    let _ = writeln!(h, "</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_text_cannot_open_an_element_or_attribute() {
        assert_eq!(
            esc("<script>\"x\"</script>&'"),
            "&lt;script&gt;&quot;x&quot;&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\u{1b}[31m"), "a\\u{1b}[31m");
    }
}
