//! Time phrases into periods, against an as-of date.
//!
//! Periods are calendar months, quarters and years (or financial years, when
//! the question says so), both ends inclusive and never past the as-of date:
//! "this quarter" ends on the as-of date, "last quarter" is the whole quarter
//! before. "last N days" is the N days ending on the as-of date; "last N
//! months" the N calendar months ending with the as-of date's month.

use std::sync::OnceLock;

use regex::Regex;
use time::{Date, Duration, Month};

use crate::plan::{Comparison, Period};

/// A time phrase found in a question: the period and the text it spanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub start: usize,
    pub end: usize,
}

/// Why a phrase names no usable period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{0} is after the as-of date {1}")]
    InTheFuture(String, String),
    #[error("{0} is not a date")]
    BadDate(String),
    /// Its dates fall outside the calendar the warehouses hold (or `time` can count).
    #[error("the period {0} is out of range")]
    OutOfRange(String),
    #[error("the period starts on {0}, after it ends on {1}")]
    Reversed(String, String),
    #[error("the period ends on {0}, after the as-of date {1}")]
    EndsAfterAsOf(String, String),
}

const MONTHS: [(&str, Month); 12] = [
    ("jan", Month::January),
    ("feb", Month::February),
    ("mar", Month::March),
    ("apr", Month::April),
    ("may", Month::May),
    ("jun", Month::June),
    ("jul", Month::July),
    ("aug", Month::August),
    ("sep", Month::September),
    ("oct", Month::October),
    ("nov", Month::November),
    ("dec", Month::December),
];

const MONTH_WORD: &str = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)";

fn month_of(word: &str) -> Option<Month> {
    let w = word.get(..3)?;
    MONTHS.iter().find(|(k, _)| *k == w).map(|(_, m)| *m)
}

fn first_of_month(year: i32, month: Month) -> Option<Date> {
    Date::from_calendar_date(year, month, 1).ok()
}

fn last_of_month(year: i32, month: Month) -> Option<Date> {
    let next = if month == Month::December {
        first_of_month(year.checked_add(1)?, Month::January)?
    } else {
        first_of_month(year, month.next())?
    };
    next.previous_day()
}

/// The first of the month `n` months before `day`'s month (after it, for a negative `n`).
pub(crate) fn months_before(day: Date, n: i32) -> Option<Date> {
    let index = day
        .year()
        .checked_mul(12)?
        .checked_add(i32::from(u8::from(day.month())) - 1)?
        .checked_sub(n)?;
    let year = index.div_euclid(12);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    first_of_month(year, month)
}

fn quarter_start(day: Date) -> Option<Date> {
    let m = u8::from(day.month());
    let q_first = ((m - 1) / 3) * 3 + 1;
    first_of_month(day.year(), Month::try_from(q_first).ok()?)
}

/// The first day of the financial year `day` falls in; `fy_start` is its first month.
fn financial_year_start(day: Date, fy_start: Month) -> Option<Date> {
    let start_this_year = first_of_month(day.year(), fy_start)?;
    if day >= start_this_year {
        Some(start_this_year)
    } else {
        first_of_month(day.year().checked_sub(1)?, fy_start)
    }
}

/// Whether `day` is one both warehouses' DATE holds (BigQuery's runs from
/// year 1 to 9999), so it can be written into the SQL.
fn in_calendar(day: Date) -> bool {
    (1..=9999).contains(&day.year())
}

/// A period a plan may name as of `as_of`: in the calendar, starting no later
/// than it ends, and ending no later than the as-of date. The offline planner
/// only makes such periods; an LLM's plan or a stored one is checked here
/// before its dates are counted with.
pub fn check_period(period: &Period, as_of: Date) -> Result<(), PeriodError> {
    let (start, end) = (
        crate::plan::iso_date::format(period.start),
        crate::plan::iso_date::format(period.end),
    );
    if !in_calendar(period.start) || !in_calendar(period.end) {
        return Err(PeriodError::OutOfRange(format!("{start} to {end}")));
    }
    if period.start > period.end {
        return Err(PeriodError::Reversed(start, end));
    }
    if period.end > as_of {
        return Err(PeriodError::EndsAfterAsOf(
            end,
            crate::plan::iso_date::format(as_of),
        ));
    }
    Ok(())
}

