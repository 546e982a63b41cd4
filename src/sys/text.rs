//! Text from outside (experiment files, state files, other users' process
//! names and command lines, command output) made safe to print: control
//! characters that a terminal would act on are shown as visible escapes.
//! Every printer calls one of these two functions on what it prints.

use std::borrow::Cow;

/// Is `c` a character a terminal (or a bidi-aware viewer) would act on
/// instead of showing: C0 controls, DEL, C1 controls, bidirectional
/// overrides and isolates, and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
    )
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of text: every control character escaped, line breaks included
/// (`\x1b`, `\n`, `\r`, `\x7f`, `\u{9b}`, `\u{202e}`).
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// Text of several lines: like [`escape`], but `\n` and `\t` stay as they are.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n' || c == '\t')
}

/// A copy of `value` with [`escape_text`] applied to every string in it
/// (through its serde form), for printers that add their own escape
/// sequences (colors) and so cannot escape their output as a whole. `None`
/// when the value does not survive the round trip.
pub fn escape_strings<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> Option<T> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(e) = escape_text(s) {
                    *s = e;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut v) in old {
                    walk(&mut v);
                    m.insert(escape(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).ok()?;
    walk(&mut v);
    serde_json::from_value(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_become_visible() {
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ry"), "x\\ry");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        assert_eq!(escape("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escape("iso\u{2066}x\u{2069}"), "iso\\u{2066}x\\u{2069}");
        assert_eq!(escape("bell\x07"), "bell\\x07");
        assert_eq!(escape("nul\0"), "nul\\x00");
        assert_eq!(escape("two\nlines"), "two\\nlines");
        assert_eq!(escape_text("two\nlines\tok\r"), "two\nlines\tok\\r");
        assert_eq!(
            escape_text("osc \x1b]0;title\x07"),
            "osc \\x1b]0;title\\x07"
        );
    }

    #[test]
    fn strings_inside_values_are_escaped() {
        let v: Vec<(String, u32)> = vec![("a\x1b[31mred".into(), 1), ("ok".into(), 2)];
        let e = escape_strings(&v).unwrap();
        assert_eq!(e[0].0, "a\\x1b[31mred");
        assert_eq!(e[1], ("ok".to_string(), 2));
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "web answers in 200ms",
            "ünïcödé ✓ → — 日本",
            "a\\x1b literal",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(escape(s), s);
        }
    }
}
