//! Norwegian national identity numbers (fødselsnummer, D-number, H-number, synthetic test numbers).
//!
//! A number is 11 digits: `DDMMYY`, a 3-digit individual number, and two mod-11 check digits
//! (k1 over digits 1–9, k2 over digits 1–10).
//!
//! - D-number: day + 40. H-number: month + 40. Synthetic test numbers: month + 80 (may be combined
//!   with the D-number day + 40).
//! - Numbers issued from 2032 use a relaxed k1 rule: k1 is valid when
//!   `(Σ w·d + k1) mod 11 ∈ {0, 1, 2, 3}`. Older numbers (`… mod 11 == 0`, the classic rule) are a
//!   special case of it, so both are accepted. k2 keeps the classic rule.
//!
//! A `NationalId` is personal data: it has no `Display`, and its `Debug` is redacted, so it cannot
//! reach a log line by accident. Errors never echo the number.

use std::fmt;

/// Weights of the first check digit (k1) over digits 1–9.
pub const K1_WEIGHTS: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
/// Weights of the second check digit (k2) over digits 1–10.
pub const K2_WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// A validated national identity number: exactly 11 ASCII digits with a valid date part and check
/// digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NationalId(String);

/// What kind of number a `NationalId` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NationalIdKind {
    /// An ordinary birth number.
    Fodselsnummer,
    /// Day + 40.
    DNumber,
    /// Month + 40.
    HNumber,
    /// Month + 80 (a synthetic test number, possibly with the D-number day + 40 too).
    Synthetic,
}

/// Why a string is not a national identity number. Messages never include the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NationalIdError {
    #[error("a national id must be exactly 11 digits")]
    NotElevenDigits,
    #[error("the date part of the national id is not a valid date")]
    BadDate,
    /// `position` is 10 (k1) or 11 (k2).
    #[error("check digit {position} of the national id does not match")]
    BadCheckDigit { position: u8 },
}

impl NationalId {
    /// Parses and validates a number; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<NationalId, NationalIdError> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() != 11 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(NationalIdError::NotElevenDigits);
        }
        let d: Vec<u8> = bytes.iter().map(|b| b - b'0').collect();
        date_kind(&d)?;

        let k1 = d[9];
        if !k1_accepted(&d[..9], k1) {
            return Err(NationalIdError::BadCheckDigit { position: 10 });
        }
        if check_digit_of(&d[..10], &K2_WEIGHTS) != Some(d[10]) {
            return Err(NationalIdError::BadCheckDigit { position: 11 });
        }
        Ok(NationalId(s.to_owned()))
    }

    /// The kind of number, from the offsets in its date part.
    pub fn kind(&self) -> NationalIdKind {
        let d: Vec<u8> = self.0.bytes().map(|b| b - b'0').collect();
        // Validated at parse time.
        date_kind(&d).unwrap_or(NationalIdKind::Fodselsnummer)
    }

    /// The 11 digits. Handle with care: this is personal data.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NationalId(<redacted>)")
    }
}

/// The classic mod-11 check digit of a digit string: over 9 digits it is k1 (weights
/// `3 7 6 1 8 9 4 5 2`), over 10 digits it is k2 (weights `5 4 3 2 7 6 5 4 3 2`).
/// `k = 11 − (Σ w·d mod 11)`, 11 becomes 0; `None` when k would be 10 (no valid digit), or when
/// the input is not 9 or 10 ASCII digits.
///
/// `control_digit("311299567") == Some(1)` and `control_digit("3112995671") == Some(5)`, so
/// `31129956715` is valid.
pub fn control_digit(digits: &str) -> Option<u8> {
    let bytes = digits.as_bytes();
    if !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d: Vec<u8> = bytes.iter().map(|b| b - b'0').collect();
    match d.len() {
        9 => check_digit_of(&d, &K1_WEIGHTS),
        10 => check_digit_of(&d, &K2_WEIGHTS),
        _ => None,
    }
}

/// Completes nine digits into an 11-digit number with the classic check digits, or `None` when
/// either would be 10. Handy for building test numbers.
pub fn with_check_digits(first_nine: &str) -> Option<String> {
    let k1 = control_digit(first_nine)?;
    let ten = format!("{first_nine}{k1}");
    let k2 = control_digit(&ten)?;
    Some(format!("{ten}{k2}"))
}

fn weighted_sum(d: &[u8], weights: &[u32]) -> u32 {
    d.iter().zip(weights).map(|(&d, &w)| u32::from(d) * w).sum()
}

fn check_digit_of(d: &[u8], weights: &[u32]) -> Option<u8> {
    match 11 - weighted_sum(d, weights) % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k as u8),
    }
}

/// k1 is valid under the classic rule (`(Σ + k1) mod 11 == 0`) or the 2032 rule
/// (`(Σ + k1) mod 11 ∈ {0, 1, 2, 3}`); the first implies the second.
fn k1_accepted(first_nine: &[u8], k1: u8) -> bool {
    (weighted_sum(first_nine, &K1_WEIGHTS) + u32::from(k1)) % 11 <= 3
}

