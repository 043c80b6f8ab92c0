//! `Timestamp`: a UTC instant with millisecond precision, the only way time is kept in an event.
//!
//! Input accepts RFC 3339 with any offset or unix seconds (integer or decimal), as SPEC §4 asks;
//! output is always RFC 3339 UTC with exactly three fractional digits, so rendered times sort as
//! strings.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Milliseconds since 1970-01-01T00:00:00Z, within [`Timestamp::MIN`, `Timestamp::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a text is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not a time: expected RFC 3339 (2026-11-22T21:00:00Z) or unix seconds")]
    Syntax,
    #[error("time out of range (1970-01-01 to 9999-12-31)")]
    Range,
}

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(0);
    /// 9999-12-31T23:59:59.999Z: four-digit years keep the rendering fixed-width.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    pub fn from_millis(ms: i64) -> Result<Self, TimeError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&ms) { Ok(Timestamp(ms)) } else { Err(TimeError::Range) }
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        // The clock of a running machine is between 1970 and 9999.
        Timestamp(ms.clamp(Self::MIN.0 as i128, Self::MAX.0 as i128) as i64)
    }

    /// Parses RFC 3339 (any offset, any fraction, truncated to ms) or unix seconds.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 64 {
            return Err(TimeError::Syntax);
        }
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Self::from_unix_seconds_text(text);
        }
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimeError::Syntax)?;
        let ms = parsed.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms).map_err(|_| TimeError::Range).and_then(Self::from_millis)
    }

    /// Unix seconds as a JSON number may be fractional; anything past milliseconds is dropped.
    pub fn from_unix_seconds(seconds: f64) -> Result<Self, TimeError> {
        if !seconds.is_finite() {
            return Err(TimeError::Syntax);
        }
        let ms = (seconds * 1000.0).floor();
        if ms < Self::MIN.0 as f64 || ms > Self::MAX.0 as f64 {
            return Err(TimeError::Range);
        }
        Ok(Timestamp(ms as i64))
    }

    fn from_unix_seconds_text(text: &str) -> Result<Self, TimeError> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() || fraction.contains('.') || whole.len() > 15 {
            return Err(if whole.len() > 15 { TimeError::Range } else { TimeError::Syntax });
        }
        // Whole seconds are at most 15 digits here, so they fit an i64 with room for the ms.
        let seconds: i64 = whole.parse().map_err(|_| TimeError::Syntax)?;
        let mut millis = 0i64;
        for (position, digit) in fraction.bytes().take(3).enumerate() {
            millis += i64::from(digit - b'0') * [100, 10, 1][position];
        }
        Self::from_millis(seconds * 1000 + millis)
    }

    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// A time `ms` milliseconds earlier, not before 1970.
    pub fn saturating_sub_millis(self, ms: i64) -> Self {
        Timestamp((self.0 - ms).max(Self::MIN.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format =
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        // In range by construction, so both conversions succeed.
        let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| fmt::Error)?;
        let text = instant.format(&format).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc3339_with_offsets_and_unix_seconds() {
        let t = Timestamp::parse("2026-11-22T21:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T21:00:00.000Z");
        assert_eq!(
            Timestamp::parse("2026-11-22T23:00:00.1234+02:00").unwrap().to_string(),
            "2026-11-22T21:00:00.123Z"
        );
        assert_eq!(Timestamp::parse("1764018000").unwrap().to_string(), "2025-11-24T21:00:00.000Z");
        assert_eq!(Timestamp::parse("1764018000.25").unwrap().millis(), 1_764_018_000_250);
        assert_eq!(Timestamp::parse("yesterday"), Err(TimeError::Syntax));
        assert_eq!(Timestamp::parse("1.2.3"), Err(TimeError::Syntax));
        assert_eq!(Timestamp::parse("99999999999999999999"), Err(TimeError::Range));
        assert_eq!(Timestamp::parse("1969-12-31T23:59:59Z"), Err(TimeError::Range));
        assert_eq!(Timestamp::from_unix_seconds(f64::NAN), Err(TimeError::Syntax));
    }

    proptest! {
        #[test]
        fn rendering_round_trips(ms in Timestamp::MIN.0..=Timestamp::MAX.0) {
            let t = Timestamp(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        }

        #[test]
        fn never_panics_on_text(text in ".{0,80}") {
            let _ = Timestamp::parse(&text);
        }
    }
}
