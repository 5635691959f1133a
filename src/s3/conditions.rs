//! Conditional requests: the preconditions of `GetObject` and `HeadObject`
//! (`If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`) and of `CopyObject` and `UploadPartCopy` (the same
//! four, prefixed `x-amz-copy-source-` and applied to the source object).
//!
//! # What it owns
//!
//! Reading the four header values, parsing them (entity-tag lists and
//! HTTP-dates), and the order in which they are evaluated against one
//! object's `ETag` and `Last-Modified` time. It is pure: the caller passes
//! the clock in, so every rule is covered by the table tests below.
//!
//! # What it does not own
//!
//! Finding the object: a missing object is `404 NoSuchKey` whatever the
//! conditions say, as in AWS, so the caller looks the object up first and
//! calls this only for an object that exists. Building the `304` response
//! (`get.rs`, which knows the object's headers). `Range`, which RFC 9110
//! evaluates after the preconditions (step 5 of §13.2.2).
//!
//! # Order of evaluation
//!
//! RFC 9110 §13.2.2, which AWS follows (its `GetObject` page spells out
//! the two interesting pairs):
//!
//! 1. `If-Match`, when present: false is `412 PreconditionFailed`.
//! 2. `If-Unmodified-Since`, only when `If-Match` is absent: false is
//!    `412`. So `If-Match` true with `If-Unmodified-Since` false serves the
//!    object (AWS: "S3 returns 200 OK and the data requested").
//! 3. `If-None-Match`, when present: false (a tag matches) is
//!    `304 Not Modified`.
//! 4. `If-Modified-Since`, only when `If-None-Match` is absent: false is
//!    `304`. So `If-None-Match` false with `If-Modified-Since` true is
//!    still `304` (AWS: "S3 returns 304 Not Modified").
//!
//! `CopyObject` and `UploadPartCopy` use the same order, but there is no
//! `304` for a copy: every failure is `412 PreconditionFailed` (AWS:
//! copy-source-if-none-match false with copy-source-if-modified-since true
//! is `412`; copy-source-if-match true with copy-source-if-unmodified-since
//! false copies). [`check_copy_source`] is that variant.
//!
//! The `<Condition>` element of the `412` names the header that failed, as
//! AWS writes it: `If-Match`, or `x-amz-copy-source-If-Match` for a copy.
//!
//! # Entity tags (RFC 9110 §8.8.3, §13.1.1, §13.1.2)
//!
//! A field is `*` or a comma-separated list of entity tags; a header sent
//! on several lines is one list. A tag may be quoted (`"abc"`, as the
//! SDKs send it) or not (`abc`, which AWS also accepts), and a comma inside
//! quotes does not split the list. `*` matches any object (every object we
//! evaluate exists). `If-Match` uses the strong comparison, so a weak tag
//! (`W/"abc"`) never satisfies it; `If-None-Match` uses the weak comparison,
//! so `W/"abc"` matches the object `"abc"`. S3's own tags are always strong.
//! An empty field (only whitespace and commas) carries no condition and is
//! treated as absent.
//!
//! # Dates (RFC 9110 §5.6.7, §13.1.3, §13.1.4)
//!
//! All three HTTP-date formats are read: IMF-fixdate
//! (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
//! (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
//! (`Sun Nov  6 08:49:37 1994`). The day name is checked to be a day
//! name but not against the date, as RFC 9110 asks recipients to be
//! robust. A value that is not a valid HTTP-date is ignored, as AWS and
//! the RFC do, and so is an `If-Modified-Since` later than the current
//! time (RFC 9110 §13.1.3). HTTP-dates have one-second resolution and
//! `Last-Modified` is sent truncated to the second, so the object's time
//! is truncated before comparing: an object modified at 08:49:37.900 is
//! not modified since `08:49:37 GMT`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::error::S3Error;
use crate::s3_error;

