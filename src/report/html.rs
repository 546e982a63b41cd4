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
