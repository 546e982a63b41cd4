//! `faultline calendar`: the .ics file is read back by a real calendar
//! parser (Python's `icalendar`), holds one event per upcoming window with
//! the right times, and hostile titles come back exactly as written.

mod support;

use std::process::{Command, Stdio};
use support::*;

const PARSE: &str = r#"
import json, sys, icalendar
cal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())
out = []
for ev in cal.walk('VEVENT'):
    out.append({
        'uid': str(ev['UID']),
        'summary': str(ev['SUMMARY']),
        'description': str(ev['DESCRIPTION']),
        'start': ev.decoded('DTSTART').isoformat(),
        'end': ev.decoded('DTEND').isoformat(),
        'stamp': ev.decoded('DTSTAMP').isoformat(),
        'weekday_berlin': ev.decoded('DTSTART').astimezone(__import__('zoneinfo').ZoneInfo('Europe/Berlin')).strftime('%a %H:%M'),
    })
print(json.dumps({'name': str(cal.get('X-WR-CALNAME')), 'events': out}))
"#;

fn have_icalendar() -> bool {
    Command::new("python3")
        .args(["-c", "import icalendar, zoneinfo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn experiment(title_yaml: &str, schedule: &str) -> String {
    format!(
        r#"
title: {title_yaml}
hypothesis: checkout survives, even with "quotes", commas; and semicolons
steady_state:
  probes:
    - name: shell
      command: {{run: ["true"]}}
{schedule}
method:
  - name: slow disk
    fault:
      process_pause:
        target: {{pid: 999999}}
    duration: 30s
"#
    )
}

fn parse(path: &std::path::Path) -> serde_json::Value {
    let o = Command::new("python3")
        .args(["-c", PARSE])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_calendar_parses_and_holds_every_window() {
    if !have_icalendar() {
        eprintln!("skipped: the Python icalendar package is not installed");
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path().join("exps");
    std::fs::create_dir(&dir).unwrap();
    let hostile = "Break \"prod\", again; really\\ now: second line, with ünïcödé and a long tail that goes on and on past seventy-five octets";
    std::fs::write(
        dir.join("a-weekly.yaml"),
        experiment(
            "weekday business hours",
            "schedule:\n  window: Mon-Fri 09:00-17:00\n  timezone: Europe/Berlin",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("b-cron.yaml"),
        experiment(
            &serde_json::to_string(hostile).unwrap(),
            "schedule:\n  cron: \"0 14 * * 1-5\"\n  duration: 1h\n  timezone: UTC",
        ),
    )
    .unwrap();
    std::fs::write(dir.join("c-none.yaml"), experiment("whenever", "")).unwrap();

    let out = sb.path().join("windows.ics");
    let o = sb
        .cmd()
        .args(["calendar", "exps", "-o", "windows.ics", "--days", "14"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("c-none.yaml: no `schedule:`"), "{err}");

    // RFC 5545's shape: CRLF everywhere, no physical line over 75 octets.
    let raw = std::fs::read(&out).unwrap();
    let s = String::from_utf8(raw.clone()).unwrap();
    assert!(s.ends_with("\r\n"));
    assert!(!s.replace("\r\n", "").contains('\n'), "a bare LF");
    for l in s.split("\r\n") {
        assert!(l.len() <= 75, "{} octets: {l}", l.len());
    }
    assert!(s.contains("\\;") && s.contains("\\,") && s.contains("\\\\") && s.contains("\\n"));

    let cal = parse(&out);
    assert_eq!(cal["name"], "Chaos experiment windows");
    let events = cal["events"].as_array().unwrap();
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::days(14);
    let weekly: Vec<_> = events
        .iter()
        .filter(|e| e["summary"] == "Chaos experiment: weekday business hours")
        .collect();
    let cron: Vec<_> = events
        .iter()
        .filter(|e| e["summary"] == format!("Chaos experiment: {hostile}"))
        .collect();
    assert_eq!(weekly.len() + cron.len(), events.len(), "{events:#?}");
    // Fourteen days hold ten weekdays; a window open now adds one.
    assert!((10..=11).contains(&weekly.len()), "{weekly:#?}");
    assert!((10..=11).contains(&cron.len()), "{cron:#?}");
    let mut uids = std::collections::BTreeSet::new();
    for e in &weekly {
        let day = e["weekday_berlin"].as_str().unwrap();
        assert!(day.ends_with(" 09:00") && !day.starts_with('S'), "{e:#}");
        let (a, b) = times(e);
        assert_eq!(b - a, chrono::Duration::hours(8), "{e:#}");
        assert!(b > now && a < end, "{e:#}");
    }
    for e in &cron {
        let (a, b) = times(e);
        assert_eq!(a.format("%H:%M").to_string(), "14:00", "{e:#}");
        assert_eq!(b - a, chrono::Duration::hours(1), "{e:#}");
        assert!(b > now && a < end, "{e:#}");
        let d = e["description"].as_str().unwrap();
        assert!(
            d.contains("checkout survives, even with \"quotes\", commas; and semicolons"),
            "{d}"
        );
        assert!(d.contains("slow disk (process_pause) for 30s"), "{d}");
        assert!(d.contains("Run: faultline run exps/b-cron.yaml"), "{d}");
    }
    for e in events {
        assert!(
            uids.insert(e["uid"].as_str().unwrap().to_string()),
            "unique UIDs"
        );
        assert!(e["uid"].as_str().unwrap().ends_with("@faultline"));
    }

    // Written again: the same UIDs (a re-import updates the events).
    let o = sb
        .cmd()
        .args(["calendar", "exps", "--days", "14"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let again = sb.write("again.ics", &String::from_utf8_lossy(&o.stdout));
    let cal2 = parse(&again);
    let uids2: std::collections::BTreeSet<String> = cal2["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_str().unwrap().to_string())
        .collect();
    assert!(uids2.is_subset(&uids) || uids.is_subset(&uids2));
}

fn times(e: &serde_json::Value) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let p = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(e[k].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    (p("start"), p("end"))
}

#[test]
fn calendar_names_what_is_wrong() {
    let sb = Sandbox::new();
    let f = sb.write(
        "bad.yaml",
        &experiment("x", "schedule:\n  cron: \"61 * * * *\"\n  duration: 1h"),
    );
    let o = sb.cmd().arg("calendar").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        text(&o).contains("is not a cron expression"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("no calendar was written"), "{}", text(&o));
    let o = sb
        .cmd()
        .args(["calendar", "--days", "0"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(text(&o).contains("0 is not in 1..=366"), "{}", text(&o));
}
