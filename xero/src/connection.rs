//! The organisations a consent granted (`GET /connections`,
//! xero-identity.yaml `Connection`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One organisation (or practice) a consent granted access to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Id of the connection (for `DELETE /connections/{id}`).
    pub id: String,
    /// The organisation id, sent as `xero-tenant-id`.
    pub tenant_id: String,
    /// ORGANISATION or PRACTICE.
    #[serde(default)]
    pub tenant_type: String,
    /// Display name.
    #[serde(default)]
    pub tenant_name: Option<String>,
    /// Shared by connections authorised together.
    #[serde(default)]
    pub auth_event_id: Option<String>,
    /// When the user first connected this organisation.
    #[serde(
        default,
        deserialize_with = "crate::dates::deserialize_option",
        serialize_with = "serialize_opt_iso"
    )]
    pub created_date_utc: Option<OffsetDateTime>,
    /// When the user last (re)connected it.
    #[serde(
        default,
        deserialize_with = "crate::dates::deserialize_option",
        serialize_with = "serialize_opt_iso"
    )]
    pub updated_date_utc: Option<OffsetDateTime>,
}

fn serialize_opt_iso<S: serde::Serializer>(
    dt: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match dt {
        Some(dt) => s.serialize_str(&crate::dates::format_if_modified_since(*dt)),
        None => s.serialize_none(),
    }
}
