//! Table names: every spelling brought to its parts, then resolved against
//! the policy (a CTE in scope, a table of the dataset, the dataset's
//! information schema) or refused.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::refusal::snippet;
use super::{Dialect, GuardPolicy, Refusal, INFORMATION_SCHEMA_VIEWS};

/// What a table name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A CTE in scope.
    Cte,
    /// A table (or information-schema view) of the tenant's dataset, as
    /// `<dataset>.<table>`.
    Table(String),
}

/// Checks an identifier that is not a table name (a column, an alias): ASCII
/// without control characters.
pub fn check_ident(ident: &Ident) -> Result<(), Refusal> {
    if ident
        .value
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        Ok(())
    } else {
        Err(Refusal::InvalidIdentifier(snippet(&ident.value)))
    }
}

/// The parts of a table name, each checked, split at dots in BigQuery (where
/// `` `project.dataset.table` `` is one quoted identifier).
fn parts(name: &ObjectName, dialect: Dialect) -> Result<Vec<String>, Refusal> {
    let whole = || snippet(&name.to_string());
    let mut out = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        let ident = match part {
            ObjectNamePart::Identifier(ident) => ident,
            ObjectNamePart::Function(_) => return Err(Refusal::Unsupported(whole())),
        };
        let value = ident.value.as_str();
        if !value.is_ascii() || value.chars().any(|c| c.is_ascii_control()) {
            return Err(Refusal::InvalidIdentifier(snippet(value)));
        }
        if value.contains('*') {
            return Err(Refusal::WildcardTable(whole()));
        }
        // A string literal as a table is a file or URL read (DuckDB's
        // replacement scans): `FROM 'x.csv'`.
        if matches!(ident.quote_style, Some('\'')) || value.contains("://") {
            return Err(Refusal::ExternalRead(whole()));
        }
        match dialect {
            Dialect::BigQuery => {
                for piece in value.split('.') {
                    out.push(piece.to_owned());
                }
            }
            Dialect::DuckDb => {
                // A dot, slash or colon inside one DuckDB identifier is a
                // file path (`FROM "data.csv"` is a replacement scan).
                if value.contains(['.', '/', '\\', ':']) {
                    return Err(Refusal::ExternalRead(whole()));
                }
                out.push(value.to_owned());
            }
        }
    }
    for piece in &out {
        let mut chars = piece.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !first_ok || !rest_ok {
            return Err(Refusal::InvalidIdentifier(snippet(piece)));
        }
    }
    Ok(out)
}

/// Whether `given` names `expected` in the dialect: DuckDB folds ASCII case,
/// BigQuery's projects, datasets and tables are case-sensitive.
fn same(dialect: Dialect, given: &str, expected: &str) -> bool {
    match dialect {
        Dialect::DuckDb => given.eq_ignore_ascii_case(expected),
        Dialect::BigQuery => given == expected,
    }
}