/// One of the four preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    IfMatch,
    IfNoneMatch,
    IfModifiedSince,
    IfUnmodifiedSince,
}

impl Condition {
    /// The request header of `GetObject` and `HeadObject`, as AWS writes it
    /// in `<Condition>`.
    #[must_use]
    pub fn header_name(self) -> &'static str {
        match self {
            Self::IfMatch => "If-Match",
            Self::IfNoneMatch => "If-None-Match",
            Self::IfModifiedSince => "If-Modified-Since",
            Self::IfUnmodifiedSince => "If-Unmodified-Since",
        }
    }

    /// The request header of `CopyObject` and `UploadPartCopy`, as AWS
    /// writes it in `<Condition>`.
    #[must_use]
    pub fn copy_source_header_name(self) -> &'static str {
        match self {
            Self::IfMatch => "x-amz-copy-source-If-Match",
            Self::IfNoneMatch => "x-amz-copy-source-If-None-Match",
            Self::IfModifiedSince => "x-amz-copy-source-If-Modified-Since",
            Self::IfUnmodifiedSince => "x-amz-copy-source-If-Unmodified-Since",
        }
    }
}

/// What the preconditions say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every condition present holds (or was ignored): serve the request.
    Proceed,
    /// `If-None-Match` or `If-Modified-Since` failed: `304 Not Modified`
    /// for a GET or HEAD (`412` for a copy).
    NotModified(Condition),
    /// `If-Match` or `If-Unmodified-Since` failed: `412`.
    PreconditionFailed(Condition),
}

/// The four precondition fields of one request, as sent. A field sent on
/// several header lines is one value, the lines joined with `", "` (RFC
/// 9110 §5.3), which keeps entity-tag lists whole and makes a date sent
/// twice invalid, hence ignored (§13.1.3, §13.1.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions<'a> {
    pub if_match: Option<Cow<'a, str>>,
    pub if_none_match: Option<Cow<'a, str>>,
    pub if_modified_since: Option<Cow<'a, str>>,
    pub if_unmodified_since: Option<Cow<'a, str>>,
}

impl<'a> Preconditions<'a> {
    /// The `If-*` headers of a `GetObject` or `HeadObject` request.
    #[must_use]
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        Self {
            if_match: field(headers, "if-match"),
            if_none_match: field(headers, "if-none-match"),
            if_modified_since: field(headers, "if-modified-since"),
            if_unmodified_since: field(headers, "if-unmodified-since"),
        }
    }

    /// The `x-amz-copy-source-if-*` headers of a `CopyObject` or
    /// `UploadPartCopy` request.
    #[must_use]
    pub fn from_copy_source_headers(headers: &'a HeaderMap) -> Self {
        Self {
            if_match: field(headers, "x-amz-copy-source-if-match"),
            if_none_match: field(headers, "x-amz-copy-source-if-none-match"),
            if_modified_since: field(headers, "x-amz-copy-source-if-modified-since"),
            if_unmodified_since: field(headers, "x-amz-copy-source-if-unmodified-since"),
        }
    }

    /// Evaluate the conditions against an existing object, in the order
    /// of the module doc.
    ///
    /// - `etag`: the object's `ETag` as sent in the `ETag` header
    ///   (`"<hex>"` or `"<hex>-<parts>"`); the surrounding quotes are
    ///   optional.
    /// - `last_modified`: the object's modification time, at any
    ///   precision; it is truncated to the second.
    /// - `now`: the current time, which decides whether an
    ///   `If-Modified-Since` lies in the future (and is ignored) and which
    ///   century an RFC 850 two-digit year belongs to.
    #[must_use]
    pub fn evaluate(&self, etag: &str, last_modified: SystemTime, now: SystemTime) -> Outcome {
        let etag = unquote(etag);
        let modified = unix_seconds(last_modified);
        let now = unix_seconds(now);
        if let Some(list) = present(self.if_match.as_deref()) {
            if !tag_members(list).any(|member| member.matches_strongly(etag)) {
                return Outcome::PreconditionFailed(Condition::IfMatch);
            }
        } else if let Some(date) =
            present(self.if_unmodified_since.as_deref()).and_then(|text| parse_http_date(text, now))
            && modified > date
        {
            return Outcome::PreconditionFailed(Condition::IfUnmodifiedSince);
        }
        if let Some(list) = present(self.if_none_match.as_deref()) {
            if tag_members(list).any(|member| member.matches_weakly(etag)) {
                return Outcome::NotModified(Condition::IfNoneMatch);
            }
        } else if let Some(date) =
            present(self.if_modified_since.as_deref()).and_then(|text| parse_http_date(text, now))
            && date <= now
            && modified <= date
        {
            return Outcome::NotModified(Condition::IfModifiedSince);
        }
        Outcome::Proceed
    }
}