/// The period a phrase resolved to; `None` from its date arithmetic is a
/// period outside the calendar, not a phrase that was not there.
fn in_range(
    label: &str,
    value: Option<Result<Period, PeriodError>>,
) -> Result<Period, PeriodError> {
    value.unwrap_or_else(|| Err(PeriodError::OutOfRange(label.to_owned())))
}

fn period(start: Date, end: Date, as_of: Date, label: &str) -> Result<Period, PeriodError> {
    if !in_calendar(start) || !in_calendar(end.min(as_of)) {
        return Err(PeriodError::OutOfRange(label.to_owned()));
    }
    if start > as_of {
        return Err(PeriodError::InTheFuture(
            label.to_owned(),
            crate::plan::iso_date::format(as_of),
        ));
    }
    Ok(Period {
        start,
        end: end.min(as_of),
        label: label.to_owned(),
    })
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        Regex::new(pattern).unwrap_or_else(|e| panic!("bad pattern {pattern}: {e}"))
    })
}

/// Parses a date written as `2026-03-31`, `31 March 2026`, `March 31, 2026` or `31/03/2026`.
pub fn parse_date(text: &str) -> Option<Date> {
    static ISO: OnceLock<Regex> = OnceLock::new();
    static DMY: OnceLock<Regex> = OnceLock::new();
    static MDY: OnceLock<Regex> = OnceLock::new();
    static SLASH: OnceLock<Regex> = OnceLock::new();
    let t = text.trim();
    if let Some(c) = re(&ISO, r"^(\d{4})-(\d{1,2})-(\d{1,2})$").captures(t) {
        return ymd(&c[1], &c[2], &c[3]);
    }
    if let Some(c) = re(
        &DMY,
        &format!(r"^(\d{{1,2}})(?:st|nd|rd|th)?\s+{MONTH_WORD}\s+(\d{{4}})$"),
    )
    .captures(t)
    {
        let m = u8::from(month_of(&c[2])?);
        return ymd(&c[3], &m.to_string(), &c[1]);
    }
    if let Some(c) = re(
        &MDY,
        &format!(r"^{MONTH_WORD}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})$"),
    )
    .captures(t)
    {
        let m = u8::from(month_of(&c[1])?);
        return ymd(&c[3], &m.to_string(), &c[2]);
    }
    if let Some(c) = re(&SLASH, r"^(\d{1,2})/(\d{1,2})/(\d{4})$").captures(t) {
        return ymd(&c[3], &c[2], &c[1]);
    }
    None
}