/// Resolves a table name in FROM/JOIN against the CTEs in scope and the policy.
pub fn resolve(
    name: &ObjectName,
    dialect: Dialect,
    policy: &GuardPolicy,
    ctes_in_scope: &[String],
) -> Result<Resolved, Refusal> {
    let parts = parts(name, dialect)?;
    let whole = || snippet(&name.to_string());

    if let Some(at) = parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case("information_schema"))
    {
        return information_schema(&parts, at, dialect, policy)
            .ok_or_else(|| Refusal::InformationSchema(whole()));
    }

    let table = match parts.as_slice() {
        [table] => {
            if ctes_in_scope
                .iter()
                .any(|cte| cte.eq_ignore_ascii_case(table))
            {
                return Ok(Resolved::Cte);
            }
            table
        }
        [qualifier, table] => {
            let ours = same(dialect, qualifier, &policy.dataset)
                || (dialect == Dialect::DuckDb && qualifier.eq_ignore_ascii_case("main"));
            if !ours {
                return Err(Refusal::ForeignDataset(whole()));
            }
            table
        }
        [first, second, table] => match dialect {
            Dialect::BigQuery => {
                let project_ours = policy
                    .project
                    .as_deref()
                    .is_some_and(|p| same(dialect, first, p));
                if !project_ours {
                    return Err(Refusal::ForeignProject(whole()));
                }
                if !same(dialect, second, &policy.dataset) {
                    return Err(Refusal::ForeignDataset(whole()));
                }
                table
            }
            Dialect::DuckDb => {
                if !same(dialect, first, &policy.dataset) || !second.eq_ignore_ascii_case("main") {
                    return Err(Refusal::ForeignDataset(whole()));
                }
                table
            }
        },
        _ => return Err(Refusal::ForeignDataset(whole())),
    };
    match policy.tables.iter().find(|t| same(dialect, table, t)) {
        Some(known) => Ok(Resolved::Table(format!("{}.{known}", policy.dataset))),
        None => Err(Refusal::UnknownTable(whole())),
    }
}

