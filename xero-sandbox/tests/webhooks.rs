//! Webhooks from the sandbox: signed with the app's key (checked with the
//! crate's own verification), payloads per xero-webhooks.yaml, and the
//! intent-to-receive handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use xero::webhook::{verify_and_parse, EventCategory, EventType, WebhookKey, SIGNATURE_HEADER};
use xero_sandbox::{ChangeRequest, Sandbox, SandboxConfig, WebhookTarget};

const KEY: &str = "sandbox-webhook-key-0123456789";

/// Answers like a correct receiver: 200 for a valid signature, 401 otherwise.
struct Verifying;

impl Respond for Verifying {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let sig = r
            .headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        match verify_and_parse(&WebhookKey::new(KEY), &r.body, sig) {
            Ok(_) => ResponseTemplate::new(200),
            Err(_) => ResponseTemplate::new(401),
        }
    }
}

async fn receiver(responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn changes_are_posted_as_signed_events() {
    let server = receiver(Verifying).await;
    let cfg = SandboxConfig::new("client", "secret")
        .invoices(200)
        .webhook(format!("{}/webhooks/xero", server.uri()), KEY);
    let sandbox = Sandbox::start(cfg).await.unwrap();
    let report = sandbox
        .apply_changes(&ChangeRequest {
            create: 2,
            pay: 1,
            contacts: 1,
            await_webhooks: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one batch");
    let r = &requests[0];
    assert_eq!(r.url.path(), "/webhooks/xero");
    let sig = r.headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
    let payload = verify_and_parse(&WebhookKey::new(KEY), &r.body, Some(sig)).unwrap();
    assert!(!payload.is_intent_to_receive());
    // Invoices and contacts changed (payments have no webhook category).
    let expected: Vec<&xero_sandbox::Changed> = report
        .changed
        .iter()
        .filter(|c| c.resource != "Payments")
        .collect();
    assert_eq!(payload.events.len(), expected.len());
    assert_eq!(payload.first_event_sequence, 1);
    assert_eq!(payload.last_event_sequence, expected.len() as i64);
    assert!(!payload.entropy.is_empty());
    for (e, c) in payload.events.iter().zip(expected) {
        assert_eq!(e.resource_id, c.id);
        assert_eq!(e.tenant_id, sandbox.tenant_ids()[0]);
        assert_eq!(e.tenant_type, "ORGANISATION");
        assert!(e.resource_url.starts_with(&sandbox.api_base()));
        assert!(e.resource_url.ends_with(&c.id));
        match c.resource.as_str() {
            "Invoices" => assert_eq!(e.event_category, EventCategory::Invoice),
            _ => assert_eq!(e.event_category, EventCategory::Contact),
        }
        let ty = if c.event == "CREATE" {
            EventType::Create
        } else {
            EventType::Update
        };
        assert_eq!(e.event_type, ty);
    }
    // The raw payload has exactly the fields the contract names.
    let raw: Value = serde_json::from_slice(&r.body).unwrap();
    let mut keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "entropy",
            "events",
            "firstEventSequence",
            "lastEventSequence"
        ]
    );
    let mut ekeys: Vec<&str> = raw["events"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    ekeys.sort_unstable();
    assert_eq!(
        ekeys,
        [
            "eventCategory",
            "eventDateUtc",
            "eventType",
            "resourceId",
            "resourceUrl",
            "tenantId",
            "tenantType"
        ]
    );
    // Another key would not verify.
    assert!(verify_and_parse(&WebhookKey::new("other"), &r.body, Some(sig)).is_err());

    // Sequence numbers go on across batches.
    sandbox
        .apply_changes(&ChangeRequest {
            contacts: 1,
            await_webhooks: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let second = verify_and_parse(
        &WebhookKey::new(KEY),
        &requests[1].body,
        requests[1]
            .headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap();
    assert_eq!(second.first_event_sequence, payload.last_event_sequence + 1);
}

#[tokio::test]
async fn intent_to_receive_handshake() {
    let good = receiver(Verifying).await;
    let sandbox = Sandbox::start(SandboxConfig::new("client", "secret").invoices(5))
        .await
        .unwrap();
    assert!(sandbox.webhook_intent().await.is_none(), "no target yet");
    sandbox.set_webhook(Some(WebhookTarget {
        url: good.uri(),
        key: KEY.into(),
    }));
    let r = sandbox.webhook_intent().await.unwrap();
    assert_eq!(
        (r.valid_status, r.invalid_status, r.passed),
        (Some(200), Some(401), true)
    );
    let sent = good.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2);
    for req in &sent {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["events"], serde_json::json!([]));
    }

    // A receiver that accepts anything fails the handshake.
    let lax = receiver(ResponseTemplate::new(200)).await;
    let http = reqwest::Client::new();
    let set = http
        .put(format!("{}/sandbox/webhooks", sandbox.base_url()))
        .json(&serde_json::json!({"url": lax.uri(), "key": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let v: Value = http
        .post(format!("{}/sandbox/webhooks/intent", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["invalid_status"], 200);
}
