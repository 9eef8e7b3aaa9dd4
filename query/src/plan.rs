//! A plan: what a question asks for, in the semantic model's terms. The
//! offline planner and the LLM providers both produce one; the compiler turns
//! it into SQL deterministically, so every generator's answer means the same
//! thing for the same plan.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use time::Date;

/// The years an as-of date may fall in: any books' lifetime, and narrow
/// enough that the periods counted from it stay inside the calendar.
pub const AS_OF_YEARS: RangeInclusive<i32> = 1900..=2200;

/// An as-of date outside [`AS_OF_YEARS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the as-of date {date} is out of range: it must fall in the years {first} to {last}",
    date = .0,
    first = AS_OF_YEARS.start(),
    last = AS_OF_YEARS.end()
)]
pub struct AsOfOutOfRange(pub String);

/// `as_of`, if it falls in [`AS_OF_YEARS`].
pub fn check_as_of(as_of: Date) -> Result<Date, AsOfOutOfRange> {
    if AS_OF_YEARS.contains(&as_of.year()) {
        Ok(as_of)
    } else {
        Err(AsOfOutOfRange(iso_date::format(as_of)))
    }
}

/// What a question asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Metric names of the semantic model (`templates/semantic/model.yaml`), at least one.
    pub metrics: Vec<String>,
    /// Dimension names to group by, in order (empty: one row of totals).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Equality filters on dimensions (e.g. customer = "Acme Ltd").
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// The period the metrics cover (flow metrics) or whose end they are
    /// taken at (balances). `None`: all time up to the as-of date.
    #[serde(default)]
    pub period: Option<Period>,
    /// Compare with an earlier period of the same length.
    #[serde(default)]
    pub compare: Option<Comparison>,
    /// Top or bottom N rows by the first metric.
    #[serde(default)]
    pub rank: Option<Rank>,
    /// Add each row's share of the total (percent) of the first metric.
    #[serde(default)]
    pub share_of_total: bool,
    /// Report in this currency and only documents in it (ISO 4217); `None`:
    /// all documents, in the organisation's base currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Money amounts including tax where the metric has such a variant.
    #[serde(default)]
    pub including_tax: bool,
}

/// An equality filter: the dimension is one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub dimension: String,
    pub values: Vec<String>,
}

/// A closed range of days, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    #[serde(with = "iso_date")]
    pub start: Date,
    #[serde(with = "iso_date")]
    pub end: Date,
    /// How the question named it ("last quarter"), for the explanation.
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The period of the same length just before.
    PreviousPeriod,
    /// The same period one year earlier.
    PreviousYear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rank {
    pub direction: RankDirection,
    pub n: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankDirection {
    Top,
    Bottom,
}

/// Days as ISO 8601 text (`2026-09-30`), as the API and the prompts write them.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::macros::format_description;
    use time::Date;

    const FORMAT: &[time::format_description::FormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(day: &Date, s: S) -> Result<S::Ok, S::Error> {
        let text = day.format(FORMAT).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, time::error::Parse> {
        Date::parse(text.trim(), FORMAT)
    }

    /// Prints `YYYY-MM-DD`.
    pub fn format(day: Date) -> String {
        day.format(FORMAT).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn as_of_dates_are_bounded() {
        for day in [
            date!(1900 - 01 - 01),
            date!(2026 - 11 - 30),
            date!(2200 - 12 - 31),
        ] {
            assert_eq!(check_as_of(day), Ok(day));
        }
        for day in [
            date!(1899 - 12 - 31),
            date!(2201 - 01 - 01),
            Date::MIN,
            Date::MAX,
        ] {
            let e = check_as_of(day).expect_err("out of range");
            assert!(e.to_string().contains("1900 to 2200"), "{e}");
        }
    }
}
