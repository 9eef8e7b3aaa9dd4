//! Records and the decoding of list responses: the envelope (`{"Invoices":
//! [...], "pagination": {...}}`) is taken apart, and each record is kept as
//! the JSON Xero sent, with typed access to the fields ingestion needs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::dates::{self, DateError};
use crate::error::ClientError;
use crate::resources::Resource;

/// One record: the JSON exactly as Xero sent it, with typed access to the
/// fields ingestion needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    resource: Resource,
    value: Value,
}

impl Record {
    /// Wraps a JSON value (e.g. read back from storage).
    pub fn new(resource: Resource, value: Value) -> Self {
        Self { resource, value }
    }

    /// The resource.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// The id (`InvoiceID`, `Code` for currencies…).
    pub fn id(&self) -> Option<&str> {
        self.value.get(self.resource.id_field())?.as_str()
    }

    /// The raw change stamp (`UpdatedDateUTC`, `CreatedDateUTC` for journals).
    pub fn updated_raw(&self) -> Option<&str> {
        self.value.get(self.resource.updated_field()?)?.as_str()
    }

    /// The change stamp parsed; `Ok(None)` if the resource or record has none.
    pub fn updated_at(&self) -> Result<Option<OffsetDateTime>, DateError> {
        self.updated_raw().map(dates::parse).transpose()
    }

    /// `JournalNumber`, for journals.
    pub fn journal_number(&self) -> Option<i64> {
        self.value.get("JournalNumber")?.as_i64()
    }

    /// The JSON.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The JSON, owned.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// A typed view (e.g. [`crate::models::Invoice`]).
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.value)
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// The `pagination` object of paged responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// This page.
    #[serde(default)]
    pub page: Option<u64>,
    /// Records per page.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Pages in all.
    #[serde(default)]
    pub page_count: Option<u64>,
    /// Records in all.
    #[serde(default)]
    pub item_count: Option<u64>,
}

/// The records and the `pagination` object of a list response. A 304
/// (`not_modified`) has neither.
pub(crate) fn decode_list(
    resource: Resource,
    not_modified: bool,
    body: &[u8],
) -> Result<(Vec<Record>, Option<Pagination>), ClientError> {
    let envelope = if not_modified {
        Map::new()
    } else {
        parse_envelope(resource, body)?
    };
    records_and_pagination(resource, envelope)
}

fn parse_envelope(resource: Resource, body: &[u8]) -> Result<Map<String, Value>, ClientError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ClientError::Decode {
            path: resource.path().into(),
            detail: "response is not a JSON object".into(),
        }),
        Err(e) => Err(ClientError::Decode {
            path: resource.path().into(),
            detail: format!("invalid JSON at line {}, column {}", e.line(), e.column()),
        }),
    }
}

fn records_and_pagination(
    resource: Resource,
    mut envelope: Map<String, Value>,
) -> Result<(Vec<Record>, Option<Pagination>), ClientError> {
    // A 304 produces an empty envelope: no records.
    if envelope.is_empty() {
        return Ok((Vec::new(), None));
    }
    let pagination = match envelope.remove("pagination") {
        Some(v) => {
            Some(
                serde_json::from_value::<Pagination>(v).map_err(|e| ClientError::Decode {
                    path: resource.path().into(),
                    detail: format!("pagination object: {e}"),
                })?,
            )
        }
        None => None,
    };
    let records = match envelope.remove(resource.envelope()) {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|value| Record { resource, value })
            .collect(),
        Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(ClientError::Decode {
                path: resource.path().into(),
                detail: format!("{} is not an array", resource.envelope()),
            })
        }
        None => {
            return Err(ClientError::Decode {
                path: resource.path().into(),
                detail: format!("no {} in the response", resource.envelope()),
            })
        }
    };
    Ok((records, pagination))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_accessors() {
        let rec = Record::new(
            Resource::Invoices,
            json!({"InvoiceID": "abc", "UpdatedDateUTC": "/Date(1511893792820+0000)/", "Unknown": [1, 2]}),
        );
        assert_eq!(rec.id(), Some("abc"));
        assert_eq!(
            rec.updated_at().unwrap(),
            Some(time::macros::datetime!(2017-11-28 18:29:52.820 UTC))
        );
        assert_eq!(
            serde_json::to_value(&rec).unwrap()["Unknown"],
            json!([1, 2])
        );
        let cur = Record::new(Resource::Currencies, json!({"Code": "NZD"}));
        assert_eq!(cur.id(), Some("NZD"));
        assert_eq!(cur.updated_at().unwrap(), None);
        let bad = Record::new(Resource::Invoices, json!({"UpdatedDateUTC": "garbage"}));
        assert!(bad.updated_at().is_err());
    }
}
