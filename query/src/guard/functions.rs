//! The functions a query may call: a fixed allow-list of ordinary scalar,
//! aggregate and window functions of DuckDB and BigQuery. Every other name is
//! refused; names that read outside the warehouse are recognised only to give
//! the refusal a better code.

/// Allowed function names, lowercase, sorted (a unit test keeps them sorted
/// so [`is_allowed`] can binary-search).
const ALLOWED: &[&str] = &[
    "abs",
    "any_value",
    "approx_count_distinct",
    "approx_quantile",
    "arg_max",
    "arg_min",
    "avg",
    "bool_and",
    "bool_or",
    "ceil",
    "ceiling",
    "char_length",
    "coalesce",
    "concat",
    "concat_ws",
    "contains",
    "corr",
    "count",
    "count_if",
    "countif",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "current_date",
    "current_timestamp",
    "date",
    "date_add",
    "date_diff",
    "date_part",
    "date_sub",
    "date_trunc",
    "datediff",
    "datepart",
    "datetime",
    "datetime_trunc",
    "day",
    "dayname",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "dense_rank",
    "div",
    "ends_with",
    "exp",
    "first_value",
    "floor",
    "format",
    "format_date",
    "format_datetime",
    "format_timestamp",
    "greatest",
    "if",
    "ifnull",
    "initcap",
    "isodow",
    "lag",
    "last_day",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "log",
    "log10",
    "logical_and",
    "logical_or",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "max",
    "max_by",
    "median",
    "min",
    "min_by",
    "mod",
    "month",
    "monthname",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "parse_date",
    "parse_timestamp",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pow",
    "power",
    "quantile_cont",
    "quantile_disc",
    "quarter",
    "rank",
    "regexp_contains",
    "regexp_extract",
    "regexp_matches",
    "regexp_replace",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "rpad",
    "rtrim",
    "safe_divide",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "strftime",
    "string_agg",
    "strpos",
    "strptime",
    "substr",
    "substring",
    "sum",
    "timestamp",
    "timestamp_trunc",
    "trim",
    "trunc",
    "upper",
    "var_pop",
    "var_samp",
    "variance",
    "week",
    "year",
    "yearweek",
];

/// Names that read files, URLs, other databases or models: refused like any
/// name off the list, but with the code `external_read`.
const EXTERNAL: &[&str] = &[
    "csv_scan",
    "delta_scan",
    "external_object_transform",
    "external_query",
    "glob",
    "iceberg_scan",
    "load_file",
    "mysql_query",
    "parquet_metadata",
    "parquet_scan",
    "parquet_schema",
    "pg_ls_dir",
    "pg_read_binary_file",
    "pg_read_file",
    "postgres_query",
    "sniff_csv",
    "st_read",
];

/// Qualifiers of BigQuery's model and AI functions (`ML.PREDICT`, `AI.GENERATE`…).
const EXTERNAL_NAMESPACES: &[&str] = &["ai", "ml", "vector_search"];

/// Whether the (lowercase, unqualified) function name is on the allow-list.
pub fn is_allowed(lower: &str) -> bool {
    ALLOWED.binary_search(&lower).is_ok()
}

/// Whether the (lowercase) name parts read outside the warehouse.
pub fn is_external(lower_parts: &[String]) -> bool {
    let unprefixed = match lower_parts {
        [safe, rest @ ..] if safe == "safe" => rest,
        all => all,
    };
    match unprefixed {
        [one] => {
            EXTERNAL.contains(&one.as_str())
                || one.starts_with("read_")
                || one.ends_with("_scan")
                || one.contains("://")
        }
        [first, ..] => EXTERNAL_NAMESPACES.contains(&first.as_str()),
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_sorted_lowercase_and_unique() {
        for pair in ALLOWED.windows(2) {
            assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
        }
        for name in ALLOWED {
            assert_eq!(*name, name.to_ascii_lowercase());
        }
    }

    #[test]
    fn readers_are_not_allowed() {
        for name in EXTERNAL {
            assert!(!is_allowed(name), "{name}");
        }
        for name in [
            "read_csv",
            "getenv",
            "current_setting",
            "query_table",
            "glob",
        ] {
            assert!(!is_allowed(name), "{name}");
        }
    }
}