/// The source-object check of `CopyObject` and `UploadPartCopy`: reads the
/// four `x-amz-copy-source-if-*` headers from `headers` and evaluates them
/// against the *source* object's `etag` (the `ETag` header value, quotes
/// optional) and `last_modified` time, with `now` the current time (see
/// [`Preconditions::evaluate`]).
///
/// Returns `Ok(())` when the copy may proceed, or the error to send: a
/// `412 PreconditionFailed` whose `<Condition>` names the failing header
/// (`x-amz-copy-source-If-Match`, ...). Every failure is a `412`, including
/// the ones that are a `304` for a GET, as AWS does for copies. Call it
/// after the source object was found (a missing source is `NoSuchKey`
/// whatever its conditions) and before any byte is copied.
pub fn check_copy_source(
    headers: &HeaderMap,
    etag: &str,
    last_modified: SystemTime,
    now: SystemTime,
) -> Result<(), S3Error> {
    match Preconditions::from_copy_source_headers(headers).evaluate(etag, last_modified, now) {
        Outcome::Proceed => Ok(()),
        Outcome::NotModified(condition) | Outcome::PreconditionFailed(condition) => {
            Err(precondition_failed(condition.copy_source_header_name()))
        }
    }
}

/// `412 PreconditionFailed` naming the failing header, as AWS sends it.
#[must_use]
pub fn precondition_failed(header: &str) -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
    .with_extra("Condition", header)
}

/// A header's value, several lines joined into one list.
fn field<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let mut joined = String::from_utf8_lossy(values.next()?.as_bytes());
    for value in values {
        let joined = joined.to_mut();
        joined.push_str(", ");
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(joined)
}

/// A field that carries something: not absent, not only whitespace and
/// commas (an empty list).
fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|text| {
        text.bytes()
            .any(|byte| !matches!(byte, b' ' | b'\t' | b','))
    })
}

fn unquote(tag: &str) -> &str {
    tag.strip_prefix('"')
        .and_then(|tag| tag.strip_suffix('"'))
        .unwrap_or(tag)
}

/// One member of an `If-Match` or `If-None-Match` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagMember<'a> {
    /// `*`: any current representation.
    Any,
    /// An entity tag, its opaque part without quotes.
    Tag { weak: bool, opaque: &'a str },
}

impl TagMember<'_> {
    /// The strong comparison (RFC 9110 §8.8.3.2) with the object's
    /// (strong) tag: a weak tag never matches.
    fn matches_strongly(self, etag: &str) -> bool {
        match self {
            TagMember::Any => true,
            TagMember::Tag { weak, opaque } => !weak && opaque == etag,
        }
    }

    /// The weak comparison: the opaque parts are equal, `W/` or not.
    fn matches_weakly(self, etag: &str) -> bool {
        match self {
            TagMember::Any => true,
            TagMember::Tag { opaque, .. } => opaque == etag,
        }
    }
}

