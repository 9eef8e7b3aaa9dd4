//! The records the state store hands out, and the enumerations they use.

use std::fmt;
use std::str::FromStr;

use cloud::TenantId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A string that names none of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {given:?}: expected one of {}", .expected.join(", "))]
pub struct ParseEnumError {
    pub what: &'static str,
    pub given: String,
    pub expected: &'static [&'static str],
}

/// Declares a string-valued enumeration with `as_str`, `Display`, `FromStr`
/// and serde, all using exactly the listed names.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseEnumError {
                        what: $what,
                        given: s.chars().take(64).collect(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

string_enum! {
    /// Where a tenant is in its life cycle.
    pub enum Phase: "phase" {
        /// Wanted, not yet worked on.
        Pending => "Pending",
        /// The reconciler is ensuring its resources.
        Provisioning => "Provisioning",
        /// Every resource is ready.
        Ready => "Ready",
        /// A permanent error stopped provisioning or teardown; see the message.
        Failed => "Failed",
        /// Marked for teardown; resources are being removed.
        Deleting => "Deleting",
    }
}

string_enum! {
    /// The condition of one resource.
    pub enum ResourceStatus: "resource status" {
        Pending => "Pending",
        Ready => "Ready",
        Failed => "Failed",
    }
}

string_enum! {
    /// What the operator wants for a tenant.
    pub enum Desired: "desired state" {
        Present => "present",
        Absent => "absent",
    }
}

string_enum! {
    /// Whether a cell takes new tenants.
    pub enum CellState: "cell state" {
        /// New tenants may be placed in it.
        Active => "active",
        /// An operator closed it to new tenants; its tenants stay.
        Draining => "draining",
        /// It reached its capacity (placement marks it so).
        Full => "full",
    }
}

/// One tenant's desired state and observed phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub desired: Desired,
    /// Bumped whenever the desired state changes; resources record the
    /// generation they last reconciled as `observed_generation`.
    pub generation: i64,
    pub phase: Phase,
    /// Whether teardown keeps the tenant's data (bucket and datasets).
    pub keep_data: bool,
    pub message: Option<String>,
    /// The cell it was placed in; `None` in a deployment without cells (the
    /// local adapter's), or for a tenant recorded before cells existed.
    pub cell: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One resource of a tenant and its condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRecord {
    pub kind: String,
    pub name: String,
    pub status: ResourceStatus,
    pub message: Option<String>,
    /// The tenant generation this status refers to.
    pub observed_generation: i64,
    /// Attempts made at the current tenant generation (see [`super::Store::record_attempt`]).
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When `status` last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub last_transition: OffsetDateTime,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub tenant: Option<TenantId>,
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_display_and_serde() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(*p));
            assert_eq!(p.to_string(), p.as_str());
            let json = serde_json::to_string(p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).ok(), Some(*p));
        }
        for s in ResourceStatus::ALL {
            assert_eq!(s.as_str().parse::<ResourceStatus>(), Ok(*s));
            let json = serde_json::to_string(s).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        for d in Desired::ALL {
            assert_eq!(d.as_str().parse::<Desired>(), Ok(*d));
        }
        assert_eq!(
            Phase::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["Pending", "Provisioning", "Ready", "Failed", "Deleting"]
        );
        assert_eq!(Desired::Present.as_str(), "present");
        assert_eq!(Desired::Absent.as_str(), "absent");
    }

    #[test]
    fn unknown_names_are_refused_with_the_expected_values() {
        let err = "ready".parse::<Phase>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid phase \"ready\": expected one of Pending, Provisioning, Ready, Failed, Deleting"
            )
        );
        assert!("Deleting".parse::<ResourceStatus>().is_err());
        assert!("Present".parse::<Desired>().is_err());
    }
}
