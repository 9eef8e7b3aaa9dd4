//! Questions to a tenant's books: the query engine run as the tenant's own
//! identity, every question audited, conversations carried by their plans,
//! feedback and CSV export of an audited answer.

use std::sync::Arc;

use cloud::naming::{self, TenantId};
use cloud::{CloudError, Clouds};
use query::answer::Answer;
use query::engine::{
    Ask, EngineConfig, GeneratorChoice, QueryEngine, QueryError, TenantScope, MAX_QUESTION_CHARS,
};
use query::llm::LlmProvider;
use query::plan::Plan;
use query::semantic::SemanticModel;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use super::ServiceError;
use crate::store::{ConversationTurn, NewQueryAudit, QueryOutcome};
use crate::store::{Phase, Store};

/// The rows a CSV export returns at most.
pub const CSV_MAX_ROWS: usize = 100_000;

/// The turns a conversation may have; a follow-up beyond them is refused
/// (409 `conversation_full`) and the asker starts a new conversation.
pub const MAX_CONVERSATION_TURNS: i64 = 200;

/// The latest turns a conversation's history shows.
pub const CONVERSATION_TURNS_SHOWN: i64 = 100;

/// A conversation's latest turns, oldest first, and how many it has.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationHistory {
    pub id: String,
    pub turns: Vec<ConversationTurn>,
    pub total_turns: i64,
    /// Whether earlier turns were left out.
    pub truncated: bool,
}

/// Who asks, as the audit records it.
#[derive(Debug, Clone)]
pub struct Asker {
    pub actor: String,
    /// The tenant API token used, if any (operators have none).
    pub token_id: Option<String>,
}

/// A question as the API and the CLI take it.
#[derive(Debug, Clone)]
pub struct Question {
    pub text: String,
    pub as_of: Option<Date>,
    pub generator: GeneratorChoice,
    /// Continue this conversation (its latest answered plan is the context).
    pub conversation: Option<String>,
}

/// An answer with the ids it is recorded under.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedAnswer {
    pub id: String,
    pub conversation: String,
    #[serde(flatten)]
    pub answer: Answer,
}

/// How questions are answered: the engine's limits, the LLM (if any), and
/// the tenants that never reach it.
#[derive(Clone, Default)]
pub struct QuerySettings {
    pub engine: EngineConfig,
    pub llm: Option<Arc<dyn LlmProvider>>,
    /// Tenants whose questions never go to an LLM.
    pub offline_only: std::collections::BTreeSet<String>,
}

/// The query engine and what it needs from the platform.
#[derive(Clone)]
pub struct QueryService {
    pub engine: Arc<QueryEngine>,
    /// The adapters of each cell (one shared Cloud locally).
    pub clouds: Clouds,
    pub store: Store,
    /// Tenants whose questions never go to an LLM.
    pub offline_only: Arc<std::collections::BTreeSet<String>>,
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn query_error(e: QueryError) -> ServiceError {
    match e {
        QueryError::BadQuestion(max) => ServiceError::invalid(
            "invalid_question",
            format!("a question is 1 to {max} characters"),
        ),
        QueryError::NoLlm => ServiceError::Unavailable {
            code: "llm_not_configured",
            message: "no LLM provider is configured; ask with generator \"offline\" or \"auto\""
                .to_owned(),
        },
        QueryError::LlmNotAllowed => ServiceError::invalid(
            "llm_not_allowed",
            "this tenant's questions are answered by the offline planner only",
        ),
        QueryError::AsOfOutOfRange(e) => ServiceError::invalid("invalid_as_of", e.to_string()),
        QueryError::Warehouse(e) => ServiceError::Unavailable {
            code: "warehouse_unavailable",
            message: format!("the warehouse could not answer now; try again: {e}"),
        },
    }
}

impl QueryService {
    /// The service over `cloud` (one shared Cloud, or a Cloud per cell) and
    /// `store`, answering by `model` and `settings`.
    pub fn new(
        cloud: impl Into<Clouds>,
        store: Store,
        model: Arc<SemanticModel>,
        settings: &QuerySettings,
    ) -> QueryService {
        let clouds = cloud.into();
        let mut config = settings.engine.clone();
        let llm = settings.llm.clone();
        let engine = match &clouds {
            Clouds::Shared(cloud) => QueryEngine::new(model, cloud.warehouse.clone(), config, llm),
            Clouds::PerCell(_) => {
                // Cells are Google Cloud projects: questions compile for
                // BigQuery, and each tenant's scope carries its cell's
                // warehouse (see `scope`).
                config.dialect = query::guard::Dialect::BigQuery;
                QueryEngine::per_cell(model, config, llm)
            }
        };
        QueryService {
            engine: Arc::new(engine),
            clouds,
            store,
            offline_only: Arc::new(settings.offline_only.clone()),
        }
    }

