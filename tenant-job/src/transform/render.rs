//! Rendering the templates into one dialect's SQL.
//!
//! Every model and test template gets the dialect's macro file imported as
//! `m` (so `m::money(...)` means the DuckDB or the BigQuery spelling), and two
//! functions: `source(name=…)`, a raw table (`<raw dataset>.<table>`), and
//! `ref(name=…)`, another model's table. A model may only name what its header
//! declares, so the declared dependencies (which decide the build order)
//! cannot drift from what the SQL reads.

use std::collections::{BTreeSet, HashMap};
use std::error::Error as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tera::{Context, Tera, Value};
use xero::resources::Resource;

use super::models::{is_identifier, Model, ModelSet, TestSpec, UNKNOWN_MEMBER_COLUMN};
use super::{Dialect, TransformError};

/// Models build into `_build_<model>` and are renamed when all pass.
pub const STAGING_PREFIX: &str = "_build_";

const MACROS: &str = "macros.sql";
const IMPORT: &str = "{% import \"macros.sql\" as m %}";

/// One page of raw records a merge reads from the load table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageRef {
    /// The page's object key (the load table's `object`).
    pub key: String,
    /// The run that fetched it, and when its manifest was completed (RFC 3339).
    pub run_id: String,
    pub fetched_at: String,
    /// The manifest's place among those loaded, oldest first, and the page's
    /// place in its manifest: later wins between versions with one stamp.
    pub manifest: u32,
    pub page: u32,
}

/// A complete listing of a resource Xero lists in full: its run and fetch
/// time (RFC 3339), as its manifest gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub run_id: String,
    pub fetched_at: String,
}

/// A raw table as the statements creating it need it.
#[derive(Debug, Serialize)]
struct RawTable {
    name: String,
    status_field: Option<&'static str>,
}

/// Statements of the transformation itself, with the dialect's macros.
const INTERNAL: [(&str, &str); 4] = [
    (
        "_internal/raw_tables.sql",
        "{% for t in tables %}{{ m::raw_table(table=t.name) }}\n{{ m::raw_upgrade(table=t.name) }}\n{% if t.status_field %}{{ m::raw_backfill(table=t.name, status_field=t.status_field) }}\n{% endif %}{% endfor %}",
    ),
    (
        "_internal/merge.sql",
        "{{ m::merge_lines(target=target, load=load, pages=pages, id_field=id_field, updated_field=updated_field, status_field=status_field) }}\n",
    ),
    (
        "_internal/mark_unlisted.sql",
        "{{ m::mark_unlisted(target=target, listings=listings) }}\n",
    ),
    (
        "_internal/publish.sql",
        "{{ m::publish(models=models, prefix=prefix) }}\n",
    ),
];

/// What the template being rendered may name.
#[derive(Debug, Default)]
struct Scope {
    /// Who is rendering, for messages (`model fct_invoices`).
    who: String,
    /// Models `ref` may name; `None` for any model.
    refs: Option<BTreeSet<String>>,
    /// Raw tables `source` may name; `None` for any.
    sources: Option<BTreeSet<String>>,
}

/// A tera environment for one dialect, raw dataset and table prefix.
pub struct Renderer {
    tera: Tera,
    scope: Arc<Mutex<Scope>>,
    prefix: String,
    /// Models with unknown members (see `models::UNKNOWN_MEMBER_COLUMN`).
    unknown_members: BTreeSet<String>,
}

fn templates_err(message: impl Into<String>) -> TransformError {
    TransformError::Templates(message.into())
}

/// A tera error with its causes: tera's own message alone often says only
/// "failed to render".
fn tera_message(e: &tera::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn name_arg<'a>(function: &str, args: &'a HashMap<String, Value>) -> tera::Result<&'a str> {
    args.get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| tera::Error::msg(format!("{function}() needs name=\"…\"")))
}

