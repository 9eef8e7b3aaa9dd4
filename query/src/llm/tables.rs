//! The transformed tables as a prompt shows them: each table's description
//! and documented columns, read from the header of its model in
//! `templates/models` (the `-- columns:` block, the same one the transform's
//! documentation and tests use). Compiled in, so the prompt always matches
//! the models this binary was built with.

use serde::Serialize;

use super::error::LlmError;
use crate::guard::TRANSFORMED_TABLES;

/// The model files, by table: one entry per [`TRANSFORMED_TABLES`] (a test checks).
const MODEL_FILES: &[(&str, &str)] = &[
    (
        "dim_accounts",
        include_str!("../../../templates/models/dim_accounts.sql"),
    ),
    (
        "dim_contacts",
        include_str!("../../../templates/models/dim_contacts.sql"),
    ),
    (
        "dim_date",
        include_str!("../../../templates/models/dim_date.sql"),
    ),
    (
        "dim_items",
        include_str!("../../../templates/models/dim_items.sql"),
    ),
    (
        "fct_bank_transactions",
        include_str!("../../../templates/models/fct_bank_transactions.sql"),
    ),
    (
        "fct_credit_notes",
        include_str!("../../../templates/models/fct_credit_notes.sql"),
    ),
    (
        "fct_invoice_lines",
        include_str!("../../../templates/models/fct_invoice_lines.sql"),
    ),
    (
        "fct_invoices",
        include_str!("../../../templates/models/fct_invoices.sql"),
    ),
    (
        "fct_journal_lines",
        include_str!("../../../templates/models/fct_journal_lines.sql"),
    ),
    (
        "fct_payments",
        include_str!("../../../templates/models/fct_payments.sql"),
    ),
];

/// A table a query may read, as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDoc {
    pub name: String,
    /// The header's first paragraph, without the leading `<name>:`.
    pub description: String,
    pub columns: Vec<ColumnDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDoc {
    pub name: String,
    /// The header's type word (`text`, `money`, `date`, …).
    pub column_type: String,
    pub description: String,
}

/// Every transformed table, in [`TRANSFORMED_TABLES`] order.
pub fn transformed_tables() -> Result<Vec<TableDoc>, LlmError> {
    TRANSFORMED_TABLES
        .iter()
        .map(|table| {
            let (_, text) = MODEL_FILES
                .iter()
                .find(|(name, _)| name == table)
                .ok_or_else(|| {
                    LlmError::Prompt(format!("no model file compiled in for table {table}"))
                })?;
            parse_header(table, text)
        })
        .collect()
}

/// A model's header: every leading line that starts with `--`.
pub fn parse_header(table: &str, text: &str) -> Result<TableDoc, LlmError> {
    let header: Vec<&str> = text
        .lines()
        .map_while(|l| l.trim_start().strip_prefix("--"))
        .collect();
    let description = header
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let description = description
        .strip_prefix(&format!("{table}:"))
        .unwrap_or(&description)
        .trim()
        .to_owned();
    let start = header
        .iter()
        .position(|l| l.trim() == "columns:")
        .ok_or_else(|| LlmError::Prompt(format!("{table}: the model's header has no columns:")))?;
    let mut columns = Vec::new();
    for line in header[start + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.is_empty())
    {
        let mut words = line.split_whitespace();
        let (Some(name), Some(column_type)) = (words.next(), words.next()) else {
            return Err(LlmError::Prompt(format!(
                "{table}: a column line without a type: {line:?}"
            )));
        };
        let description = words.collect::<Vec<_>>().join(" ");
        columns.push(ColumnDoc {
            name: name.to_owned(),
            column_type: column_type.to_owned(),
            description,
        });
    }
    if columns.is_empty() {
        return Err(LlmError::Prompt(format!("{table}: no documented columns")));
    }
    Ok(TableDoc {
        name: table.to_owned(),
        description,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transformed_table_has_its_documented_columns() {
        assert_eq!(MODEL_FILES.len(), TRANSFORMED_TABLES.len());
        let tables = transformed_tables().expect("headers parse");
        assert_eq!(tables.len(), TRANSFORMED_TABLES.len());
        let invoices = tables
            .iter()
            .find(|t| t.name == "fct_invoices")
            .expect("fct_invoices");
        assert!(invoices
            .description
            .starts_with("one row per sales invoice"));
        let due = invoices
            .columns
            .iter()
            .find(|c| c.name == "amount_due_base")
            .expect("amount_due_base");
        assert_eq!(due.column_type, "money");
        assert_eq!(due.description, "amount_due in the base currency.");
        for table in &tables {
            assert!(!table.columns.is_empty(), "{}", table.name);
            for column in &table.columns {
                assert!(
                    !column.column_type.is_empty() && !column.description.is_empty(),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
        }
    }

    #[test]
    fn a_header_without_columns_is_an_error() {
        assert!(parse_header("t", "-- t: a table\n--\n-- tests:\nSELECT 1").is_err());
    }
}
