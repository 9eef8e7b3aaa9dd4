//! Xero's date formats.
//!
//! The Accounting API writes instants in the old ASP.NET form
//! `/Date(1439434356790)/` or `/Date(1419937200000+1300)/`: milliseconds since
//! the Unix epoch (negative before 1970), optionally followed by the
//! organisation's UTC offset as `±HHMM`. The milliseconds are the instant; the
//! offset only says which local clock to show it on, so
//! `/Date(1419937200000+1300)/` is 2014-12-30T11:00:00Z, i.e. midnight on
//! 31 December in New Zealand. `*String` fields, the Identity API and
//! webhooks use ISO-8601 without an offset (`2009-05-27T00:00:00`,
//! `2019-12-07T18:46:19.5165400`), which are UTC.
//!
//! `If-Modified-Since` wants UTC `yyyy-MM-ddTHH:mm:ss`:
//! [`format_if_modified_since`].

use serde::{Deserialize, Deserializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A value that is not a date Xero would send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Xero date: {input:?} ({reason})")]
pub struct DateError {
    input: String,
    reason: &'static str,
}

impl DateError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Dates are not secrets, but keep error messages bounded.
        let input: String = input.chars().take(64).collect();
        Self { input, reason }
    }
}

/// Parses `/Date(ms)/` or `/Date(ms±HHMM)/`. The result is the instant,
/// shown at the given offset (UTC when there is none).
pub fn parse_ms_date(input: &str) -> Result<OffsetDateTime, DateError> {
    let s = input.trim();
    let inner = s
        .strip_prefix("/Date(")
        .and_then(|rest| rest.strip_suffix(")/"))
        .ok_or_else(|| DateError::new(input, "expected /Date(...)/"))?;
    // The first character may be the sign of the milliseconds; an offset
    // sign can only come after at least one digit.
    let split = inner
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i);
    let (ms_part, offset_part) = match split {
        Some(i) => (&inner[..i], Some(&inner[i..])),
        None => (inner, None),
    };
    let ms: i64 = ms_part
        .parse()
        .map_err(|_| DateError::new(input, "milliseconds are not an integer"))?;
    let instant = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| DateError::new(input, "milliseconds out of range"))?;
    let offset = match offset_part {
        None => UtcOffset::UTC,
        Some(off) => parse_hhmm_offset(off).ok_or_else(|| DateError::new(input, "bad offset"))?,
    };
    Ok(instant.to_offset(offset))
}

