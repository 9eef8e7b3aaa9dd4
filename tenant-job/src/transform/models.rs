//! The SQL models: the template files, each model's header (what it is, what
//! it reads, its columns and its data tests), and the order they build in.
//!
//! A model is `templates/models/<name>.sql`: a comment header, then one
//! SELECT (a tera template). The header, every line starting with `--`:
//!
//! ```text
//! -- fct_invoices: what one row is, and anything a reader must know.
//! -- (the description may go on for several lines)
//! --
//! -- sources: invoices                      raw tables read with source(name=…)
//! -- depends_on: dim_contacts, dim_date     models read with ref(name=…)
//! --
//! -- columns:
//! --   invoice_id   text    Xero InvoiceID; unique.
//! --   total        money   Total including tax.
//! --
//! -- tests:
//! --   unique: invoice_id
//! --   not_null: invoice_id, total
//! --   accepted_values: type in (ACCREC, ACCPAY)
//! --   relationship: contact_id -> dim_contacts.contact_id
//! --   relationship(severity=error): invoice_id -> fct_invoices.invoice_id
//! --   custom: invoice_totals_match_lines   (templates/models/tests/<name>.sql)
//! ```
//!
//! Column types are logical (see [`ColumnType`]); the built table must have
//! exactly the documented columns, in order, of those types.
//!
//! Every test has a [`Severity`]: `error` blocks publishing, `warn` is
//! recorded and publishing goes ahead. Relationship tests warn by default,
//! every other kind is an error; `kind(severity=error|warn): …` overrides it.
//!
//! A model documenting the boolean column [`UNKNOWN_MEMBER_COLUMN`] has
//! unknown members: rows standing in for reference data that facts point at
//! but Xero did not return. A relationship test to such a model does not
//! count them as parents, so every fact pointing at one is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xero::resources::Resource;

use super::{Dialect, TransformError};

/// Every `.sql` file under `templates/models/`, compiled into the binary so a job
/// image needs nothing beside it. A unit test keeps this list equal to the
/// folder.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../templates/models/", $path)))),*]
    };
}

const EMBEDDED: &[(&str, &str)] = embed![
    "dim_accounts.sql",
    "dim_contacts.sql",
    "dim_date.sql",
    "dim_items.sql",
    "fct_bank_transactions.sql",
    "fct_credit_notes.sql",
    "fct_invoice_lines.sql",
    "fct_invoices.sql",
    "fct_journal_lines.sql",
    "fct_payments.sql",
    "macros/bigquery.sql",
    "macros/duckdb.sql",
    "tests/accepted_values.sql",
    "tests/invoice_amount_due.sql",
    "tests/invoice_totals_match_lines.sql",
    "tests/journals_balance.sql",
    "tests/not_null.sql",
    "tests/relationship.sql",
    "tests/unique.sql",
];

/// The boolean column marking a dimension's unknown members (see the module
/// documentation).
pub const UNKNOWN_MEMBER_COLUMN: &str = "is_unknown";

/// The generic tests, rendered from `tests/<kind>.sql`.
pub(crate) const GENERIC_TESTS: [&str; 4] =
    ["unique", "not_null", "accepted_values", "relationship"];

/// The logical type of a documented column, and what it is in each warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Text,
    Boolean,
    Integer,
    /// Money: exact, two decimals.
    Money,
    /// Quantities and unit prices: exact, four decimals.
    Amount,
    /// Exchange rates: a binary float.
    Rate,
    Date,
    /// An instant in UTC.
    Timestamp,
}

impl ColumnType {
    const ALL: [(&'static str, ColumnType); 8] = [
        ("text", ColumnType::Text),
        ("boolean", ColumnType::Boolean),
        ("integer", ColumnType::Integer),
        ("money", ColumnType::Money),
        ("amount", ColumnType::Amount),
        ("rate", ColumnType::Rate),
        ("date", ColumnType::Date),
        ("timestamp", ColumnType::Timestamp),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(n, _)| n)
    }

