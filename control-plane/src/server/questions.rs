//! The query routes: a tenant's questions, answered as that tenant.
//!
//! The tenant is taken from the credential, never from the body: a tenant API
//! token asks `POST /v1/query`; operators ask for any tenant with
//! `POST /v1/tenants/{id}/query`. The body names no tenant (unknown fields are
//! refused), so a token cannot be pointed at another tenant's books.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream;
use query::engine::{GeneratorChoice, Preparation};
use serde::Deserialize;

use cloud::naming::TenantId;

use super::auth::{authorize, Action, Principal};
use super::{parse_tenant, ApiError, AppState};
use crate::service::questions::{Asker, Question};

/// The body of a question.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    question: String,
    /// `YYYY-MM-DD`, in the years 1900 to 2200: what "today" is for the
    /// question (default: today, UTC).
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    generator: Option<GeneratorChoice>,
    /// Continue this conversation.
    #[serde(default)]
    conversation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    helpful: bool,
    #[serde(default)]
    comment: Option<String>,
}

fn question(body: QueryBody) -> Result<Question, ApiError> {
    let as_of = match body.as_of.as_deref() {
        None => None,
        Some(text) => {
            let day = query::plan::iso_date::parse(text).map_err(|_| {
                ApiError::bad_request("invalid_as_of", "as_of is a date written YYYY-MM-DD")
            })?;
            // Periods are counted back from it: a date at the calendar's
            // edge is refused here, before any of that arithmetic.
            Some(
                query::plan::check_as_of(day)
                    .map_err(|e| ApiError::bad_request("invalid_as_of", e.to_string()))?,
            )
        }
    };
    if let Some(c) = &body.conversation {
        if uuid::Uuid::parse_str(c).is_err() {
            return Err(ApiError::bad_request(
                "invalid_conversation",
                "conversation is the id an earlier answer returned",
            ));
        }
    }
    Ok(Question {
        text: body.question,
        as_of,
        generator: body.generator.unwrap_or_default(),
        conversation: body.conversation,
    })
}

/// The tenant a tenant token belongs to; operators name the tenant in the path instead.
fn own_tenant(principal: &Principal) -> Result<TenantId, ApiError> {
    match principal.tenant() {
        Some(t) => {
            authorize(principal, Some(t), Action::Query)?;
            Ok(t.clone())
        }
        None => {
            // The operator names the tenant in the path; the scheduler may not ask.
            authorize(principal, None, Action::Query)?;
            Err(ApiError::bad_request(
                "tenant_required",
                "operators ask with POST /v1/tenants/{id}/query (and read with /v1/tenants/{id}/…)",
            ))
        }
    }
}

fn asker(principal: &Principal) -> Asker {
    Asker {
        actor: principal.actor(),
        token_id: match principal {
            Principal::Tenant { token_id, .. } => Some(token_id.clone()),
            Principal::Operator | Principal::Scheduler => None,
        },
    }
}

fn query_service(state: &AppState) -> Result<&crate::service::questions::QueryService, ApiError> {
    state.query.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "query_not_served",
            "this service does not serve the query routes (serve --role)",
        )
    })
}

async fn answer(
    state: &AppState,
    principal: &Principal,
    tenant: TenantId,
    body: QueryBody,
) -> Result<Response, ApiError> {
    let service = query_service(state)?;
    let q = question(body)?;
    let recorded = service.ask(&tenant, &asker(principal), &q).await?;
    Ok(Json(recorded).into_response())
}

/// `POST /v1/query`: a tenant token's question about its own books.
pub async fn ask(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Json(body): Json<QueryBody>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal)?;
    answer(&state, &principal, tenant, body).await
}

/// `POST /v1/tenants/{id}/query`: a question about one tenant's books.
pub async fn ask_for_tenant(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(raw): Path<String>,
    Json(body): Json<QueryBody>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant(&raw)?;
    authorize(&principal, Some(&tenant), Action::Query)?;
    answer(&state, &principal, tenant, body).await
}

