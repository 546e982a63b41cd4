//! Typed values parsed once from the experiment file: durations (`250ms`, `5m`),
//! sizes (`64MiB`), percentages (`50%`), signals (`SIGKILL`, `9`), rates
//! (`1mbit`) and addresses (`10.0.0.0/24`). Each has a clear error that lists the accepted forms.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

fn string_schema(pattern: &str, description: &str, numbers_too: bool) -> Schema {
    let ty = if numbers_too {
        serde_json::json!(["string", "number"])
    } else {
        serde_json::json!("string")
    };
    json_schema!({
        "type": ty,
        "pattern": pattern,
        "description": description,
    })
}

/// Accepts a string or a plain number from YAML (`9`, `0.5`) as text.
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(match T::deserialize(d)? {
        T::S(s) => s,
        T::I(i) => i.to_string(),
        T::F(f) => f.to_string(),
    })
}

/// A span of time: `250ms`, `30s`, `5m`, `1h`, `1m30s`, `1.5s`, `100us`, `500ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }
    pub fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }
    pub fn std(self) -> StdDuration {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
    pub fn as_millis_f64(self) -> f64 {
        self.0.as_secs_f64() * 1000.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a duration; write a number with a unit, e.g. `250ms`, `30s`, `5m`, `1h` or `1m30s` (units: ns, us, ms, s, m, h)"
            )
        };
        if t.is_empty() {
            return Err(bad());
        }
        let mut total = 0f64;
        let mut rest = t;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_end == 0 {
                return Err(bad());
            }
            let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
            rest = rest[num_end..].trim_start();
            let unit_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = rest[unit_end..].trim_start();
            let factor = match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" | "sec" | "secs" => 1.0,
                "m" | "min" | "mins" => 60.0,
                "h" | "hr" | "hours" => 3600.0,
                "" => {
                    return Err(format!(
                        "`{s}` has no unit; durations need one, e.g. `{value}s` or `{value}ms`"
                    ))
                }
                _ => return Err(bad()),
            };
            total += value * factor;
        }
        if !total.is_finite() || total > 366.0 * 86400.0 {
            return Err(format!(
                "`{s}` is longer than a year; that is surely a mistake"
            ));
        }
        Ok(Duration(StdDuration::from_secs_f64(total)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if !d.subsec_nanos().is_multiple_of(1000) {
            write!(f, "{}ns", d.as_nanos())
        } else if !d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}us", d.as_micros())
        } else if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            let s = d.as_secs();
            if s >= 3600 && s.is_multiple_of(3600) {
                write!(f, "{}h", s / 3600)
            } else if s >= 60 && s.is_multiple_of(60) {
                write!(f, "{}m", s / 60)
            } else {
                write!(f, "{s}s")
            }
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = text_or_number(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            r"^\s*([0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|sec|secs|m|min|mins|h|hr|hours)\s*)+$",
            "A duration with a unit: `250ms`, `30s`, `5m`, `1h`, `1m30s`.",
            false,
        )
    }
}

/// A size in bytes: `64MiB`, `1GiB`, `512KiB`, `100MB`, `4096` (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!("`{s}` is not a size; write e.g. `64MiB`, `1GiB`, `512KiB`, `100MB` or a number of bytes")
        };
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = t[..num_end].parse().map_err(|_| bad())?;
        let unit = t[num_end..].trim();
        let factor: f64 = match unit {
            "" | "B" | "b" => 1.0,
            "K" | "k" | "KiB" | "Ki" => 1024.0,
            "M" | "m" | "MiB" | "Mi" => 1024.0 * 1024.0,
            "G" | "g" | "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
            "T" | "TiB" | "Ti" => 1024f64.powi(4),
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            _ => return Err(bad()),
        };
        let bytes = value * factor;
        if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
            return Err(format!("`{s}` is too large"));
        }
        Ok(Size(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, n) in UNITS {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{name}", self.0 / n);
            }
        }
        for (name, n) in UNITS {
            if self.0 >= n {
                return write!(f, "{:.1}{name}", self.0 as f64 / n as f64);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Size {
    /// The exact value in the largest unit that divides it (`64MiB`, `1500B`);
    /// `Display` rounds (`1.5MiB`) and is for people, this is for files.
    pub fn exact(self) -> String {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, n) in UNITS {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return format!("{}{name}", self.0 / n);
            }
        }
        format!("{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.exact())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text_or_number(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            r"^\s*[0-9]+(\.[0-9]+)?\s*(B|b|K|k|Ki|KiB|M|m|Mi|MiB|G|g|Gi|GiB|T|Ti|TiB|KB|kB|MB|GB|TB)?\s*$",
            "A size: `64MiB`, `1GiB`, `512KiB`, `100MB`, or a number of bytes.",
            true,
        )
    }
}

/// A percentage `0%`..=`100%` (`50%`, `12.5%`). Validation rejects more than 100.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let Some(num) = t.strip_suffix('%') else {
            return Err(format!(
                "`{s}` is not a percentage; write it with a percent sign, e.g. `50%`"
            ));
        };
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage; write e.g. `50%` or `12.5%`"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("`{s}` must be between 0% and 100%"));
        }
        if v > 100.0 {
            return Err(format!(
                "`{s}` is over 100%; a percentage here must be between 0% and 100%"
            ));
        }
        Ok(Percent(v))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text_or_number(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$",
            "A percentage from `0%` to `100%`.",
            false,
        )
    }
}

/// A POSIX signal by name (`SIGKILL`, `KILL`, `sigterm`) or number (`9`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(pub nix::sys::signal::Signal);