/// `[[project.]dataset.]INFORMATION_SCHEMA.<view>` of the tenant's dataset,
/// or `None`.
fn information_schema(
    parts: &[String],
    at: usize,
    dialect: Dialect,
    policy: &GuardPolicy,
) -> Option<Resolved> {
    let (qualifier, rest) = parts.split_at(at);
    let view = match rest {
        [_schema, view] => INFORMATION_SCHEMA_VIEWS
            .iter()
            .find(|v| v.eq_ignore_ascii_case(view))?,
        _ => return None,
    };
    let ours = match (dialect, qualifier) {
        // DuckDB's information schema sees the catalogs open, and the
        // executor opens only the tenant's file.
        (Dialect::DuckDb, []) => true,
        (_, [dataset]) => same(dialect, dataset, &policy.dataset),
        (Dialect::BigQuery, [project, dataset]) => {
            policy
                .project
                .as_deref()
                .is_some_and(|p| same(dialect, project, p))
                && same(dialect, dataset, &policy.dataset)
        }
        _ => false,
    };
    ours.then(|| Resolved::Table(format!("{}.INFORMATION_SCHEMA.{view}", policy.dataset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[(&str, Option<char>)]) -> ObjectName {
        ObjectName(
            parts
                .iter()
                .map(|(v, q)| {
                    ObjectNamePart::Identifier(match q {
                        Some(q) => Ident::with_quote(*q, *v),
                        None => Ident::new(*v),
                    })
                })
                .collect(),
        )
    }

    fn policy() -> GuardPolicy {
        GuardPolicy::new("transformed_acme", Some("ll-cell-eu1".to_owned()), 10)
    }

    fn code(r: Result<Resolved, Refusal>) -> Result<Resolved, &'static str> {
        r.map_err(|e| e.code())
    }

    #[test]
    fn the_tenants_tables_resolve_by_every_spelling() {
        let table = Ok(Resolved::Table("transformed_acme.fct_invoices".to_owned()));
        let p = policy();
        for spelling in [
            name(&[("fct_invoices", None)]),
            name(&[("FCT_Invoices", Some('"'))]),
            name(&[("transformed_acme", None), ("fct_invoices", None)]),
            name(&[("main", None), ("fct_invoices", None)]),
            name(&[
                ("Transformed_Acme", Some('"')),
                ("MAIN", None),
                ("fct_invoices", None),
            ]),
        ] {
            assert_eq!(
                code(resolve(&spelling, Dialect::DuckDb, &p, &[])),
                table,
                "{spelling}"
            );
        }
        for spelling in [
            name(&[("fct_invoices", None)]),
            name(&[("transformed_acme.fct_invoices", Some('`'))]),
            name(&[("ll-cell-eu1.transformed_acme.fct_invoices", Some('`'))]),
            name(&[
                ("ll-cell-eu1", Some('`')),
                ("transformed_acme", None),
                ("fct_invoices", None),
            ]),
        ] {
            assert_eq!(
                code(resolve(&spelling, Dialect::BigQuery, &p, &[])),
                table,
                "{spelling}"
            );
        }
    }

    #[test]
    fn bigquery_names_are_case_sensitive_and_duckdb_main_is_not_a_bigquery_dataset() {
        let p = policy();
        let upper = name(&[("FCT_INVOICES", None)]);
        assert_eq!(
            code(resolve(&upper, Dialect::BigQuery, &p, &[])),
            Err("unknown_table")
        );
        let main = name(&[("main", None), ("fct_invoices", None)]);
        assert_eq!(
            code(resolve(&main, Dialect::BigQuery, &p, &[])),
            Err("foreign_dataset")
        );
    }

    #[test]
    fn a_cte_shadows_only_unqualified_names() {
        let p = policy();
        let ctes = vec!["secret".to_owned(), "transformed_globex".to_owned()];
        let cte = name(&[("SECRET", None)]);
        assert_eq!(
            code(resolve(&cte, Dialect::DuckDb, &p, &ctes)),
            Ok(Resolved::Cte)
        );
        let qualified = name(&[("transformed_globex", None), ("secret", None)]);
        assert_eq!(
            code(resolve(&qualified, Dialect::DuckDb, &p, &ctes)),
            Err("foreign_dataset")
        );
    }

    #[test]
    fn odd_characters_are_refused_with_their_reason() {
        let p = policy();
        let cases = [
            (
                name(&[("x.csv", Some('\''))]),
                Dialect::DuckDb,
                "external_read",
            ),
            (
                name(&[("x.csv", Some('"'))]),
                Dialect::DuckDb,
                "external_read",
            ),
            (
                name(&[("s3://b/x", Some('`'))]),
                Dialect::BigQuery,
                "external_read",
            ),
            (
                name(&[("fct_*", Some('`'))]),
                Dialect::BigQuery,
                "wildcard_table",
            ),
            (
                name(&[("f\u{441}t_invoices", None)]),
                Dialect::DuckDb,
                "invalid_identifier",
            ),
            (
                name(&[("fct invoices", Some('"'))]),
                Dialect::DuckDb,
                "invalid_identifier",
            ),
            (
                name(&[("transformed_acme..fct_invoices", Some('`'))]),
                Dialect::BigQuery,
                "invalid_identifier",
            ),
            (
                name(&[("9lives", Some('"'))]),
                Dialect::DuckDb,
                "invalid_identifier",
            ),
        ];
        for (n, dialect, expected) in cases {
            assert_eq!(code(resolve(&n, dialect, &p, &[])), Err(expected), "{n}");
        }
    }

    #[test]
    fn only_the_datasets_own_information_schema_views() {
        let p = policy();
        let ok = Ok(Resolved::Table(
            "transformed_acme.INFORMATION_SCHEMA.TABLES".to_owned(),
        ));
        let bq = name(&[
            ("transformed_acme", None),
            ("information_schema", None),
            ("tables", None),
        ]);
        assert_eq!(code(resolve(&bq, Dialect::BigQuery, &p, &[])), ok);
        let duck = name(&[("information_schema", None), ("TABLES", None)]);
        assert_eq!(code(resolve(&duck, Dialect::DuckDb, &p, &[])), ok);
        let bare_bq = name(&[("INFORMATION_SCHEMA", None), ("TABLES", None)]);
        assert_eq!(
            code(resolve(&bare_bq, Dialect::BigQuery, &p, &[])),
            Err("information_schema")
        );
        let jobs = name(&[
            ("transformed_acme", None),
            ("INFORMATION_SCHEMA", None),
            ("JOBS", None),
        ]);
        assert_eq!(
            code(resolve(&jobs, Dialect::BigQuery, &p, &[])),
            Err("information_schema")
        );
    }
}
