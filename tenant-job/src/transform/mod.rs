//! The transformation: raw pages → raw dataset → transformed dataset.
//!
//! 1. Load (`load.rs`): every manifest not yet loaded is merged into the raw
//!    dataset, one table per resource holding the latest version of each
//!    record as JSON text.
//! 2. Build: every model of `templates/models/` (see [`models`]) renders for
//!    the warehouse's dialect and builds, in dependency order, into a staging
//!    table `_build_<model>` of the transformed dataset, reading the raw
//!    dataset through [`cloud::ports::Warehouse::execute_reading`].
//! 3. Test ([`datatests`]): the staged tables must have their documented
//!    columns and pass every declared data test of severity `error`; a
//!    failing test of severity `warn` (by default, a relationship to
//!    reference data) is reported in [`TransformReport::warnings`].
//! 4. Publish: only then do the staged tables replace the published ones, all
//!    in one transaction. A failure anywhere before leaves the published
//!    tables as they were, drops the staging tables and fails the run with
//!    an error naming the model or test.
//!
//! 5. Compact (`compact.rs`): raw pages no raw table needs any more leave
//!    the bucket, and their manifests `state/loaded.json`. A failure here
//!    does not fail the run (the tables are published); the next run
//!    finishes it first.
//!
//! Everything runs as the tenant's own credential through the cloud ports.
//! A run may be repeated at will: loading is a merge and the build replaces.
//! [`rebuild`] loads every manifest from scratch into emptied raw tables.
//!
//! `sync` does step 1 while ingest still fetches: [`load_ready`] loads the
//! manifests written so far each time ingest writes one, and [`run_after`]
//! then loads what is left and goes on from step 2. Loading a manifest
//! early is the same merge as loading it late (manifests load oldest
//! first either way), so the tables are the same.

mod compact;
pub mod datatests;
mod load;
pub mod models;
mod raw_io;
pub mod render;
mod rewrite;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use cloud::{Cloud, CloudError, CloudResult, Credential};

pub use compact::CompactionReport;
pub use datatests::DataTestResult;
pub use job_contract::summary::TestWarning;
#[doc(hidden)]
pub use load::set_load_batch_bytes;
pub use models::{
    ColumnDoc, ColumnType, DataTest, Model, ModelSet, Severity, TestSpec, UNKNOWN_MEMBER_COLUMN,
};
pub use render::{Renderer, STAGING_PREFIX};

/// When set, the models are read from this folder instead of the ones
/// compiled in (to try a model change without rebuilding the job).
pub const MODELS_DIR_ENV: &str = "LEDGERLAKE_MODELS_DIR";

/// The SQL dialect of the warehouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The local adapter's warehouse.
    #[default]
    #[serde(rename = "duckdb")]
    DuckDb,
    #[serde(rename = "bigquery")]
    BigQuery,
}

impl Dialect {
    /// The macro file holding this dialect's side of every difference.
    pub fn macros_file(self) -> &'static str {
        match self {
            Dialect::DuckDb => "macros/duckdb.sql",
            Dialect::BigQuery => "macros/bigquery.sql",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::DuckDb => "duckdb",
            Dialect::BigQuery => "bigquery",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = TransformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "duckdb" => Ok(Dialect::DuckDb),
            "bigquery" => Ok(Dialect::BigQuery),
            other => Err(TransformError::Config(format!(
                "unknown SQL dialect {other:?} (duckdb or bigquery)"
            ))),
        }
    }
}

/// What a transformation needs: the tenant's resources and its credential.
#[derive(Clone)]
pub struct TransformContext {
    pub cloud: Cloud,
    /// The tenant's own identity; nothing runs as anyone else.
    pub cred: Credential,
    pub bucket: String,
    pub raw_dataset: String,
    pub transformed_dataset: String,
    pub run_id: String,
    pub dialect: Dialect,
}

