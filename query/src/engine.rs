//! A question end to end: the tenant's vocabulary, a plan (offline planner
//! first, an LLM when configured and allowed), SQL, the guard, the query as
//! the tenant's own identity through the warehouse port, and the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud::naming::TenantId;
use cloud::ports::warehouse::{QueryRequest, QueryResult, Warehouse};
use cloud::ports::Credential;
use cloud::CloudError;
use serde_json::Value;
use time::Date;

use crate::answer::{Answer, AnswerColumn, Chart, ChartType, GeneratorKind, Timings};
use crate::compile::{compile, describe_period, Compiled};
use crate::guard::{admit, Dialect, GuardPolicy};
use crate::llm::{build_request, Correction, Generated, LlmProvider, PromptContext};
use crate::plan::Plan;
use crate::planner::{self, Planned};
use crate::semantic::{Format, SemanticModel};
use crate::vocabulary::Vocabulary;

/// Limits and dialect of the warehouse the engine runs on.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub dialect: Dialect,
    /// Rows an answer returns at most (the guard's LIMIT, the executor's cap).
    pub max_rows: usize,
    /// Serialized size of an answer's rows at most, in bytes.
    pub max_result_bytes: usize,
    pub timeout: Duration,
    /// Bytes a query may scan (BigQuery), `None` for no cap.
    pub max_bytes: Option<u64>,
    /// How long a tenant's names are reused before they are read again.
    pub vocabulary_ttl: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            dialect: Dialect::DuckDb,
            max_rows: 1000,
            max_result_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            max_bytes: None,
            vocabulary_ttl: Duration::from_secs(60),
        }
    }
}

/// Whose data a question is asked of, and with what identity.
#[derive(Debug, Clone)]
pub struct TenantScope {
    pub tenant: TenantId,
    /// The tenant's own credential: the warehouse refuses it on any other dataset.
    pub credential: Credential,
    /// The tenant's transformed dataset.
    pub dataset: String,
    /// BigQuery: the tenant's cell project.
    pub project: Option<String>,
    /// Never send this tenant's questions to an LLM.
    pub offline_only: bool,
    /// The warehouse of the tenant's cell, where it is not the engine's own
    /// (Google Cloud keeps each cell's datasets in the cell's project).
    pub warehouse: Option<CellWarehouse>,
}

/// A cell's warehouse, carried by a [`TenantScope`].
#[derive(Clone)]
pub struct CellWarehouse(pub Arc<dyn Warehouse>);

impl std::fmt::Debug for CellWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellWarehouse")
    }
}

/// Which generator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorChoice {
    /// The offline planner, then an LLM (when configured and allowed) for what it declines.
    #[default]
    Auto,
    Offline,
    Llm,
}

