//! The query audit: every question a tenant (or an operator) asked, with the
//! plan and SQL that answered it, how, and the asker's feedback. Rows outlive
//! their tenant and token, like the audit log and the runs. Turns of a
//! conversation are read back in the order they were asked.

use std::fmt;
use std::str::FromStr;

use cloud::TenantId;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row as _;
use time::OffsetDateTime;

use super::{get, get_parsed, get_time, get_time_opt, now_ms, Store, StoreError};

/// How a question ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryOutcome {
    /// Rows were returned.
    Answered,
    /// The planner could not map the question ("I can't answer that yet").
    Declined,
    /// The guard refused the SQL (`refusal_reason` says why).
    Refused,
    /// Execution or generation failed.
    Failed,
}

impl QueryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryOutcome::Answered => "answered",
            QueryOutcome::Declined => "declined",
            QueryOutcome::Refused => "refused",
            QueryOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for QueryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueryOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "answered" => Ok(QueryOutcome::Answered),
            "declined" => Ok(QueryOutcome::Declined),
            "refused" => Ok(QueryOutcome::Refused),
            "failed" => Ok(QueryOutcome::Failed),
            other => Err(format!("unknown query outcome {other:?}")),
        }
    }
}

/// One question to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQueryAudit {
    pub tenant: TenantId,
    /// The tenant token that asked; `None` for an operator.
    pub token_id: Option<String>,
    /// Who asked, as the audit log names principals.
    pub actor: String,
    pub conversation_id: String,
    pub question: String,
    pub plan: Option<serde_json::Value>,
    /// The SQL run (or refused); `None` when none was generated.
    pub sql: Option<String>,
    /// `offline`, or the LLM provider that generated the SQL.
    pub generator: String,
    pub row_count: i64,
    pub duration_ms: i64,
    pub outcome: QueryOutcome,
    pub refusal_reason: Option<String>,
}