impl Renderer {
    /// `prefix` is put before every model's table name (the staging prefix
    /// while building, empty for the published names).
    pub fn new(
        set: &ModelSet,
        dialect: Dialect,
        raw_dataset: &str,
        prefix: &str,
    ) -> Result<Self, TransformError> {
        if !is_identifier(raw_dataset) {
            return Err(TransformError::Config(format!(
                "raw dataset {raw_dataset:?} is not a plain identifier"
            )));
        }
        let macros = set
            .file(dialect.macros_file())
            .ok_or_else(|| templates_err(format!("{} is missing", dialect.macros_file())))?;
        let mut templates: Vec<(String, String)> = vec![(MACROS.to_owned(), macros.to_owned())];
        for (path, text) in set.files() {
            if path.ends_with(".sql") && !path.starts_with("macros/") {
                // On the same line as the header: line numbers in errors stay right.
                templates.push((path.clone(), format!("{IMPORT}{text}")));
            }
        }
        for (name, text) in INTERNAL {
            templates.push((name.to_owned(), format!("{IMPORT}{text}")));
        }
        let mut tera = Tera::default();
        tera.add_raw_templates(templates)
            .map_err(|e| templates_err(tera_message(&e)))?;

        let all = set.models()?;
        let unknown_members: BTreeSet<String> = all
            .iter()
            .filter(|m| m.has_unknown_members())
            .map(|m| m.name.clone())
            .collect();
        let models: BTreeSet<String> = all.into_iter().map(|m| m.name).collect();
        let scope = Arc::new(Mutex::new(Scope::default()));
        let raw_tables: BTreeSet<String> = Resource::ALL.iter().map(|r| r.storage_name()).collect();
        {
            let scope = scope.clone();
            let raw = raw_dataset.to_owned();
            tera.register_function("source", move |args: &HashMap<String, Value>| {
                let name = name_arg("source", args)?;
                let scope = scope.lock().unwrap_or_else(|e| e.into_inner());
                if !raw_tables.contains(name) {
                    return Err(tera::Error::msg(format!(
                        "{}: source(name={name:?}) is not a raw table",
                        scope.who
                    )));
                }
                if scope.sources.as_ref().is_some_and(|s| !s.contains(name)) {
                    return Err(tera::Error::msg(format!(
                        "{} reads source {name}, which its header does not list under sources",
                        scope.who
                    )));
                }
                Ok(Value::String(format!("{raw}.{name}")))
            });
        }
        {
            let scope = scope.clone();
            let prefix = prefix.to_owned();
            tera.register_function("ref", move |args: &HashMap<String, Value>| {
                let name = name_arg("ref", args)?;
                let scope = scope.lock().unwrap_or_else(|e| e.into_inner());
                if !models.contains(name) {
                    return Err(tera::Error::msg(format!(
                        "{}: ref(name={name:?}) is not a model",
                        scope.who
                    )));
                }
                if scope.refs.as_ref().is_some_and(|r| !r.contains(name)) {
                    return Err(tera::Error::msg(format!(
                        "{} reads {name}, which its header does not list under depends_on",
                        scope.who
                    )));
                }
                Ok(Value::String(format!("{prefix}{name}")))
            });
        }
        Ok(Renderer {
            tera,
            scope,
            prefix: prefix.to_owned(),
            unknown_members,
        })
    }

    /// A model's table as this renderer names it.
    pub fn table(&self, model: &str) -> String {
        format!("{}{model}", self.prefix)
    }

    fn render(
        &self,
        template: &str,
        scope: Scope,
        context: &Context,
    ) -> Result<String, TransformError> {
        let who = scope.who.clone();
        *self.scope.lock().unwrap_or_else(|e| e.into_inner()) = scope;
        self.tera
            .render(template, context)
            .map_err(|e| templates_err(format!("{who}: {}", tera_message(&e))))
    }

    /// The model's SELECT.
    pub fn model_select(&self, model: &Model) -> Result<String, TransformError> {
        let scope = Scope {
            who: format!("model {}", model.name),
            refs: Some(model.depends_on.iter().cloned().collect()),
            sources: Some(model.sources.iter().cloned().collect()),
        };
        let sql = self.render(&model.template(), scope, &Context::new())?;
        Ok(trim_statement(&sql).to_owned())
    }

