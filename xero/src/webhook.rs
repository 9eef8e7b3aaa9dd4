//! Webhook verification.
//!
//! Xero signs each delivery with `x-xero-signature`: base64 of HMAC-SHA256 over
//! the raw request body, keyed with the app's webhook key. The signature must be
//! checked on the exact bytes received (before any JSON parsing) and in constant
//! time, or an attacker can learn it byte by byte. Xero proves an endpoint
//! during "intent to receive" by sending empty event lists, some signed
//! correctly and some not; the endpoint must answer 200 to the first and 401 to
//! the second, so verification is the same code path for both.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::secret::SecretString;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "x-xero-signature";

type HmacSha256 = Hmac<Sha256>;

/// The app's webhook signing key (redacted in Debug/Display).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookKey(SecretString);

impl WebhookKey {
    /// Wraps the key as shown in Xero's developer portal.
    pub fn new(key: impl Into<SecretString>) -> Self {
        Self(key.into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an
        // empty-key MAC rather than panicking if that ever changed.
        HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
    }

    /// The signature Xero would send for `body` (for tests and the sandbox).
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        BASE64.encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookKey").field(&self.0).finish()
    }
}

/// Why a delivery was rejected. Every variant means "answer 401" except
/// [`WebhookError::InvalidPayload`], which can only follow a valid signature.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No `x-xero-signature` header.
    #[error("missing x-xero-signature header")]
    MissingSignature,
    /// The header is not base64 of a 32-byte MAC.
    #[error("malformed x-xero-signature header")]
    MalformedSignature,
    /// The signature does not match the body.
    #[error("webhook signature does not match")]
    SignatureMismatch,
    /// Correctly signed, but not the payload the contract describes.
    #[error("invalid webhook payload: {0}")]
    InvalidPayload(#[source] serde_json::Error),
}

impl WebhookError {
    /// Whether the response to Xero should be 401 (true) or 400 (false).
    pub fn is_unauthorized(&self) -> bool {
        !matches!(self, WebhookError::InvalidPayload(_))
    }
}

/// Checks `signature` (the header value, if any) against the raw `body` in
/// constant time.
pub fn verify_signature(
    key: &WebhookKey,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), WebhookError> {
    let signature = signature.ok_or(WebhookError::MissingSignature)?;
    let expected = BASE64
        .decode(signature.trim())
        .map_err(|_| WebhookError::MalformedSignature)?;
    let mut mac = key.mac();
    mac.update(body);
    // verify_slice compares in constant time (and rejects a wrong length).
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::SignatureMismatch)
}

/// Verifies the signature, then parses the payload. An intent-to-receive
/// delivery comes back as a payload with no events.
pub fn verify_and_parse(
    key: &WebhookKey,
    body: &[u8],
    signature: Option<&str>,
) -> Result<WebhookPayload, WebhookError> {
    verify_signature(key, body, signature)?;
    serde_json::from_slice(body).map_err(WebhookError::InvalidPayload)
}

/// One delivery: a batch of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// The events; empty for intent-to-receive.
    pub events: Vec<WebhookEvent>,
    /// Sequence number of the first event.
    #[serde(default)]
    pub first_event_sequence: i64,
    /// Sequence number of the last event.
    #[serde(default)]
    pub last_event_sequence: i64,
    /// A random string.
    #[serde(default)]
    pub entropy: String,
}

impl WebhookPayload {
    /// Whether this is an intent-to-receive probe (no events).
    pub fn is_intent_to_receive(&self) -> bool {
        self.events.is_empty()
    }
}

/// One change notification. It names the resource; the record itself must be
/// fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// URL of the changed resource.
    pub resource_url: String,
    /// Id of the changed resource (e.g. a ContactID).
    pub resource_id: String,
    /// When the event happened (UTC).
    #[serde(
        deserialize_with = "crate::dates::deserialize",
        serialize_with = "serialize_event_date"
    )]
    pub event_date_utc: OffsetDateTime,
    /// CREATE or UPDATE.
    pub event_type: EventType,
    /// CONTACT, INVOICE, CREDITNOTE or SUBSCRIPTION.
    pub event_category: EventCategory,
    /// The organisation (or, for subscriptions, the application) id.
    pub tenant_id: String,
    /// ORGANISATION or APPLICATION.
    pub tenant_type: String,
    /// Extra data some categories carry (credit notes: Type and Status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