impl Default for Signal {
    fn default() -> Self {
        Signal(nix::sys::signal::Signal::SIGKILL)
    }
}

impl Signal {
    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

impl FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use nix::sys::signal::Signal as S;
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return S::try_from(n)
                .map(Signal)
                .map_err(|_| format!("`{s}` is not a signal number on Linux (1-31)"));
        }
        let upper = t.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        name.parse::<S>().map(Signal).map_err(|_| {
            format!("`{s}` is not a signal; write a name like `SIGKILL`, `SIGTERM`, `SIGSTOP` or a number like `9`")
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text_or_number(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Signal {
    fn schema_name() -> Cow<'static, str> {
        "Signal".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            r"^\s*((SIG)?[A-Za-z0-9]+|[0-9]+)\s*$",
            "A signal name (`SIGKILL`, `TERM`) or number (`9`).",
            true,
        )
    }
}

/// A network rate: `1mbit`, `500kbit`, `10gbit`, `100kbps` (bytes/s) or bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Rate {
    pub bits_per_sec: u64,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!("`{s}` is not a rate; write e.g. `1mbit`, `500kbit`, `10gbit` (bits/s) or `100kbps` (bytes/s)")
        };
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        if num_end == 0 {
            return Err(bad());
        }
        let v: f64 = t[..num_end].parse().map_err(|_| bad())?;
        let unit = t[num_end..].trim().to_ascii_lowercase();
        let factor = match unit.as_str() {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            _ => return Err(bad()),
        };
        let bits = v * factor;
        if bits < 1.0 || !bits.is_finite() || bits > 1e13 {
            return Err(format!("`{s}` is outside the range 1bit to 10tbit"));
        }
        Ok(Rate {
            bits_per_sec: bits.round() as u64,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_sec;
        if b >= 1_000_000_000 && b.is_multiple_of(1_000_000_000) {
            write!(f, "{}gbit", b / 1_000_000_000)
        } else if b >= 1_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}mbit", b / 1_000_000)
        } else if b >= 1000 && b.is_multiple_of(1000) {
            write!(f, "{}kbit", b / 1000)
        } else {
            write!(f, "{b}bit")
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text_or_number(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_schema(
            r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgG]?(bit|bps))\s*$",
            "A rate: `1mbit`, `500kbit`, `10gbit` (bits per second) or `100kbps` (bytes per second).",
            false,
        )
    }
}

/// An IPv4/IPv6 address or CIDR.
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.trim().parse().map_err(|_| {
        format!("`{s}` is not an IP address or CIDR (e.g. `10.0.0.2` or `10.0.0.0/24`)")
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{s}`: the prefix length must be 0-{max}"))?,
        None => max,
    };
    Ok((ip, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!(
            "1m30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            "1.5s".parse::<Duration>().unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!("2h".parse::<Duration>().unwrap().to_string(), "2h");
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
        assert_eq!("500ns".parse::<Duration>().unwrap().to_string(), "500ns");
        assert_eq!(
            "0.0000005s".parse::<Duration>().unwrap().to_string(),
            "500ns"
        );
        let e = "30".parse::<Duration>().unwrap_err();
        assert!(e.contains("no unit"), "{e}");
        assert!("fast".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
        assert!("10parsecs".parse::<Duration>().is_err());
        assert!("999999h".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("64MiB".parse::<Size>().unwrap(), Size(64 << 20));
        assert_eq!("1GiB".parse::<Size>().unwrap(), Size(1 << 30));
        assert_eq!("100MB".parse::<Size>().unwrap(), Size(100_000_000));
        assert_eq!("4096".parse::<Size>().unwrap(), Size(4096));
        assert_eq!(Size(64 << 20).to_string(), "64MiB");
        assert_eq!(Size(1500).exact(), "1500B");
        assert_eq!(Size((1 << 20) + 1).to_string(), "1.0MiB");
        assert_eq!(
            Size((1 << 20) + 1).exact().parse::<Size>().unwrap(),
            Size((1 << 20) + 1)
        );
        assert!("lots".parse::<Size>().is_err());
        assert!("12 parsecs".parse::<Size>().is_err());
    }

    #[test]
    fn percents_are_bounded() {
        assert_eq!("50%".parse::<Percent>().unwrap(), Percent(50.0));
        assert_eq!("12.5%".parse::<Percent>().unwrap().fraction(), 0.125);
        assert!("150%".parse::<Percent>().unwrap_err().contains("over 100%"));
        assert!("50"
            .parse::<Percent>()
            .unwrap_err()
            .contains("percent sign"));
        assert!("-1%".parse::<Percent>().is_err());
    }

    #[test]
    fn signals_by_name_and_number() {
        use nix::sys::signal::Signal as S;
        assert_eq!("SIGKILL".parse::<Signal>().unwrap().0, S::SIGKILL);
        assert_eq!("term".parse::<Signal>().unwrap().0, S::SIGTERM);
        assert_eq!("9".parse::<Signal>().unwrap().0, S::SIGKILL);
        assert_eq!("19".parse::<Signal>().unwrap().0, S::SIGSTOP);
        assert!("SIGFOO".parse::<Signal>().is_err());
        assert!("99".parse::<Signal>().is_err());
    }

    #[test]
    fn rates() {
        assert_eq!("1mbit".parse::<Rate>().unwrap().bits_per_sec, 1_000_000);
        assert_eq!("100kbps".parse::<Rate>().unwrap().bits_per_sec, 800_000);
        assert_eq!("1mbit".parse::<Rate>().unwrap().to_string(), "1mbit");
        assert!("fast".parse::<Rate>().is_err());
    }
}