    /// The statement building the model's table.
    pub fn model_build(&self, model: &Model) -> Result<String, TransformError> {
        Ok(format!(
            "CREATE OR REPLACE TABLE {} AS\n{}",
            self.table(&model.name),
            self.model_select(model)?
        ))
    }

    /// A query returning the rows that fail `test` of `model`.
    pub fn test_query(&self, model: &Model, test: &TestSpec) -> Result<String, TransformError> {
        let mut context = Context::new();
        context.insert("model", &model.name);
        match test {
            TestSpec::Unique { columns } => context.insert("columns", columns),
            TestSpec::NotNull { column } => context.insert("column", column),
            TestSpec::AcceptedValues { column, values } => {
                context.insert("column", column);
                context.insert("values", values);
            }
            TestSpec::Relationship {
                column,
                to_model,
                to_column,
            } => {
                context.insert("column", column);
                context.insert("to_model", to_model);
                context.insert("to_column", to_column);
                // Unknown members stand in for missing rows: not parents.
                context.insert("to_unknown", &self.unknown_members.contains(to_model));
                context.insert("unknown_column", UNKNOWN_MEMBER_COLUMN);
                // The failing rows' key, so a sample says which rows they are.
                let keys: Vec<&String> = model
                    .tests
                    .iter()
                    .find_map(|t| match &t.spec {
                        TestSpec::Unique { columns } if !columns.contains(column) => {
                            Some(columns.iter().collect())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                context.insert("keys", &keys);
            }
            TestSpec::Custom { .. } => {}
        }
        let scope = Scope {
            who: format!("test {}", test.name(&model.name)),
            refs: None,
            sources: Some(BTreeSet::new()),
        };
        let sql = self.render(&test.template(), scope, &context)?;
        Ok(trim_statement(&sql).to_owned())
    }

    fn internal(&self, template: &str, context: &Context) -> Result<String, TransformError> {
        let scope = Scope {
            who: template.to_owned(),
            refs: Some(BTreeSet::new()),
            sources: Some(BTreeSet::new()),
        };
        self.render(template, scope, context)
    }

    /// Creates the raw table of every resource that does not exist yet,
    /// upgrades those made before they had their removal columns, and fills
    /// the status of rows loaded before then.
    pub fn raw_tables(&self, resources: &[Resource]) -> Result<String, TransformError> {
        let tables: Vec<RawTable> = resources
            .iter()
            .map(|r| RawTable {
                name: r.storage_name(),
                status_field: r.status_field(),
            })
            .collect();
        let mut context = Context::new();
        context.insert("tables", &tables);
        self.internal("_internal/raw_tables.sql", &context)
    }

    /// A query that runs only when the raw table of every resource exists
    /// with its removal columns: when it does, [`Renderer::raw_tables`] has
    /// nothing to do (on BigQuery, its statements would cost a job each and
    /// a scan of the records every run).
    pub fn raw_tables_probe(&self, resources: &[Resource]) -> String {
        let union = resources
            .iter()
            .map(|r| {
                format!(
                    "SELECT xero_status, removed_at, removed_run_id FROM {} WHERE FALSE",
                    r.storage_name()
                )
            })
            .collect::<Vec<_>>()
            .join("\n    UNION ALL ");
        format!("SELECT COUNT(*) AS n FROM (\n    {union}\n) AS probe")
    }

    /// Drops the raw table of every resource (to load from scratch).
    pub fn drop_raw_tables(&self, resources: &[Resource]) -> String {
        resources
            .iter()
            .map(|r| format!("DROP TABLE IF EXISTS {};\n", r.storage_name()))
            .collect()
    }

    /// Marks as removed the rows of `resource` (one Xero lists in full) that
    /// the complete `listings` loaded now, oldest first, lack (see
    /// `mark_unlisted`).
    pub fn mark_unlisted(
        &self,
        resource: Resource,
        listings: &[Listing],
    ) -> Result<String, TransformError> {
        let mut context = Context::new();
        context.insert("target", &resource.storage_name());
        context.insert("listings", listings);
        self.internal("_internal/mark_unlisted.sql", &context)
    }

    /// Merges the lines of `pages` in the load table into the raw table of
    /// `resource` (see `merge_lines`).
    pub fn merge(
        &self,
        resource: Resource,
        load: &str,
        pages: &[PageRef],
    ) -> Result<String, TransformError> {
        let mut context = Context::new();
        context.insert("target", &resource.storage_name());
        context.insert("load", load);
        context.insert("pages", pages);
        context.insert("id_field", resource.id_field());
        context.insert("updated_field", &resource.updated_field());
        context.insert("status_field", &resource.status_field());
        self.internal("_internal/merge.sql", &context)
    }

    /// Replaces the published tables by the staged ones.
    pub fn publish(&self, models: &[String]) -> Result<String, TransformError> {
        let mut context = Context::new();
        context.insert("models", models);
        context.insert("prefix", &self.prefix);
        self.internal("_internal/publish.sql", &context)
    }

    /// Drops the staged tables (after a failure).
    pub fn drop_tables(&self, models: &[String]) -> String {
        models
            .iter()
            .map(|m| format!("DROP TABLE IF EXISTS {};\n", self.table(m)))
            .collect()
    }
}

/// The statement without surrounding space or trailing semicolons, so that
/// it can be wrapped (CREATE … AS, SELECT COUNT(*) FROM (…)).
fn trim_statement(sql: &str) -> &str {
    let mut s = sql.trim();
    while let Some(rest) = s.strip_suffix(';') {
        s = rest.trim_end();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything(dialect: Dialect) -> String {
        let set = ModelSet::embedded();
        let r = Renderer::new(&set, dialect, "raw_acme", STAGING_PREFIX).expect("renderer");
        let mut out = String::new();
        for model in set.models().expect("models") {
            let sql = r
                .model_build(&model)
                .unwrap_or_else(|e| panic!("{dialect} {}: {e}", model.name));
            assert!(
                sql.starts_with(&format!(
                    "CREATE OR REPLACE TABLE _build_{} AS\n",
                    model.name
                )),
                "{sql}"
            );
            assert!(!sql.contains("{{") && !sql.contains("{%"), "{sql}");
            out.push_str(&sql);
            for test in &model.tests {
                let q = r
                    .test_query(&model, &test.spec)
                    .unwrap_or_else(|e| panic!("{dialect} {}: {e}", test.name(&model.name)));
                assert!(q.contains("_build_"), "{q}");
                out.push_str(&q);
            }
        }
        out.push_str(&r.raw_tables(&Resource::ALL).expect("raw tables"));
        let page = PageRef {
            key: "raw/invoices/run'1/00001.ndjson".to_owned(),
            run_id: "run'1".to_owned(),
            fetched_at: "2024-01-01T00:00:00Z".to_owned(),
            manifest: 1,
            page: 1,
        };
        for resource in [
            Resource::Invoices,
            Resource::Currencies,
            Resource::TaxRates,
            Resource::Journals,
        ] {
            out.push_str(
                &r.merge(resource, "_load_lines", std::slice::from_ref(&page))
                    .expect("merge"),
            );
        }
        let listing = Listing {
            run_id: "run'1".to_owned(),
            fetched_at: "2024-01-01T00:00:00Z".to_owned(),
        };
        out.push_str(
            &r.mark_unlisted(Resource::Currencies, &[listing.clone(), listing])
                .expect("mark unlisted"),
        );
        out.push_str(&r.publish(&["dim_contacts".to_owned()]).expect("publish"));
        out
    }

    #[test]
    fn every_model_and_test_renders_in_both_dialects() {
        let duck = everything(Dialect::DuckDb);
        let bq = everything(Dialect::BigQuery);
        // Every field of a record from one parse in DuckDB; one JSON_VALUE
        // each in BigQuery.
        assert!(duck.contains("json_extract_string(s.record, ['$.InvoiceNumber', '$.Type', "));
        assert!(duck.contains("r.f__InvoiceNumber AS invoice_number"));
        assert!(bq.contains("JSON_VALUE(s.record, '$.InvoiceNumber') AS f__InvoiceNumber"));
        assert!(bq.contains("r.f__InvoiceNumber AS invoice_number"));
        assert!(duck.contains("FROM raw_acme.invoices AS s"));
        assert!(duck.contains("DECIMAL(18, 2)"));
        assert!(duck.contains("'run''1'"), "DuckDB doubles quotes");
        assert!(duck.contains("ALTER TABLE _build_dim_contacts RENAME TO dim_contacts"));
        for sql in [&duck, &bq] {
            // Relationship tests: unknown members are not parents, and the
            // failing rows come with their key.
            assert!(
                sql.contains(
                    "SELECT child.invoice_id, child.contact_id\nFROM _build_fct_invoices AS child"
                ),
                "{sql}"
            );
            assert!(sql.contains("FROM _build_dim_contacts\n    WHERE NOT is_unknown\n"));
            assert!(sql.contains("FROM _build_dim_date\n) AS parent"));
        }
        for not_bq in [
            "json_extract",
            "DECIMAL(",
            "epoch_ms",
            "unnest(",
            "strftime",
            "VARCHAR",
        ] {
            assert!(!bq.contains(not_bq), "BigQuery SQL contains {not_bq}");
        }
        for bq_only in [
            "JSON_VALUE",
            "NUMERIC(18, 2)",
            "TIMESTAMP_MILLIS",
            "JSON_QUERY_ARRAY",
            "FORMAT_DATE",
            "MERGE invoices AS t",
            "r'^/Date",
        ] {
            assert!(bq.contains(bq_only), "BigQuery SQL lacks {bq_only}");
            assert!(!duck.contains(bq_only), "DuckDB SQL contains {bq_only}");
        }
        assert!(
            bq.contains("'run\\'1'"),
            "BigQuery escapes quotes with a backslash"
        );
    }

    #[test]
    fn a_model_may_read_only_what_its_header_declares() {
        let set = ModelSet::embedded();
        let sneaky = set.clone().with_file(
            "dim_contacts.sql",
            &set.file("dim_contacts.sql")
                .expect("model")
                .replace("FROM {{ ref(name=\"fct_invoices\") }}", "FROM {{ ref(name=\"fct_invoices\") }} JOIN {{ ref(name=\"fct_journal_lines\") }} AS i ON TRUE"),
        );
        let r = Renderer::new(&sneaky, Dialect::DuckDb, "raw_x", STAGING_PREFIX).expect("renderer");
        let model = sneaky
            .models()
            .expect("models")
            .into_iter()
            .find(|m| m.name == "dim_contacts")
            .expect("dim_contacts");
        match r.model_build(&model) {
            Err(TransformError::Templates(m)) => assert!(
                m.contains("model dim_contacts reads fct_journal_lines, which its header does not list under depends_on"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let undeclared = set.clone().with_file(
            "dim_contacts.sql",
            &set.file("dim_contacts.sql")
                .expect("model")
                .replace("source(name=\"contacts\")", "source(name=\"invoices\")"),
        );
        let r =
            Renderer::new(&undeclared, Dialect::DuckDb, "raw_x", STAGING_PREFIX).expect("renderer");
        let model = undeclared
            .models()
            .expect("models")
            .into_iter()
            .find(|m| m.name == "dim_contacts")
            .expect("dim_contacts");
        match r.model_build(&model) {
            Err(TransformError::Templates(m)) => assert!(
                m.contains("reads source invoices, which its header does not list under sources"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statements_are_trimmed_for_wrapping() {
        assert_eq!(trim_statement("\n SELECT 1 ;; \n"), "SELECT 1");
    }
}
