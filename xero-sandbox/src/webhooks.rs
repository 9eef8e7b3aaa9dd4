//! Outgoing webhooks: signed event batches (payload per xero-webhooks.yaml,
//! `x-xero-signature` from [`wire::webhook_signature`]) and the
//! intent-to-receive handshake.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use xero::secret::SecretString;

use crate::wire::{self, SIGNATURE_HEADER};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The app's webhook URL.
    pub url: String,
    /// The signing key (as shown in Xero's developer portal).
    pub key: SecretString,
}

/// One event to send.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub resource_url: String,
    pub resource_id: String,
    pub event_type: &'static str,
    pub event_category: &'static str,
    pub tenant_id: String,
    pub data: Option<serde_json::Value>,
}

/// Delivery counters.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WebhookStats {
    pub batches_sent: u64,
    pub events_sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub last_status: Option<u16>,
}

/// The outcome of the handshake.
#[derive(Debug, Clone, Serialize)]
pub struct IntentResult {
    /// Status for the correctly signed batch (200 expected).
    pub valid_status: Option<u16>,
    /// Status for the wrongly signed batch (401 expected).
    pub invalid_status: Option<u16>,
    /// Both as expected.
    pub passed: bool,
}

#[derive(Debug)]
pub(crate) struct Webhooks {
    target: Mutex<Option<WebhookTarget>>,
    sequence: AtomicI64,
    http: reqwest::Client,
    stats: Mutex<WebhookStats>,
}

fn entropy() -> String {
    let mut b = [0u8; 15];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD
        .encode(b)
        .to_ascii_uppercase()
        .replace(['-', '_'], "X")
}

fn event_date(t: OffsetDateTime) -> String {
    format!("{}.{:03}", wire::iso_seconds(t), t.millisecond())
}

impl Webhooks {
    pub(crate) fn new(target: Option<WebhookTarget>) -> Self {
        Self {
            target: Mutex::new(target),
            sequence: AtomicI64::new(0),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            stats: Mutex::new(WebhookStats::default()),
        }
    }

    pub(crate) fn set_target(&self, target: Option<WebhookTarget>) {
        *lock(&self.target) = target;
    }

    pub(crate) fn target_url(&self) -> Option<String> {
        lock(&self.target).as_ref().map(|t| t.url.clone())
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        lock(&self.stats).clone()
    }

    async fn post(&self, url: &str, body: Vec<u8>, signature: String) -> Option<u16> {
        let result = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match result {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "webhook delivery failed");
                None
            }
        }
    }

    /// Sends one batch of events (no-op without a target or events).
    /// Returns the receiver's status.
    pub(crate) async fn deliver(&self, events: Vec<Event>) -> Option<u16> {
        let target = lock(&self.target).clone()?;
        if events.is_empty() {
            return None;
        }
        let n = events.len() as i64;
        let last = self.sequence.fetch_add(n, Ordering::SeqCst) + n;
        let first = last - n + 1;
        let now = OffsetDateTime::now_utc();
        let events: Vec<serde_json::Value> = events
            .into_iter()
            .map(|e| {
                let mut v = json!({
                    "resourceUrl": e.resource_url,
                    "resourceId": e.resource_id,
                    "eventDateUtc": event_date(now),
                    "eventType": e.event_type,
                    "eventCategory": e.event_category,
                    "tenantId": e.tenant_id,
                    "tenantType": "ORGANISATION",
                });
                if let Some(d) = e.data {
                    v["data"] = d;
                }
                v
            })
            .collect();
        let body = json!({
            "events": events,
            "firstEventSequence": first,
            "lastEventSequence": last,
            "entropy": entropy(),
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let signature = wire::webhook_signature(target.key.expose_secret(), &bytes);
        // Xero retries failed deliveries; the sandbox tries three times.
        let mut status = None;
        for attempt in 0..3u32 {
            status = self
                .post(&target.url, bytes.clone(), signature.clone())
                .await;
            if status == Some(200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
        }
        let mut st = lock(&self.stats);
        st.batches_sent += 1;
        st.events_sent += n as u64;
        st.last_status = status;
        if status == Some(200) {
            st.delivered += 1;
        } else {
            st.failed += 1;
        }
        status
    }

    /// Intent to receive: an empty batch signed correctly (expect 200), then
    /// one signed with another key (expect 401).
    pub(crate) async fn intent(&self) -> Option<IntentResult> {
        let target = lock(&self.target).clone()?;
        let body = |e: String| {
            serde_json::to_vec(&json!({"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": e}))
                .unwrap_or_default()
        };
        let good = body(entropy());
        let valid_status = self
            .post(
                &target.url,
                good.clone(),
                wire::webhook_signature(target.key.expose_secret(), &good),
            )
            .await;
        let bad = body(entropy());
        let forged = wire::webhook_signature(&format!("not-the-key-{}", entropy()), &bad);
        let invalid_status = self.post(&target.url, bad, forged).await;
        Some(IntentResult {
            valid_status,
            invalid_status,
            passed: valid_status == Some(200) && invalid_status == Some(401),
        })
    }
}
