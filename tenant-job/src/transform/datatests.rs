//! Data tests: queries returning the rows that break a rule, run on the
//! staged tables before anything is published. A test passes when its query
//! returns no row. Besides the tests each header declares, every model is
//! checked to have exactly its documented columns, in order, of their types.
//!
//! A failing test of severity `error` withholds every table; one of severity
//! `warn` is reported (with a few of its failing rows) and the tables are
//! published.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use cloud::ports::{QueryRequest, QueryResult};

use job_contract::summary::TestWarning;

use super::models::{Model, Severity};
use super::{retrying, Dialect, TransformContext, TransformError};

/// How long one test query may run.
const TEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Failing rows quoted in a test's message.
const SAMPLE_ROWS: usize = 3;
/// Characters of a message, at most.
const MESSAGE_CHARS: usize = 600;

/// One data test, rendered and ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedTest {
    pub model: String,
    /// `<model>.<test>`.
    pub name: String,
    pub severity: Severity,
    /// The query returning the failing rows.
    pub sql: String,
}

/// The outcome of one data test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataTestResult {
    /// `<model>.<test>`, e.g. `fct_invoices.unique(invoice_id)`.
    pub name: String,
    /// The model tested.
    pub model: String,
    /// What a failure does: `error` withholds every table, `warn` does not.
    pub severity: Severity,
    pub passed: bool,
    /// Rows breaking the rule (for the columns check: columns that differ).
    pub failing_rows: u64,
    /// What failed, with a few of the failing rows; `None` when it passed.
    pub message: Option<String>,
    /// A few of the failing rows, each `{column: value}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Value>,
}

impl DataTestResult {
    fn pass(model: &str, name: String, severity: Severity) -> Self {
        DataTestResult {
            name,
            model: model.to_owned(),
            severity,
            passed: true,
            failing_rows: 0,
            message: None,
            sample: Vec::new(),
        }
    }

    /// Whether this result withholds the tables: a failed `error` test.
    pub fn blocks(&self) -> bool {
        !self.passed && self.severity == Severity::Error
    }

    /// This result as a warning of the run's summary, if it is one: a
    /// failed `warn` test.
    pub fn warning(&self) -> Option<TestWarning> {
        (!self.passed && self.severity == Severity::Warn).then(|| TestWarning {
            model: self.model.clone(),
            test: self.name.clone(),
            failing_rows: self.failing_rows,
            sample: self.sample.clone(),
        })
    }
}

fn request(ctx: &TransformContext, sql: String, max_rows: usize) -> QueryRequest {
    QueryRequest {
        dataset: ctx.transformed_dataset.clone(),
        sql,
        max_rows,
        timeout: TEST_TIMEOUT,
        max_bytes: None,
    }
}

/// A count as the warehouse returns it.
pub(crate) fn as_count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        // BigQuery's REST API renders integers as strings.
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn shorten(mut s: String) -> String {
    if s.chars().count() > MESSAGE_CHARS {
        s = s.chars().take(MESSAGE_CHARS).collect();
        s.push('…');
    }
    s
}

/// The rows of a result as `{column: value}` objects.
fn row_objects(result: &QueryResult) -> Vec<Value> {
    result
        .rows
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, Value> = result
                .columns
                .iter()
                .map(|c| c.name.clone())
                .zip(row.iter().cloned())
                .collect();
            Value::Object(object)
        })
        .collect()
}