fn parse_hhmm_offset(s: &str) -> Option<UtcOffset> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1i8, &s[1..]),
        b'-' => (-1i8, &s[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    if minutes >= 60 {
        return None;
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// Parses the ISO-8601 forms Xero uses: `2009-05-27T00:00:00` with optional
/// fraction (taken as UTC), the same with `Z` or `±HH:MM`, or a bare date.
pub fn parse_iso(input: &str) -> Result<OffsetDateTime, DateError> {
    let s = input.trim();
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(dt);
    }
    let naive = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(dt) = PrimitiveDateTime::parse(s, naive) {
        return Ok(dt.assume_utc());
    }
    let minutes_only = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(dt) = PrimitiveDateTime::parse(s, minutes_only) {
        return Ok(dt.assume_utc());
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    Err(DateError::new(input, "expected ISO-8601 date-time"))
}

/// Parses any date form Xero sends: `/Date(…)/` or ISO-8601.
pub fn parse(input: &str) -> Result<OffsetDateTime, DateError> {
    if input.trim_start().starts_with("/Date(") {
        parse_ms_date(input)
    } else {
        parse_iso(input)
    }
}

/// Formats an instant the way Xero writes it: `/Date(ms+HHMM)/` at the
/// instant's own offset.
pub fn to_ms_date(dt: OffsetDateTime) -> String {
    let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
    let off = dt.offset();
    let total_minutes = off.whole_minutes();
    let sign = if total_minutes < 0 { '-' } else { '+' };
    let abs = total_minutes.unsigned_abs();
    format!("/Date({ms}{sign}{:02}{:02})/", abs / 60, abs % 60)
}

/// The value of an `If-Modified-Since` header: UTC `yyyy-MM-ddTHH:mm:ss`.
pub fn format_if_modified_since(dt: OffsetDateTime) -> String {
    let utc = dt.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// Serde helper: `#[serde(deserialize_with = "xero::dates::deserialize")]`
/// for a field holding any Xero date form.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Serde helper for an optional date field (absent, null or empty is `None`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn plain_milliseconds_are_utc() {
        // DateTimeUTC of the Accounts example in xero_accounting.yaml.
        let dt = parse_ms_date("/Date(1550793549392)/").unwrap();
        assert_eq!(dt, datetime!(2019-02-21 23:59:09.392 UTC));
        assert_eq!(dt.offset(), UtcOffset::UTC);
        // The README's example.
        assert_eq!(
            parse_ms_date("/Date(1439434356790)/").unwrap(),
            datetime!(2015-08-13 02:52:36.790 UTC)
        );
    }

    #[test]
    fn zero_offset_examples_from_the_spec() {
        // UpdatedDateUTC and Date from the spec's examples.
        assert_eq!(
            parse("/Date(1550793549320+0000)/").unwrap(),
            datetime!(2019-02-21 23:59:09.320 UTC)
        );
        // An invoice Date alongside DateString 2017-11-28T00:00:00.
        let date = parse("/Date(1511827200000+0000)/").unwrap();
        let date_string = parse("2017-11-28T00:00:00").unwrap();
        assert_eq!(date, date_string);
        // Journal example: JournalDate and CreatedDateUTC.
        assert_eq!(
            parse("/Date(1539993600000+0000)/").unwrap(),
            datetime!(2018-10-20 00:00 UTC)
        );
        assert_eq!(
            parse("/Date(1573755038314)/").unwrap(),
            datetime!(2019-11-14 18:10:38.314 UTC)
        );
    }

    #[test]
    fn every_ms_date_in_the_spec_parses() {
        let spec = crate::test_support::accounting_spec();
        let spec = spec.as_str();
        let mut n = 0;
        for (i, _) in spec.match_indices("/Date(") {
            let end = spec[i..].find(")/").map(|e| i + e + 2).unwrap();
            let s = &spec[i..end];
            assert!(parse_ms_date(s).is_ok(), "{s}");
            n += 1;
        }
        assert!(n > 400, "found only {n} examples");
    }

    #[test]
    fn positive_offset_keeps_instant_and_shows_local_time() {
        let dt = parse_ms_date("/Date(1419937200000+1300)/").unwrap();
        assert_eq!(dt, datetime!(2014-12-30 11:00 UTC));
        assert_eq!(dt.offset(), offset!(+13:00));
        assert_eq!(dt.date(), time::macros::date!(2014 - 12 - 31));
        assert_eq!(dt.hour(), 0);
    }

    #[test]
    fn negative_values_and_negative_offsets() {
        let dt = parse_ms_date("/Date(-631152000000+0000)/").unwrap();
        assert_eq!(dt, datetime!(1950-01-01 00:00 UTC));
        let dt = parse_ms_date("/Date(-1)/").unwrap();
        assert_eq!(dt, datetime!(1969-12-31 23:59:59.999 UTC));
        let dt = parse_ms_date("/Date(1419937200000-0530)/").unwrap();
        assert_eq!(dt, datetime!(2014-12-30 11:00 UTC));
        assert_eq!(dt.offset(), offset!(-05:30));
    }

    #[test]
    fn malformed_ms_dates_are_errors() {
        for bad in [
            "/Date()/",
            "/Date(abc)/",
            "/Date(123+13)/",
            "/Date(123+1370)/",
            "Date(123)",
            "/Date(123)",
            "/Date(99999999999999999999)/",
            "/Date(--5)/",
        ] {
            assert!(parse_ms_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iso_forms() {
        assert_eq!(
            parse("2009-05-27T00:00:00").unwrap(),
            datetime!(2009-05-27 00:00 UTC)
        );
        // Identity API connection example (7 fractional digits).
        assert_eq!(
            parse("2019-12-07T18:46:19.5165400").unwrap(),
            datetime!(2019-12-07 18:46:19.51654 UTC)
        );
        // Webhook eventDateUtc example.
        assert_eq!(
            parse("2024-06-21T01:15:39.902").unwrap(),
            datetime!(2024-06-21 01:15:39.902 UTC)
        );
        // The If-Modified-Since example in the spec, with an offset.
        assert_eq!(
            parse("2020-02-06T12:17:43.202-08:00").unwrap(),
            datetime!(2020-02-06 20:17:43.202 UTC)
        );
        assert_eq!(
            parse("2016-11-12T21:10:00Z").unwrap(),
            datetime!(2016-11-12 21:10 UTC)
        );
        assert_eq!(
            parse("2019-03-05").unwrap(),
            datetime!(2019-03-05 00:00 UTC)
        );
        assert!(parse("yesterday").is_err());
        assert!(parse("2019-13-05T00:00:00").is_err());
    }

    #[test]
    fn ms_date_round_trip() {
        for s in [
            "/Date(1419937200000+1300)/",
            "/Date(-631152000000+0000)/",
            "/Date(1419937200000-0530)/",
        ] {
            assert_eq!(to_ms_date(parse(s).unwrap()), s);
        }
        assert_eq!(
            to_ms_date(datetime!(1969-12-31 23:59:59.999 UTC)),
            "/Date(-1+0000)/"
        );
    }

    #[test]
    fn if_modified_since_is_utc_without_fraction() {
        let dt = datetime!(2020-02-06 12:17:43.202 -08:00);
        assert_eq!(format_if_modified_since(dt), "2020-02-06T20:17:43");
        let dt = parse_ms_date("/Date(1419937200000+1300)/").unwrap();
        assert_eq!(format_if_modified_since(dt), "2014-12-30T11:00:00");
    }

    #[test]
    fn serde_helpers() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize")]
            a: OffsetDateTime,
            #[serde(default, deserialize_with = "deserialize_option")]
            b: Option<OffsetDateTime>,
            #[serde(default, deserialize_with = "deserialize_option")]
            c: Option<OffsetDateTime>,
        }
        let t: T =
            serde_json::from_str(r#"{"a":"/Date(0+0000)/","b":"2009-05-27T00:00:00"}"#).unwrap();
        assert_eq!(t.a, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(t.b, Some(datetime!(2009-05-27 00:00 UTC)));
        assert_eq!(t.c, None);
        assert!(serde_json::from_str::<T>(r#"{"a":"nope"}"#).is_err());
    }
}