/// `POST /v1/query/stream`: the same answer as server-sent events, each step
/// as soon as it is known: `plan`, `sql`, `rows`, then `done` with the whole
/// recorded answer (or `error`).
///
/// The work runs in a task after the headers are sent, beyond the reach of
/// the router's limits, so the task enforces them itself: it holds a permit
/// of `AppState::query_streams` (none free: 503 `overloaded`, as the class
/// limit answers), it ends with an `error` event of code `timeout` after the
/// request timeout, and it stops when the client goes away.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Json(body): Json<QueryBody>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal)?;
    let service = query_service(&state)?.clone();
    let q = question(body)?;
    let asker = asker(&principal);
    // Taken before anything is read, so a refused stream costs nothing.
    let Ok(permit) = state.query_streams.clone().try_acquire_owned() else {
        // Answered as the query class's own limit answers.
        return Ok(super::limits::overloaded_response());
    };
    let timeout = state.config.limits.request_timeout;
    // Errors before anything is sent are plain HTTP errors.
    let (scope, ask, conversation) = service.start(&tenant, &q).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        // Released when the task ends, however it ends.
        let _permit = permit;
        let send = |name: &'static str, data: serde_json::Value| {
            let tx = tx.clone();
            async move {
                // A failed send is a client gone: `closed` below stops the work.
                let _ = tx
                    .send(Event::default().event(name).data(data.to_string()))
                    .await;
            }
        };
        let started = std::time::Instant::now();
        let work = async {
            // Each step is sent as soon as it is known.
            let steps = async {
                let answer = match service.engine.prepare(&scope, &ask).await? {
                    Preparation::Declined(answer) => *answer,
                    Preparation::Ready(prepared) => {
                        send(
                            "plan",
                            serde_json::json!({"plan": prepared.plan, "understood": prepared.understood}),
                        )
                        .await;
                        send("sql", serde_json::json!({"sql": prepared.sql})).await;
                        let a = service.engine.execute(&scope, &ask, *prepared).await?;
                        send(
                            "rows",
                            serde_json::json!({"columns": a.columns, "rows": a.rows, "truncated": a.truncated}),
                        )
                        .await;
                        a
                    }
                };
                Ok::<_, query::engine::QueryError>(answer)
            };
            let answer = match steps.await {
                Ok(answer) => answer,
                Err(e) => {
                    let _ = service
                        .audit_failure(&tenant, &asker, &conversation, &ask.question, &e)
                        .await;
                    send(
                        "error",
                        serde_json::json!({"error": "query_failed", "message": e.to_string()}),
                    )
                    .await;
                    return;
                }
            };
            let mut answer = answer;
            answer.timings_ms.total_ms =
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match service
                .record(&tenant, &asker, conversation.clone(), answer)
                .await
            {
                Ok(recorded) => {
                    send("done", serde_json::to_value(&recorded).unwrap_or_default()).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording a streamed answer failed");
                    send("error", serde_json::json!({"error": "internal", "message": "the answer could not be recorded"})).await;
                }
            }
        };
        // Biased: work that has finished is not counted as stopped.
        let ended = tokio::select! {
            biased;
            finished = tokio::time::timeout(timeout, work) => match finished {
                Ok(()) => None,
                Err(_) => Some("timed out"),
            },
            () = tx.closed() => Some("the client went away"),
        };
        if let Some(reason) = ended {
            tracing::info!(%tenant, reason, "a streamed question stopped before its answer");
            if let Err(e) = service
                .audit_stopped(&tenant, &asker, &conversation, &ask.question, reason)
                .await
            {
                tracing::error!(error = %e, "auditing a stopped stream failed");
            }
            if reason == "timed out" {
                let message = format!(
                    "the question was not answered within {} seconds",
                    timeout.as_secs()
                );
                let _ = tx
                    .send(Event::default().event("error").data(
                        serde_json::json!({"error": "timeout", "message": message}).to_string(),
                    ))
                    .await;
            }
        }
    });
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<Event, Infallible>(event), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/conversations/{id}`: the latest questions of one conversation,
/// oldest first (`truncated` when earlier ones are left out).
pub async fn conversation(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal)?;
    let history = query_service(&state)?.conversation(&tenant, &id).await?;
    Ok(Json(history).into_response())
}

/// `GET /v1/tenants/{tenant}/conversations/{id}`: the same, for operators.
pub async fn tenant_conversation(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((raw, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = parse_tenant(&raw)?;
    authorize(&principal, Some(&tenant), Action::Query)?;
    let history = query_service(&state)?.conversation(&tenant, &id).await?;
    Ok(Json(history).into_response())
}

/// `POST /v1/query/{id}/feedback`: whether an answer helped.
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Json(body): Json<FeedbackBody>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal)?;
    query_service(&state)?
        .feedback(&tenant, &id, body.helpful, body.comment.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/query/{id}/result.csv`: the answer's rows as CSV (its audited SQL, run again).
pub async fn result_csv(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = own_tenant(&principal)?;
    let csv = query_service(&state)?.csv(&tenant, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"query-{id}.csv\""),
            ),
        ],
        csv,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(as_of: &str) -> QueryBody {
        QueryBody {
            question: "revenue between 0000-01-02 and 9999-12-31 versus the previous period"
                .to_owned(),
            as_of: Some(as_of.to_owned()),
            generator: None,
            conversation: None,
        }
    }

    #[test]
    fn an_as_of_date_outside_1900_to_2200_is_a_bad_request() {
        for as_of in ["9999-12-31", "0000-01-01", "1899-12-31", "2201-01-01"] {
            let e = question(body(as_of)).expect_err(as_of);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{as_of}");
            assert_eq!(e.code, "invalid_as_of", "{as_of}");
            assert!(
                e.message.contains(as_of) && e.message.contains("1900 to 2200"),
                "{as_of}: {}",
                e.message
            );
        }
        for as_of in ["1900-01-01", "2026-11-30", "2200-12-31"] {
            let q = question(body(as_of)).unwrap_or_else(|e| panic!("{as_of}: {}", e.message));
            assert_eq!(
                q.as_of.map(query::plan::iso_date::format).as_deref(),
                Some(as_of)
            );
        }
        let e = question(body("31/12/9999")).expect_err("not ISO");
        assert_eq!(e.code, "invalid_as_of");
    }
}