fn serialize_event_date<S: serde::Serializer>(
    dt: &OffsetDateTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    let utc = dt.to_offset(time::UtcOffset::UTC);
    let text = format!(
        "{}.{:03}",
        crate::dates::format_if_modified_since(utc),
        utc.millisecond()
    );
    s.serialize_str(&text)
}

/// Kind of change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventType {
    /// A resource was created.
    Create,
    /// A resource was updated (archiving included).
    Update,
    /// A value this version does not know.
    Other(String),
}

impl From<String> for EventType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "CREATE" => Self::Create,
            "UPDATE" => Self::Update,
            _ => Self::Other(s),
        }
    }
}

impl From<EventType> for String {
    fn from(e: EventType) -> Self {
        match e {
            EventType::Create => "CREATE".into(),
            EventType::Update => "UPDATE".into(),
            EventType::Other(s) => s,
        }
    }
}

/// Category of the changed resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventCategory {
    /// A contact.
    Contact,
    /// An invoice.
    Invoice,
    /// A credit note.
    CreditNote,
    /// An app subscription.
    Subscription,
    /// A value this version does not know.
    Other(String),
}

impl From<String> for EventCategory {
    fn from(s: String) -> Self {
        match s.as_str() {
            "CONTACT" => Self::Contact,
            "INVOICE" => Self::Invoice,
            "CREDITNOTE" => Self::CreditNote,
            "SUBSCRIPTION" => Self::Subscription,
            _ => Self::Other(s),
        }
    }
}

