//! Schedule windows: when an experiment may run. Either weekdays and a time
//! of day (`Mon-Fri 09:00-17:00`) or a cron expression that opens a window
//! of a given duration (`cron: "0 14 * * 1-5"`, `duration: 1h`), in a time
//! zone (an IANA name, default the host's local time). `run` refuses outside
//! the window (exit 69, naming the next one) and a run that could outlast it.

use crate::units::Duration;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// When the experiment may run. Give `window`, or `cron` with `duration`.
// Read through `RawSchedule` (whose docs the JSON Schema shows), then checked.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawSchedule")]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// When the experiment may run: `run` refuses outside the window (exit 69)
/// unless `--outside-window`. Give `window`, or `cron` with `duration`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
struct RawSchedule {
    /// Weekdays and a time of day: `Mon-Fri 09:00-17:00`,
    /// `Tue,Thu 14:00-15:30`, `daily 22:00-02:00` (past midnight ends the
    /// next day), `Sat-Sun 00:00-24:00`.
    #[serde(default)]
    window: Option<String>,
    /// A cron expression (minute hour day-of-month month day-of-week, as in
    /// crontab(5); 1-5 is Monday to Friday) for when a window opens; needs
    /// `duration`.
    #[serde(default)]
    cron: Option<String>,
    /// How long a `cron` window stays open.
    #[serde(default)]
    duration: Option<Duration>,
    /// An IANA time zone (`Europe/Berlin`, `UTC`). Default: the host's local time.
    #[serde(default)]
    timezone: Option<String>,
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = String;
    fn try_from(r: RawSchedule) -> Result<Self, String> {
        let s = Schedule {
            window: r.window,
            cron: r.cron,
            duration: r.duration,
            timezone: r.timezone,
        };
        s.rule()?;
        Ok(s)
    }
}

/// One open window, in absolute time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

/// Where `now` is relative to the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Now {
    Inside(Window),
    /// The next window, when there is one within a year.
    Outside(Option<Window>),
}

#[derive(Clone, Debug)]
enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

#[derive(Clone, Debug)]
struct Days([bool; 7]);

#[derive(Clone, Debug)]
enum Rule {
    Weekly {
        days: Days,
        start: NaiveTime,
        /// Minutes from `start` (1..=1440).
        minutes: i64,
    },
    Cron {
        cron: Box<croner::Cron>,
        length: chrono::Duration,
    },
}

fn weekday(s: &str) -> Option<Weekday> {
    let l = s.to_ascii_lowercase();
    let all = [
        ("mon", "monday", Weekday::Mon),
        ("tue", "tuesday", Weekday::Tue),
        ("wed", "wednesday", Weekday::Wed),
        ("thu", "thursday", Weekday::Thu),
        ("fri", "friday", Weekday::Fri),
        ("sat", "saturday", Weekday::Sat),
        ("sun", "sunday", Weekday::Sun),
    ];
    all.iter()
        .find(|(short, long, _)| l == *short || l == *long)
        .map(|(_, _, d)| *d)
}