fn ymd(y: &str, m: &str, d: &str) -> Option<Date> {
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

const DATE_TEXT: &str = r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{4}|\d{1,2}(?:st|nd|rd|th)?\s+(?:january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\s+\d{4}|(?:january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})";

/// A count written as digits or as a word ("three", "twenty").
pub(crate) fn number_word(word: &str) -> Option<i64> {
    let n = match word {
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "twenty" => 20,
        other => other.parse().ok()?,
    };
    Some(n)
}

/// Finds the first time phrase in `text` (lower case) and resolves it.
/// `fy_start` is the first month of the organisation's financial year.
pub fn find_period(
    text: &str,
    as_of: Date,
    fy_start: Month,
) -> Option<Found<Result<Period, PeriodError>>> {
    static BETWEEN: OnceLock<Regex> = OnceLock::new();
    static SINCE_DATE: OnceLock<Regex> = OnceLock::new();
    static SINCE_MONTH: OnceLock<Regex> = OnceLock::new();
    static LAST_N: OnceLock<Regex> = OnceLock::new();
    static RELATIVE: OnceLock<Regex> = OnceLock::new();
    static FY_NAMED: OnceLock<Regex> = OnceLock::new();
    static QUARTER_NAMED: OnceLock<Regex> = OnceLock::new();
    static MONTH_NAMED: OnceLock<Regex> = OnceLock::new();
    static YEAR_NAMED: OnceLock<Regex> = OnceLock::new();
    static TODAY: OnceLock<Regex> = OnceLock::new();
    static FUTURE: OnceLock<Regex> = OnceLock::new();
    static YEAR_ENDING: OnceLock<Regex> = OnceLock::new();
    static MONTH_RANGE: OnceLock<Regex> = OnceLock::new();

    let found = |m: regex::Match<'_>, value: Result<Period, PeriodError>| {
        Some(Found {
            value,
            start: m.start(),
            end: m.end(),
        })
    };
    let bad = |t: &str| Err(PeriodError::BadDate(t.to_owned()));

    // The future: nothing is booked there yet.
    if let Some(m) = re(
        &FUTURE,
        r"\b(?:next|coming|upcoming)\s+(?:\d+\s+)?(?:days?|weeks?|months?|quarters?|years?|financial\s+year|fiscal\s+year)\b|\btomorrow\b",
    )
    .find(text)
    {
        return found(
            m,
            Err(PeriodError::InTheFuture(
                m.as_str().to_owned(),
                crate::plan::iso_date::format(as_of),
            )),
        );
    }
    // "the year ending 31 March 2026": the twelve months to that day.
    if let Some(c) = re(
        &YEAR_ENDING,
        &format!(
            r"\b(?:the\s+)?(?:financial\s+|fiscal\s+)?year\s+(?:ending|ended|to)\s+{DATE_TEXT}"
        ),
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let value = match parse_date(&c[1]) {
            Some(end) => in_range(
                &label,
                (|| {
                    let start = months_before(first_of_month(end.year(), end.month())?, 11)?;
                    // A year ending mid-month starts the day after a year before.
                    let start = if end.next_day().is_some_and(|d| d.day() == 1) {
                        start
                    } else {
                        shift_years(end, -1)?.next_day()?
                    };
                    Some(period(start, end, as_of, &label))
                })(),
            ),
            None => bad(&c[1]),
        };
        return found(whole, value);
    }
    // From one month to another: "from January to February 2026".
    if let Some(c) = re(
        &MONTH_RANGE,
        &format!(r"\b(?:from|between)\s+{MONTH_WORD}(?:\s+(\d{{4}}))?\s+(?:to|and|until|till|through|-)\s+{MONTH_WORD}(?:\s+(\d{{4}}))?\b"),
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let (first, last) = (month_of(&c[1])?, month_of(&c[3])?);
        let value = in_range(&label, (|| {
            // A year given once applies to both ends; none: the latest such
            // range not after the as-of date.
            let end_year: i32 = match (c.get(4), c.get(2)) {
                (Some(y), _) | (None, Some(y)) => y.as_str().parse().ok()?,
                (None, None) if first_of_month(as_of.year(), last)? <= as_of => as_of.year(),
                (None, None) => as_of.year().checked_sub(1)?,
            };
            let start_year = match c.get(2) {
                Some(y) => y.as_str().parse().ok()?,
                None if u8::from(first) > u8::from(last) => end_year.checked_sub(1)?,
                None => end_year,
            };
            let start = first_of_month(start_year, first)?;
            let end = last_of_month(end_year, last)?;
            Some(if start <= end {
                period(start, end, as_of, &label)
            } else {
                bad(&label)
            })
        })());
        return found(whole, value);
    }
    // Between two dates.
    let between = re(
        &BETWEEN,
        &format!(r"\b(?:between|from)\s+{DATE_TEXT}\s+(?:and|to|until|till|-)\s+{DATE_TEXT}"),
    );
    if let Some(c) = between.captures(text) {
        let whole = c.get(0)?;
        let (a, b) = (parse_date(&c[1]), parse_date(&c[2]));
        let label = whole.as_str().trim().to_owned();
        let value = match (a, b) {
            (Some(a), Some(b)) if a <= b => period(a, b, as_of, &label),
            (Some(_), Some(_)) => bad(&label),
            (None, _) => bad(&c[1]),
            (_, None) => bad(&c[2]),
        };
        return found(whole, value);
    }
    // Since a date, or since a month.
    if let Some(c) = re(&SINCE_DATE, &format!(r"\b(?:since|from)\s+{DATE_TEXT}")).captures(text) {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let value = match parse_date(&c[1]) {
            Some(a) => period(a, as_of, as_of, &label),
            None => bad(&c[1]),
        };
        return found(whole, value);
    }
    if let Some(c) = re(
        &SINCE_MONTH,
        &format!(r"\b(?:since|from)\s+(?:the\s+(?:start|beginning)\s+of\s+)?{MONTH_WORD}(?:\s+(\d{{4}}))?\b"),
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let month = month_of(&c[1])?;
        let value = in_range(&label, (|| {
            let start = match c.get(2) {
                Some(y) => first_of_month(y.as_str().parse().ok()?, month)?,
                None => {
                    let this_year = first_of_month(as_of.year(), month)?;
                    if this_year <= as_of {
                        this_year
                    } else {
                        first_of_month(as_of.year().checked_sub(1)?, month)?
                    }
                }
            };
            Some(period(start, as_of, as_of, &label))
        })());
        return found(whole, value);
    }
    // Last / past N days, weeks, months, quarters, years.
    if let Some(c) = re(
        &LAST_N,
        r"\b(?:last|past|previous|trailing|over the last|in the last)\s+(\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+(days?|weeks?|months?|quarters?|years?)\b",
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let n = number_word(&c[1])?.clamp(1, 3650);
        let value = in_range(&label, (|| {
            let start = match &c[2] {
                u if u.starts_with("day") => as_of.checked_sub(Duration::days(n - 1))?,
                u if u.starts_with("week") => as_of.checked_sub(Duration::days(7 * n - 1))?,
                u if u.starts_with("month") => months_before(as_of, i32::try_from(n - 1).ok()?)?,
                u if u.starts_with("quarter") => {
                    months_before(quarter_start(as_of)?, i32::try_from(3 * (n - 1)).ok()?)?
                }
                _ => first_of_month(
                    as_of.year().checked_sub(i32::try_from(n - 1).ok()?)?,
                    Month::January,
                )?,
            };
            Some(period(start, as_of, as_of, &label))
        })());
        return found(whole, value);
    }
    // Financial years: "this/last financial year", "financial year to date", "FY2025".
    if let Some(c) = re(
        &FY_NAMED,
        r"\b(?:(this|current|last|previous|prior)\s+(?:financial|fiscal)\s+year|(?:financial|fiscal)\s+year\s+to\s+date|fytd|(?:fy|financial year|fiscal year)\s*'?(\d{4}|\d{2})\b)",
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let value = in_range(&label, (|| {
            let this_start = financial_year_start(as_of, fy_start)?;
            Some(match (c.get(1).map(|m| m.as_str()), c.get(2)) {
                (Some("last" | "previous" | "prior"), _) => {
                    let start = months_before(this_start, 12)?;
                    period(start, this_start.previous_day()?, as_of, &label)
                }
                (_, Some(year)) => {
                    // Named by the calendar year it ends in.
                    let y: i32 = year.as_str().parse().ok()?;
                    let ends_in = if y < 100 { 2000 + y } else { y };
                    let end_start = months_before(first_of_month(ends_in, fy_start)?, 0)?;
                    let start = if fy_start == Month::January {
                        first_of_month(ends_in, Month::January)?
                    } else {
                        months_before(end_start, 12)?
                    };
                    let end = months_before(start, -12)?.previous_day()?;
                    period(start, end, as_of, &label)
                }
                _ => period(this_start, as_of, as_of, &label),
            })
        })());
        return found(whole, value);
    }
    // Relative calendar periods.
    if let Some(c) = re(
        &RELATIVE,
        r"\b(?:(this|current|last|previous|prior)\s+(month|quarter|year)|(month|quarter|year)\s+to\s+date|(mtd|qtd|ytd))\b",
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let (which, unit) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(w), Some(u), _, _) => (w.as_str(), u.as_str()),
            (_, _, Some(u), _) => ("this", u.as_str()),
            (_, _, _, Some(short)) => (
                "this",
                match short.as_str() {
                    "mtd" => "month",
                    "qtd" => "quarter",
                    _ => "year",
                },
            ),
            _ => return None,
        };
        let months = match unit {
            "month" => 1,
            "quarter" => 3,
            _ => 12,
        };
        let value = in_range(&label, (|| {
            let this_start = match unit {
                "month" => first_of_month(as_of.year(), as_of.month())?,
                "quarter" => quarter_start(as_of)?,
                _ => first_of_month(as_of.year(), Month::January)?,
            };
            Some(if matches!(which, "this" | "current") {
                period(this_start, as_of, as_of, &label)
            } else {
                let start = months_before(this_start, months)?;
                period(start, this_start.previous_day()?, as_of, &label)
            })
        })());
        return found(whole, value);
    }
    // A named quarter: "Q3", "Q3 2025", "the third quarter of 2025".
    if let Some(c) = re(
        &QUARTER_NAMED,
        r"\b(?:q([1-4])|(first|second|third|fourth)\s+quarter)(?:\s+(?:of\s+)?(\d{4}))?\b",
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let q: u8 = match (c.get(1), c.get(2).map(|m| m.as_str())) {
            (Some(d), _) => d.as_str().parse().ok()?,
            (_, Some("first")) => 1,
            (_, Some("second")) => 2,
            (_, Some("third")) => 3,
            _ => 4,
        };
        let first_month = Month::try_from((q - 1) * 3 + 1).ok()?;
        let value = in_range(
            &label,
            (|| {
                let year = match c.get(3) {
                    Some(y) => y.as_str().parse().ok()?,
                    None if first_of_month(as_of.year(), first_month)? <= as_of => as_of.year(),
                    None => as_of.year().checked_sub(1)?,
                };
                let start = first_of_month(year, first_month)?;
                let end = months_before(start, -3)?.previous_day()?;
                Some(period(start, end, as_of, &label))
            })(),
        );
        return found(whole, value);
    }
    // A named month: "in March", "March 2025".
    if let Some(c) = re(
        &MONTH_NAMED,
        &format!(r"\b(?:(in|for|during|of|on)\s+)?{MONTH_WORD}(?:\s+(\d{{4}}))?\b"),
    )
    .captures(text)
    {
        let whole = c.get(0)?;
        let word = &c[2];
        // "may" alone is too often the verb; it needs a year or a preposition.
        if word != "may" || c.get(1).is_some() || c.get(3).is_some() {
            let label = whole.as_str().trim().to_owned();
            let month = month_of(word)?;
            let value = in_range(
                &label,
                (|| {
                    let year = match c.get(3) {
                        Some(y) => y.as_str().parse().ok()?,
                        None if first_of_month(as_of.year(), month)? <= as_of => as_of.year(),
                        None => as_of.year().checked_sub(1)?,
                    };
                    let start = first_of_month(year, month)?;
                    let end = last_of_month(year, month)?;
                    Some(period(start, end, as_of, &label))
                })(),
            );
            return found(whole, value);
        }
    }
    // A named year: "in 2025".
    if let Some(c) = re(&YEAR_NAMED, r"\b(?:in|for|during|of)?\s*((?:19|20)\d{2})\b").captures(text)
    {
        let whole = c.get(0)?;
        let label = whole.as_str().trim().to_owned();
        let year: i32 = c[1].parse().ok()?;
        let value = in_range(
            &label,
            (|| {
                let start = first_of_month(year, Month::January)?;
                let end = last_of_month(year, Month::December)?;
                Some(period(start, end, as_of, &label))
            })(),
        );
        return found(whole, value);
    }
    if let Some(m) = re(&TODAY, r"\b(today|yesterday)\b").find(text) {
        let day = if m.as_str() == "today" {
            Some(as_of)
        } else {
            as_of.previous_day()
        };
        let value = in_range(m.as_str(), day.map(|d| period(d, d, as_of, m.as_str())));
        return found(m, value);
    }
    None
}