impl fmt::Debug for TransformContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformContext")
            .field("cred", &self.cred)
            .field("bucket", &self.bucket)
            .field("raw_dataset", &self.raw_dataset)
            .field("transformed_dataset", &self.transformed_dataset)
            .field("run_id", &self.run_id)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

/// One published table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub rows: u64,
}

/// How long each phase took, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Loading done while ingest was still fetching (`sync`): it overlapped
    /// the ingest, so it is not in `total_ms`.
    pub preload_ms: u64,
    /// Loading after ingest (or all of it, for a transform on its own).
    pub load_ms: u64,
    pub build_ms: u64,
    pub test_ms: u64,
    pub publish_ms: u64,
    /// Compaction of the bucket, after the publish.
    pub compact_ms: u64,
    pub total_ms: u64,
}

/// What a transformation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransformReport {
    pub run_id: String,
    /// Records merged into the raw dataset, per resource (storage name, e.g.
    /// `invoices`; every resource is listed).
    pub loaded: BTreeMap<String, u64>,
    /// The manifests loaded by this run, in order (also those loaded while
    /// ingest was fetching).
    pub manifests: Vec<String>,
    /// The published tables, in build order.
    pub models: Vec<ModelReport>,
    /// Every data test: every `error` test passed (a failure is an error
    /// instead); `warn` tests may have failed.
    pub tests: Vec<DataTestResult>,
    /// The `warn` tests that failed, with a few of their failing rows: what
    /// the run's summary and `runs show` list.
    pub warnings: Vec<TestWarning>,
    /// Superseded raw pages deleted by this run (also those of an earlier
    /// run's unfinished compaction).
    pub compaction: CompactionReport,
    /// Whether the raw tables were loaded from scratch (`--rebuild`).
    pub rebuilt: bool,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("invalid transformation settings: {0}")]
    Config(String),
    /// A model, test or macro template, or a model's header, is wrong.
    #[error("models: {0}")]
    Templates(String),
    #[error("{what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: CloudError,
    },
    /// A manifest, page or record in the bucket is not what the layout says.
    #[error("raw data {key}: {reason}")]
    BadRaw { key: String, reason: String },
    #[error("loading {resource} from {manifest}: {source}")]
    Load {
        resource: String,
        manifest: String,
        #[source]
        source: CloudError,
    },
    #[error("model {model} failed to build, nothing was published: {source}")]
    Model {
        model: String,
        #[source]
        source: CloudError,
    },
    #[error("data test {test} could not run, nothing was published: {source}")]
    TestRun {
        test: String,
        #[source]
        source: CloudError,
    },
    /// Tests of severity `error` failed (only those are listed).
    #[error("data tests failed, nothing was published: {}", failed_tests(.failed))]
    DataTests { failed: Vec<DataTestResult> },
    #[error("publishing dataset {dataset}: {source}")]
    Publish {
        dataset: String,
        #[source]
        source: CloudError,
    },
}

