//! Text from outside (process names, command lines, a child's stderr) made
//! safe for a terminal.

/// `s` with control characters (ESC, CR, BEL...) shown as `\u{1b}` escapes,
/// so nothing from outside can move the cursor or recolour the terminal.
/// Tabs stay; newlines are kept only when `newlines` is true.
pub fn escape(s: &str, newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\t' || (newlines && c == '\n') || !(c.is_control() || is_bidi(c)) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Bidirectional overrides can make text read differently than it is.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_control_characters() {
        assert_eq!(super::escape("ok\x1b[31mred", false), "ok\\u{1b}[31mred");
        assert_eq!(super::escape("a\nb\r", false), "a\\nb\\r");
        assert_eq!(super::escape("a\nb\r", true), "a\nb\\r");
        assert_eq!(super::escape("x\u{202E}y", false), "x\\u{202e}y");
        assert_eq!(super::escape("plain 名前", false), "plain 名前");
    }
}