/// Finds a comparison phrase ("vs last year", "year over year", "compared with the previous quarter").
pub fn find_comparison(text: &str) -> Option<Found<Comparison>> {
    static COMPARE: OnceLock<Regex> = OnceLock::new();
    static WITH: OnceLock<Regex> = OnceLock::new();
    // "compare this quarter's sales with last quarter": only the "with …"
    // part is the comparison; the rest names the metric and the period.
    if text.contains("compar") {
        let with = re(
            &WITH,
            r"\b(?:with|to|and|against)\s+(?:the\s+)?(?:last|previous|prior|preceding)\s+(month|quarter|period|year)\b",
        );
        if let Some(c) = with.captures(text) {
            let whole = c.get(0)?;
            let value = if &c[1] == "year" {
                Comparison::PreviousYear
            } else {
                Comparison::PreviousPeriod
            };
            return Some(Found {
                value,
                start: whole.start(),
                end: whole.end(),
            });
        }
    }
    let c = re(
        &COMPARE,
        r"\b(?:(?:compared\s+(?:to|with)|versus|vs\.?|against)\s+(?:the\s+)?(?:same\s+(?:period|time|month|quarter)\s+)?(last|previous|prior|preceding|a)\s+(?:\d{1,4}\s+)?(years?|periods?|months?|quarters?|days?|weeks?)(?:\s+ago|\s+before)?|(year\s+over\s+year|yoy|y/y|year\s+on\s+year)|(month\s+over\s+month|mom|quarter\s+over\s+quarter|qoq|period\s+over\s+period|(?:compared\s+(?:to|with)|versus|vs\.?|against)\s+the\s+(?:month|quarter|year|period|week|days?)\s+before))\b",
    )
    .captures(text)?;
    let whole = c.get(0)?;
    let value = if c.get(3).is_some() {
        Comparison::PreviousYear
    } else if c.get(4).is_some() {
        Comparison::PreviousPeriod
    } else {
        // "vs last year" is the same period a year earlier; "vs the previous
        // 30 days", "vs last month" the period just before.
        match c.get(2).map(|m| m.as_str()) {
            Some("year") => Comparison::PreviousYear,
            _ => Comparison::PreviousPeriod,
        }
    };
    Some(Found {
        value,
        start: whole.start(),
        end: whole.end(),
    })
}