/// The members of a list, split at the commas outside quotes; empty
/// members are skipped (RFC 9110 §5.6.1).
fn tag_members(list: &str) -> impl Iterator<Item = TagMember<'_>> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut quoted = false;
        let end = text.bytes().position(|byte| {
            if byte == b'"' {
                quoted = !quoted;
            }
            byte == b',' && !quoted
        });
        if let Some(end) = end {
            rest = Some(&text[end + 1..]);
            Some(&text[..end])
        } else {
            rest = None;
            Some(text)
        }
    })
    .map(|member| member.trim_matches([' ', '\t']))
    .filter(|member| !member.is_empty())
    .map(|member| {
        if member == "*" {
            return TagMember::Any;
        }
        let (weak, tag) = match member.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, member),
        };
        TagMember::Tag {
            weak,
            opaque: unquote(tag),
        }
    })
}

/// Whole seconds since the Unix epoch, rounded down (also before 1970).
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let seconds = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 {
                -seconds - 1
            } else {
                -seconds
            }
        }
    }
}

const DAY_NAMES: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const DAY_NAMES_LONG: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTH_NAMES: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const SECONDS_PER_DAY: i64 = 86_400;

/// Seconds since the Unix epoch of an HTTP-date in any of its three
/// formats (RFC 9110 §5.6.7), or `None` if `text` is not one. `now`, in
/// seconds since the epoch, places an RFC 850 two-digit year: the year
/// with those last two digits that is not more than 50 years in the future
/// (and not 50 or more in the past), as the RFC requires.
///
/// Names are case-sensitive and the layout is exact (`GMT`, single spaces,
/// two-digit fields), as the grammar says; only whitespace around the
/// value is allowed.
#[must_use]
pub fn parse_http_date(text: &str, now: i64) -> Option<i64> {
    let text = text.trim_matches([' ', '\t']).as_bytes();
    let comma = text.iter().position(|&byte| byte == b',');
    // (year, month 1-12, day, "HH:MM:SS")
    let (year, month, day, time) = match comma {
        // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
        Some(3) if DAY_NAMES.contains(&&text[..3]) => {
            let date = &text[4..];
            if date.len() != 25
                || date[0] != b' '
                || date[3] != b' '
                || date[7] != b' '
                || date[12] != b' '
                || &date[21..] != b" GMT"
            {
                return None;
            }
            (
                digits(&date[8..12])?,
                month(&date[4..7])?,
                digits(&date[1..3])?,
                &date[13..21],
            )
        }
        // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`.
        Some(name_len) if DAY_NAMES_LONG.contains(&&text[..name_len]) => {
            let date = &text[name_len + 1..];
            if date.len() != 23
                || date[0] != b' '
                || date[3] != b'-'
                || date[7] != b'-'
                || date[10] != b' '
                || &date[19..] != b" GMT"
            {
                return None;
            }
            (
                two_digit_year(digits(&date[8..10])?, now),
                month(&date[4..7])?,
                digits(&date[1..3])?,
                &date[11..19],
            )
        }
        Some(_) => return None,
        // asctime: `Sun Nov  6 08:49:37 1994`.
        None => {
            if text.len() != 24
                || !DAY_NAMES.contains(&&text[..3])
                || text[3] != b' '
                || text[7] != b' '
                || text[10] != b' '
                || text[19] != b' '
            {
                return None;
            }
            let day = if text[8] == b' ' {
                digits(&text[9..10])?
            } else {
                digits(&text[8..10])?
            };
            (
                digits(&text[20..24])?,
                month(&text[4..7])?,
                day,
                &text[11..19],
            )
        }
    };
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hour = digits(&time[0..2])?;
    let minute = digits(&time[3..5])?;
    // 60 is a leap second (RFC 5322 §3.3, which IMF-fixdate comes from).
    let second = digits(&time[6..8])?;
    if hour > 23 || minute > 59 || second > 60 || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)
}

