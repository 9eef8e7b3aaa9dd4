//! The SQL guard: admits exactly one read-only query over the tenant's
//! transformed dataset, with a LIMIT enforced, or refuses it with a reason.
//!
//! It parses with `sqlparser` in the warehouse's dialect and walks the whole
//! tree by explicit recursion over an allow-list of constructs: anything it
//! does not recognise is refused (`unsupported_construct`), never let through.
//!
//! - **One query.** Exactly one statement, and it is a query: no DDL, DML,
//!   PRAGMA, SET, ATTACH, COPY, EXPORT, CALL, EXPLAIN, scripting or
//!   procedural blocks; no `SELECT … INTO`, no DML inside a CTE.
//! - **Relations.** Every table in FROM/JOIN (nested joins, derived tables and
//!   LATERAL subqueries included, subqueries in expressions included) is a CTE
//!   in scope or a table of the policy's list in the tenant's dataset,
//!   unqualified or qualified only by the tenant's dataset (DuckDB: its catalog
//!   name or the schema `main`; BigQuery: the dataset, optionally after the
//!   tenant's project). A CTE name shadows only unqualified names inside its
//!   scope, so a CTE cannot make a qualified reference look local. The
//!   executor must make the tenant's dataset the default one (DuckDB: open only
//!   its file; BigQuery: the job's default dataset).
//! - **Information schema.** Only the views [`INFORMATION_SCHEMA_VIEWS`] of
//!   the tenant's dataset (`<dataset>.INFORMATION_SCHEMA.TABLES`; in DuckDB
//!   also `information_schema.tables`, which sees only the one open file).
//! - **Refused relations.** Wildcard tables (`transformed_*`, `_TABLE_SUFFIX`
//!   needs them), table functions and table-valued arguments (`read_csv(…)`,
//!   `glob(…)`, `EXTERNAL_QUERY(…)`, `ML.PREDICT(…)`), UNNEST (the tables hold
//!   no arrays; `dim_date` is the date spine), string literals or file paths as
//!   tables (`FROM 'x.csv'`), PIVOT/UNPIVOT, MATCH_RECOGNIZE, JSON/XML tables,
//!   sampling, time travel (`FOR SYSTEM_TIME AS OF`), partition decorators.
//! - **Functions.** A fixed allow-list of scalar, aggregate and window
//!   functions (case-insensitive; `SAFE.` prefixes in BigQuery); every other
//!   name is refused, qualified names included.
//! - **Identifiers.** Every identifier is ASCII; table name parts are letters,
//!   digits and underscores (a project may have hyphens); names are compared
//!   exactly after normalisation (DuckDB: ASCII case-folded; BigQuery: as
//!   written, since its datasets and tables are case-sensitive).
//! - **LIMIT.** The outermost query (a whole set operation included) gets
//!   `LIMIT max_rows`, or its own when smaller; every LIMIT and OFFSET is a
//!   non-negative integer literal. FETCH, FOR UPDATE, WITH RECURSIVE are refused.
//! - **Normalisation.** The admitted SQL is the tree printed back (comments
//!   dropped); it is parsed again and must give the same tree, so what was
//!   judged is what runs.

mod functions;
mod names;
mod refusal;
mod walk;

use std::collections::BTreeSet;

use sqlparser::ast::{Expr, LimitClause, Query, Statement, Value};
use sqlparser::parser::Parser;

pub use refusal::{snippet, Refusal};

/// The longest SQL text the guard reads, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// The deepest nesting the parser accepts (sqlparser's recursion limit).
const PARSER_RECURSION_LIMIT: usize = 50;

/// The tables of a transformed dataset (`templates/models/*.sql`).
pub const TRANSFORMED_TABLES: &[&str] = &[
    "dim_accounts",
    "dim_contacts",
    "dim_date",
    "dim_items",
    "fct_bank_transactions",
    "fct_credit_notes",
    "fct_invoice_lines",
    "fct_invoices",
    "fct_journal_lines",
    "fct_payments",
];

/// The information-schema views a query may read (of the tenant's dataset only).
pub const INFORMATION_SCHEMA_VIEWS: &[&str] = &["COLUMNS", "TABLES"];

/// The SQL dialect of the warehouse the query will run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    DuckDb,
    BigQuery,
}

impl Dialect {
    fn parser_dialect(self) -> Box<dyn sqlparser::dialect::Dialect> {
        match self {
            Dialect::DuckDb => Box::new(sqlparser::dialect::DuckDbDialect {}),
            Dialect::BigQuery => Box::new(sqlparser::dialect::BigQueryDialect {}),
        }
    }
}

/// What a tenant's query may read and how many rows it may return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPolicy {
    /// The tenant's transformed dataset (`cloud::naming::transformed_dataset`).
    dataset: String,
    /// BigQuery: the tenant's cell project, the only project that may qualify
    /// a name. `None`: no project may be named.
    project: Option<String>,
    /// The most rows the query may return.
    max_rows: u64,
    /// The tables of the dataset a query may read.
    tables: BTreeSet<String>,
}

