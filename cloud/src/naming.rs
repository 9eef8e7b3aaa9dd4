//! Tenant ids and the names of every per-tenant resource.
//!
//! One function per name, so that the convention lives in exactly one place.
//! The limits come from Google Cloud: a service-account id is 6–30 characters,
//! a bucket name at most 63 and may not contain "google".

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The rule a tenant id must follow, quoted in every refusal.
pub const TENANT_ID_RULE: &str =
    "a tenant id is 3 to 20 characters of lowercase letters, digits and \
hyphens, starts with a letter, does not end with a hyphen and does not contain \"google\"";

/// The rule a deployment prefix must follow.
pub const PREFIX_RULE: &str =
    "a deployment prefix is 1 to 28 characters of lowercase letters, digits \
and hyphens, starts with a letter, does not end with a hyphen and does not contain \"google\"";

const TENANT_ID_MIN: usize = 3;
const TENANT_ID_MAX: usize = 20;
/// `{prefix}-client-{id}-bucket` must stay within 63 characters for the longest id.
const PREFIX_MAX: usize = 63 - "-client-".len() - TENANT_ID_MAX - "-bucket".len();

/// The label every managed resource carries, with value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY_LABEL: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "ledgerlake";
/// The label naming the tenant that owns a resource.
pub const TENANT_LABEL: &str = "tenant";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {given:?}: {reason}; {TENANT_ID_RULE}")]
pub struct InvalidTenantId {
    /// The offending input, truncated so that a hostile value cannot flood a log.
    pub given: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid deployment prefix {given:?}: {reason}; {PREFIX_RULE}")]
pub struct InvalidPrefix {
    pub given: String,
    pub reason: &'static str,
}

/// A validated tenant id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// A validated deployment prefix for globally unique names (bucket names).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeploymentPrefix(String);

/// Checks the shared shape of ids and prefixes: `[a-z][a-z0-9-]*[a-z0-9]`, no "google".
fn check_dns_like(s: &str, min: usize, max: usize) -> Result<(), &'static str> {
    let len = s.chars().count();
    if len < min {
        return Err("too short");
    }
    if len > max {
        return Err("too long");
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() => {}
        _ => return Err("does not start with a lowercase letter"),
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("contains a character other than a-z, 0-9 and -");
    }
    if s.ends_with('-') {
        return Err("ends with a hyphen");
    }
    if s.contains("google") {
        return Err("contains \"google\", which bucket names may not");
    }
    Ok(())
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidTenantId> {
        check_dns_like(s, TENANT_ID_MIN, TENANT_ID_MAX)
            .map(|()| TenantId(s.to_owned()))
            .map_err(|reason| InvalidTenantId {
                given: shown(s),
                reason,
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id with hyphens as underscores, for names that allow no hyphen.
    fn underscored(&self) -> String {
        self.0.replace('-', "_")
    }
}

impl FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeploymentPrefix {
    pub fn parse(s: &str) -> Result<Self, InvalidPrefix> {
        check_dns_like(s, 1, PREFIX_MAX)
            .map(|()| DeploymentPrefix(s.to_owned()))
            .map_err(|reason| InvalidPrefix {
                given: shown(s),
                reason,
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeploymentPrefix {
    type Err = InvalidPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `client-{id}-bucket`, or `{prefix}-client-{id}-bucket` (bucket names are global on GCP).
pub fn bucket_name(prefix: Option<&DeploymentPrefix>, id: &TenantId) -> String {
    match prefix {
        Some(p) => format!("{}-client-{}-bucket", p.0, id.0),
        None => format!("client-{}-bucket", id.0),
    }
}

/// `raw_{id}` with hyphens as underscores (BigQuery dataset ids allow no hyphen).
pub fn raw_dataset(id: &TenantId) -> String {
    format!("raw_{}", id.underscored())
}

/// `transformed_{id}` with hyphens as underscores.
pub fn transformed_dataset(id: &TenantId) -> String {
    format!("transformed_{}", id.underscored())
}

/// `client-{id}-sa`, the account id part of the service account's email.
pub fn service_account_id(id: &TenantId) -> String {
    format!("client-{}-sa", id.0)
}

/// `xero_token_{id}` with hyphens as underscores, matching the dataset style.
pub fn secret_name(id: &TenantId) -> String {
    format!("xero_token_{}", id.underscored())
}

/// `ingest-{id}`.
pub fn ingest_job(id: &TenantId) -> String {
    format!("ingest-{}", id.0)
}

/// `transform-{id}`.
pub fn transform_job(id: &TenantId) -> String {
    format!("transform-{}", id.0)
}

/// A set of resource labels, ordered so that comparisons and output are stable.
pub type Labels = BTreeMap<String, String>;

/// `managed-by=ledgerlake, tenant={id}`: the labels every tenant resource carries.
pub fn tenant_labels(id: &TenantId) -> Labels {
    Labels::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (TENANT_LABEL.to_owned(), id.0.clone()),
    ])
}

/// Whether every label of `wanted` is on a resource.
pub fn has_labels(found: &Labels, wanted: &Labels) -> bool {
    wanted.iter().all(|(k, v)| found.get(k) == Some(v))
}

/// Refuses a resource that exists under our name but belongs to someone else
/// (another tenant, or nothing ledgerlake manages): create-or-get adopts only
/// what carries the owner's labels.
pub fn check_owner(
    resource: impl Into<String>,
    found: &Labels,
    wanted: &Labels,
) -> Result<(), crate::CloudError> {
    if has_labels(found, wanted) {
        return Ok(());
    }
    let owner = match found.get(TENANT_LABEL) {
        Some(t) => format!("tenant {t}"),
        None => "a resource ledgerlake does not manage".to_owned(),
    };
    Err(crate::CloudError::AlreadyExists {
        resource: resource.into(),
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepts_ids_at_both_length_limits() {
        assert_eq!(id("abc").as_str(), "abc");
        let longest = "a".repeat(20);
        assert_eq!(id(&longest).as_str(), longest);
        assert_eq!(id("a1-b2").as_str(), "a1-b2");
        assert_eq!(id("a--b").as_str(), "a--b");
    }

    #[test]
    fn refuses_ids_outside_the_rule_with_the_rule() {
        let cases = [
            ("ab", "too short"),
            ("", "too short"),
            (&"a".repeat(21), "too long"),
            ("1abc", "does not start with a lowercase letter"),
            ("-abc", "does not start with a lowercase letter"),
            ("Abc", "does not start with a lowercase letter"),
            ("aBc", "contains a character other than a-z, 0-9 and -"),
            ("ab_c", "contains a character other than a-z, 0-9 and -"),
            ("ab c", "contains a character other than a-z, 0-9 and -"),
            ("abé", "contains a character other than a-z, 0-9 and -"),
            ("ab/../c", "contains a character other than a-z, 0-9 and -"),
            ("abc-", "ends with a hyphen"),
            (
                "mygoogle",
                "contains \"google\", which bucket names may not",
            ),
        ];
        for (input, reason) in cases {
            let err = TenantId::parse(input).expect_err(input);
            assert_eq!(err.reason, reason, "{input}");
            let message = err.to_string();
            assert!(message.contains(TENANT_ID_RULE), "{message}");
        }
    }

    #[test]
    fn a_hostile_id_is_truncated_in_the_error() {
        let err = TenantId::parse(&"x".repeat(10_000)).expect_err("too long");
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn tenant_id_round_trips_through_serde_and_validates_on_the_way_in() {
        let json = serde_json::to_string(&id("acme")).expect("serialise");
        assert_eq!(json, "\"acme\"");
        let back: TenantId = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, id("acme"));
        assert!(serde_json::from_str::<TenantId>("\"A\"").is_err());
    }

    #[test]
    fn names_follow_the_convention() {
        let t = id("acme-co");
        assert_eq!(bucket_name(None, &t), "client-acme-co-bucket");
        let p = DeploymentPrefix::parse("prod").expect("prefix");
        assert_eq!(bucket_name(Some(&p), &t), "prod-client-acme-co-bucket");
        assert_eq!(raw_dataset(&t), "raw_acme_co");
        assert_eq!(transformed_dataset(&t), "transformed_acme_co");
        assert_eq!(service_account_id(&t), "client-acme-co-sa");
        assert_eq!(secret_name(&t), "xero_token_acme_co");
        assert_eq!(ingest_job(&t), "ingest-acme-co");
        assert_eq!(transform_job(&t), "transform-acme-co");
        let labels = tenant_labels(&t);
        assert_eq!(
            labels.get("managed-by").map(String::as_str),
            Some("ledgerlake")
        );
        assert_eq!(labels.get("tenant").map(String::as_str), Some("acme-co"));
    }

    #[test]
    fn service_account_id_stays_within_googles_6_to_30() {
        for len in [3, 20] {
            let t = id(&"a".repeat(len));
            let sa = service_account_id(&t);
            assert!((6..=30).contains(&sa.len()), "{sa}");
        }
    }

    #[test]
    fn bucket_name_stays_within_63_at_the_longest_prefix_and_id() {
        let p = DeploymentPrefix::parse(&"p".repeat(PREFIX_MAX)).expect("longest prefix");
        let t = id(&"a".repeat(20));
        assert_eq!(bucket_name(Some(&p), &t).len(), 63);
        assert!(DeploymentPrefix::parse(&"p".repeat(PREFIX_MAX + 1)).is_err());
        assert!(DeploymentPrefix::parse("").is_err());
        assert!(DeploymentPrefix::parse("Prod").is_err());
        assert!(DeploymentPrefix::parse("prod-").is_err());
    }

    #[test]
    fn every_name_of_the_longest_id_is_valid_for_its_google_resource() {
        let t = id(&format!("a{}", "-9".repeat(9) + "z")
            .chars()
            .take(20)
            .collect::<String>());
        for dataset in [raw_dataset(&t), transformed_dataset(&t)] {
            assert!(dataset.len() <= 1024);
            assert!(
                dataset
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{dataset}"
            );
        }
        let secret = secret_name(&t);
        assert!(secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        for job in [ingest_job(&t), transform_job(&t)] {
            assert!(job.len() <= 63, "{job}");
        }
    }
}