/// One question.
#[derive(Debug, Clone)]
pub struct Ask {
    pub question: String,
    pub as_of: Date,
    pub generator: GeneratorChoice,
    /// The plan of the question this one follows up, in the same conversation.
    pub previous: Option<Plan>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The warehouse failed (not the question): worth retrying later.
    #[error("the warehouse failed: {0}")]
    Warehouse(#[source] CloudError),
    #[error("no LLM provider is configured (LEDGERLAKE_LLM_PROVIDER)")]
    NoLlm,
    #[error("this tenant is pinned to the offline planner")]
    LlmNotAllowed,
    #[error("the question is empty or longer than {0} characters")]
    BadQuestion(usize),
    /// Refused before any date is counted from it.
    #[error("{0}")]
    AsOfOutOfRange(#[from] crate::plan::AsOfOutOfRange),
}

/// The longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 2000;

/// SQL ready to run, and how it came about.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Option<Plan>,
    pub sql: String,
    pub compiled: Option<Compiled>,
    pub understood: Vec<String>,
    pub generator: GeneratorKind,
    pub generator_detail: Option<String>,
    pub plan_ms: u64,
    pub guard_ms: u64,
    /// The tenant's names the question was planned with (the explanation uses its base currency).
    pub vocabulary: Arc<Vocabulary>,
}

/// What preparing a question came to.
#[derive(Debug, Clone)]
pub enum Preparation {
    Ready(Box<Prepared>),
    /// Declined or refused: the answer says why.
    Declined(Box<Answer>),
}

pub struct QueryEngine {
    model: Arc<SemanticModel>,
    /// The warehouse every tenant shares; `None` where each tenant's scope
    /// names its cell's ([`QueryEngine::per_cell`]).
    warehouse: Option<Arc<dyn Warehouse>>,
    config: EngineConfig,
    llm: Option<Arc<dyn LlmProvider>>,
    vocabularies: Mutex<HashMap<String, (Instant, Arc<Vocabulary>)>>,
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl QueryEngine {
    pub fn new(
        model: Arc<SemanticModel>,
        warehouse: Arc<dyn Warehouse>,
        config: EngineConfig,
        llm: Option<Arc<dyn LlmProvider>>,
    ) -> QueryEngine {
        QueryEngine {
            model,
            warehouse: Some(warehouse),
            config,
            llm,
            vocabularies: Mutex::new(HashMap::new()),
        }
    }

    /// An engine with no warehouse of its own: each tenant's scope carries
    /// its cell's, and a scope without one is refused rather than run
    /// anywhere else.
    pub fn per_cell(
        model: Arc<SemanticModel>,
        config: EngineConfig,
        llm: Option<Arc<dyn LlmProvider>>,
    ) -> QueryEngine {
        QueryEngine {
            model,
            warehouse: None,
            config,
            llm,
            vocabularies: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The warehouse a tenant's questions run on: its cell's, else the engine's.
    fn warehouse_of<'a>(&'a self, scope: &'a TenantScope) -> Result<&'a dyn Warehouse, CloudError> {
        match (&scope.warehouse, &self.warehouse) {
            (Some(CellWarehouse(w)), _) | (None, Some(w)) => Ok(w.as_ref()),
            (None, None) => Err(CloudError::permanent(
                format!("dataset {}", scope.dataset),
                "no cell was given: every tenant's questions run on its cell's warehouse",
            )),
        }
    }

    pub fn model(&self) -> &SemanticModel {
        &self.model
    }

    /// The provider and model of the configured LLM, if any.
    pub fn llm_description(&self) -> Option<String> {
        self.llm.as_ref().map(|l| l.describe())
    }

    fn policy(&self, scope: &TenantScope) -> GuardPolicy {
        GuardPolicy::new(
            scope.dataset.clone(),
            scope.project.clone(),
            u64::try_from(self.config.max_rows).unwrap_or(u64::MAX),
        )
    }

    /// Forgets a tenant's cached names (after a sync changed them).
    pub fn invalidate(&self, dataset: &str) {
        if let Ok(mut cache) = self.vocabularies.lock() {
            cache.remove(dataset);
        }
    }

    /// The tenant's names, from the cache while fresh.
    pub async fn vocabulary(&self, scope: &TenantScope) -> Result<Arc<Vocabulary>, CloudError> {
        if let Ok(cache) = self.vocabularies.lock() {
            if let Some((at, v)) = cache.get(&scope.dataset) {
                if at.elapsed() < self.config.vocabulary_ttl {
                    return Ok(v.clone());
                }
            }
        }
        let loaded = Arc::new(
            Vocabulary::load(
                self.warehouse_of(scope)?,
                &scope.credential,
                &scope.dataset,
                self.config.timeout,
            )
            .await?,
        );
        if let Ok(mut cache) = self.vocabularies.lock() {
            cache.insert(scope.dataset.clone(), (Instant::now(), loaded.clone()));
        }
        Ok(loaded)
    }

    /// Answers a question.
    pub async fn ask(&self, scope: &TenantScope, ask: &Ask) -> Result<Answer, QueryError> {
        let started = Instant::now();
        let mut answer = match self.prepare(scope, ask).await? {
            Preparation::Declined(answer) => *answer,
            Preparation::Ready(prepared) => {
                let (generator, sql) = (prepared.generator, prepared.sql.clone());
                let answer = self.execute(scope, ask, *prepared).await?;
                match (&self.llm, generator, answer.refusal.as_deref()) {
                    // The model's SQL passed the guard but did not run (a
                    // column that does not exist, say): the error goes back
                    // to the model once.
                    (Some(llm), GeneratorKind::Llm, Some("execution_failed")) => {
                        let vocabulary = self
                            .vocabulary(scope)
                            .await
                            .map_err(QueryError::Warehouse)?;
                        let correction = Correction {
                            previous_reply: sql,
                            error: answer.explanation.clone(),
                        };
                        let again = self
                            .prepare_with_llm(
                                scope,
                                ask,
                                llm.as_ref(),
                                &vocabulary,
                                Instant::now(),
                                Some(correction),
                            )
                            .await;
                        match again {
                            Preparation::Ready(p) => self.execute(scope, ask, *p).await?,
                            Preparation::Declined(a) => *a,
                        }
                    }
                    _ => answer,
                }
            }
        };
        answer.timings_ms.total_ms = millis(started);
        Ok(answer)
    }

    /// Plans, compiles and guards a question, without running it.
    pub async fn prepare(&self, scope: &TenantScope, ask: &Ask) -> Result<Preparation, QueryError> {
        let question = ask.question.trim();
        if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
            return Err(QueryError::BadQuestion(MAX_QUESTION_CHARS));
        }
        crate::plan::check_as_of(ask.as_of)?;
        if ask.generator == GeneratorChoice::Llm {
            if self.llm.is_none() {
                return Err(QueryError::NoLlm);
            }
            if scope.offline_only {
                return Err(QueryError::LlmNotAllowed);
            }
        }
        let started = Instant::now();
        let vocabulary = match self.vocabulary(scope).await {
            Ok(v) => v,
            Err(CloudError::NotFound { .. }) => {
                return Ok(Preparation::Declined(Box::new(Answer::declined(
                    question,
                    None,
                    GeneratorKind::Offline,
                    "no_data",
                    "This tenant has no transformed data yet: its first sync has not finished."
                        .to_owned(),
                ))))
            }
            Err(e) => return Err(QueryError::Warehouse(e)),
        };
        let offline = if ask.generator == GeneratorChoice::Llm {
            None
        } else {
            Some(planner::plan(
                &self.model,
                &vocabulary,
                question,
                ask.as_of,
                ask.previous.as_ref(),
            ))
        };
        let use_llm = |offline: &Option<Planned>| {
            ask.generator == GeneratorChoice::Llm
                || (ask.generator == GeneratorChoice::Auto
                    && !scope.offline_only
                    && self.llm.is_some()
                    && matches!(offline, Some(Planned::Declined { .. })))
        };
        if use_llm(&offline) {
            if let Some(llm) = &self.llm {
                return Ok(self
                    .prepare_with_llm(scope, ask, llm.as_ref(), &vocabulary, started, None)
                    .await);
            }
        }
        match offline {
            Some(Planned::Plan { plan, understood }) => Ok(self.prepare_plan(
                scope,
                ask,
                &vocabulary,
                plan,
                understood,
                GeneratorKind::Offline,
                None,
                started,
            )),
            Some(Planned::Declined { understood, reason }) => {
                let mut explanation = reason;
                if !understood.is_empty() {
                    explanation.push_str(&format!(" I understood: {}.", understood.join("; ")));
                }
                let mut answer = Answer::declined(
                    question,
                    None,
                    GeneratorKind::Offline,
                    "not_understood",
                    explanation,
                );
                answer.timings_ms.plan_ms = millis(started);
                Ok(Preparation::Declined(Box::new(answer)))
            }
            None => Err(QueryError::NoLlm),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_plan(
        &self,
        scope: &TenantScope,
        ask: &Ask,
        vocabulary: &Arc<Vocabulary>,
        plan: Plan,
        understood: Vec<String>,
        generator: GeneratorKind,
        detail: Option<String>,
        started: Instant,
    ) -> Preparation {
        let compiled = match compile(&self.model, &plan, ask.as_of, self.config.dialect) {
            Ok(c) => c,
            Err(e) => {
                let mut answer = Answer::declined(
                    &ask.question,
                    Some(plan),
                    generator,
                    "not_understood",
                    format!("I can't answer that yet: {e}."),
                );
                answer.generator_detail = detail;
                return Preparation::Declined(Box::new(answer));
            }
        };
        let plan_ms = millis(started);
        let guarded = Instant::now();
        match admit(&compiled.sql, self.config.dialect, &self.policy(scope)) {
            Ok(admitted) => Preparation::Ready(Box::new(Prepared {
                plan: Some(plan),
                sql: admitted.sql,
                compiled: Some(compiled),
                understood,
                generator,
                generator_detail: detail,
                plan_ms,
                guard_ms: millis(guarded),
                vocabulary: vocabulary.clone(),
            })),
            Err(refusal) => {
                // The compiler's SQL is refused only by a defect: say so plainly.
                tracing::error!(code = refusal.code(), "the guard refused compiled SQL");
                let mut answer = Answer::declined(
                    &ask.question,
                    Some(plan),
                    generator,
                    &format!("guard:{}", refusal.code()),
                    format!("The query was refused: {refusal}."),
                );
                answer.generator_detail = detail;
                Preparation::Declined(Box::new(answer))
            }
        }
    }

    async fn prepare_with_llm(
        &self,
        scope: &TenantScope,
        ask: &Ask,
        llm: &dyn LlmProvider,
        vocabulary: &Arc<Vocabulary>,
        started: Instant,
        first_correction: Option<Correction>,
    ) -> Preparation {
        let detail = Some(llm.describe());
        // One try and one more with the error fed back; a single try when
        // this already is the correction of an earlier reply.
        let attempts = if first_correction.is_some() { 1 } else { 2 };
        let mut correction: Option<Correction> = first_correction;
        let history = ask
            .previous
            .iter()
            .map(|p| (String::from("(the previous question)"), p.clone()))
            .collect::<Vec<_>>();
        for attempt in 0..attempts {
            let ctx = PromptContext {
                as_of: ask.as_of,
                question: ask.question.clone(),
                history: history.clone(),
                correction: correction.take(),
            };
            let request = match build_request(&self.model, &ctx, false) {
                Ok(r) => r,
                Err(e) => return self.llm_failed(ask, detail, &e.to_string()),
            };
            let generated = match llm.complete(&request).await {
                Ok(g) => g,
                Err(e) => return self.llm_failed(ask, detail, &e.to_string()),
            };
            let (reply, outcome) = match generated {
                Generated::Decline(reason) => {
                    let mut answer = Answer::declined(
                        &ask.question,
                        None,
                        GeneratorKind::Llm,
                        "not_understood",
                        format!("I can't answer that yet: {reason}"),
                    );
                    answer.generator_detail = detail;
                    return Preparation::Declined(Box::new(answer));
                }
                Generated::Plan(plan) => {
                    let reply = serde_json::to_string(&plan).unwrap_or_default();
                    let outcome = match compile(&self.model, &plan, ask.as_of, self.config.dialect)
                    {
                        Ok(compiled) => {
                            Ok((Some(plan), Some(compiled.sql.clone()), Some(compiled)))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    (reply, outcome)
                }
                Generated::Sql(sql) => (sql.clone(), Ok((None, Some(sql), None))),
            };
            let error = match outcome {
                Ok((plan, Some(sql), compiled)) => {
                    let plan_ms = millis(started);
                    let guarded = Instant::now();
                    match admit(&sql, self.config.dialect, &self.policy(scope)) {
                        Ok(admitted) => {
                            return Preparation::Ready(Box::new(Prepared {
                                plan,
                                sql: admitted.sql,
                                compiled,
                                understood: Vec::new(),
                                generator: GeneratorKind::Llm,
                                generator_detail: detail,
                                plan_ms,
                                guard_ms: millis(guarded),
                                vocabulary: vocabulary.clone(),
                            }))
                        }
                        Err(refusal) if attempt + 1 == attempts => {
                            let mut answer = Answer::declined(
                                &ask.question,
                                plan,
                                GeneratorKind::Llm,
                                &format!("guard:{}", refusal.code()),
                                format!("The generated query was refused: {refusal}."),
                            );
                            answer.generator_detail = detail;
                            return Preparation::Declined(Box::new(answer));
                        }
                        Err(refusal) => refusal.to_string(),
                    }
                }
                Ok((_, None, _)) => "no SQL".to_owned(),
                Err(e) => e,
            };
            correction = Some(Correction {
                previous_reply: reply,
                error,
            });
        }
        // The last error says what was wrong (a period out of range, say).
        let why = match correction {
            Some(c) => format!(
                "the model's reply could not be used after a correction: {}",
                c.error
            ),
            None => "the model's reply could not be used after a correction".to_owned(),
        };
        self.llm_failed(ask, detail, &why)
    }

    fn llm_failed(&self, ask: &Ask, detail: Option<String>, why: &str) -> Preparation {
        let mut answer = Answer::declined(
            &ask.question,
            None,
            GeneratorKind::Llm,
            "generator_failed",
            format!("I can't answer that right now: the language model failed ({why})."),
        );
        answer.generator_detail = detail;
        Preparation::Declined(Box::new(answer))
    }

    /// Runs prepared SQL as the tenant and shapes the answer.
    pub async fn execute(
        &self,
        scope: &TenantScope,
        ask: &Ask,
        prepared: Prepared,
    ) -> Result<Answer, QueryError> {
        let started = Instant::now();
        let request = QueryRequest {
            dataset: scope.dataset.clone(),
            sql: prepared.sql.clone(),
            max_rows: self.config.max_rows,
            timeout: self.config.timeout,
            max_bytes: self.config.max_bytes,
        };
        let result = match self.warehouse_of(scope) {
            Ok(warehouse) => warehouse.query(&scope.credential, &request).await,
            Err(e) => Err(e),
        };
        let execute_ms = millis(started);
        let timings = Timings {
            plan_ms: prepared.plan_ms,
            guard_ms: prepared.guard_ms,
            execute_ms,
            total_ms: 0,
        };
        let result = match result {
            Ok(r) => r,
            Err(
                e @ (CloudError::Transient { .. }
                | CloudError::RateLimited { .. }
                | CloudError::PermissionDenied { .. }),
            ) => return Err(QueryError::Warehouse(e)),
            // The warehouse stopped the query at its timeout.
            Err(CloudError::Permanent { ref message, .. })
                if started.elapsed() >= self.config.timeout || message.contains("timeout") =>
            {
                let mut answer = self.shape(ask, &prepared, empty_result(), timings);
                answer.truncated = true;
                answer.explanation = format!(
                    "The query ran longer than its limit of {} s and was stopped, so there is no result. {}",
                    self.config.timeout.as_secs(),
                    answer.explanation
                );
                return Ok(answer);
            }
            Err(CloudError::NotFound { .. }) => {
                return Ok(Answer::declined(
                    &ask.question,
                    prepared.plan,
                    prepared.generator,
                    "no_data",
                    "This tenant has no transformed data yet: its first sync has not finished."
                        .to_owned(),
                ))
            }
            Err(e) => {
                // The SQL was admitted but the warehouse rejected it (e.g. an
                // LLM's column that does not exist): an unanswered question.
                let mut answer = Answer::declined(
                    &ask.question,
                    prepared.plan.clone(),
                    prepared.generator,
                    "execution_failed",
                    format!("The query could not run: {e}."),
                );
                answer.sql = prepared.sql.clone();
                answer.generator_detail = prepared.generator_detail.clone();
                answer.timings_ms = timings;
                return Ok(answer);
            }
        };
        Ok(self.shape(ask, &prepared, result, timings))
    }

    /// Re-runs SQL an earlier answer ran (the CSV export): guarded again, as the tenant.
    pub async fn rerun(
        &self,
        scope: &TenantScope,
        sql: &str,
        max_rows: usize,
    ) -> Result<QueryResult, QueryError> {
        let policy = GuardPolicy::new(
            scope.dataset.clone(),
            scope.project.clone(),
            u64::try_from(max_rows).unwrap_or(u64::MAX),
        );
        let admitted = admit(sql, self.config.dialect, &policy).map_err(|r| {
            QueryError::Warehouse(CloudError::permanent(
                scope.dataset.clone(),
                format!("the recorded query no longer passes the guard: {r}"),
            ))
        })?;
        let request = QueryRequest {
            dataset: scope.dataset.clone(),
            sql: admitted.sql,
            max_rows,
            timeout: self.config.timeout,
            max_bytes: self.config.max_bytes,
        };
        let mut result = self
            .warehouse_of(scope)
            .map_err(QueryError::Warehouse)?
            .query(&scope.credential, &request)
            .await
            .map_err(QueryError::Warehouse)?;
        money_as_numbers(&mut result);
        Ok(result)
    }

    fn shape(
        &self,
        ask: &Ask,
        prepared: &Prepared,
        mut result: QueryResult,
        timings: Timings,
    ) -> Answer {
        money_as_numbers(&mut result);
        let mut truncated = result.truncated;
        // The size cap: whole rows only, so what is returned is consistent.
        let mut size = 0usize;
        let mut keep = result.rows.len();
        for (i, row) in result.rows.iter().enumerate() {
            size += serde_json::to_string(row).map(|s| s.len()).unwrap_or(0);
            if size > self.config.max_result_bytes {
                keep = i;
                truncated = true;
                break;
            }
        }
        result.rows.truncate(keep);
        let chart = self.chart(prepared, &result);
        let explanation = self.explain(ask, prepared, &prepared.vocabulary, &result, truncated);
        Answer {
            question: ask.question.clone(),
            answered: true,
            plan: prepared.plan.clone(),
            sql: prepared.sql.clone(),
            columns: result
                .columns
                .iter()
                .map(|c| AnswerColumn {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                })
                .collect(),
            row_count: result.rows.len(),
            rows: result.rows,
            truncated,
            chart,
            explanation,
            generator: prepared.generator,
            generator_detail: prepared.generator_detail.clone(),
            refusal: None,
            timings_ms: timings,
        }
    }

    fn chart(&self, prepared: &Prepared, result: &QueryResult) -> Chart {
        let Some(compiled) = &prepared.compiled else {
            return Chart {
                chart_type: ChartType::Table,
                x: None,
                y: Vec::new(),
            };
        };
        let y: Vec<String> = compiled
            .metric_columns
            .iter()
            .filter(|c| !c.ends_with("_pct") && !c.ends_with("_change"))
            .cloned()
            .collect();
        let dims = &compiled.dimension_columns;
        let is_time = |d: &String| {
            self.model
                .dimension(d)
                .is_some_and(|dim| dim.grain.is_some())
        };
        let (chart_type, x) = match dims.len() {
            0 if result.rows.len() <= 1 && y.len() == 1 => (ChartType::Number, None),
            0 => (ChartType::Table, None),
            1 if is_time(&dims[0]) => (ChartType::Line, Some(dims[0].clone())),
            1 => (ChartType::Bar, Some(dims[0].clone())),
            _ => (ChartType::Table, Some(dims[0].clone())),
        };
        Chart { chart_type, x, y }
    }

    fn explain(
        &self,
        ask: &Ask,
        prepared: &Prepared,
        vocabulary: &Vocabulary,
        result: &QueryResult,
        truncated: bool,
    ) -> String {
        let Some(plan) = &prepared.plan else {
            let mut text = format!(
                "Answered with SQL written by {} and checked by the guard; {} row(s).",
                prepared
                    .generator_detail
                    .as_deref()
                    .unwrap_or("a language model"),
                result.rows.len()
            );
            if truncated {
                text.push_str(" The result was cut short by the row or size limit.");
            }
            return text;
        };
        let mut parts = Vec::new();
        for name in &plan.metrics {
            if let Some(metric) = self.model.metric(name) {
                let mut s = metric.label.clone();
                if metric.format == Format::Money {
                    match (&plan.currency, &vocabulary.base_currency) {
                        (Some(code), _) => {
                            s.push_str(&format!(" in {code}, documents in {code} only"))
                        }
                        (None, Some(base)) => {
                            s.push_str(&format!(" in the base currency ({base})"))
                        }
                        (None, None) => s.push_str(" in the base currency"),
                    }
                    // Only where the metric has both: amounts due and
                    // payments are what was owed or paid, tax and all.
                    let has_tax_variant = metric
                        .measures
                        .iter()
                        .any(|m| m.with_tax.is_some() || m.with_tax_base.is_some());
                    if has_tax_variant {
                        s.push_str(if plan.including_tax {
                            ", including tax"
                        } else {
                            ", excluding tax"
                        });
                    }
                }
                if metric.balance {
                    s.push_str(&format!(
                        " as of {}",
                        crate::plan::iso_date::format(ask.as_of)
                    ));
                }
                parts.push(s);
            }
        }
        let mut text = parts.join("; ");
        if !plan.dimensions.is_empty() {
            text.push_str(&format!(", by {}", plan.dimensions.join(" and ")));
        }
        for f in &plan.filters {
            text.push_str(&format!(", {} {}", f.dimension, f.values.join(" or ")));
        }
        let flows = plan
            .metrics
            .iter()
            .any(|m| self.model.metric(m).is_some_and(|m| !m.balance));
        if flows {
            text.push_str(&format!(
                ", {}",
                describe_period(plan.period.as_ref(), ask.as_of)
            ));
        }
        if let Some(rank) = plan.rank {
            text.push_str(&format!(
                ", {} {}",
                match rank.direction {
                    crate::plan::RankDirection::Top => "top",
                    crate::plan::RankDirection::Bottom => "bottom",
                },
                rank.n
            ));
        }
        if let (Some(c), Some(p)) = (plan.compare, &plan.period) {
            if let Ok(prev) = crate::timephrase::previous(p, c) {
                text.push_str(&format!(
                    ", compared with {} to {}",
                    crate::plan::iso_date::format(prev.start),
                    crate::plan::iso_date::format(prev.end)
                ));
            }
        }
        text.push('.');
        if plan
            .metrics
            .iter()
            .any(|m| m == "revenue" || m == "expenses")
        {
            text.push_str(" Posted documents only (AUTHORISED or PAID), dated by invoice date.");
        }
        if result.rows.is_empty() {
            text.push_str(" No documents match.");
        } else if plan.dimensions.is_empty() && result.rows.len() == 1 {
            let values: Vec<String> = plan
                .metrics
                .iter()
                .filter_map(|name| {
                    let index = result.columns.iter().position(|c| &c.name == name)?;
                    let metric = self.model.metric(name)?;
                    let value = result.rows[0].get(index)?.as_f64()?;
                    Some(format!(
                        "{} {}",
                        metric.label,
                        format_value(value, metric.format)
                    ))
                })
                .collect();
            if !values.is_empty() {
                text.push_str(&format!(" {}.", values.join("; ")));
            }
        } else {
            text.push_str(&format!(" {} row(s).", result.rows.len()));
        }
        if truncated {
            text.push_str(" The result was cut short by the row or size limit.");
        }
        text
    }
}

/// A value for the explanation: money with thousands separators and cents.
fn format_value(value: f64, format: Format) -> String {
    let (decimals, suffix) = match format {
        Format::Money => (2, ""),
        Format::Days => (1, " days"),
        Format::Count => (0, ""),
        Format::Number => (if value.fract() == 0.0 { 0 } else { 2 }, ""),
    };
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w.to_owned(), Some(f.to_owned())),
        None => (text.clone(), None),
    };
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 { "-" } else { "" };
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}{suffix}"),
        None => format!("{sign}{grouped}{suffix}"),
    }
}

fn empty_result() -> QueryResult {
    QueryResult {
        columns: Vec::new(),
        rows: Vec::new(),
        truncated: false,
    }
}

/// Exact decimals arrive as text (so money never passes through a float on
/// the way out of the warehouse); the API reports them as JSON numbers.
fn money_as_numbers(result: &mut QueryResult) {
    let decimal: Vec<bool> = result
        .columns
        .iter()
        .map(|c| {
            let t = c.data_type.to_ascii_uppercase();
            t.starts_with("DECIMAL") || t.starts_with("NUMERIC") || t.starts_with("BIGNUMERIC")
        })
        .collect();
    for row in &mut result.rows {
        for (i, cell) in row.iter_mut().enumerate() {
            if decimal.get(i) == Some(&true) {
                if let Value::String(s) = cell {
                    if let Some(n) = s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                        *cell = Value::Number(n);
                    }
                }
            }
        }
    }
}