impl TransformError {
    /// Whether running the transformation again later may succeed (the
    /// warehouse or bucket was busy or unavailable).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransformError::Storage { source, .. }
            | TransformError::Load { source, .. }
            | TransformError::Model { source, .. }
            | TransformError::TestRun { source, .. }
            | TransformError::Publish { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

fn failed_tests(failed: &[DataTestResult]) -> String {
    failed
        .iter()
        .map(|t| match &t.message {
            Some(m) => format!("{} ({m})", t.name),
            None => t.name.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Tries a cloud call again while it fails in a way that may pass (another
/// process holding a dataset file, a rate limit): the one policy of
/// `cloud::retry`, with a short first pause.
pub(crate) async fn retrying<T, F, Fut>(call: F) -> CloudResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CloudResult<T>>,
{
    const POLICY: cloud::retry::RetryPolicy = cloud::retry::RetryPolicy {
        min_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(10),
        max_retries: 6,
    };
    cloud::retry::retry(&POLICY, call).await
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn check_context(ctx: &TransformContext) -> Result<(), TransformError> {
    for (what, name) in [
        ("raw dataset", &ctx.raw_dataset),
        ("transformed dataset", &ctx.transformed_dataset),
    ] {
        if !models::is_identifier(name) {
            return Err(TransformError::Config(format!(
                "the {what} {name:?} is not a plain identifier"
            )));
        }
    }
    if ctx.raw_dataset == ctx.transformed_dataset {
        return Err(TransformError::Config(
            "the raw and transformed datasets must differ".into(),
        ));
    }
    if ctx.run_id.trim().is_empty() || ctx.bucket.trim().is_empty() {
        return Err(TransformError::Config(
            "the run id and the bucket must be set".into(),
        ));
    }
    Ok(())
}

fn model_set() -> Result<ModelSet, TransformError> {
    Ok(match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            tracing::info!(dir = %Path::new(&dir).display(), "using models from {MODELS_DIR_ENV}");
            ModelSet::from_dir(Path::new(&dir))?
        }
        _ => ModelSet::embedded(),
    })
}

/// Runs the transformation with the models compiled in (or those of
/// `$LEDGERLAKE_MODELS_DIR` when set).
pub async fn run(ctx: &TransformContext) -> Result<TransformReport, TransformError> {
    run_with_models(ctx, &model_set()?).await
}

/// Loads every manifest in the bucket from scratch: forgets what was loaded,
/// drops the raw tables, loads, builds and publishes as [`run`] does (the
/// published tables stay readable until the publish). Safe to run again
/// after a crash at any step: until it loads, the next run (rebuild or not)
/// loads everything.
pub async fn rebuild(ctx: &TransformContext) -> Result<TransformReport, TransformError> {
    run_inner(ctx, &model_set()?, true, Preloaded::default()).await
}

/// Runs the transformation with the models of `set`.
pub async fn run_with_models(
    ctx: &TransformContext,
    set: &ModelSet,
) -> Result<TransformReport, TransformError> {
    run_inner(ctx, set, false, Preloaded::default()).await
}

/// What loading while ingest fetched has done so far ([`load_ready`]).
#[derive(Debug, Default)]
pub struct Preloaded {
    loaded: BTreeMap<String, u64>,
    manifests: Vec<String>,
    resumed: Option<CompactionReport>,
    /// Passes that loaded at least one manifest.
    pub passes: u32,
    /// Time spent loading, in milliseconds.
    pub load_ms: u64,
}

impl Preloaded {
    /// The manifests loaded so far, in order.
    pub fn manifests(&self) -> &[String] {
        &self.manifests
    }

    fn add(&mut self, outcome: load::LoadOutcome, ms: u64) {
        if !outcome.manifests.is_empty() {
            self.passes += 1;
        }
        for (table, records) in outcome.loaded {
            *self.loaded.entry(table).or_default() += records;
        }
        self.manifests.extend(outcome.manifests);
        if let Some(resumed) = outcome.resumed {
            self.resumed
                .get_or_insert_with(Default::default)
                .add(&resumed);
        }
        self.load_ms += ms;
    }
}

/// Loads every complete manifest not loaded yet into the raw dataset, and
/// builds nothing: what `sync` runs each time ingest writes a manifest, so
/// that loading overlaps fetching. Adds what it did to `into`; the
/// transform that follows ([`run_after`]) reports it with its own.
pub async fn load_ready(
    ctx: &TransformContext,
    into: &mut Preloaded,
) -> Result<(), TransformError> {
    check_context(ctx)?;
    let set = model_set()?;
    let renderer = Renderer::new(&set, ctx.dialect, &ctx.raw_dataset, STAGING_PREFIX)?;
    let t = Instant::now();
    let outcome = load::load_all(ctx, &renderer, false).await?;
    into.add(outcome, millis(t));
    Ok(())
}

/// [`run`] after loading while ingest fetched: loads what is left, builds,
/// tests and publishes, and reports `preloaded` with what it did.
pub async fn run_after(
    ctx: &TransformContext,
    preloaded: Preloaded,
) -> Result<TransformReport, TransformError> {
    run_inner(ctx, &model_set()?, false, preloaded).await
}

async fn run_inner(
    ctx: &TransformContext,
    set: &ModelSet,
    rebuild: bool,
    preloaded: Preloaded,
) -> Result<TransformReport, TransformError> {
    let started = Instant::now();
    check_context(ctx)?;
    let models = set.models()?;
    let renderer = Renderer::new(set, ctx.dialect, &ctx.raw_dataset, STAGING_PREFIX)?;
    // Everything renders before anything is written: a template mistake
    // fails the run with the bucket and both datasets untouched.
    let mut builds = Vec::with_capacity(models.len());
    let mut tests = Vec::new();
    for model in &models {
        builds.push(renderer.model_build(model)?);
        for test in &model.tests {
            tests.push(datatests::PlannedTest {
                model: model.name.clone(),
                name: test.name(&model.name),
                severity: test.severity,
                sql: renderer.test_query(model, &test.spec)?,
            });
        }
    }
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let publish_sql = renderer.publish(&names)?;
    let mut timings = Timings::default();

    let t = Instant::now();
    let outcome = load::load_all(ctx, &renderer, rebuild).await?;
    timings.load_ms = millis(t);
    timings.preload_ms = preloaded.load_ms;
    // What loading beside ingest did, then what this load did.
    let mut loaded = preloaded;
    loaded.add(outcome, 0);

    let staged = build_and_test(ctx, &renderer, &models, &builds, &tests, &mut timings).await;
    let results = match staged {
        Ok(results) => results,
        Err(e) => {
            drop_staging(ctx, &renderer, &names).await;
            return Err(e);
        }
    };

    let t = Instant::now();
    if let Err(source) = retrying(|| {
        ctx.cloud
            .warehouse
            .execute(&ctx.cred, &ctx.transformed_dataset, &publish_sql)
    })
    .await
    {
        drop_staging(ctx, &renderer, &names).await;
        return Err(TransformError::Publish {
            dataset: ctx.transformed_dataset.clone(),
            source,
        });
    }
    timings.publish_ms = millis(t);

    // After the publish: compaction only touches the bucket, and a failure
    // there leaves published tables that are right.
    let t = Instant::now();
    let mut compaction = loaded.resumed.take().unwrap_or_default();
    match compact_raw(ctx).await {
        Ok(done) => compaction.add(&done),
        Err(e) => {
            tracing::warn!(error = %e, "compaction stopped part-way; the next run finishes it");
            compaction.error = Some(e.to_string());
        }
    }
    timings.compact_ms = millis(t);

    let tables = retrying(|| {
        ctx.cloud
            .warehouse
            .list_tables(&ctx.cred, &ctx.transformed_dataset)
    })
    .await
    .map_err(|source| TransformError::Storage {
        what: format!("listing the tables of dataset {}", ctx.transformed_dataset),
        source,
    })?;
    let models = names
        .iter()
        .map(|name| ModelReport {
            name: name.clone(),
            rows: tables
                .iter()
                .find(|t| t.name == *name)
                .and_then(|t| t.rows)
                .unwrap_or(0),
        })
        .collect();
    timings.total_ms = millis(started);
    let warnings: Vec<TestWarning> = results.iter().filter_map(DataTestResult::warning).collect();
    tracing::info!(
        run_id = %ctx.run_id,
        manifests = loaded.manifests.len(),
        models = names.len(),
        tests = results.len(),
        warnings = warnings.len(),
        compacted_manifests = compaction.manifests,
        compacted_bytes = compaction.bytes,
        total_ms = timings.total_ms,
        "transformed"
    );
    Ok(TransformReport {
        run_id: ctx.run_id.clone(),
        loaded: loaded.loaded,
        manifests: loaded.manifests,
        models,
        tests: results,
        warnings,
        compaction,
        rebuilt: rebuild,
        timings,
    })
}

/// Removes every loaded manifest no raw table needs any more, then rewrites
/// those mostly superseded (`compact.rs`, `rewrite.rs`). Run after a
/// successful load.
async fn compact_raw(ctx: &TransformContext) -> Result<CompactionReport, TransformError> {
    let loaded = raw_io::read_loaded(ctx).await?;
    if loaded.manifests.is_empty() {
        return Ok(CompactionReport::default());
    }
    let kept = compact::kept_runs(ctx).await?;
    let mut report = compact::remove_superseded(ctx, &loaded, &kept).await?;
    report.add(&rewrite::rewrite_sparse(ctx, &kept).await?);
    Ok(report)
}

/// Builds every staging table in order, then runs every test on them.
/// `Ok` only when every test of severity `error` passes.
async fn build_and_test(
    ctx: &TransformContext,
    renderer: &Renderer,
    models: &[Model],
    builds: &[String],
    tests: &[datatests::PlannedTest],
    timings: &mut Timings,
) -> Result<Vec<DataTestResult>, TransformError> {
    let sources = [ctx.raw_dataset.clone()];
    let t = Instant::now();
    for (model, sql) in models.iter().zip(builds) {
        let built = Instant::now();
        retrying(|| {
            ctx.cloud
                .warehouse
                .execute_reading(&ctx.cred, &ctx.transformed_dataset, sql, &sources)
        })
        .await
        .map_err(|source| TransformError::Model {
            model: model.name.clone(),
            source,
        })?;
        tracing::debug!(model = %model.name, ms = millis(built), "built");
    }
    timings.build_ms = millis(t);

    let t = Instant::now();
    let mut results = Vec::with_capacity(models.len() + tests.len());
    for model in models {
        results.push(datatests::check_columns(ctx, model, &renderer.table(&model.name)).await?);
    }
    results.extend(datatests::run_all(ctx, tests).await?);
    timings.test_ms = millis(t);
    for f in results.iter().filter(|r| !r.passed) {
        tracing::warn!(test = %f.name, severity = %f.severity, failing_rows = f.failing_rows, message = f.message.as_deref().unwrap_or(""), "data test failed");
    }
    let failed: Vec<DataTestResult> = results.iter().filter(|r| r.blocks()).cloned().collect();
    if failed.is_empty() {
        Ok(results)
    } else {
        Err(TransformError::DataTests { failed })
    }
}

/// Drops the staging tables after a failure (best effort: the next run
/// replaces them anyway).
async fn drop_staging(ctx: &TransformContext, renderer: &Renderer, names: &[String]) {
    let sql = renderer.drop_tables(names);
    if let Err(e) = retrying(|| {
        ctx.cloud
            .warehouse
            .execute(&ctx.cred, &ctx.transformed_dataset, &sql)
    })
    .await
    {
        tracing::warn!(error = %e, dataset = %ctx.transformed_dataset, "could not drop the staging tables");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_parse_and_print() {
        assert_eq!(
            "DuckDB".parse::<Dialect>().expect("duckdb"),
            Dialect::DuckDb
        );
        assert_eq!(
            "bigquery".parse::<Dialect>().expect("bq"),
            Dialect::BigQuery
        );
        assert!("postgres".parse::<Dialect>().is_err());
        assert_eq!(Dialect::BigQuery.to_string(), "bigquery");
        assert_eq!(
            serde_json::to_string(&Dialect::DuckDb).expect("json"),
            "\"duckdb\""
        );
    }

    #[test]
    fn a_failed_test_error_names_the_test() {
        let e = TransformError::DataTests {
            failed: vec![DataTestResult {
                name: "fct_invoices.unique(invoice_id)".into(),
                model: "fct_invoices".into(),
                severity: Severity::Error,
                passed: false,
                failing_rows: 2,
                message: Some("2 failing rows".into()),
                sample: Vec::new(),
            }],
        };
        assert_eq!(
            e.to_string(),
            "data tests failed, nothing was published: fct_invoices.unique(invoice_id) (2 failing rows)"
        );
    }
}