/// The period a comparison compares with. `period` may come from an LLM's
/// plan or a stored one, so it is checked, and every step of the arithmetic
/// too: a period that would leave the calendar is an error, never a panic.
pub fn previous(period: &Period, comparison: Comparison) -> Result<Period, PeriodError> {
    if period.start > period.end {
        return Err(PeriodError::Reversed(
            crate::plan::iso_date::format(period.start),
            crate::plan::iso_date::format(period.end),
        ));
    }
    let out_of_range = || {
        PeriodError::OutOfRange(format!(
            "before {} to {}",
            crate::plan::iso_date::format(period.start),
            crate::plan::iso_date::format(period.end)
        ))
    };
    let found = match comparison {
        Comparison::PreviousYear => (|| {
            Some(Period {
                start: shift_years(period.start, -1)?,
                end: shift_years(period.end, -1)?,
                label: format!("{} a year earlier", period.label),
            })
        })(),
        Comparison::PreviousPeriod => previous_period(period),
    };
    found
        .filter(|p| in_calendar(p.start) && in_calendar(p.end))
        .ok_or_else(out_of_range)
}

/// The period of the same length just before `period` (which starts no later than it ends).
fn previous_period(period: &Period) -> Option<Period> {
    // Whole calendar months shift by months; other spans by days.
    let (start, end) = match whole_months(period) {
        Some(n) => {
            // Both ends move back by whole months, day of month kept
            // (clamped to the month's end), as DATEADD does.
            let start = months_before(period.start, n)?;
            let end_month = months_before(period.end, n)?;
            let month_end = last_of_month(end_month.year(), end_month.month())?;
            let end = if period.end.next_day().is_some_and(|d| d.day() == 1) {
                month_end
            } else {
                Date::from_calendar_date(end_month.year(), end_month.month(), period.end.day())
                    .unwrap_or(month_end)
            };
            (start, end)
        }
        None => {
            let days = (period.end - period.start).whole_days().checked_add(1)?;
            (
                period.start.checked_sub(Duration::days(days))?,
                period.start.previous_day()?,
            )
        }
    };
    Some(Period {
        start,
        end,
        label: "the previous period".to_owned(),
    })
}