fn parse_days(s: &str) -> Result<Days, String> {
    let mut d = [false; 7];
    if matches!(s.to_ascii_lowercase().as_str(), "daily" | "*") {
        return Ok(Days([true; 7]));
    }
    for part in s.split(',') {
        let part = part.trim();
        let bad = || {
            format!("`{part}` is not a weekday or a range of them (write `Mon-Fri`, `Tue,Thu`, `Sat-Sun` or `daily`)")
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (weekday(a).ok_or_else(bad)?, weekday(b).ok_or_else(bad)?);
                let mut i = a.num_days_from_monday();
                loop {
                    d[i as usize] = true;
                    if i == b.num_days_from_monday() {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => d[weekday(part).ok_or_else(bad)?.num_days_from_monday() as usize] = true,
        }
    }
    Ok(Days(d))
}

fn parse_time(s: &str) -> Result<(NaiveTime, bool), String> {
    if s == "24:00" {
        return Ok((NaiveTime::MIN, true));
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .map(|t| (t, false))
        .map_err(|_| format!("`{s}` is not a time of day (write HH:MM, e.g. 09:00)"))
}

fn parse_window(w: &str) -> Result<Rule, String> {
    let w = w.trim();
    let shape =
        || format!("window `{w}` should be weekdays and a time range, e.g. `Mon-Fri 09:00-17:00`");
    let (days, times) = w.rsplit_once(char::is_whitespace).ok_or_else(shape)?;
    let (a, b) = times.split_once('-').ok_or_else(shape)?;
    let days = parse_days(days.trim())?;
    let (start, start_24) = parse_time(a)?;
    if start_24 {
        return Err(format!("window `{w}`: a window cannot start at 24:00"));
    }
    let (end, end_24) = parse_time(b)?;
    let mut minutes = (end - start).num_minutes();
    if end_24 {
        minutes = 1440 - (start - NaiveTime::MIN).num_minutes();
    } else if minutes < 0 {
        minutes += 1440; // past midnight
    }
    if minutes == 0 {
        return Err(format!(
            "window `{w}` is empty (for whole days write `00:00-24:00`)"
        ));
    }
    Ok(Rule::Weekly {
        days,
        start,
        minutes,
    })
}

impl Schedule {
    /// Checks the schedule; every problem is a message saying what to fix.
    fn rule(&self) -> Result<Rule, String> {
        self.zone()?;
        match (&self.window, &self.cron) {
            (Some(_), Some(_)) => Err("give `window` or `cron`, not both".into()),
            (None, None) => {
                Err("needs `window` (e.g. `Mon-Fri 09:00-17:00`) or `cron` with `duration`".into())
            }
            (Some(w), None) => {
                if self.duration.is_some() {
                    return Err("duration goes with `cron`; a `window` has its own end time".into());
                }
                parse_window(w)
            }
            (None, Some(c)) => {
                let cron = croner::Cron::from_str(c.trim()).map_err(|e| {
                    format!("cron `{c}` is not a cron expression ({e}); write minute hour day-of-month month day-of-week, e.g. `0 14 * * 1-5`")
                })?;
                let d = self.duration.ok_or_else(|| {
                    format!("cron `{c}` needs a `duration`: how long each window stays open, e.g. `duration: 1h`")
                })?;
                let length = chrono::Duration::from_std(d.std()).map_err(|e| e.to_string())?;
                if length < chrono::Duration::minutes(1) {
                    return Err("duration must be at least 1m".into());
                }
                Ok(Rule::Cron {
                    cron: Box::new(cron),
                    length,
                })
            }
        }
    }

    fn zone(&self) -> Result<Zone, String> {
        match self.timezone.as_deref() {
            None => Ok(Zone::Local),
            Some(z) if z.eq_ignore_ascii_case("local") => Ok(Zone::Local),
            Some(z) => z.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
                format!("timezone `{z}` is not an IANA time zone (e.g. `Europe/Berlin`, `America/New_York`, `UTC`)")
            }),
        }
    }

    /// A cron expression (crontab(5), 0 = Sunday) for the moments a window
    /// opens, how long it stays open and the time zone when one is named:
    /// what a scheduler that only knows cron (Chaos Mesh's `Schedule`) needs.
    pub fn opening_cron(&self) -> Option<(String, chrono::Duration, Option<String>)> {
        let zone = self
            .timezone
            .clone()
            .filter(|z| !z.eq_ignore_ascii_case("local"));
        match self.rule().ok()? {
            Rule::Cron { length, .. } => {
                Some((self.cron.clone()?.trim().to_string(), length, zone))
            }
            Rule::Weekly {
                days,
                start,
                minutes,
            } => {
                use chrono::Timelike;
                let dow = if days.0.iter().all(|d| *d) {
                    "*".to_string()
                } else {
                    // days.0 starts at Monday; cron counts from Sunday = 0.
                    (0..7)
                        .filter(|i| days.0[*i])
                        .map(|i| ((i + 1) % 7).to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                Some((
                    format!("{} {} * * {dow}", start.minute(), start.hour()),
                    chrono::Duration::minutes(minutes),
                    zone,
                ))
            }
        }
    }

    /// `Mon-Fri 09:00-17:00 (Europe/Berlin)`, `cron 0 14 * * 1-5 for 1h (local time)`.
    pub fn describe(&self) -> String {
        let zone = self.timezone.as_deref().unwrap_or("local time");
        match (&self.window, &self.cron, self.duration) {
            (Some(w), _, _) => format!("{} ({zone})", w.trim()),
            (_, Some(c), Some(d)) => format!("cron `{}` for {d} ({zone})", c.trim()),
            _ => "(none)".into(),
        }
    }

    /// Where `now` falls: inside a window (which one) or outside (the next).
    pub fn at(&self, now: DateTime<Utc>) -> Now {
        let rule = self.rule().expect("checked when the file was read");
        match self.zone().expect("checked when the file was read") {
            Zone::Local => at_in(&rule, &chrono::Local, now),
            Zone::Named(tz) => at_in(&rule, &tz, now),
        }
    }

    /// The windows that are open at some point between `from` and `until`
    /// (the one open at `from` first), at most `max`.
    pub fn windows(&self, from: DateTime<Utc>, until: DateTime<Utc>, max: usize) -> Vec<Window> {
        let mut out: Vec<Window> = Vec::new();
        let mut t = from;
        while out.len() < max && t < until {
            let w = match self.at(t) {
                Now::Inside(w) => w,
                Now::Outside(Some(w)) => w,
                Now::Outside(None) => break,
            };
            if w.opens >= until {
                break;
            }
            if out.last() == Some(&w) || w.closes <= t {
                // No progress: look a minute later.
                t += chrono::Duration::minutes(1);
                continue;
            }
            out.push(w);
            t = w.closes;
        }
        out
    }

    /// A time in the schedule's zone, for messages: `Mon 2026-12-07 09:00 CET`.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        const F: &str = "%a %Y-%m-%d %H:%M %Z";
        match self.zone() {
            Ok(Zone::Named(tz)) => t.with_timezone(&tz).format(F).to_string(),
            _ => t.with_timezone(&chrono::Local).format(F).to_string(),
        }
    }
}

/// `2d 4h`, `3h 20m`, `5m`.
pub fn human(d: chrono::Duration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, mins) = (m / 1440, (m % 1440) / 60, m % 60);
    match (days, hours) {
        (0, 0) => format!("{}m", mins.max(if d.num_seconds() > 0 { 1 } else { 0 })),
        (0, h) => format!("{h}h {mins}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

/// The absolute time of a wall-clock time (the earliest of a repeated
/// hour; a time in a skipped hour moves past the gap).
fn resolve<Z: TimeZone>(tz: &Z, date: NaiveDate, t: NaiveTime) -> DateTime<Utc> {
    let mut naive = date.and_time(t);
    for _ in 0..4 {
        if let Some(x) = tz.from_local_datetime(&naive).earliest() {
            return x.with_timezone(&Utc);
        }
        naive += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(t))
}

fn at_in<Z: TimeZone>(rule: &Rule, tz: &Z, now: DateTime<Utc>) -> Now {
    match rule {
        Rule::Weekly {
            days,
            start,
            minutes,
        } => {
            let today = now.with_timezone(tz).date_naive();
            let mut next: Option<Window> = None;
            for offset in -1..=8 {
                let date = today + chrono::Duration::days(offset);
                if !days.0[date.weekday().num_days_from_monday() as usize] {
                    continue;
                }
                let opens = resolve(tz, date, *start);
                let end_naive = date.and_time(*start) + chrono::Duration::minutes(*minutes);
                let closes = resolve(tz, end_naive.date(), end_naive.time());
                let w = Window { opens, closes };
                if opens <= now && now < closes {
                    return Now::Inside(w);
                }
                if opens > now && next.is_none_or(|n| opens < n.opens) {
                    next = Some(w);
                }
            }
            Now::Outside(next)
        }
        Rule::Cron { cron, length } => {
            let local = now.with_timezone(tz);
            // The latest window that opened at or before now (earlier ones
            // close earlier, as every window is as long).
            if let Ok(prev) = cron.find_previous_occurrence(&local, true) {
                let opens = prev.with_timezone(&Utc);
                if opens + *length > now {
                    return Now::Inside(Window {
                        opens,
                        closes: opens + *length,
                    });
                }
            }
            let next = cron
                .find_next_occurrence(&local, false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| *t - now < chrono::Duration::days(366))
                .map(|opens| Window {
                    opens,
                    closes: opens + *length,
                });
            Now::Outside(next)
        }
    }
}

/// Why `run` must not start now, or `None` when it may: outside the window,
/// or the run (up to `max_duration`) could outlast it.
pub fn refusal(s: &Schedule, now: DateTime<Utc>, max_duration: Duration) -> Option<String> {
    let hint = "Pass --outside-window to run anyway.";
    match s.at(now) {
        Now::Inside(w) => {
            let max =
                chrono::Duration::from_std(max_duration.std()).unwrap_or(chrono::Duration::MAX);
            if now + max > w.closes {
                Some(format!(
                    "this run may take up to {max_duration} (limits.max_duration), but its schedule window {} closes at {} (in {}); nothing was run. Lower limits.max_duration or wait for the next window. {hint}",
                    s.describe(),
                    s.show(w.closes),
                    human(w.closes - now)
                ))
            } else {
                None
            }
        }
        Now::Outside(next) => Some(format!(
            "outside the experiment's schedule window {}; {}; nothing was run. {hint}",
            s.describe(),
            match next {
                Some(w) => format!(
                    "the next window opens {} (in {}) and closes {}",
                    s.show(w.opens),
                    human(w.opens - now),
                    s.show(w.closes)
                ),
                None => "no window opens within the next year".into(),
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(yaml: &str) -> Result<Schedule, String> {
        serde_yaml::from_str::<Schedule>(yaml).map_err(|e| e.to_string())
    }
    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn business_hours_in_a_named_zone() {
        let s = sched("{window: Mon-Fri 09:00-17:00, timezone: Europe/Berlin}").unwrap();
        // Friday 2026-12-04 10:00 in Berlin (CET, UTC+1) is inside.
        let fri = utc("2026-12-04T09:00:00Z");
        assert_eq!(
            s.at(fri),
            Now::Inside(Window {
                opens: utc("2026-12-04T08:00:00Z"),
                closes: utc("2026-12-04T16:00:00Z")
            })
        );
        // Saturday: the next window is Monday 09:00 Berlin.
        let sat = utc("2026-12-05T12:00:00Z");
        let Now::Outside(Some(w)) = s.at(sat) else {
            panic!("{:?}", s.at(sat))
        };
        assert_eq!(w.opens, utc("2026-12-07T08:00:00Z"));
        assert_eq!(s.show(w.opens), "Mon 2026-12-07 09:00 CET");
        let r = refusal(&s, sat, Duration::from_secs(600)).unwrap();
        assert!(
            r.contains("opens Mon 2026-12-07 09:00 CET (in 1d 20h)"),
            "{r}"
        );
        assert!(r.contains("--outside-window"), "{r}");
        // Ten minutes before closing, a 10m run still fits, an 11m one does not.
        let late = utc("2026-12-04T15:50:00Z");
        assert!(refusal(&s, late, Duration::from_secs(600)).is_none());
        let r = refusal(&s, late, Duration::from_secs(660)).unwrap();
        assert!(
            r.contains("closes at Fri 2026-12-04 17:00 CET (in 10m)"),
            "{r}"
        );
    }

    #[test]
    fn windows_past_midnight_and_whole_days() {
        let s = sched("{window: 'Fri 22:00-02:00', timezone: UTC}").unwrap();
        assert!(matches!(s.at(utc("2026-12-05T01:00:00Z")), Now::Inside(_)));
        assert!(matches!(s.at(utc("2026-12-05T02:00:00Z")), Now::Outside(_)));
        let s = sched("{window: 'Sat-Sun 00:00-24:00', timezone: UTC}").unwrap();
        assert!(
            matches!(s.at(utc("2026-12-06T23:59:00Z")), Now::Inside(w) if w.closes == utc("2026-12-07T00:00:00Z"))
        );
        let s = sched("{window: 'Sat-Mon 10:00-11:00', timezone: UTC}").unwrap();
        assert!(
            matches!(s.at(utc("2026-12-07T10:30:00Z")), Now::Inside(_)),
            "Monday, in a wrapping range"
        );
    }

    #[test]
    fn a_cron_window() {
        let s = sched("{cron: '0 14 * * 1-5', duration: 1h, timezone: UTC}").unwrap();
        assert!(
            matches!(s.at(utc("2026-12-04T14:30:00Z")), Now::Inside(w) if w.closes == utc("2026-12-04T15:00:00Z"))
        );
        let Now::Outside(Some(w)) = s.at(utc("2026-12-04T15:00:00Z")) else {
            panic!()
        };
        assert_eq!(w.opens, utc("2026-12-07T14:00:00Z"), "Monday after Friday");
    }

    #[test]
    fn mistakes_say_what_to_write() {
        for (yaml, want) in [
            (
                "{window: 'Mon-Fry 09:00-17:00'}",
                "`Mon-Fry` is not a weekday",
            ),
            ("{window: 'Mon-Fri 9-17'}", "`9` is not a time of day"),
            ("{window: 'Mon-Fri'}", "e.g. `Mon-Fri 09:00-17:00`"),
            ("{window: 'Mon 10:00-10:00'}", "00:00-24:00"),
            ("{cron: '0 14 * * 1-5'}", "needs a `duration`"),
            (
                "{cron: '0 99 * * *', duration: 1h}",
                "is not a cron expression",
            ),
            (
                "{window: 'Mon 10:00-11:00', timezone: Mars/Olympus}",
                "not an IANA time zone",
            ),
            ("{window: 'Mon 10:00-11:00', cron: '* * * * *'}", "not both"),
            ("{}", "needs `window`"),
            (
                "{window: 'Mon 10:00-11:00', duration: 1h}",
                "goes with `cron`",
            ),
        ] {
            let e = sched(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
