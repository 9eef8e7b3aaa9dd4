//! DuckDB values and types as JSON and SQL type names, for query results.
//!
//! - NULL → `null`; booleans → `true`/`false`;
//! - integers → JSON numbers, exact (a HUGEINT outside the 64-bit range → a string);
//! - DECIMAL → a **string** holding its exact decimal text, e.g. `"1234.50"`
//!   (as BigQuery's REST API renders NUMERIC): money never passes through a
//!   binary float;
//! - FLOAT/DOUBLE → numbers (NaN and infinities → the strings `"NaN"`, `"Infinity"`, `"-Infinity"`);
//! - DATE → `"YYYY-MM-DD"`; TIME → `"HH:MM:SS[.ffffff]"`;
//! - TIMESTAMP and TIMESTAMP WITH TIME ZONE → RFC 3339 in UTC, e.g.
//!   `"2024-03-01T12:00:00Z"` (a naive TIMESTAMP is read as UTC); outside
//!   years 0000–9999 → the count of microseconds since the epoch, as a string;
//! - INTERVAL → ISO 8601 duration text (`"P1M2DT0.5S"`);
//! - BLOB → base64; LIST/ARRAY → arrays; STRUCT → objects; MAP → objects
//!   (keys as text); ENUM → its label; UNION → its value.

use base64::Engine as _;
use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, Value};
use serde_json::{json, Value as Json};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

/// Julian day of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or_else(
        || {
            Json::String(
                if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_owned(),
            )
        },
        Json::Number,
    )
}

fn date(days: i32) -> Json {
    days.checked_add(UNIX_EPOCH_JULIAN_DAY)
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .map_or_else(
            || Json::String(format!("{days} days since 1970-01-01")),
            |d| {
                Json::String(format!(
                    "{:04}-{:02}-{:02}",
                    d.year(),
                    u8::from(d.month()),
                    d.day()
                ))
            },
        )
}

fn to_nanos(unit: &TimeUnit, v: i64) -> i128 {
    let v = i128::from(v);
    match unit {
        TimeUnit::Second => v * 1_000_000_000,
        TimeUnit::Millisecond => v * 1_000_000,
        TimeUnit::Microsecond => v * 1_000,
        TimeUnit::Nanosecond => v,
    }
}

fn timestamp(unit: &TimeUnit, v: i64) -> Json {
    let nanos = to_nanos(unit, v);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or_else(|| Json::String((nanos / 1_000).to_string()), Json::String)
}

fn time_of_day(unit: &TimeUnit, v: i64) -> Json {
    let nanos = to_nanos(unit, v);
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    Json::String(out)
}

fn interval(months: i32, days: i32, nanos: i64) -> Json {
    let mut out = String::from("P");
    if months != 0 {
        out.push_str(&format!("{months}M"));
    }
    if days != 0 {
        out.push_str(&format!("{days}D"));
    }
    if nanos != 0 {
        let secs = nanos / 1_000_000_000;
        let frac = (nanos % 1_000_000_000).abs();
        let sign = if nanos < 0 && secs == 0 { "-" } else { "" };
        out.push_str(&format!("T{sign}{secs}"));
        if frac != 0 {
            out.push('.');
            out.push_str(format!("{frac:09}").trim_end_matches('0'));
        }
        out.push('S');
    }
    if out == "P" {
        out.push_str("0D");
    }
    Json::String(out)
}

fn key_text(v: &Value) -> String {
    match v {
        Value::Text(s) | Value::Enum(s) => s.clone(),
        other => match to_json(other) {
            Json::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// One DuckDB value as JSON (see the module doc for the mapping).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::TinyInt(i) => json!(i),
        Value::SmallInt(i) => json!(i),
        Value::Int(i) => json!(i),
        Value::BigInt(i) => json!(i),
        Value::UTinyInt(i) => json!(i),
        Value::USmallInt(i) => json!(i),
        Value::UInt(i) => json!(i),
        Value::UBigInt(i) => json!(i),
        Value::HugeInt(i) => i64::try_from(*i).map_or_else(|_| json!(i.to_string()), |n| json!(n)),
        Value::UHugeInt(i) => u64::try_from(*i).map_or_else(|_| json!(i.to_string()), |n| json!(n)),
        Value::Float(f) => float(f64::from(*f)),
        Value::Double(f) => float(*f),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Timestamp(unit, v) => timestamp(unit, *v),
        Value::Text(s) | Value::Enum(s) => Json::String(s.clone()),
        Value::Blob(b) | Value::Geometry(b) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::Date32(d) => date(*d),
        Value::Time64(unit, v) => time_of_day(unit, *v),
        Value::Interval {
            months,
            days,
            nanos,
        } => interval(*months, *days, *nanos),
        Value::List(items) | Value::Array(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        Value::Struct(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Value::Union(inner) => to_json(inner),
        // `Value` is non-exhaustive: a variant added by a newer crate shows as text.
        #[allow(unreachable_patterns)]
        other => Json::String(format!("{other:?}")),
    }
}

/// The SQL name of a result column's type.
pub fn sql_type(dt: &DataType) -> String {
    match dt {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => {
            format!("{}[]", sql_type(f.data_type()))
        }
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", sql_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "STRUCT({})",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Map(_, _) => "MAP".into(),
        DataType::Dictionary(_, v) => sql_type(v),
        DataType::Union(_, _) => "UNION".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::types::Decimal;

    #[test]
    fn values_map_to_json_as_documented() {
        assert_eq!(to_json(&Value::Null), Json::Null);
        assert_eq!(to_json(&Value::BigInt(-5)), json!(-5));
        assert_eq!(
            to_json(&Value::HugeInt(1 << 100)),
            json!((1i128 << 100).to_string())
        );
        let d = Decimal::new(18, 2, 123_450).expect("decimal");
        assert_eq!(to_json(&Value::Decimal(d)), json!("1234.50"));
        let neg = Decimal::new(18, 3, -5).expect("decimal");
        assert_eq!(to_json(&Value::Decimal(neg)), json!("-0.005"));
        assert_eq!(to_json(&Value::Date32(0)), json!("1970-01-01"));
        assert_eq!(to_json(&Value::Date32(19_783)), json!("2024-03-01"));
        assert_eq!(
            to_json(&Value::Timestamp(
                TimeUnit::Microsecond,
                1_709_294_400_000_000
            )),
            json!("2024-03-01T12:00:00Z")
        );
        assert_eq!(
            to_json(&Value::Timestamp(TimeUnit::Microsecond, 1_500)),
            json!("1970-01-01T00:00:00.0015Z")
        );
        assert_eq!(
            to_json(&Value::Time64(TimeUnit::Microsecond, 3_723_500_000)),
            json!("01:02:03.5")
        );
        assert_eq!(to_json(&Value::Double(f64::NAN)), json!("NaN"));
        assert_eq!(to_json(&Value::Double(1.5)), json!(1.5));
        assert_eq!(
            to_json(&Value::Interval {
                months: 1,
                days: 2,
                nanos: 500_000_000
            }),
            json!("P1M2DT0.5S")
        );
        assert_eq!(
            to_json(&Value::List(vec![Value::Int(1), Value::Null])),
            json!([1, null])
        );
        assert_eq!(to_json(&Value::Blob(vec![0, 1, 2])), json!("AAEC"));
    }
}