    /// The tenant's scope: its transformed dataset and its own credential.
    pub async fn scope(&self, tenant: &TenantId) -> Result<TenantScope, ServiceError> {
        let record = self
            .store
            .get_tenant(tenant)
            .await?
            .ok_or_else(|| ServiceError::tenant_not_found(tenant))?;
        if matches!(record.phase, Phase::Deleting) {
            return Err(ServiceError::conflict(
                "tenant_deleted",
                format!("tenant {tenant} is being deleted or was deleted"),
            ));
        }
        // The cell is read once: its Cloud answers, and on BigQuery its
        // project scopes the guard.
        let location = match &self.clouds {
            Clouds::PerCell(_) => crate::clouds::location(&self.store, &record).await?,
            Clouds::Shared(_) => None,
        };
        let cloud = self.clouds.for_cell(location.as_ref()).map_err(|e| {
            ServiceError::conflict("tenant_not_ready", format!("tenant {tenant}: {e}"))
        })?;
        let project = location.map(|l| l.project);
        let email = cloud
            .identity
            .email_for(&naming::service_account_id(tenant));
        let credential = match cloud.identity.credential_for(&email).await {
            Ok(c) => c,
            Err(CloudError::NotFound { .. }) => {
                return Err(ServiceError::conflict(
                    "tenant_not_ready",
                    format!("tenant {tenant} is not provisioned yet"),
                ))
            }
            Err(e) => return Err(ServiceError::internal("reading the tenant's identity", e)),
        };
        Ok(TenantScope {
            tenant: tenant.clone(),
            credential,
            dataset: naming::transformed_dataset(tenant),
            project,
            offline_only: self.offline_only.contains(tenant.as_str()),
            warehouse: self
                .clouds
                .needs_cells()
                .then(|| query::engine::CellWarehouse(cloud.warehouse.clone())),
        })
    }

    /// The previous plan of a conversation of this tenant; an unknown
    /// conversation (or another tenant's) is refused.
    async fn previous_plan(
        &self,
        tenant: &TenantId,
        conversation: &str,
    ) -> Result<Option<Plan>, ServiceError> {
        let turns = self
            .store
            .conversation_turn_count(conversation, tenant)
            .await?;
        if turns == 0 {
            return Err(ServiceError::not_found(
                "conversation_not_found",
                format!("conversation {conversation} does not exist"),
            ));
        }
        if turns >= MAX_CONVERSATION_TURNS {
            return Err(ServiceError::conflict(
                "conversation_full",
                format!(
                    "conversation {conversation} has {turns} turns, the most one may have; \
                     start a new conversation (ask without \"conversation\")"
                ),
            ));
        }
        let latest = self.store.latest_plan(conversation, tenant).await?;
        Ok(latest
            .and_then(|t| t.plan)
            .and_then(|p| serde_json::from_value(p).ok()))
    }

    /// Plans the question (and its conversation's context) without running it.
    pub async fn start(
        &self,
        tenant: &TenantId,
        question: &Question,
    ) -> Result<(TenantScope, Ask, String), ServiceError> {
        // Trimmed once, here: the limit, the prompt, the answer and the
        // audit all see the same text, and an over-long question is refused
        // before anything is read or stored.
        let text = question.text.trim();
        if text.is_empty() || text.chars().count() > MAX_QUESTION_CHARS {
            return Err(query_error(QueryError::BadQuestion(MAX_QUESTION_CHARS)));
        }
        let scope = self.scope(tenant).await?;
        let (conversation, previous) = match &question.conversation {
            Some(c) => (c.clone(), self.previous_plan(tenant, c).await?),
            None => (uuid::Uuid::new_v4().to_string(), None),
        };
        let ask = Ask {
            question: text.to_owned(),
            as_of: question.as_of.unwrap_or_else(today),
            generator: question.generator,
            previous,
        };
        Ok((scope, ask, conversation))
    }

    /// Answers a question of `tenant` and audits it.
    pub async fn ask(
        &self,
        tenant: &TenantId,
        asker: &Asker,
        question: &Question,
    ) -> Result<RecordedAnswer, ServiceError> {
        let (scope, ask, conversation) = self.start(tenant, question).await?;
        let answer = match self.engine.ask(&scope, &ask).await {
            Ok(a) => a,
            Err(e) => {
                self.audit_failure(tenant, asker, &conversation, &ask.question, &e)
                    .await?;
                return Err(query_error(e));
            }
        };
        self.record(tenant, asker, conversation, answer).await
    }

    /// Audits a question that failed before it had an answer.
    pub async fn audit_failure(
        &self,
        tenant: &TenantId,
        asker: &Asker,
        conversation: &str,
        question: &str,
        error: &QueryError,
    ) -> Result<(), ServiceError> {
        self.audit_stopped(tenant, asker, conversation, question, &error.to_string())
            .await
    }

    /// Audits a question that ended without an answer, for `reason` (an
    /// error, a timeout, a client gone).
    pub async fn audit_stopped(
        &self,
        tenant: &TenantId,
        asker: &Asker,
        conversation: &str,
        question: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        crate::metrics::metrics().question(QueryOutcome::Failed.as_str(), "none", None);
        self.store
            .record_query(&NewQueryAudit {
                tenant: tenant.clone(),
                token_id: asker.token_id.clone(),
                actor: asker.actor.clone(),
                conversation_id: conversation.to_owned(),
                question: question.to_owned(),
                plan: None,
                sql: None,
                generator: "none".to_owned(),
                row_count: 0,
                duration_ms: 0,
                outcome: QueryOutcome::Failed,
                refusal_reason: Some(reason.to_owned()),
            })
            .await?;
        Ok(())
    }