/// A run of ASCII digits as a number (at most four here).
fn digits(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0, |value, digit| value * 10 + i64::from(digit - b'0')),
    )
}

/// A month name as its number, 1 to 12.
fn month(name: &[u8]) -> Option<i64> {
    let index = MONTH_NAMES.iter().position(|&month| month == name)?;
    Some(i64::try_from(index).expect("twelve months") + 1)
}

fn two_digit_year(last_two: i64, now: i64) -> i64 {
    let current = year_of_day(now.div_euclid(SECONDS_PER_DAY));
    let year = current - current.rem_euclid(100) + last_two;
    if year > current + 50 {
        year - 100
    } else if year <= current - 50 {
        year + 100
    } else {
        year
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, which counts in 400-year eras of 146,097 days).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year of a day counted from 1970-01-01 (the inverse of
/// [`days_from_civil`], year only).
fn year_of_day(days: i64) -> i64 {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Counted from March: the months after February belong to next year.
    let march_based_month = (5 * day_of_year + 2) / 153;
    year_of_era + era * 400 + i64::from(march_based_month >= 10)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;
    use crate::error::S3ErrorCode;

    /// The object the tables evaluate against: modified at
    /// Sun, 06 Nov 1994 08:49:37.500 GMT, evaluated an hour later.
    const ETAG: &str = "\"9bb58f26192e4ba00f01e2e7b136bbd8\"";
    const OPAQUE: &str = "9bb58f26192e4ba00f01e2e7b136bbd8";
    const MODIFIED_SECONDS: u64 = 784_111_777;
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";
    /// One second after `now`.
    const FUTURE: &str = "Sun, 06 Nov 1994 09:49:38 GMT";

    fn modified() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(MODIFIED_SECONDS * 1000 + 500)
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(MODIFIED_SECONDS + 3600)
    }

    /// (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since).
    type Row = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Outcome,
    );

    fn preconditions(row: &Row) -> Preconditions<'static> {
        Preconditions {
            if_match: row.0.map(Cow::Borrowed),
            if_none_match: row.1.map(Cow::Borrowed),
            if_modified_since: row.2.map(Cow::Borrowed),
            if_unmodified_since: row.3.map(Cow::Borrowed),
        }
    }

    /// The rows of [`get_conditions_follow_rfc_9110_and_aws`].
    #[rustfmt::skip]
    #[allow(clippy::too_many_lines, reason = "one table of every combination")]
    fn get_rows() -> Vec<Row> {
        use Condition::{IfMatch, IfModifiedSince, IfNoneMatch, IfUnmodifiedSince};
        use Outcome::{NotModified, PreconditionFailed, Proceed};
        const LIST: &str = "\"0000\", \"9bb58f26192e4ba00f01e2e7b136bbd8\"";
        const WEAK: &str = "W/\"9bb58f26192e4ba00f01e2e7b136bbd8\"";
        const OTHER: &str = "\"0000\"";
        vec![
            (None, None, None, None, Proceed),
            // If-Match: quoted, unquoted, `*`, lists, weak tags.
            (Some(ETAG), None, None, None, Proceed),
            (Some(OPAQUE), None, None, None, Proceed),
            (Some(" \"9bb58f26192e4ba00f01e2e7b136bbd8\"\t"), None, None, None, Proceed),
            (Some("*"), None, None, None, Proceed),
            (Some(LIST), None, None, None, Proceed),
            (Some("0000,9bb58f26192e4ba00f01e2e7b136bbd8"), None, None, None, Proceed),
            (Some("\"a,b\", \"9bb58f26192e4ba00f01e2e7b136bbd8\""), None, None, None, Proceed),
            (Some(OTHER), None, None, None, PreconditionFailed(IfMatch)),
            (Some("\"0000\", \"1111\""), None, None, None, PreconditionFailed(IfMatch)),
            (Some(WEAK), None, None, None, PreconditionFailed(IfMatch)),
            (Some("\"9BB58F26192E4BA00F01E2E7B136BBD8\""), None, None, None, PreconditionFailed(IfMatch)),
            (Some("\"9bb58f26192e4ba00f01e2e7b136bbd8,x\""), None, None, None, PreconditionFailed(IfMatch)),
            (Some("\"\""), None, None, None, PreconditionFailed(IfMatch)),
            // An empty list carries no condition.
            (Some(""), None, None, None, Proceed),
            (Some(" , ,"), None, None, Some(BEFORE), PreconditionFailed(IfUnmodifiedSince)),
            // If-Unmodified-Since: second granularity, bad dates ignored.
            (None, None, None, Some(AT), Proceed),
            (None, None, None, Some(AFTER), Proceed),
            (None, None, None, Some(FUTURE), Proceed),
            (None, None, None, Some(BEFORE), PreconditionFailed(IfUnmodifiedSince)),
            (None, None, None, Some("yesterday"), Proceed),
            (None, None, None, Some("1994-11-06T08:49:36Z"), Proceed),
            // If-Match replaces If-Unmodified-Since (AWS: true + false is 200).
            (Some(ETAG), None, None, Some(BEFORE), Proceed),
            (Some(OTHER), None, None, Some(AFTER), PreconditionFailed(IfMatch)),
            // If-None-Match: the weak comparison.
            (None, Some(ETAG), None, None, NotModified(IfNoneMatch)),
            (None, Some(OPAQUE), None, None, NotModified(IfNoneMatch)),
            (None, Some("*"), None, None, NotModified(IfNoneMatch)),
            (None, Some(LIST), None, None, NotModified(IfNoneMatch)),
            (None, Some(WEAK), None, None, NotModified(IfNoneMatch)),
            (None, Some(OTHER), None, None, Proceed),
            (None, Some("\"0000\", W/\"1111\""), None, None, Proceed),
            // If-Modified-Since: future and bad dates ignored.
            (None, None, Some(BEFORE), None, Proceed),
            (None, None, Some(AT), None, NotModified(IfModifiedSince)),
            (None, None, Some(AFTER), None, NotModified(IfModifiedSince)),
            (None, None, Some(FUTURE), None, Proceed),
            (None, None, Some("Sun, 06 Nov 1994 08:49:37 UTC"), None, Proceed),
            // If-None-Match replaces If-Modified-Since (AWS: false + true is 304).
            (None, Some(ETAG), Some(BEFORE), None, NotModified(IfNoneMatch)),
            (None, Some(OTHER), Some(AT), None, Proceed),
            // A 412 comes before a 304.
            (Some(OTHER), Some(ETAG), None, None, PreconditionFailed(IfMatch)),
            (None, None, Some(AT), Some(BEFORE), PreconditionFailed(IfUnmodifiedSince)),
            (Some(ETAG), Some(ETAG), None, None, NotModified(IfNoneMatch)),
            (Some(ETAG), Some(OTHER), Some(BEFORE), Some(AT), Proceed),
            (Some("*"), None, Some(AT), Some(BEFORE), NotModified(IfModifiedSince)),
        ]
    }

    #[test]
    fn get_conditions_follow_rfc_9110_and_aws() {
        for row in &get_rows() {
            let got = preconditions(row).evaluate(ETAG, modified(), now());
            assert_eq!(got, row.4, "{row:?}");
            // The ETag may also be given without its quotes.
            let got = preconditions(row).evaluate(OPAQUE, modified(), now());
            assert_eq!(got, row.4, "{row:?} against the unquoted ETag");
        }
    }

    #[test]
    fn multipart_etags_compare_whole() {
        let etag = "\"9bb58f26192e4ba00f01e2e7b136bbd8-3\"";
        let row: Row = (Some(OPAQUE), None, None, None, Outcome::Proceed);
        assert_eq!(
            preconditions(&row).evaluate(etag, modified(), now()),
            Outcome::PreconditionFailed(Condition::IfMatch)
        );
        let row: Row = (Some(etag), None, None, None, Outcome::Proceed);
        assert_eq!(
            preconditions(&row).evaluate(etag, modified(), now()),
            Outcome::Proceed
        );
    }

    #[test]
    fn fields_on_several_lines_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append("if-match", HeaderValue::from_static("\"0000\""));
        headers.append("if-match", HeaderValue::from_static(ETAG));
        // A date given twice is not a date: ignored.
        headers.append("if-modified-since", HeaderValue::from_static(AT));
        headers.append("if-modified-since", HeaderValue::from_static(AT));
        let conditions = Preconditions::from_headers(&headers);
        assert_eq!(
            conditions.if_match.as_deref(),
            Some("\"0000\", \"9bb58f26192e4ba00f01e2e7b136bbd8\"")
        );
        assert_eq!(
            conditions.evaluate(ETAG, modified(), now()),
            Outcome::Proceed
        );
        headers.insert("if-modified-since", HeaderValue::from_static(AT));
        assert_eq!(
            Preconditions::from_headers(&headers).evaluate(ETAG, modified(), now()),
            Outcome::NotModified(Condition::IfModifiedSince)
        );
    }

    /// Goal: the copy variant reads only the `x-amz-copy-source-if-*`
    /// headers, turns every failure into `412` and names the header.
    #[test]
    fn copy_source_conditions_are_all_412() {
        const IF_MATCH: &str = "x-amz-copy-source-if-match";
        const IF_NONE_MATCH: &str = "x-amz-copy-source-if-none-match";
        const IF_MODIFIED_SINCE: &str = "x-amz-copy-source-if-modified-since";
        const IF_UNMODIFIED_SINCE: &str = "x-amz-copy-source-if-unmodified-since";
        /// Header fields, and the `<Condition>` of the expected 412.
        type CopyRow = (
            &'static [(&'static str, &'static str)],
            Option<&'static str>,
        );
        #[rustfmt::skip]
        let rows: &[CopyRow] = &[
            (&[], None),
            // The GET headers do not apply to the source.
            (&[("if-match", "\"0000\""), ("if-none-match", ETAG)], None),
            (&[(IF_MATCH, ETAG)], None),
            (&[(IF_MATCH, "\"0000\"")], Some("x-amz-copy-source-If-Match")),
            (&[(IF_UNMODIFIED_SINCE, AT)], None),
            (&[(IF_UNMODIFIED_SINCE, BEFORE)], Some("x-amz-copy-source-If-Unmodified-Since")),
            // AWS: if-match true and if-unmodified-since false copies.
            (&[(IF_MATCH, ETAG), (IF_UNMODIFIED_SINCE, BEFORE)], None),
            (&[(IF_NONE_MATCH, "\"0000\"")], None),
            (&[(IF_NONE_MATCH, ETAG)], Some("x-amz-copy-source-If-None-Match")),
            (&[(IF_NONE_MATCH, "*")], Some("x-amz-copy-source-If-None-Match")),
            (&[(IF_MODIFIED_SINCE, BEFORE)], None),
            (&[(IF_MODIFIED_SINCE, AT)], Some("x-amz-copy-source-If-Modified-Since")),
            (&[(IF_MODIFIED_SINCE, FUTURE)], None),
            // AWS: if-none-match false and if-modified-since true is 412.
            (&[(IF_NONE_MATCH, ETAG), (IF_MODIFIED_SINCE, BEFORE)], Some("x-amz-copy-source-If-None-Match")),
            (&[(IF_NONE_MATCH, "\"0000\""), (IF_MODIFIED_SINCE, AT)], None),
            (&[(IF_MATCH, "\"0000\""), (IF_NONE_MATCH, ETAG)], Some("x-amz-copy-source-If-Match")),
        ];
        for (fields, expected) in rows {
            let mut headers = HeaderMap::new();
            for (name, value) in *fields {
                headers.append(*name, HeaderValue::from_str(value).unwrap());
            }
            let result = check_copy_source(&headers, ETAG, modified(), now());
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(condition)) => {
                    assert_eq!(error.code, S3ErrorCode::PreconditionFailed, "{fields:?}");
                    assert_eq!(error.code.status(), http::StatusCode::PRECONDITION_FAILED);
                    assert_eq!(
                        error.extra,
                        [("Condition", (*condition).to_owned())],
                        "{fields:?}"
                    );
                }
                (result, expected) => panic!("{fields:?}: {result:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn precondition_failed_golden() {
        let error = precondition_failed(Condition::IfMatch.header_name()).with_resource("/b/k");
        assert_eq!(
            error.to_xml("1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>\
             <Message>At least one of the pre-conditions you specified did not hold</Message>\
             <Condition>If-Match</Condition><Resource>/b/k</Resource>\
             <RequestId>1</RequestId></Error>"
        );
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let now = 1_767_225_600; // 2026-01-01
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun Nov 06 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",
            // The day name is not checked against the date.
            "Mon, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(text, now), Some(784_111_777), "{text:?}");
        }
        let valid = [
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Fri, 01 Jan 1960 00:00:00 GMT", -315_619_200),
            ("Thu, 29 Feb 1996 12:00:00 GMT", 825_595_200),
            ("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400),
            ("Sat, 31 Dec 2016 23:59:60 GMT", 1_483_228_800),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799),
            ("Thursday, 01-Jan-70 00:00:00 GMT", 3_155_760_000),
            ("Saturday, 01-Jan-77 00:00:00 GMT", 220_924_800),
        ];
        for (text, seconds) in valid {
            assert_eq!(parse_http_date(text, now), Some(seconds), "{text:?}");
        }
        for text in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Wed, 29 Feb 1995 08:49:37 GMT",
            "Mon, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sundae, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sün, 06 Nov 1994 08:49:37 GMT",
            "S\u{fc}n Nov  6 08:49:37 1994",
            "1994-11-06T08:49:37Z",
            "784111777",
            ",",
        ] {
            assert_eq!(parse_http_date(text, now), None, "{text:?}");
        }
    }

    #[test]
    fn rfc_850_years_are_at_most_50_years_ahead() {
        let in_2026 = 1_767_225_600;
        let in_2090 = 3_786_912_000;
        for (last_two, now, year) in [
            (94, in_2026, 1994),
            (26, in_2026, 2026),
            (0, in_2026, 2000),
            (76, in_2026, 2076),
            (77, in_2026, 1977),
            (99, in_2026, 1999),
            (40, in_2090, 2140),
            (41, in_2090, 2041),
            (5, in_2090, 2105),
            (95, in_2090, 2095),
        ] {
            assert_eq!(two_digit_year(last_two, now), year, "{last_two} at {now}");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for (year, month, day, days) in [
            (1970, 1, 1, 0),
            (1969, 12, 31, -1),
            (2000, 2, 29, 11_016),
            (2000, 3, 1, 11_017),
            (1999, 12, 31, 10_956),
            (2026, 1, 1, 20_454),
            (1600, 3, 1, -135_080),
        ] {
            assert_eq!(
                days_from_civil(year, month, day),
                days,
                "{year}-{month}-{day}"
            );
            assert_eq!(year_of_day(days), year, "{days}");
        }
        // Every day of a few centuries maps back to its own year.
        let mut days = days_from_civil(1899, 1, 1);
        for year in 1899..2101 {
            let length = if is_leap_year(year) { 366 } else { 365 };
            assert_eq!(year_of_day(days), year);
            assert_eq!(year_of_day(days + length - 1), year);
            days += length;
        }
    }

    #[test]
    fn object_times_truncate_to_the_second() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1999)), 1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(1)), -1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(2)), -2);
    }
}