/// A recorded question, with its feedback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryAuditRecord {
    pub id: String,
    pub tenant: TenantId,
    pub token_id: Option<String>,
    pub actor: String,
    pub conversation_id: String,
    pub question: String,
    pub plan: Option<serde_json::Value>,
    pub sql: Option<String>,
    pub generator: String,
    pub row_count: i64,
    pub duration_ms: i64,
    pub outcome: QueryOutcome,
    pub refusal_reason: Option<String>,
    pub feedback_helpful: Option<bool>,
    pub feedback_comment: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub feedback_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One turn of a conversation, as its history shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationTurn {
    pub id: String,
    pub question: String,
    pub plan: Option<serde_json::Value>,
    pub sql: Option<String>,
    pub outcome: QueryOutcome,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const AUDIT_COLUMNS: &str = "id, tenant_id, token_id, actor, conversation_id, question, plan, \
                             sql, generator, row_count, duration_ms, outcome, refusal_reason, \
                             feedback_helpful, feedback_comment, feedback_at, created_at";

fn plan_from_row(row: &AnyRow) -> Result<Option<serde_json::Value>, StoreError> {
    let plan: Option<String> = get(row, "plan")?;
    plan.map(|p| serde_json::from_str(&p))
        .transpose()
        .map_err(|e| StoreError::InvalidData {
            column: "query_audit.plan",
            reason: e.to_string(),
        })
}

/// A nullable boolean: INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
fn get_bool_opt(row: &AnyRow, column: &'static str) -> Result<Option<bool>, StoreError> {
    match row.try_get::<Option<i64>, _>(column) {
        Ok(v) => Ok(v.map(|v| v != 0)),
        Err(_) => get(row, column),
    }
}

fn record_from_row(row: &AnyRow) -> Result<QueryAuditRecord, StoreError> {
    Ok(QueryAuditRecord {
        id: get(row, "id")?,
        tenant: get_parsed(row, "tenant_id")?,
        token_id: get(row, "token_id")?,
        actor: get(row, "actor")?,
        conversation_id: get(row, "conversation_id")?,
        question: get(row, "question")?,
        plan: plan_from_row(row)?,
        sql: get(row, "sql")?,
        generator: get(row, "generator")?,
        row_count: get(row, "row_count")?,
        duration_ms: get(row, "duration_ms")?,
        outcome: get_parsed(row, "outcome")?,
        refusal_reason: get(row, "refusal_reason")?,
        feedback_helpful: get_bool_opt(row, "feedback_helpful")?,
        feedback_comment: get(row, "feedback_comment")?,
        feedback_at: get_time_opt(row, "feedback_at")?,
        created_at: get_time(row, "created_at")?,
    })
}

fn turn_from_row(row: &AnyRow) -> Result<ConversationTurn, StoreError> {
    Ok(ConversationTurn {
        id: get(row, "id")?,
        question: get(row, "question")?,
        plan: plan_from_row(row)?,
        sql: get(row, "sql")?,
        outcome: get_parsed(row, "outcome")?,
        created_at: get_time(row, "created_at")?,
    })
}

impl Store {
    /// Records one question and returns it as stored (with its new id).
    pub async fn record_query(
        &self,
        entry: &NewQueryAudit,
    ) -> Result<QueryAuditRecord, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let plan = entry
            .plan
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::InvalidData {
                column: "query_audit.plan",
                reason: e.to_string(),
            })?;
        // A turn is stamped at least a millisecond after the conversation's
        // previous one, so that ordering by time gives the order of asking
        // even for turns recorded within one millisecond.
        self.execute(
            sqlx::query(
                "INSERT INTO query_audit \
                   (id, tenant_id, token_id, actor, conversation_id, question, plan, sql, \
                    generator, row_count, duration_ms, outcome, refusal_reason, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                        CASE WHEN MAX(created_at) >= $14 THEN MAX(created_at) + 1 ELSE $14 END \
                 FROM query_audit WHERE conversation_id = $5",
            )
            .bind(&id)
            .bind(entry.tenant.as_str())
            .bind(entry.token_id.as_deref())
            .bind(&entry.actor)
            .bind(&entry.conversation_id)
            .bind(&entry.question)
            .bind(plan)
            .bind(entry.sql.as_deref())
            .bind(&entry.generator)
            .bind(entry.row_count)
            .bind(entry.duration_ms)
            .bind(entry.outcome.as_str())
            .bind(entry.refusal_reason.as_deref())
            .bind(now_ms()),
        )
        .await?;
        self.get_query(&id)
            .await?
            .ok_or_else(|| StoreError::QueryNotFound(id))
    }

    /// The recorded question with this id, of whichever tenant: the caller
    /// authorises on its `tenant`.
    pub async fn get_query(&self, id: &str) -> Result<Option<QueryAuditRecord>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM query_audit WHERE id = $1");
        self.fetch_optional(sqlx::query(&sql).bind(id), record_from_row)
            .await
    }

    /// The turns of `tenant`'s conversation, in the order they were asked;
    /// empty when it has none (another tenant's conversation included).
    pub async fn conversation(
        &self,
        conversation_id: &str,
        tenant: &TenantId,
    ) -> Result<Vec<ConversationTurn>, StoreError> {
        self.fetch_all(
            sqlx::query(
                "SELECT id, question, plan, sql, outcome, created_at FROM query_audit \
                 WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY created_at, id",
            )
            .bind(conversation_id)
            .bind(tenant.as_str()),
            turn_from_row,
        )
        .await
    }

    /// How many turns `tenant`'s conversation has; 0 when it has none
    /// (another tenant's conversation included). Counted on the
    /// conversation's index, without reading the turns.
    pub async fn conversation_turn_count(
        &self,
        conversation_id: &str,
        tenant: &TenantId,
    ) -> Result<i64, StoreError> {
        let count = self
            .fetch_optional(
                sqlx::query(
                    "SELECT COUNT(*) AS turns FROM query_audit \
                     WHERE conversation_id = $1 AND tenant_id = $2",
                )
                .bind(conversation_id)
                .bind(tenant.as_str()),
                |row| get::<i64>(row, "turns"),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// The latest `limit` turns of `tenant`'s conversation, in the order
    /// they were asked; empty when it has none.
    pub async fn conversation_tail(
        &self,
        conversation_id: &str,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<ConversationTurn>, StoreError> {
        let mut turns = self
            .fetch_all(
                sqlx::query(
                    "SELECT id, question, plan, sql, outcome, created_at FROM query_audit \
                     WHERE conversation_id = $1 AND tenant_id = $2 \
                     ORDER BY created_at DESC, id DESC LIMIT $3",
                )
                .bind(conversation_id)
                .bind(tenant.as_str())
                .bind(limit),
                turn_from_row,
            )
            .await?;
        turns.reverse();
        Ok(turns)
    }

    /// The plan of the conversation's latest answered turn that has one: what
    /// a follow-up question refines. `None` when there is none.
    pub async fn latest_plan(
        &self,
        conversation_id: &str,
        tenant: &TenantId,
    ) -> Result<Option<ConversationTurn>, StoreError> {
        self.fetch_optional(
            sqlx::query(
                "SELECT id, question, plan, sql, outcome, created_at FROM query_audit \
                 WHERE conversation_id = $1 AND tenant_id = $2 \
                   AND outcome = 'answered' AND plan IS NOT NULL \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(conversation_id)
            .bind(tenant.as_str()),
            turn_from_row,
        )
        .await
    }

    /// Records the asker's feedback on question `id` (replacing earlier
    /// feedback). `QueryNotFound` unless the question is `tenant`'s, so that
    /// another tenant's question looks like no question at all.
    pub async fn set_query_feedback(
        &self,
        id: &str,
        tenant: &TenantId,
        helpful: bool,
        comment: Option<&str>,
    ) -> Result<QueryAuditRecord, StoreError> {
        let changed = self
            .execute(
                sqlx::query(
                    "UPDATE query_audit \
                     SET feedback_helpful = $3, feedback_comment = $4, feedback_at = $5 \
                     WHERE id = $1 AND tenant_id = $2",
                )
                .bind(id)
                .bind(tenant.as_str())
                .bind(helpful)
                .bind(comment)
                .bind(now_ms()),
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::QueryNotFound(id.to_owned()));
        }
        self.get_query(id)
            .await?
            .ok_or_else(|| StoreError::QueryNotFound(id.to_owned()))
    }
}