impl From<EventCategory> for String {
    fn from(e: EventCategory) -> Self {
        match e {
            EventCategory::Contact => "CONTACT".into(),
            EventCategory::Invoice => "INVOICE".into(),
            EventCategory::CreditNote => "CREDITNOTE".into(),
            EventCategory::Subscription => "SUBSCRIPTION".into(),
            EventCategory::Other(s) => s,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const KEY: &str = "a-webhook-key-from-the-developer-portal";

    // The example in xero-webhooks.yaml (200WebhookDataReceivedOk).
    const CONTACT_EVENT: &str = r#"{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Contacts/717f2bfc-c6d4-41fd-b238-3f2f0c0cf777","resourceId":"717f2bfc-c6d4-41fd-b238-3f2f0c0cf777","eventDateUtc":"2024-06-21T01:15:39.902","eventType":"UPDATE","eventCategory":"CONTACT","tenantId":"c2cc9b6e-9458-4c7d-93cc-f02b81b0594f","tenantType":"ORGANISATION"}],"lastEventSequence":1,"firstEventSequence":1,"entropy":"S0m3r4Nd0mt3xt"}"#;

    const INTENT_TO_RECEIVE: &str = r#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"KSVQKYVHAYWYYEWKDGPD"}"#;

    fn key() -> WebhookKey {
        WebhookKey::new(KEY)
    }

    #[test]
    fn valid_signature_parses_events() {
        let body = CONTACT_EVENT.as_bytes();
        let sig = key().sign(body);
        let payload = verify_and_parse(&key(), body, Some(&sig)).unwrap();
        assert!(!payload.is_intent_to_receive());
        assert_eq!(payload.first_event_sequence, 1);
        assert_eq!(payload.last_event_sequence, 1);
        assert_eq!(payload.entropy, "S0m3r4Nd0mt3xt");
        let e = &payload.events[0];
        assert_eq!(e.resource_id, "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777");
        assert_eq!(e.tenant_id, "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f");
        assert_eq!(e.tenant_type, "ORGANISATION");
        assert_eq!(e.event_type, EventType::Update);
        assert_eq!(e.event_category, EventCategory::Contact);
        assert_eq!(e.event_date_utc, datetime!(2024-06-21 01:15:39.902 UTC));
        assert!(e
            .resource_url
            .ends_with("/Contacts/717f2bfc-c6d4-41fd-b238-3f2f0c0cf777"));
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"),
        // the well-known test vector, base64-encoded.
        let k = WebhookKey::new("key");
        let sig = k.sign(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(sig, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    }

    #[test]
    fn forged_signature_is_rejected() {
        let body = CONTACT_EVENT.as_bytes();
        let forged = WebhookKey::new("some-other-key").sign(body);
        let err = verify_and_parse(&key(), body, Some(&forged)).unwrap_err();
        assert!(matches!(err, WebhookError::SignatureMismatch));
        assert!(err.is_unauthorized());
    }

    #[test]
    fn tampered_body_is_rejected() {
        let sig = key().sign(CONTACT_EVENT.as_bytes());
        let tampered = CONTACT_EVENT.replace("UPDATE", "CREATE");
        let err = verify_signature(&key(), tampered.as_bytes(), Some(&sig)).unwrap_err();
        assert!(matches!(err, WebhookError::SignatureMismatch));
        // Even whitespace changes matter: the MAC is over the raw bytes.
        let spaced = format!("{CONTACT_EVENT} ");
        assert!(verify_signature(&key(), spaced.as_bytes(), Some(&sig)).is_err());
    }

    #[test]
    fn missing_or_malformed_header_is_rejected() {
        let body = CONTACT_EVENT.as_bytes();
        assert!(matches!(
            verify_and_parse(&key(), body, None).unwrap_err(),
            WebhookError::MissingSignature
        ));
        assert!(matches!(
            verify_signature(&key(), body, Some("not base64!!")).unwrap_err(),
            WebhookError::MalformedSignature
        ));
        // Right encoding, wrong length (a truncated MAC) must not pass.
        let sig = key().sign(body);
        let raw = BASE64.decode(&sig).unwrap();
        let short = BASE64.encode(&raw[..16]);
        assert!(matches!(
            verify_signature(&key(), body, Some(&short)).unwrap_err(),
            WebhookError::SignatureMismatch
        ));
        assert!(verify_signature(&key(), body, Some("")).is_err());
    }

    #[test]
    fn intent_to_receive_handshake() {
        let body = INTENT_TO_RECEIVE.as_bytes();
        // Correctly signed empty list: accept (answer 200).
        let good = key().sign(body);
        let payload = verify_and_parse(&key(), body, Some(&good)).unwrap();
        assert!(payload.is_intent_to_receive());
        assert_eq!(payload.entropy, "KSVQKYVHAYWYYEWKDGPD");
        // Incorrectly signed empty list: reject (answer 401).
        let bad = WebhookKey::new("wrong").sign(body);
        let err = verify_and_parse(&key(), body, Some(&bad)).unwrap_err();
        assert!(err.is_unauthorized());
    }

    #[test]
    fn signed_garbage_is_a_payload_error_not_401() {
        let body = b"{\"events\": 5}";
        let sig = key().sign(body);
        let err = verify_and_parse(&key(), body, Some(&sig)).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidPayload(_)));
        assert!(!err.is_unauthorized());
    }

    #[test]
    fn credit_note_event_keeps_data_and_unknown_values() {
        let body = br#"{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/CreditNotes/55d84274-a3da-4829-a7c0-0cab601b95cc","resourceId":"55d84274-a3da-4829-a7c0-0cab601b95cc","tenantId":"aef86862-2015-4b6b-88bc-d89032cecc50","tenantType":"ORGANISATION","eventCategory":"CREDITNOTE","eventType":"CREATE","eventDateUtc":"2025-12-02T00:44:09.923","data":{"Type":"ACCPAYCREDIT","Status":"DRAFT"}},{"resourceUrl":"u","resourceId":"r","tenantId":"t","tenantType":"ORGANISATION","eventCategory":"QUOTE","eventType":"DELETE","eventDateUtc":"2025-12-02T00:44:09"}],"firstEventSequence":76,"lastEventSequence":77,"entropy":"FXNGWLCCGVANWHKILRUB"}"#;
        let sig = key().sign(body);
        let p = verify_and_parse(&key(), body, Some(&sig)).unwrap();
        assert_eq!(p.events[0].event_category, EventCategory::CreditNote);
        assert_eq!(p.events[0].event_type, EventType::Create);
        assert_eq!(
            p.events[0].data.as_ref().and_then(|d| d["Status"].as_str()),
            Some("DRAFT")
        );
        assert_eq!(
            p.events[1].event_category,
            EventCategory::Other("QUOTE".into())
        );
        assert_eq!(p.events[1].event_type, EventType::Other("DELETE".into()));
        // Round trip for the sandbox, which sends these.
        let again: WebhookPayload =
            serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn key_is_redacted() {
        let k = key();
        let shown = format!("{k:?}");
        assert!(!shown.contains(KEY));
        assert!(shown.contains("REDACTED"));
    }
}