fn describe_rows(rows: &[Value]) -> String {
    rows.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Tests counted per query: one query (one BigQuery job, one opening of
/// the DuckDB file) answers many tests.
const TESTS_PER_QUERY: usize = 40;

/// Runs every test: counts in batches, then a few failing rows of each
/// test that failed. A query that cannot run is an error naming its test.
pub(crate) async fn run_all(
    ctx: &TransformContext,
    tests: &[PlannedTest],
) -> Result<Vec<DataTestResult>, TransformError> {
    let mut out = Vec::with_capacity(tests.len());
    for chunk in tests.chunks(TESTS_PER_QUERY) {
        let counts = match count_batch(ctx, chunk).await {
            Ok(counts) => counts,
            // Count one by one to find, and name, the test that fails.
            Err(_) if chunk.len() > 1 => {
                let mut counts = Vec::with_capacity(chunk.len());
                for test in chunk {
                    counts.extend(count_batch(ctx, std::slice::from_ref(test)).await?);
                }
                counts
            }
            Err(e) => return Err(e),
        };
        for (test, failing) in chunk.iter().zip(counts) {
            out.push(if failing == 0 {
                DataTestResult::pass(&test.model, test.name.clone(), test.severity)
            } else {
                failure(ctx, test, failing).await?
            });
        }
    }
    Ok(out)
}

/// The failing-row count of each test, in order.
async fn count_batch(
    ctx: &TransformContext,
    tests: &[PlannedTest],
) -> Result<Vec<u64>, TransformError> {
    let name = tests
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let failed = |source| TransformError::TestRun {
        test: name.clone(),
        source,
    };
    let sql = tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "SELECT {i} AS test, COUNT(*) AS failing_rows FROM (\n{}\n) AS failing_{i}",
                t.sql
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    let batch = request(ctx, sql, tests.len());
    let counted = retrying(|| ctx.cloud.warehouse.query(&ctx.cred, &batch))
        .await
        .map_err(failed)?;
    let mut counts = vec![None; tests.len()];
    for row in &counted.rows {
        let index = as_count(row.first()).and_then(|i| usize::try_from(i).ok());
        if let (Some(slot), failing) = (index.and_then(|i| counts.get_mut(i)), as_count(row.get(1)))
        {
            *slot = failing;
        }
    }
    counts
        .into_iter()
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| {
            failed(cloud::CloudError::permanent(
                format!("dataset {}", ctx.transformed_dataset),
                format!("the tests' counts came back as {:?}", counted.rows),
            ))
        })
}

/// A failed test's result, quoting a few of its failing rows.
async fn failure(
    ctx: &TransformContext,
    test: &PlannedTest,
    failing: u64,
) -> Result<DataTestResult, TransformError> {
    let sample = request(ctx, test.sql.clone(), SAMPLE_ROWS);
    let sample = retrying(|| ctx.cloud.warehouse.query(&ctx.cred, &sample))
        .await
        .map_err(|source| TransformError::TestRun {
            test: test.name.clone(),
            source,
        })?;
    let sample = row_objects(&sample);
    Ok(DataTestResult {
        name: test.name.clone(),
        model: test.model.clone(),
        severity: test.severity,
        passed: false,
        failing_rows: failing,
        message: Some(shorten(format!(
            "{failing} failing row{}, e.g. {}",
            if failing == 1 { "" } else { "s" },
            describe_rows(&sample)
        ))),
        sample,
    })
}

/// Checks that `table` (the staged model) has exactly the documented columns.
pub(crate) async fn check_columns(
    ctx: &TransformContext,
    model: &Model,
    table: &str,
) -> Result<DataTestResult, TransformError> {
    let name = format!("{}.documented_columns", model.name);
    let columns = request(ctx, format!("SELECT * FROM {table} LIMIT 0"), 1);
    let result = retrying(|| ctx.cloud.warehouse.query(&ctx.cred, &columns))
        .await
        .map_err(|source| TransformError::TestRun {
            test: name.clone(),
            source,
        })?;
    let actual: Vec<(String, String)> = result
        .columns
        .into_iter()
        .map(|c| (c.name, c.data_type))
        .collect();
    let problems = column_problems(model, &actual, ctx.dialect);
    if problems.is_empty() {
        return Ok(DataTestResult::pass(&model.name, name, Severity::Error));
    }
    Ok(DataTestResult {
        name,
        model: model.name.clone(),
        severity: Severity::Error,
        passed: false,
        failing_rows: problems.len() as u64,
        message: Some(shorten(problems.join("; "))),
        sample: Vec::new(),
    })
}

/// Differences between the documented columns and `actual` (name, type).
pub(crate) fn column_problems(
    model: &Model,
    actual: &[(String, String)],
    dialect: Dialect,
) -> Vec<String> {
    let mut out = Vec::new();
    for doc in &model.columns {
        match actual.iter().find(|(n, _)| *n == doc.name) {
            None => out.push(format!("{} is documented but not produced", doc.name)),
            Some((_, ty)) => {
                let want = doc.column_type.warehouse_type(dialect);
                if !ty.eq_ignore_ascii_case(want) {
                    out.push(format!(
                        "{} is {ty}, documented as {} ({want})",
                        doc.name, doc.column_type
                    ));
                }
            }
        }
    }
    for (n, _) in actual {
        if !model.columns.iter().any(|d| d.name == *n) {
            out.push(format!("{n} is produced but not documented"));
        }
    }
    if out.is_empty() {
        let documented: Vec<&str> = model.columns.iter().map(|c| c.name.as_str()).collect();
        let produced: Vec<&str> = actual.iter().map(|(n, _)| n.as_str()).collect();
        if documented != produced {
            out.push(format!(
                "the columns come in the order {}, documented as {}",
                produced.join(", "),
                documented.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::models::parse_header;
    use super::*;

    #[test]
    fn columns_must_match_the_documentation_both_ways() {
        let model = parse_header(
            "m",
            "-- m: x\n-- columns:\n--   id  text  k\n--   total  money  t\nSELECT 1\n",
        )
        .expect("header");
        let col = |n: &str, t: &str| (n.to_owned(), t.to_owned());
        assert!(column_problems(
            &model,
            &[col("id", "VARCHAR"), col("total", "DECIMAL(18,2)")],
            Dialect::DuckDb
        )
        .is_empty());
        assert_eq!(
            column_problems(
                &model,
                &[
                    col("id", "VARCHAR"),
                    col("total", "DOUBLE"),
                    col("extra", "BIGINT")
                ],
                Dialect::DuckDb
            ),
            [
                "total is DOUBLE, documented as money (DECIMAL(18,2))",
                "extra is produced but not documented"
            ]
        );
        assert_eq!(
            column_problems(&model, &[col("id", "VARCHAR")], Dialect::DuckDb),
            ["total is documented but not produced"]
        );
        assert_eq!(
            column_problems(
                &model,
                &[col("total", "DECIMAL(18,2)"), col("id", "VARCHAR")],
                Dialect::DuckDb
            ),
            ["the columns come in the order total, id, documented as id, total"]
        );
    }
}