impl GuardPolicy {
    /// A policy for `dataset` and the tables of [`TRANSFORMED_TABLES`].
    pub fn new(dataset: impl Into<String>, project: Option<String>, max_rows: u64) -> Self {
        GuardPolicy {
            dataset: dataset.into(),
            project,
            max_rows,
            tables: TRANSFORMED_TABLES.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    /// The policy for a tenant's transformed dataset.
    pub fn for_tenant(
        tenant: &cloud::naming::TenantId,
        project: Option<String>,
        max_rows: u64,
    ) -> Self {
        Self::new(
            cloud::naming::transformed_dataset(tenant),
            project,
            max_rows,
        )
    }

    /// The same policy with another list of readable tables.
    pub fn with_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }

    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(String::as_str)
    }
}

/// A query the guard admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedQuery {
    /// The query printed back from its tree, with the LIMIT enforced.
    pub sql: String,
    /// The tables it reads, as `<dataset>.<table>` (or
    /// `<dataset>.INFORMATION_SCHEMA.<VIEW>`), sorted, each once.
    pub tables: Vec<String>,
    /// The LIMIT the query now has (at most the policy's `max_rows`).
    pub limit: u64,
}

/// Admits `sql` as one read-only query over the policy's dataset, or refuses it.
pub fn admit(sql: &str, dialect: Dialect, policy: &GuardPolicy) -> Result<AdmittedQuery, Refusal> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Refusal::TooLong {
            len: sql.len(),
            max: MAX_SQL_BYTES,
        });
    }
    let mut query = parse_one_query(sql, dialect)?;
    let tables = walk::judge(&query, dialect, policy)?;
    let limit = enforce_limit(&mut query, policy.max_rows)?;
    let normalised = query.to_string();
    // What runs must be what was judged: the printed text parses back to the
    // same tree (spans aside), or the query is refused.
    match parse_one_query(&normalised, dialect) {
        Ok(again) if again == query => {}
        _ => {
            return Err(Refusal::Unsupported(
                "a query that does not print back to itself".to_owned(),
            ))
        }
    }
    Ok(AdmittedQuery {
        sql: normalised,
        tables: tables.into_iter().collect(),
        limit,
    })
}

fn parse_one_query(sql: &str, dialect: Dialect) -> Result<Query, Refusal> {
    let parser_dialect = dialect.parser_dialect();
    let mut statements = Parser::new(parser_dialect.as_ref())
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| Refusal::Parse(snippet(&e.to_string())))?;
    match statements.len() {
        0 => Err(Refusal::Empty),
        1 => match statements.pop() {
            Some(Statement::Query(q)) => Ok(*q),
            Some(other) => Err(Refusal::NotAQuery(statement_kind(&other))),
            None => Err(Refusal::Empty),
        },
        n => Err(Refusal::MultipleStatements(n)),
    }
}

/// The first words of a statement, to name it in a refusal.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    snippet(&words.join(" "))
}

/// Sets the outermost LIMIT to at most `max_rows`; returns it.
fn enforce_limit(query: &mut Query, max_rows: u64) -> Result<u64, Refusal> {
    let max_expr = || Expr::value(Value::Number(max_rows.to_string(), false));
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(max_expr()),
                offset: None,
                limit_by: vec![],
            });
            Ok(max_rows)
        }
        Some(LimitClause::LimitOffset {
            limit, limit_by, ..
        }) if limit_by.is_empty() => match limit {
            None => {
                *limit = Some(max_expr());
                Ok(max_rows)
            }
            Some(expr) => {
                let given = walk::literal_count(expr)?;
                if given > u128::from(max_rows) {
                    *limit = Some(max_expr());
                    Ok(max_rows)
                } else {
                    // `given` ≤ max_rows, so it fits.
                    Ok(u64::try_from(given).unwrap_or(max_rows))
                }
            }
        },
        Some(other) => Err(Refusal::Unsupported(snippet(&other.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy::new("transformed_acme", None, 100)
    }

    #[test]
    fn a_plain_query_is_admitted_with_its_tables_and_limit() {
        let admitted = admit(
            "select i.total from fct_invoices i join dim_contacts c using (contact_id)",
            Dialect::DuckDb,
            &policy(),
        );
        assert_eq!(
            admitted,
            Ok(AdmittedQuery {
                sql: "SELECT i.total FROM fct_invoices i JOIN dim_contacts c USING(contact_id) LIMIT 100"
                    .to_owned(),
                tables: vec![
                    "transformed_acme.dim_contacts".to_owned(),
                    "transformed_acme.fct_invoices".to_owned()
                ],
                limit: 100,
            })
        );
    }

    #[test]
    fn a_policy_with_fewer_tables_refuses_the_others() {
        let policy = policy().with_tables(["dim_date"]);
        assert!(admit("SELECT * FROM dim_date", Dialect::BigQuery, &policy).is_ok());
        let r = admit("SELECT * FROM fct_invoices", Dialect::BigQuery, &policy);
        assert_eq!(r.map_err(|r| r.code()), Err("unknown_table"));
    }

    #[test]
    fn a_zero_row_cap_is_enforced_too() {
        let policy = GuardPolicy::new("transformed_acme", None, 0);
        let a = admit("SELECT 1 LIMIT 5", Dialect::DuckDb, &policy).map(|a| (a.sql, a.limit));
        assert_eq!(a, Ok(("SELECT 1 LIMIT 0".to_owned(), 0)));
    }

    #[test]
    fn statements_are_named_in_refusals() {
        let r = admit("DROP TABLE fct_invoices", Dialect::DuckDb, &policy());
        let message = r.map_err(|r| r.to_string()).err().unwrap_or_default();
        assert!(message.contains("DROP TABLE"), "{message}");
    }
}
