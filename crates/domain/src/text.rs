//! Names as forlop stores them: trimmed, in Unicode NFC, and free of characters that hide or
//! disguise text (controls, NUL, bidi overrides, zero-width characters, BOM, noncharacters),
//! which would let a displayed name differ from the stored one.

use unicode_normalization::UnicodeNormalization;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Length,
    /// The character's code point, e.g. `U+202E`.
    Forbidden(String),
}

/// True for characters that hide or disguise text (see the module's doc): refused in names and
/// in anything else a person reads back, such as an emergency access reason.
pub fn hides_text(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(u, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0x061C | 0x180E)
        // Characters that draw nothing: Hangul fillers, the Braille blank, variation selectors,
        // the combining grapheme joiner, Khmer inherent vowels, and the tag characters (which
        // can carry hidden ASCII).
        || matches!(u, 0x115F | 0x1160 | 0x3164 | 0xFFA0 | 0x2800 | 0x034F | 0x17B4 | 0x17B5)
        || matches!(u, 0xFE00..=0xFE0F | 0xE0000..=0xE007F | 0xE0100..=0xE01EF)
        || (0xFDD0..=0xFDEF).contains(&u)
        || (u & 0xFFFE) == 0xFFFE
}

/// Most characters of client input an error message quotes back.
pub const QUOTE_LIMIT: usize = 100;

/// Client input as an error message quotes it: in Rust debug quotes (so control characters and
/// bidi overrides show as escapes rather than act on the reader's terminal), cut after
/// `QUOTE_LIMIT` characters with `…` after the closing quote. Every adapter quotes through
/// this, so a message never echoes a megabyte back or hides what was sent.
pub fn quote(input: &str) -> String {
    if input.chars().count() <= QUOTE_LIMIT {
        format!("{input:?}")
    } else {
        format!("{:?}…", input.chars().take(QUOTE_LIMIT).collect::<String>())
    }
}

/// A message that may hold client input (a parser's, say), cut after `QUOTE_LIMIT` characters
/// with `…`; for text already quoted by its author, where `quote` would quote it again.
pub fn clip(message: &str) -> String {
    if message.chars().count() <= QUOTE_LIMIT {
        message.to_owned()
    } else {
        message.chars().take(QUOTE_LIMIT).chain(std::iter::once('…')).collect()
    }
}

/// The name as stored: trimmed and NFC-normalised; refused if empty, too long, or holding a
/// forbidden character. Clean input comes back unchanged, so deciding twice is idempotent.
pub fn clean_name(raw: &str) -> Result<String, NameError> {
    if let Some(c) = raw.chars().find(|c| hides_text(*c)) {
        return Err(NameError::Forbidden(format!("U+{:04X}", c as u32)));
    }
    let name: String = raw.trim().nfc().collect();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::Length);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, &str>) {
        let got = clean_name(input).map_err(|e| match e {
            NameError::Length => "length".to_string(),
            NameError::Forbidden(c) => c,
        });
        assert_eq!(got.as_deref().map_err(String::as_str), expect, "{input:?}");
    }

    #[test]
    fn quoting_escapes_and_cuts() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\u{202e}b"), "\"a\\u{202e}b\"");
        let long = "x".repeat(QUOTE_LIMIT + 1);
        assert_eq!(quote(&long), format!("\"{}\"…", "x".repeat(QUOTE_LIMIT)));
        assert_eq!(clip(&long), format!("{}…", "x".repeat(QUOTE_LIMIT)));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn names() {
        check("  RPH Gamle Oslo ", Ok("RPH Gamle Oslo"));
        check("Bjørn", Ok("Bjørn"));
        check("Bjo\u{0308}rn", Ok("Björn")); // decomposed ö becomes one code point
        check("ab\u{0}cd", Err("U+0000"));
        check("Dr \u{202e}evil\u{202c}", Err("U+202E"));
        check("a\u{1b}[31m", Err("U+001B"));
        check("zero\u{200b}width", Err("U+200B"));
        check("\u{feff}bom", Err("U+FEFF"));
        check("non\u{fdd0}char", Err("U+FDD0"));
        check("   ", Err("length"));
        check(&"x".repeat(201), Err("length"));
    }
}
