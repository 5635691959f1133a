//! Request times, in the two forms SigV4 meets them.
//!
//! SigV4 signs the ISO 8601 basic form `YYYYMMDD'T'HHMMSS'Z'` (the
//! `x-amz-date` header and the `X-Amz-Date` query parameter). For header
//! authentication S3 also accepts a request that has no `x-amz-date` but a
//! `Date` header, which is an HTTP-date (RFC 9110 §5.6.7): then the signed
//! timestamp is that time written in the basic form.
//!
//! Parsing is strict for the basic form (every client writes it the same
//! way) and follows RFC 9110 for HTTP-dates: a recipient must accept the
//! IMF-fixdate and the two obsolete forms. Times are whole seconds in UTC,
//! held as Unix seconds so comparisons are plain integer arithmetic.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A request time: a UTC instant with whole-second precision, between the
/// years 0 and 9999 (the range four year digits can write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmzDate {
    unix_seconds: i64,
}

impl AmzDate {
    /// Parses `YYYYMMDD'T'HHMMSS'Z'` exactly (16 bytes, UTC).
    #[must_use]
    pub fn parse_iso8601_basic(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
            return None;
        }
        Self::from_parts(
            digits(&bytes[0..4])?,
            digits(&bytes[4..6])?,
            digits(&bytes[6..8])?,
            digits(&bytes[9..11])?,
            digits(&bytes[11..13])?,
            digits(&bytes[13..15])?,
        )
    }

    /// Parses an HTTP-date in any of the three forms RFC 9110 requires a
    /// recipient to accept:
    /// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate, what clients send),
    /// `Sunday, 06-Nov-94 08:49:37 GMT` (RFC 850) and
    /// `Sun Nov  6 08:49:37 1994` (asctime). The zone may also be written
    /// `UTC` or `+0000`, as some clients do.
    #[must_use]
    pub fn parse_http_date(text: &str) -> Option<Self> {
        let mut tokens = text.split_ascii_whitespace();
        let first = tokens.next()?;
        let (year, month, day, clock) = if let Some(weekday) = first.strip_suffix(',') {
            if weekday.is_empty() || !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            let date = tokens.next()?;
            let (year, month, day) = if date.contains('-') {
                // RFC 850: `06-Nov-94`, two-digit year.
                let mut fields = date.split('-');
                let (day, month, year) = (fields.next()?, fields.next()?, fields.next()?);
                if fields.next().is_some() || year.len() != 2 {
                    return None;
                }
                // RFC 9110: a two-digit year more than 50 years in the future
                // means the past century; for a request time that is any year
                // past 2069.
                let year = digits(year.as_bytes())?;
                let year = if year < 70 { 2000 + year } else { 1900 + year };
                (year, month_number(month)?, digits(day.as_bytes())?)
            } else {
                // IMF-fixdate: `06 Nov 1994`.
                let month = month_number(tokens.next()?)?;
                let year = tokens.next()?;
                if year.len() != 4 {
                    return None;
                }
                (digits(year.as_bytes())?, month, digits(date.as_bytes())?)
            };
            let clock = tokens.next()?;
            if !matches!(tokens.next()?, "GMT" | "UTC" | "UT" | "+0000") {
                return None;
            }
            (year, month, day, clock)
        } else {
            // asctime: `Sun Nov  6 08:49:37 1994`.
            let month = month_number(tokens.next()?)?;
            let day = digits(tokens.next()?.as_bytes())?;
            let clock = tokens.next()?;
            let year = tokens.next()?;
            if year.len() != 4 {
                return None;
            }
            (digits(year.as_bytes())?, month, day, clock)
        };
        if tokens.next().is_some() {
            return None;
        }
        let mut fields = clock.split(':');
        let (hour, minute, second) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || hour.len() != 2 || minute.len() != 2 || second.len() != 2 {
            return None;
        }
        Self::from_parts(
            year,
            month,
            day,
            digits(hour.as_bytes())?,
            digits(minute.as_bytes())?,
            digits(second.as_bytes())?,
        )
    }

    fn from_parts(
        year: u32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<Self> {
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let date =
            Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
                .ok()?;
        let clock = Time::from_hms(
            u8::try_from(hour).ok()?,
            u8::try_from(minute).ok()?,
            u8::try_from(second).ok()?,
        )
        .ok()?;
        let unix_seconds = PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp();
        Some(Self { unix_seconds })
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// Milliseconds since the Unix epoch, the unit the clock-skew limit uses.
    #[must_use]
    pub fn unix_ms(self) -> i64 {
        // Cannot overflow: |seconds| < 2.6e11 for years 0..=9999.
        self.unix_seconds * 1000
    }

    /// The time as `YYYYMMDD'T'HHMMSS'Z'`, the form SigV4 signs.
    #[must_use]
    pub fn iso8601_basic(self) -> String {
        let time = self.offset_date_time();
        let mut text = String::with_capacity(16);
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second()
        );
        text
    }

    /// The date part, `YYYYMMDD`, as it appears in a credential scope.
    #[must_use]
    pub fn date_stamp(self) -> String {
        let mut text = self.iso8601_basic();
        text.truncate(8);
        text
    }

    fn offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.unix_seconds)
            .expect("an AmzDate is only built from a calendar date in years 0..=9999")
    }
}