    /// Audits an answer and gives it its id.
    pub async fn record(
        &self,
        tenant: &TenantId,
        asker: &Asker,
        conversation: String,
        answer: Answer,
    ) -> Result<RecordedAnswer, ServiceError> {
        let outcome = match (&answer.answered, answer.refusal.as_deref()) {
            (true, _) => QueryOutcome::Answered,
            (false, Some(code)) if code.starts_with("guard:") => QueryOutcome::Refused,
            (false, Some("execution_failed" | "generator_failed")) => QueryOutcome::Failed,
            (false, _) => QueryOutcome::Declined,
        };
        let generator = match &answer.generator_detail {
            Some(detail) => format!("llm:{detail}"),
            None => "offline".to_owned(),
        };
        // The label says which kind of generator only: the detail (provider
        // and model) would multiply the series.
        crate::metrics::metrics().question(
            outcome.as_str(),
            if answer.generator_detail.is_some() {
                "llm"
            } else {
                "offline"
            },
            Some(std::time::Duration::from_millis(answer.timings_ms.total_ms)),
        );
        let record = self
            .store
            .record_query(&NewQueryAudit {
                tenant: tenant.clone(),
                token_id: asker.token_id.clone(),
                actor: asker.actor.clone(),
                conversation_id: conversation.clone(),
                question: answer.question.clone(),
                plan: answer
                    .plan
                    .as_ref()
                    .and_then(|p| serde_json::to_value(p).ok()),
                sql: (!answer.sql.is_empty()).then(|| answer.sql.clone()),
                generator,
                row_count: i64::try_from(answer.row_count).unwrap_or(i64::MAX),
                duration_ms: i64::try_from(answer.timings_ms.total_ms).unwrap_or(i64::MAX),
                outcome,
                refusal_reason: (!answer.answered).then(|| {
                    format!(
                        "{}: {}",
                        answer.refusal.as_deref().unwrap_or("declined"),
                        answer.explanation
                    )
                }),
            })
            .await?;
        Ok(RecordedAnswer {
            id: record.id,
            conversation,
            answer,
        })
    }

    /// A conversation's latest turns (at most [`CONVERSATION_TURNS_SHOWN`]),
    /// oldest first.
    pub async fn conversation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<ConversationHistory, ServiceError> {
        let total_turns = self.store.conversation_turn_count(id, tenant).await?;
        if total_turns == 0 {
            return Err(ServiceError::not_found(
                "conversation_not_found",
                format!("conversation {id} does not exist"),
            ));
        }
        let turns = self
            .store
            .conversation_tail(id, tenant, CONVERSATION_TURNS_SHOWN)
            .await?;
        Ok(ConversationHistory {
            id: id.to_owned(),
            truncated: i64::try_from(turns.len()).unwrap_or(i64::MAX) < total_turns,
            turns,
            total_turns,
        })
    }

    /// Records whether an answer helped.
    pub async fn feedback(
        &self,
        tenant: &TenantId,
        id: &str,
        helpful: bool,
        comment: Option<&str>,
    ) -> Result<(), ServiceError> {
        if comment.is_some_and(|c| c.chars().count() > 2000) {
            return Err(ServiceError::invalid(
                "invalid_feedback",
                "a comment is at most 2000 characters",
            ));
        }
        self.store
            .set_query_feedback(id, tenant, helpful, comment)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::QueryNotFound(_) => query_not_found(id),
                other => other.into(),
            })?;
        Ok(())
    }

    /// The rows of an audited answer as CSV, by running its SQL again as the tenant.
    pub async fn csv(&self, tenant: &TenantId, id: &str) -> Result<String, ServiceError> {
        let record = self
            .store
            .get_query(id)
            .await?
            .filter(|r| &r.tenant == tenant)
            .ok_or_else(|| query_not_found(id))?;
        let sql = record.sql.ok_or_else(|| {
            ServiceError::conflict("no_result", format!("query {id} has no result to export"))
        })?;
        let scope = self.scope(tenant).await?;
        let result = self
            .engine
            .rerun(&scope, &sql, CSV_MAX_ROWS)
            .await
            .map_err(query_error)?;
        let mut out = String::new();
        let header: Vec<String> = result.columns.iter().map(|c| csv_field(&c.name)).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for row in &result.rows {
            let cells: Vec<String> = row.iter().map(csv_value).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

fn query_not_found(id: &str) -> ServiceError {
    ServiceError::not_found("query_not_found", format!("query {id} does not exist"))
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'` so
/// a spreadsheet never runs a cell as a formula.
pub fn csv_field(text: &str) -> String {
    let guarded = match text.chars().next() {
        Some('=' | '+' | '-' | '@') if text.parse::<f64>().is_err() => format!("'{text}"),
        _ => text.to_owned(),
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn csv_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => csv_field(s),
        other => csv_field(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-12.50"), "-12.50");
    }
}