    /// The type a query result reports for such a column in `dialect`.
    pub fn warehouse_type(self, dialect: Dialect) -> &'static str {
        match (dialect, self) {
            (Dialect::DuckDb, ColumnType::Text) => "VARCHAR",
            (Dialect::DuckDb, ColumnType::Boolean) => "BOOLEAN",
            (Dialect::DuckDb, ColumnType::Integer) => "BIGINT",
            (Dialect::DuckDb, ColumnType::Money) => "DECIMAL(18,2)",
            (Dialect::DuckDb, ColumnType::Amount) => "DECIMAL(18,4)",
            (Dialect::DuckDb, ColumnType::Rate) => "DOUBLE",
            (Dialect::DuckDb, ColumnType::Date) => "DATE",
            (Dialect::DuckDb, ColumnType::Timestamp) => "TIMESTAMP",
            (Dialect::BigQuery, ColumnType::Text) => "STRING",
            (Dialect::BigQuery, ColumnType::Boolean) => "BOOL",
            (Dialect::BigQuery, ColumnType::Integer) => "INT64",
            (Dialect::BigQuery, ColumnType::Money | ColumnType::Amount) => "NUMERIC",
            (Dialect::BigQuery, ColumnType::Rate) => "FLOAT64",
            (Dialect::BigQuery, ColumnType::Date) => "DATE",
            (Dialect::BigQuery, ColumnType::Timestamp) => "TIMESTAMP",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One documented column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDoc {
    pub name: String,
    pub column_type: ColumnType,
    pub description: String,
}

/// A data test declared in a model's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TestSpec {
    /// No two rows share the value(s) (NULLs aside).
    Unique {
        columns: Vec<String>,
    },
    NotNull {
        column: String,
    },
    /// Every value is one of `values` (NULLs aside).
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
    /// Every value (when set) is a `to_column` of some row of `to_model`.
    Relationship {
        column: String,
        to_model: String,
        to_column: String,
    },
    /// `templates/models/tests/<name>.sql`: a query returning the failing rows.
    Custom {
        name: String,
    },
}

/// What a failing data test does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing is published and the run fails (broken keys, journals that
    /// do not balance, totals that disagree with their lines).
    Error,
    /// Recorded in the run's summary; the tables are published (facts
    /// pointing at reference data Xero did not return).
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "error" => Some(Severity::Error),
            "warn" => Some(Severity::Warn),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TestSpec {
    /// The severity of a test of this kind when its header line sets none:
    /// relationships warn, everything else is an error.
    pub fn default_severity(&self) -> Severity {
        match self {
            TestSpec::Relationship { .. } => Severity::Warn,
            TestSpec::Unique { .. }
            | TestSpec::NotNull { .. }
            | TestSpec::AcceptedValues { .. }
            | TestSpec::Custom { .. } => Severity::Error,
        }
    }

    /// The test's name in reports: `<model>.<kind>(<what>)`.
    pub fn name(&self, model: &str) -> String {
        match self {
            TestSpec::Unique { columns } => format!("{model}.unique({})", columns.join(", ")),
            TestSpec::NotNull { column } => format!("{model}.not_null({column})"),
            TestSpec::AcceptedValues { column, .. } => {
                format!("{model}.accepted_values({column})")
            }
            TestSpec::Relationship {
                column,
                to_model,
                to_column,
            } => format!("{model}.relationship({column} -> {to_model}.{to_column})"),
            TestSpec::Custom { name } => format!("{model}.{name}"),
        }
    }

    /// The template the test renders from.
    pub(crate) fn template(&self) -> String {
        let file = match self {
            TestSpec::Unique { .. } => "unique",
            TestSpec::NotNull { .. } => "not_null",
            TestSpec::AcceptedValues { .. } => "accepted_values",
            TestSpec::Relationship { .. } => "relationship",
            TestSpec::Custom { name } => name,
        };
        format!("tests/{file}.sql")
    }
}

/// A data test as a model's header declares it: what it checks, and what
/// its failure does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataTest {
    #[serde(flatten)]
    pub spec: TestSpec,
    pub severity: Severity,
}

impl DataTest {
    /// A test with its kind's default severity.
    pub fn new(spec: TestSpec) -> Self {
        let severity = spec.default_severity();
        DataTest { spec, severity }
    }

    /// The test's name in reports (see [`TestSpec::name`]).
    pub fn name(&self, model: &str) -> String {
        self.spec.name(model)
    }
}

/// A model as its header declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    pub name: String,
    pub description: String,
    /// Raw tables read (resource storage names, e.g. `invoices`).
    pub sources: Vec<String>,
    /// Models read.
    pub depends_on: Vec<String>,
    pub columns: Vec<ColumnDoc>,
    pub tests: Vec<DataTest>,
}