/// The clock as milliseconds since the Unix epoch (negative before it).
#[must_use]
pub fn unix_ms(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// A run of 1 to 4 ASCII digits as a number.
fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    bytes.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = MONTHS
        .iter()
        .position(|month| month.eq_ignore_ascii_case(name))?;
    u32::try_from(index + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MAY_24_2013: i64 = 1_369_353_600;

    #[test]
    fn iso8601_basic_round_trips() {
        let date = AmzDate::parse_iso8601_basic("20130524T000000Z").unwrap();
        assert_eq!(date.unix_seconds(), MAY_24_2013);
        assert_eq!(date.iso8601_basic(), "20130524T000000Z");
        assert_eq!(date.date_stamp(), "20130524");
        let date = AmzDate::parse_iso8601_basic("20231231T235959Z").unwrap();
        assert_eq!(date.iso8601_basic(), "20231231T235959Z");
    }

    #[test]
    fn iso8601_basic_is_strict() {
        for text in [
            "",
            "20130524T000000",
            "20130524T000000z",
            "20130524 000000Z",
            "2013-05-24T00:00:00Z",
            "20130524T000000ZZ",
            "20131324T000000Z",
            "20130230T000000Z",
            "20130524T240000Z",
            "20130524T006000Z",
            "2013052+T000000Z",
            "+0130524T000000Z",
        ] {
            assert_eq!(AmzDate::parse_iso8601_basic(text), None, "{text:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        for text in [
            "Fri, 24 May 2013 00:00:00 GMT",
            "Fri, 24 May 2013 00:00:00 +0000",
            "Fri, 24 May 2013 00:00:00 UTC",
            "Friday, 24-May-13 00:00:00 GMT",
            "Fri May 24 00:00:00 2013",
            "Fri May  24 00:00:00 2013",
        ] {
            let date = AmzDate::parse_http_date(text).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!(date.unix_seconds(), MAY_24_2013, "{text:?}");
        }
        let date = AmzDate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(date.iso8601_basic(), "19941106T084937Z");
    }

    #[test]
    fn http_date_rejects_garbage() {
        for text in [
            "",
            "Fri, 24 May 2013 00:00:00",
            "Fri, 24 May 2013 00:00:00 PST",
            "Fri, 24 Foo 2013 00:00:00 GMT",
            "Fri, 24 May 13 00:00:00 GMT",
            "Fri, 32 May 2013 00:00:00 GMT",
            "Fri, 24 May 2013 0:00:00 GMT",
            "Fri, 24 May 2013 00:00:00 GMT extra",
            "20130524T000000Z",
        ] {
            assert_eq!(AmzDate::parse_http_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn system_time_in_milliseconds() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(1_500)), -1_500);
    }
}