/// Checks the date part of an 11-digit number and tells its kind from the offsets.
fn date_kind(d: &[u8]) -> Result<NationalIdKind, NationalIdError> {
    let day = d[0] * 10 + d[1];
    let month = d[2] * 10 + d[3];

    let (day, d_number) = match day {
        41..=71 => (day - 40, true),
        _ => (day, false),
    };
    let (month, month_kind) = match month {
        81..=92 => (month - 80, Some(NationalIdKind::Synthetic)),
        41..=52 => (month - 40, Some(NationalIdKind::HNumber)),
        _ => (month, None),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(month) {
        return Err(NationalIdError::BadDate);
    }
    match (d_number, month_kind) {
        (_, Some(NationalIdKind::Synthetic)) => Ok(NationalIdKind::Synthetic),
        // No scheme adds 40 to both day and month.
        (true, Some(_)) => Err(NationalIdError::BadDate),
        (false, Some(kind)) => Ok(kind),
        (true, None) => Ok(NationalIdKind::DNumber),
        (false, None) => Ok(NationalIdKind::Fodselsnummer),
    }
}

/// Days in a month of a permissive year: the century is ambiguous, so February always has 29.
fn days_in_month(month: u8) -> u8 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NationalIdError::*;
    use NationalIdKind::*;

    // Test numbers: the worked example from the domain notes, and numbers built on year 99 with
    // individual numbers 800–899, a range never allocated to years 40–99 (500–749 is 1854–1899,
    // 900–999 is 1940–1999, 750–899 only 2000–2039 with years 00–39), so they belong to no one.
    // Month + 80 numbers are synthetic by definition.
    fn check(input: &str, expect: Result<NationalIdKind, NationalIdError>) {
        let got = NationalId::parse(input).map(|id| id.kind());
        assert_eq!(got, expect, "input {input:?}");
        if let Ok(id) = NationalId::parse(input) {
            assert_eq!(id.as_str(), input.trim());
        }
    }

    #[test]
    fn national_id_table() {
        let bad_k1 = Err(BadCheckDigit { position: 10 });
        let bad_k2 = Err(BadCheckDigit { position: 11 });
        let cases: &[(&str, Result<NationalIdKind, NationalIdError>)] = &[
            // The worked example: k1 = 1, k2 = 5.
            ("31129956715", Ok(Fodselsnummer)),
            (" 31129956715\n", Ok(Fodselsnummer)),
            ("31129980004", Ok(Fodselsnummer)),
            // Bad k1 (fails the 2032 rule too: (Σ + 6) mod 11 = 5), k2 correct for it.
            ("31129956766", bad_k1.clone()),
            // Bad k2.
            ("31129956716", bad_k2.clone()),
            // k2 remainder 10: no 11th digit can be valid.
            ("31129981060", bad_k2.clone()),
            ("31129981069", bad_k2.clone()),
            // k1 remainder 10 (Σ mod 11 = 1): classic impossible; 2032 accepts only k1 ∈ {0,1,2}.
            ("15109985054", bad_k1.clone()),
            // D-number: day + 40.
            ("71129980189", Ok(DNumber)),
            // H-number: month + 40.
            ("31529980178", Ok(HNumber)),
            // Synthetic: month + 80, alone and with the D-number day + 40.
            ("31929980150", Ok(Synthetic)),
            ("71929980144", Ok(Synthetic)),
            // 2032 rule: classic k1 is 0, but (Σ + 1) mod 11 = 1 is accepted; k2 follows k1.
            ("31129980012", Ok(Fodselsnummer)),
            // 2032 rule where classic k1 is impossible (remainder 10): k1 = 0, (Σ + 0) mod 11 = 1.
            ("31129980608", Ok(Fodselsnummer)),
            // 2032 rule, (Σ + k1) mod 11 = 3.
            ("31129980705", Ok(Fodselsnummer)),
            // Feb 29 is always accepted (the century is ambiguous).
            ("29029980169", Ok(Fodselsnummer)),
            // Wrong length, letters, inner whitespace.
            ("", Err(NotElevenDigits)),
            ("3112995671", Err(NotElevenDigits)),
            ("311299567150", Err(NotElevenDigits)),
            ("3112995671a", Err(NotElevenDigits)),
            ("311299 56715", Err(NotElevenDigits)),
            ("３１129956715", Err(NotElevenDigits)),
            // Bad dates (the date is checked before the check digits).
            ("30029980108", Err(BadDate)), // Feb 30, check digits valid
            ("32129956715", Err(BadDate)),
            ("00129956715", Err(BadDate)),
            ("31139956715", Err(BadDate)),
            ("31009956715", Err(BadDate)),
            ("31119956715", Err(BadDate)), // Nov 31
            ("72129956715", Err(BadDate)), // D-number day 32
            ("31939956715", Err(BadDate)), // synthetic month 13
            ("71529956715", Err(BadDate)), // day + 40 and month + 40
        ];
        for (input, expect) in cases {
            check(input, expect.clone());
        }
    }

    #[test]
    fn control_digit_reproduces_the_worked_example() {
        assert_eq!(control_digit("311299567"), Some(1));
        assert_eq!(control_digit("3112995671"), Some(5));
        assert_eq!(with_check_digits("311299567").as_deref(), Some("31129956715"));
        assert_eq!(control_digit("311299810"), Some(6));
        assert_eq!(control_digit("3112998106"), None);
        assert_eq!(with_check_digits("311299810"), None);
        assert_eq!(control_digit("31129956"), None);
        assert_eq!(control_digit("31129956x"), None);
    }

    #[test]
    fn every_classic_number_is_accepted() {
        for individual in 800..900 {
            let nine = format!("311299{individual:03}");
            if let Some(full) = with_check_digits(&nine) {
                assert_eq!(NationalId::parse(&full).map(|id| id.kind()), Ok(Fodselsnummer));
            }
        }
    }

    #[test]
    fn debug_and_errors_do_not_leak_the_number() {
        let id = NationalId::parse("31129956715").unwrap();
        let debug = format!("{id:?}");
        assert_eq!(debug, "NationalId(<redacted>)");
        assert!(!debug.contains("311299"));
        for bad in ["31129956716", "32129956715", "3112995671x"] {
            let err = NationalId::parse(bad).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains("311299") && !text.contains("321299"), "{text}");
            }
        }
    }
}