impl Model {
    /// The template the model renders from.
    pub(crate) fn template(&self) -> String {
        format!("{}.sql", self.name)
    }

    /// Whether the model has unknown members (it documents
    /// [`UNKNOWN_MEMBER_COLUMN`]).
    pub fn has_unknown_members(&self) -> bool {
        self.columns.iter().any(|c| c.name == UNKNOWN_MEMBER_COLUMN)
    }
}

/// The template files the transformation runs: the embedded ones, a folder,
/// or either with files replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSet {
    /// Path under `templates/models/` → contents.
    files: BTreeMap<String, String>,
}

fn templates_err(message: impl Into<String>) -> TransformError {
    TransformError::Templates(message.into())
}

/// A plain SQL identifier: what model, column and table names must be, so
/// they need no quoting in either dialect.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
}

impl ModelSet {
    /// The models compiled into this binary.
    pub fn embedded() -> Self {
        ModelSet {
            files: EMBEDDED
                .iter()
                .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
                .collect(),
        }
    }

    /// The files of a folder laid out like `templates/models/` (models at its
    /// top, `macros/` and `tests/` beneath).
    pub fn from_dir(dir: &Path) -> Result<Self, TransformError> {
        let mut files = BTreeMap::new();
        for sub in ["", "macros", "tests"] {
            let folder = dir.join(sub);
            let entries = std::fs::read_dir(&folder)
                .map_err(|e| templates_err(format!("reading {}: {e}", folder.display())))?;
            for entry in entries {
                let path = entry
                    .map_err(|e| templates_err(format!("reading {}: {e}", folder.display())))?
                    .path();
                if path.extension().and_then(|e| e.to_str()) != Some("sql") {
                    continue;
                }
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| templates_err(format!("reading {}: {e}", path.display())))?;
                let key = if sub.is_empty() {
                    file.to_owned()
                } else {
                    format!("{sub}/{file}")
                };
                files.insert(key, text);
            }
        }
        Ok(ModelSet { files })
    }

    /// This set with `path` (relative to `templates/models/`) set to `text`.
    pub fn with_file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_owned(), text.to_owned());
        self
    }

    /// This set without `path`.
    pub fn without_file(mut self, path: &str) -> Self {
        self.files.remove(path);
        self
    }

    /// A file's contents.
    pub fn file(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Every file's path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub(crate) fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Every model, checked (headers, names, tests, dependencies) and in
    /// build order: each after every model it depends on.
    pub fn models(&self) -> Result<Vec<Model>, TransformError> {
        let mut models = BTreeMap::new();
        for (path, text) in &self.files {
            let Some(name) = path.strip_suffix(".sql").filter(|n| !n.contains('/')) else {
                continue;
            };
            let model = parse_header(name, text)?;
            models.insert(name.to_owned(), model);
        }
        if models.is_empty() {
            return Err(templates_err("there are no models"));
        }
        for (dialect_file, dialect) in [
            ("macros/duckdb.sql", Dialect::DuckDb),
            ("macros/bigquery.sql", Dialect::BigQuery),
        ] {
            if !self.files.contains_key(dialect_file) {
                return Err(templates_err(format!(
                    "{dialect_file} (the {dialect} macros) is missing"
                )));
            }
        }
        for kind in GENERIC_TESTS {
            let path = format!("tests/{kind}.sql");
            if !self.files.contains_key(&path) {
                return Err(templates_err(format!("{path} is missing")));
            }
        }
        for model in models.values() {
            self.check_references(model, &models)?;
        }
        order(models)
    }

    /// What a model's header names must exist: sources, models, columns of
    /// its tests, custom test templates.
    fn check_references(
        &self,
        model: &Model,
        all: &BTreeMap<String, Model>,
    ) -> Result<(), TransformError> {
        let here = |m: String| templates_err(format!("model {}: {m}", model.name));
        let storage: BTreeSet<String> = Resource::ALL.iter().map(|r| r.storage_name()).collect();
        for s in &model.sources {
            if !storage.contains(s) {
                return Err(here(format!(
                    "source {s} is not a raw table (one of {})",
                    storage.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for d in &model.depends_on {
            if !all.contains_key(d) {
                return Err(here(format!("depends on {d}, which is not a model")));
            }
            if *d == model.name {
                return Err(here("depends on itself".into()));
            }
        }
        if let Some(flag) = model
            .columns
            .iter()
            .find(|c| c.name == UNKNOWN_MEMBER_COLUMN)
        {
            if flag.column_type != ColumnType::Boolean {
                return Err(here(format!(
                    "{UNKNOWN_MEMBER_COLUMN} marks unknown members and must be boolean, not {}",
                    flag.column_type
                )));
            }
        }
        let has_column = |m: &Model, c: &str| m.columns.iter().any(|col| col.name == c);
        for test in &model.tests {
            let name = test.name(&model.name);
            let columns: Vec<&String> = match &test.spec {
                TestSpec::Unique { columns } => columns.iter().collect(),
                TestSpec::NotNull { column } | TestSpec::AcceptedValues { column, .. } => {
                    vec![column]
                }
                TestSpec::Relationship {
                    column,
                    to_model,
                    to_column,
                } => {
                    let target = all
                        .get(to_model)
                        .ok_or_else(|| here(format!("test {name}: {to_model} is not a model")))?;
                    if !has_column(target, to_column) {
                        return Err(here(format!(
                            "test {name}: {to_model} documents no column {to_column}"
                        )));
                    }
                    vec![column]
                }
                TestSpec::Custom { .. } => {
                    let template = test.spec.template();
                    if !self.files.contains_key(&template) {
                        return Err(here(format!("test {name}: {template} is missing")));
                    }
                    Vec::new()
                }
            };
            for c in columns {
                if !has_column(model, c) {
                    return Err(here(format!("test {name}: no documented column {c}")));
                }
            }
        }
        Ok(())
    }
}

/// Topological order, ties broken by name so the order is stable. A cycle is
/// an error naming the models in it.
fn order(mut models: BTreeMap<String, Model>) -> Result<Vec<Model>, TransformError> {
    let mut waiting: BTreeMap<String, BTreeSet<String>> = models
        .values()
        .map(|m| (m.name.clone(), m.depends_on.iter().cloned().collect()))
        .collect();
    let mut out = Vec::with_capacity(models.len());
    while !waiting.is_empty() {
        let ready: Vec<String> = waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            let stuck: Vec<String> = waiting.keys().cloned().collect();
            return Err(templates_err(format!(
                "the models' dependencies form a cycle among {}",
                stuck.join(", ")
            )));
        }
        for name in ready {
            waiting.remove(&name);
            for deps in waiting.values_mut() {
                deps.remove(&name);
            }
            if let Some(model) = models.remove(&name) {
                out.push(model);
            }
        }
    }
    Ok(out)
}

/// The first whitespace-separated word and what follows it, trimmed.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Splits `a, b,c` into names; empty gives none.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(PartialEq)]
enum Section {
    Description,
    Columns,
    Tests,
    Other,
}

/// Parses the comment header of `<name>.sql`.
pub(crate) fn parse_header(name: &str, text: &str) -> Result<Model, TransformError> {
    let file = format!("{name}.sql");
    let at = |line: usize, m: String| templates_err(format!("{file} line {line}: {m}"));
    if !is_identifier(name) {
        return Err(templates_err(format!(
            "{file}: a model's name must be a plain identifier (letters, digits, '_')"
        )));
    }
    let mut model = Model {
        name: name.to_owned(),
        description: String::new(),
        sources: Vec::new(),
        depends_on: Vec::new(),
        columns: Vec::new(),
        tests: Vec::new(),
    };
    let mut section = Section::Description;
    let mut seen_first = false;
    for (i, raw_line) in text.lines().enumerate() {
        let number = i + 1;
        let Some(body) = raw_line.trim_end().strip_prefix("--") else {
            break;
        };
        let body = body.strip_prefix(' ').unwrap_or(body);
        if !seen_first {
            let (first, rest) = body.split_once(':').ok_or_else(|| {
                at(
                    number,
                    format!("the header must start with `-- {name}: <what one row is>`"),
                )
            })?;
            if first.trim() != name {
                return Err(at(
                    number,
                    format!("the header names {:?}, the file is {name}", first.trim()),
                ));
            }
            model.description = rest.trim().to_owned();
            seen_first = true;
            continue;
        }
        let trimmed = body.trim();
        if trimmed.is_empty() {
            if section == Section::Description {
                section = Section::Other;
            }
            continue;
        }
        let indented = body.starts_with(' ');
        if !indented {
            let (key, value) = trimmed
                .split_once(':')
                .map_or((trimmed, ""), |(k, v)| (k, v));
            match key.trim() {
                "sources" => {
                    model.sources = list(value);
                    section = Section::Other;
                }
                "depends_on" => {
                    model.depends_on = list(value);
                    section = Section::Other;
                }
                "columns" => section = Section::Columns,
                "tests" => section = Section::Tests,
                _ if section == Section::Description => {
                    model.description.push(' ');
                    model.description.push_str(trimmed);
                }
                other => {
                    return Err(at(
                        number,
                        format!(
                            "unknown header entry {other:?} (expected sources, depends_on, columns or tests)"
                        ),
                    ))
                }
            }
            continue;
        }
        match section {
            Section::Columns => {
                let (col, rest) = first_word(trimmed);
                let (ty, description) = first_word(rest);
                if !is_identifier(col) {
                    return Err(at(number, format!("{col:?} is not a column name")));
                }
                let column_type = ColumnType::parse(ty).ok_or_else(|| {
                    at(
                        number,
                        format!(
                            "column {col}: {ty:?} is not a type (one of {})",
                            ColumnType::ALL.map(|(n, _)| n).join(", ")
                        ),
                    )
                })?;
                if description.is_empty() {
                    return Err(at(number, format!("column {col} has no description")));
                }
                if model.columns.iter().any(|c| c.name == col) {
                    return Err(at(number, format!("column {col} is documented twice")));
                }
                model.columns.push(ColumnDoc {
                    name: col.to_owned(),
                    column_type,
                    description: description.to_owned(),
                });
            }
            Section::Tests => model
                .tests
                .extend(parse_tests(trimmed).map_err(|m| at(number, m))?),
            Section::Description => {
                model.description.push(' ');
                model.description.push_str(trimmed);
            }
            Section::Other => {
                return Err(at(
                    number,
                    "an indented line outside columns: or tests:".into(),
                ))
            }
        }
    }
    if !seen_first {
        return Err(templates_err(format!(
            "{file}: no header (it must start with `-- {name}: <what one row is>`)"
        )));
    }
    if model.columns.is_empty() {
        return Err(templates_err(format!(
            "{file}: the header documents no columns"
        )));
    }
    for n in model.sources.iter().chain(&model.depends_on) {
        if !is_identifier(n) {
            return Err(templates_err(format!("{file}: {n:?} is not a table name")));
        }
    }
    Ok(model)
}

/// One `kind: args` or `kind(severity=…): args` line of `tests:` (a
/// `not_null` line may name several columns; the severity applies to each).
fn parse_tests(line: &str) -> Result<Vec<DataTest>, String> {
    let (head, args) = line
        .split_once(':')
        .ok_or_else(|| format!("{line:?}: a test is `kind: arguments`"))?;
    let (kind, severity) = parse_test_head(head.trim())?;
    let specs = parse_test_spec(line, kind, args.trim())?;
    Ok(specs
        .into_iter()
        .map(|spec| {
            let severity = severity.unwrap_or_else(|| spec.default_severity());
            DataTest { spec, severity }
        })
        .collect())
}

/// `kind` or `kind(severity=error)`: the kind and the severity it sets, if any.
fn parse_test_head(head: &str) -> Result<(&str, Option<Severity>), String> {
    let Some((kind, config)) = head.split_once('(') else {
        return Ok((head, None));
    };
    let config = config.strip_suffix(')').ok_or_else(|| {
        format!("{head:?}: the settings go in parentheses, `kind(severity=warn)`")
    })?;
    let mut severity = None;
    for setting in config.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = setting
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("{head:?}: a setting is `key=value`"))?;
        match key {
            "severity" => {
                let parsed = Severity::parse(value)
                    .ok_or_else(|| format!("{head:?}: severity {value:?} is not error or warn"))?;
                if severity.replace(parsed).is_some() {
                    return Err(format!("{head:?}: severity is set twice"));
                }
            }
            other => return Err(format!("{head:?}: unknown setting {other:?} (severity)")),
        }
    }
    Ok((kind.trim(), severity))
}

fn parse_test_spec(line: &str, kind: &str, args: &str) -> Result<Vec<TestSpec>, String> {
    let ident = |s: &str| -> Result<String, String> {
        let s = s.trim();
        if is_identifier(s) {
            Ok(s.to_owned())
        } else {
            Err(format!("{s:?} is not a name"))
        }
    };
    Ok(match kind {
        "unique" => vec![TestSpec::Unique {
            columns: list(args)
                .iter()
                .map(|c| ident(c))
                .collect::<Result<_, _>>()?,
        }],
        "not_null" => list(args)
            .iter()
            .map(|c| ident(c).map(|column| TestSpec::NotNull { column }))
            .collect::<Result<_, _>>()?,
        "accepted_values" => {
            let (column, values) = args
                .split_once(" in ")
                .ok_or_else(|| format!("{line:?}: expected `accepted_values: column in (A, B)`"))?;
            let values = values
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("{line:?}: the values go in parentheses"))?;
            vec![TestSpec::AcceptedValues {
                column: ident(column)?,
                values: list(values),
            }]
        }
        "relationship" => {
            let (column, target) = args
                .split_once("->")
                .ok_or_else(|| format!("{line:?}: expected `relationship: column -> model.column`"))?;
            let (to_model, to_column) = target
                .trim()
                .split_once('.')
                .ok_or_else(|| format!("{line:?}: the target is model.column"))?;
            vec![TestSpec::Relationship {
                column: ident(column)?,
                to_model: ident(to_model)?,
                to_column: ident(to_column)?,
            }]
        }
        "custom" => vec![TestSpec::Custom { name: ident(args)? }],
        other => {
            return Err(format!(
                "unknown test kind {other:?} (unique, not_null, accepted_values, relationship or custom)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_templates_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/models");
        let on_disk = ModelSet::from_dir(&dir).expect("read templates/models");
        let embedded = ModelSet::embedded();
        assert_eq!(
            embedded.paths().collect::<Vec<_>>(),
            on_disk.paths().collect::<Vec<_>>(),
            "every .sql file under templates/models must be listed in EMBEDDED"
        );
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn every_model_documents_its_columns_and_builds_after_its_dependencies() {
        let models = ModelSet::embedded().models().expect("models");
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        for required in [
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
        ] {
            assert!(
                names.contains(&required),
                "{required} missing from {names:?}"
            );
        }
        for (i, m) in models.iter().enumerate() {
            for d in &m.depends_on {
                let j = names.iter().position(|n| n == d).expect("dependency");
                assert!(j < i, "{} builds before its dependency {d}", m.name);
            }
            assert!(!m.description.is_empty(), "{}", m.name);
            assert!(
                m.tests
                    .iter()
                    .any(|t| matches!(t.spec, TestSpec::Unique { .. })
                        && t.severity == Severity::Error),
                "{} has no key test",
                m.name
            );
        }
        let invoices = models
            .iter()
            .find(|m| m.name == "fct_invoices")
            .expect("fct_invoices");
        let money: Vec<&str> = invoices
            .columns
            .iter()
            .filter(|c| c.column_type == ColumnType::Money)
            .map(|c| c.name.as_str())
            .collect();
        assert!(money.contains(&"total") && money.contains(&"amount_due"));
        assert!(invoices.tests.contains(&DataTest {
            spec: TestSpec::Relationship {
                column: "contact_id".into(),
                to_model: "dim_contacts".into(),
                to_column: "contact_id".into(),
            },
            severity: Severity::Warn,
        }));
        // The invariants of the books block publishing.
        for custom in [
            "invoice_totals_match_lines",
            "invoice_amount_due",
            "journals_balance",
        ] {
            let test = models
                .iter()
                .flat_map(|m| &m.tests)
                .find(|t| matches!(&t.spec, TestSpec::Custom { name } if name == custom))
                .unwrap_or_else(|| panic!("{custom}"));
            assert_eq!(test.severity, Severity::Error, "{custom}");
        }
        // Every dimension a fact refers to has unknown members for what
        // Xero did not return.
        for dim in ["dim_accounts", "dim_contacts", "dim_items"] {
            let m = models.iter().find(|m| m.name == dim).expect("dimension");
            assert!(m.has_unknown_members(), "{dim}");
        }
    }

    const HEADER: &str = "-- m: one row per thing,\n-- over two lines.\n--\n-- sources: invoices\n-- depends_on: a, b\n--\n-- columns:\n--   id     text   The key.\n--   total  money  The total.\n--\n-- tests:\n--   unique: id\n--   not_null: id, total\n--   accepted_values: id in (X, Y)\n--   relationship: id -> a.id\n--   custom: my_check\n--   relationship( severity = error ): total -> b.id\n--   not_null(severity=warn): total, id\nSELECT 1\n";

    #[test]
    fn headers_parse() {
        let m = parse_header("m", HEADER).expect("parse");
        assert_eq!(m.description, "one row per thing, over two lines.");
        assert_eq!(m.sources, ["invoices"]);
        assert_eq!(m.depends_on, ["a", "b"]);
        assert_eq!(m.columns.len(), 2);
        assert_eq!(m.columns[1].column_type, ColumnType::Money);
        let names: Vec<String> = m.tests.iter().map(|t| t.name("m")).collect();
        assert_eq!(
            names,
            [
                "m.unique(id)",
                "m.not_null(id)",
                "m.not_null(total)",
                "m.accepted_values(id)",
                "m.relationship(id -> a.id)",
                "m.my_check",
                "m.relationship(total -> b.id)",
                "m.not_null(total)",
                "m.not_null(id)"
            ]
        );
        let severities: Vec<Severity> = m.tests.iter().map(|t| t.severity).collect();
        use Severity::{Error, Warn};
        assert_eq!(
            severities,
            [Error, Error, Error, Error, Warn, Error, Error, Warn, Warn]
        );
    }

    #[test]
    fn bad_headers_say_where() {
        for (text, needle) in [
            ("SELECT 1", "no header"),
            ("-- other: x\n", "the header names \"other\""),
            (
                "-- m: x\n-- columns:\n--   id  txt  The key.\n",
                "line 3: column id: \"txt\" is not a type",
            ),
            (
                "-- m: x\n-- columns:\n--   id  text\n",
                "column id has no description",
            ),
            (
                "-- m: x\n-- columns:\n--   id  text  k\n-- tests:\n--   uniq: id\n",
                "unknown test kind",
            ),
            (
                "-- m: x\n-- columns:\n--   id  text  k\n-- tests:\n--   unique(severity=fatal): id\n",
                "line 5: \"unique(severity=fatal)\": severity \"fatal\" is not error or warn",
            ),
            (
                "-- m: x\n-- columns:\n--   id  text  k\n-- tests:\n--   unique(level=warn): id\n",
                "unknown setting \"level\"",
            ),
            (
                "-- m: x\n-- columns:\n--   id  text  k\n-- tests:\n--   unique(severity=warn: id\n",
                "the settings go in parentheses",
            ),
            (
                // After the description (ended by an empty comment line), a
                // misspelt entry is an error rather than more description.
                "-- m: x\n--\n-- colums:\n",
                "line 3: unknown header entry \"colums\"",
            ),
        ] {
            match parse_header("m", text) {
                Err(TransformError::Templates(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_references_and_cycles_are_refused() {
        let base = ModelSet::embedded();
        let model = |name: &str, deps: &str, extra: &str| {
            format!("-- {name}: x\n-- depends_on: {deps}\n-- columns:\n--   id  text  k\n-- tests:\n--   unique: id\n{extra}SELECT 1 AS id\n")
        };
        for (set, needle) in [
            (
                base.clone().with_file("zz.sql", &model("zz", "nope", "")),
                "depends on nope, which is not a model",
            ),
            (
                base.clone()
                    .with_file("zz.sql", &model("zz", "yy", ""))
                    .with_file("yy.sql", &model("yy", "zz", "")),
                "cycle among yy, zz",
            ),
            (
                base.clone().with_file(
                    "zz.sql",
                    "-- zz: x\n-- columns:\n--   id  text  k\n-- tests:\n--   custom: nothing_here\nSELECT 1\n",
                ),
                "tests/nothing_here.sql is missing",
            ),
            (
                base.clone().with_file(
                    "zz.sql",
                    "-- zz: x\n-- columns:\n--   id  text  k\n-- tests:\n--   relationship: id -> dim_contacts.nope\nSELECT 1\n",
                ),
                "dim_contacts documents no column nope",
            ),
            (
                base.clone().with_file(
                    "zz.sql",
                    "-- zz: x\n-- sources: quotes\n-- columns:\n--   id  text  k\nSELECT 1\n",
                ),
                "source quotes is not a raw table",
            ),
            (
                base.clone().with_file(
                    "zz.sql",
                    "-- zz: x\n-- columns:\n--   id  text  k\n--   is_unknown  text  k\nSELECT 1\n",
                ),
                "is_unknown marks unknown members and must be boolean, not text",
            ),
            (
                base.clone().without_file("macros/bigquery.sql"),
                "macros/bigquery.sql",
            ),
        ] {
            match set.models() {
                Err(TransformError::Templates(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
    }
}