/// When the period starts on the first of a month, the months a period of
/// its kind spans: those it covers when it ends at a month's end; for a
/// period to date, its whole calendar unit (a quarter to date compares with
/// the same days of the quarter before).
fn whole_months(period: &Period) -> Option<i32> {
    if period.start.day() != 1 {
        return None;
    }
    let spanned = (period.end.year() - period.start.year()) * 12
        + i32::from(u8::from(period.end.month()))
        - i32::from(u8::from(period.start.month()))
        + 1;
    let month_end = period.end.next_day().is_some_and(|d| d.day() == 1);
    let start_month = u8::from(period.start.month());
    Some(if month_end || spanned <= 0 {
        spanned
    } else if spanned <= 1 {
        1
    } else if spanned <= 3 && (start_month - 1) % 3 == 0 {
        3
    } else if spanned <= 12 && start_month == 1 {
        12
    } else {
        spanned
    })
}

/// The same day `years` later (earlier, when negative); the 29th of
/// February becomes the month's last day.
pub(crate) fn shift_years(day: Date, years: i32) -> Option<Date> {
    let year = day.year().checked_add(years)?;
    Date::from_calendar_date(year, day.month(), day.day())
        .ok()
        .or_else(|| last_of_month(year, day.month()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const AS_OF: Date = date!(2026 - 08 - 15);

    fn p(text: &str) -> Period {
        find_period(text, AS_OF, Month::July)
            .unwrap_or_else(|| panic!("no period in {text}"))
            .value
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn range(text: &str) -> (Date, Date) {
        let period = p(text);
        (period.start, period.end)
    }

    #[test]
    fn relative_calendar_periods_end_at_the_as_of_date() {
        assert_eq!(range("revenue this month"), (date!(2026 - 08 - 01), AS_OF));
        assert_eq!(
            range("last month"),
            (date!(2026 - 07 - 01), date!(2026 - 07 - 31))
        );
        assert_eq!(range("this quarter"), (date!(2026 - 07 - 01), AS_OF));
        assert_eq!(
            range("last quarter"),
            (date!(2026 - 04 - 01), date!(2026 - 06 - 30))
        );
        assert_eq!(range("this year"), (date!(2026 - 01 - 01), AS_OF));
        assert_eq!(range("year to date"), (date!(2026 - 01 - 01), AS_OF));
        assert_eq!(range("ytd"), (date!(2026 - 01 - 01), AS_OF));
        assert_eq!(
            range("last year"),
            (date!(2025 - 01 - 01), date!(2025 - 12 - 31))
        );
    }

    #[test]
    fn last_n_units_and_named_periods() {
        assert_eq!(range("last 30 days"), (date!(2026 - 07 - 17), AS_OF));
        assert_eq!(range("past three months"), (date!(2026 - 06 - 01), AS_OF));
        assert_eq!(
            range("in march"),
            (date!(2026 - 03 - 01), date!(2026 - 03 - 31))
        );
        assert_eq!(
            range("in december"),
            (date!(2025 - 12 - 01), date!(2025 - 12 - 31))
        );
        assert_eq!(
            range("march 2025"),
            (date!(2025 - 03 - 01), date!(2025 - 03 - 31))
        );
        assert_eq!(range("q3"), (date!(2026 - 07 - 01), AS_OF));
        assert_eq!(range("q4"), (date!(2025 - 10 - 01), date!(2025 - 12 - 31)));
        assert_eq!(
            range("q2 2025"),
            (date!(2025 - 04 - 01), date!(2025 - 06 - 30))
        );
        assert_eq!(
            range("in 2025"),
            (date!(2025 - 01 - 01), date!(2025 - 12 - 31))
        );
        assert_eq!(range("since march"), (date!(2026 - 03 - 01), AS_OF));
        assert_eq!(
            range("between 2026-01-10 and 2026-02-20"),
            (date!(2026 - 01 - 10), date!(2026 - 02 - 20))
        );
        assert_eq!(
            range("from 1 march 2026 to 31 may 2026"),
            (date!(2026 - 03 - 01), date!(2026 - 05 - 31))
        );
    }

    #[test]
    fn financial_years_start_in_the_organisations_month() {
        assert_eq!(range("this financial year"), (date!(2026 - 07 - 01), AS_OF));
        assert_eq!(
            range("last financial year"),
            (date!(2025 - 07 - 01), date!(2026 - 06 - 30))
        );
        assert_eq!(
            range("fy2026"),
            (date!(2025 - 07 - 01), date!(2026 - 06 - 30))
        );
    }

    #[test]
    fn a_year_ending_on_a_day() {
        assert_eq!(
            range("revenue for the year ending 31 march 2026"),
            (date!(2025 - 04 - 01), date!(2026 - 03 - 31))
        );
        let c = find_comparison("compare this quarter's sales with last quarter").expect("found");
        assert_eq!(c.value, Comparison::PreviousPeriod);
    }

    #[test]
    fn month_ranges_and_the_future() {
        assert_eq!(
            range("revenue from january to february 2026"),
            (date!(2026 - 01 - 01), date!(2026 - 02 - 28))
        );
        assert_eq!(
            range("from november to february"),
            (date!(2025 - 11 - 01), date!(2026 - 02 - 28))
        );
        for text in [
            "revenue next month",
            "sales in the coming quarter",
            "tomorrow",
        ] {
            let found = find_period(text, AS_OF, Month::January).expect(text);
            assert!(
                matches!(found.value, Err(PeriodError::InTheFuture(..))),
                "{text}"
            );
        }
    }

    #[test]
    fn the_future_is_an_error_and_may_the_verb_is_no_month() {
        let e = find_period("revenue in 2027", AS_OF, Month::January).expect("found");
        assert!(matches!(e.value, Err(PeriodError::InTheFuture(..))));
        assert!(find_period("may i see revenue", AS_OF, Month::January).is_none());
        assert!(find_period("revenue by customer", AS_OF, Month::January).is_none());
    }

    #[test]
    fn comparisons() {
        let c = find_comparison("revenue this quarter vs last year").expect("found");
        assert_eq!(c.value, Comparison::PreviousYear);
        let c = find_comparison("sales compared to the previous quarter").expect("found");
        assert_eq!(c.value, Comparison::PreviousPeriod);
        for text in [
            "sales in the last 30 days compared to the previous 30 days",
            "expenses last month compared with the month before",
        ] {
            let c = find_comparison(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(c.value, Comparison::PreviousPeriod, "{text}");
        }
        let q = Period {
            start: date!(2026 - 07 - 01),
            end: AS_OF,
            label: String::new(),
        };
        let prev = previous(&q, Comparison::PreviousPeriod).expect("previous");
        assert_eq!(
            (prev.start, prev.end),
            (date!(2026 - 04 - 01), date!(2026 - 05 - 15))
        );
        let prev = previous(&q, Comparison::PreviousYear).expect("previous");
        assert_eq!(
            (prev.start, prev.end),
            (date!(2025 - 07 - 01), date!(2025 - 08 - 15))
        );
    }

    #[test]
    fn phrases_at_the_calendar_s_edge_name_a_period_out_of_range() {
        // Neither a panic nor "no period" (which would answer for all time).
        for (text, as_of) in [
            ("revenue between 0000-01-02 and 9999-12-31", AS_OF),
            ("revenue in december 9999", date!(9999 - 12 - 31)),
            ("sales in the last 30 days", Date::MIN),
            ("expenses yesterday", Date::MIN),
        ] {
            let found = find_period(text, as_of, Month::July)
                .unwrap_or_else(|| panic!("{text}: no period found"));
            let e = found.value.expect_err(text);
            assert!(e.to_string().contains("out of range"), "{text}: {e}");
        }
    }

    #[test]
    fn the_period_before_is_checked_and_never_leaves_the_calendar() {
        let period = |start: Date, end: Date| Period {
            start,
            end,
            label: String::new(),
        };
        for (p, comparison) in [
            // Counting back from the first day `time` knows overflowed.
            (
                period(Date::MIN, date!(2026 - 08 - 15)),
                Comparison::PreviousPeriod,
            ),
            (
                period(date!(0000 - 01 - 02), date!(9999 - 12 - 31)),
                Comparison::PreviousPeriod,
            ),
            // Year 0 is no date BigQuery holds.
            (
                period(date!(0001 - 03 - 01), date!(0001 - 03 - 31)),
                Comparison::PreviousYear,
            ),
        ] {
            let e = previous(&p, comparison).expect_err("out of range");
            assert!(matches!(e, PeriodError::OutOfRange(_)), "{e}");
        }
        // A reversed period (an LLM's) made the day count negative.
        let reversed = period(date!(9999 - 12 - 31), Date::MIN);
        let e = previous(&reversed, Comparison::PreviousPeriod).expect_err("reversed");
        assert!(matches!(e, PeriodError::Reversed(..)), "{e}");

        assert_eq!(
            check_period(&period(date!(2026 - 06 - 30), date!(2026 - 04 - 01)), AS_OF),
            Err(PeriodError::Reversed(
                "2026-06-30".to_owned(),
                "2026-04-01".to_owned()
            ))
        );
        assert_eq!(
            check_period(&period(date!(2026 - 07 - 01), date!(2026 - 09 - 30)), AS_OF),
            Err(PeriodError::EndsAfterAsOf(
                "2026-09-30".to_owned(),
                "2026-08-15".to_owned()
            ))
        );
        assert!(matches!(
            check_period(&period(Date::MIN, AS_OF), AS_OF),
            Err(PeriodError::OutOfRange(_))
        ));
        assert_eq!(
            check_period(&period(date!(2026 - 07 - 01), AS_OF), AS_OF),
            Ok(())
        );
    }
}
