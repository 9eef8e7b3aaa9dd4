//! Xero's wire facts as the sandbox plays them: paths, header names, limits,
//! paging, token lifetimes, scopes, the resources it serves, date formats and
//! the webhook signature.
//!
//! This is the sandbox's own copy, taken from the contract — Xero's OpenAPI
//! documents and the README of facts they leave out, in `xero/contract/` (a
//! verbatim copy of `shared/reference/xero/`) — and deliberately not imported
//! from the `xero` client crate. The sandbox is what the client is tested
//! against: a value both sides shared could be wrong on both at once and no
//! test would notice. The tests at the end check these values against the
//! contract files.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

// ------------------------------------------------------------------- paths
//
// Xero spreads these over login.xero.com, identity.xero.com and
// api.xero.com (README: "OAuth 2.0"; xero-identity.yaml `/connections`;
// xero_accounting.yaml `servers`); the sandbox serves them all under one
// base URL.

/// The consent page (`https://login.xero.com/identity/connect/authorize`).
pub const AUTHORIZE_PATH: &str = "/identity/connect/authorize";
/// The token endpoint (`https://identity.xero.com/connect/token`).
pub const TOKEN_PATH: &str = "/connect/token";
/// Revocation (`https://identity.xero.com/connect/revocation`).
pub const REVOCATION_PATH: &str = "/connect/revocation";
/// The consent's organisations (`https://api.xero.com/connections`).
pub const CONNECTIONS_PATH: &str = "/connections";
/// The Accounting API base (`https://api.xero.com/api.xro/2.0`).
pub const API_PATH: &str = "/api.xro/2.0";

// ------------------------------------------------------------------ headers

/// The organisation of an Accounting call (README: "Every Accounting call
/// carries the `xero-tenant-id` header"; xero_accounting.yaml parameter
/// `xeroTenantId`).
pub const TENANT_HEADER: &str = "xero-tenant-id";
/// Calls left in the organisation's minute window (README: "Rate limits").
pub const MIN_LIMIT_REMAINING: &str = "x-minlimit-remaining";
/// Calls left in the organisation's day window.
pub const DAY_LIMIT_REMAINING: &str = "x-daylimit-remaining";
/// Calls left in the app's minute window.
pub const APP_MIN_LIMIT_REMAINING: &str = "x-appminlimit-remaining";
/// Which limit a 429 is about: [`PROBLEM_MINUTE`], [`PROBLEM_DAY`] or
/// [`PROBLEM_APP_MINUTE`]. A 429 also carries `Retry-After` in seconds.
pub const RATE_LIMIT_PROBLEM: &str = "x-rate-limit-problem";
/// `X-Rate-Limit-Problem` of the organisation's minute limit.
pub const PROBLEM_MINUTE: &str = "minute";
/// `X-Rate-Limit-Problem` of the organisation's day limit.
pub const PROBLEM_DAY: &str = "day";
/// `X-Rate-Limit-Problem` of the app's minute limit.
pub const PROBLEM_APP_MINUTE: &str = "appminute";
/// The webhook signature: base64 of HMAC-SHA256 over the raw body
/// (xero-webhooks.yaml `components.headers.x-xero-signature`).
pub const SIGNATURE_HEADER: &str = "x-xero-signature";

// ------------------------------------------------------------------- limits
//
// README: "per organisation 5 calls in flight, 60 per minute, 5,000 per day;
// per app 10,000 per minute".

/// Calls in flight per organisation.
pub const MAX_IN_FLIGHT: usize = 5;
/// Calls per minute per organisation.
pub const PER_MINUTE: u32 = 60;
/// Calls per day per organisation.
pub const PER_DAY: u32 = 5_000;
/// Calls per minute per app.
pub const APP_PER_MINUTE: u32 = 10_000;
/// The minute window, in seconds.
pub const MINUTE_WINDOW_SECS: u64 = 60;
/// The day window, in seconds.
pub const DAY_WINDOW_SECS: u64 = 86_400;

// ------------------------------------------------------------------- paging
//
// README: "`page` (1-based) and `pageSize` (up to 1000) … Journals page by
// `offset` (JournalNumber), 100 at a time"; xero_accounting.yaml: "Up to 100
// … per page" where `pageSize` is not given.

/// The largest `pageSize`.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Records per page without `pageSize`.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Journals per call of offset paging.
pub const OFFSET_PAGE_SIZE: usize = 100;

// ----------------------------------------------------------------- identity
//
// README: "Access tokens live 30 minutes; refresh tokens 60 days unused …
// the old one stays valid for a 30-minute grace period only".

/// Access-token lifetime, in seconds.
pub const ACCESS_TOKEN_TTL_SECS: u64 = 30 * 60;
/// How long a rotated refresh token stays usable, in seconds.
pub const REFRESH_GRACE_SECS: u64 = 30 * 60;
/// Lifetime of an unused refresh token, in seconds.
pub const REFRESH_TOKEN_TTL_SECS: u64 = 60 * 86_400;

/// The scope that yields a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";
/// The scope of settings and reference data.
pub const SETTINGS_READ: &str = "accounting.settings.read";
/// The scope of contacts.
pub const CONTACTS_READ: &str = "accounting.contacts.read";
/// The scope of journals.
pub const JOURNALS_READ: &str = "accounting.journals.read";
/// The legacy scope of every transaction (apps created before 2 March 2026).
pub const TRANSACTIONS_READ: &str = "accounting.transactions.read";
/// The scope of invoices and credit notes (granular).
pub const INVOICES_READ: &str = "accounting.invoices.read";
/// The scope of payments (granular).
pub const PAYMENTS_READ: &str = "accounting.payments.read";
/// The scope of bank transactions (granular).
pub const BANK_TRANSACTIONS_READ: &str = "accounting.banktransactions.read";
/// The scope of manual journals (granular).
pub const MANUAL_JOURNALS_READ: &str = "accounting.manualjournals.read";

/// The granular read scopes of the resources the sandbox serves (README:
/// "Scopes").
pub const GRANULAR_READ_SCOPES: &[&str] = &[
    SETTINGS_READ,
    CONTACTS_READ,
    INVOICES_READ,
    PAYMENTS_READ,
    BANK_TRANSACTIONS_READ,
    MANUAL_JOURNALS_READ,
    JOURNALS_READ,
];
/// The same access for an app that predates granular scopes.
pub const LEGACY_READ_SCOPES: &[&str] = &[
    SETTINGS_READ,
    CONTACTS_READ,
    TRANSACTIONS_READ,
    JOURNALS_READ,
];

// ---------------------------------------------------------------- resources

/// The Accounting API resources the sandbox serves: the path segment under
/// [`API_PATH`] and the key of the records array in the response
/// (xero_accounting.yaml paths and response schemas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Resource {
    /// `Organisation` (envelope `Organisations`).
    Organisation,
    /// `Accounts`.
    Accounts,
    /// `Contacts`.
    Contacts,
    /// `Invoices`.
    Invoices,
    /// `CreditNotes`.
    CreditNotes,
    /// `Payments`.
    Payments,
    /// `BankTransactions`.
    BankTransactions,
    /// `ManualJournals`.
    ManualJournals,
    /// `Journals`.
    Journals,
    /// `Items`.
    Items,
    /// `TaxRates`.
    TaxRates,
    /// `TrackingCategories`.
    TrackingCategories,
    /// `Currencies`.
    Currencies,
}

impl Resource {
    /// Every resource served.
    pub const ALL: [Resource; 13] = [
        Resource::Organisation,
        Resource::Accounts,
        Resource::Contacts,
        Resource::Invoices,
        Resource::CreditNotes,
        Resource::Payments,
        Resource::BankTransactions,
        Resource::ManualJournals,
        Resource::Journals,
        Resource::Items,
        Resource::TaxRates,
        Resource::TrackingCategories,
        Resource::Currencies,
    ];

    /// The path segment (`Invoices`).
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Organisation => "Organisation",
            Resource::Accounts => "Accounts",
            Resource::Contacts => "Contacts",
            Resource::Invoices => "Invoices",
            Resource::CreditNotes => "CreditNotes",
            Resource::Payments => "Payments",
            Resource::BankTransactions => "BankTransactions",
            Resource::ManualJournals => "ManualJournals",
            Resource::Journals => "Journals",
            Resource::Items => "Items",
            Resource::TaxRates => "TaxRates",
            Resource::TrackingCategories => "TrackingCategories",
            Resource::Currencies => "Currencies",
        }
    }

    /// The key of the records array in a response.
    pub const fn envelope(self) -> &'static str {
        match self {
            Resource::Organisation => "Organisations",
            other => other.name(),
        }
    }

    /// The resource a path segment names, in any case (`invoices`), as
    /// Xero's routing does.
    pub fn from_segment(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// -------------------------------------------------------------------- dates
//
// README: "Dates: `/Date(1439434356790)/` or `/Date(1419937200000+1300)/`";
// "`If-Modified-Since` header (UTC `yyyy-MM-ddTHH:mm:ss`)". The Identity API
// and webhooks write ISO-8601 without an offset, in UTC.

/// An instant as the Accounting API writes it, in UTC:
/// `/Date(1439434356790+0000)/`.
pub fn ms_date(ms: i64) -> String {
    format!("/Date({ms}+0000)/")
}

/// UTC `yyyy-MM-ddTHH:mm:ss`.
pub fn iso_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An `If-Modified-Since` value: Xero's `yyyy-MM-ddTHH:mm:ss` (UTC, a
/// fraction allowed), RFC 3339 with an offset, a bare date, or an HTTP date.
pub fn parse_if_modified_since(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let naive = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, naive)
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|_| OffsetDateTime::parse(s, &Rfc3339))
        .or_else(|_| {
            Date::parse(s, format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .or_else(|_| OffsetDateTime::parse(s, &Rfc2822))
        .ok()
}

// ----------------------------------------------------------------- webhooks

/// The `x-xero-signature` of `body` under `key`: base64 of HMAC-SHA256 over
/// the raw body (README: "Webhooks").
pub fn webhook_signature(key: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; an
    // empty-key MAC (a signature no receiver accepts) stands in if it did.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn contract(name: &str) -> String {
        let path = format!("{}/../xero/contract/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the Xero contract must be at {path}: {e}"))
    }

    #[test]
    fn resources_and_headers_are_in_the_contract() {
        let spec = contract("xero_accounting.yaml");
        for r in Resource::ALL {
            assert!(spec.contains(&format!("\n  /{}:\n", r.name())), "path {r}");
            assert!(
                spec.contains(&format!("\n    {}:\n", r.envelope())),
                "envelope {r}"
            );
            assert_eq!(Resource::from_segment(&r.name().to_lowercase()), Some(r));
        }
        assert!(Resource::from_segment("Quotes").is_none());
        assert!(spec.contains(&format!("name: {TENANT_HEADER}\n")));
        assert!(spec.contains(&format!("url: https://api.xero.com{API_PATH}\n")));
        // The identity document spells the path `/Connections`; Xero routes
        // it in any case and documents `GET /connections`.
        let identity = contract("xero-identity.yaml").to_ascii_lowercase();
        assert!(identity.contains(&format!("\n  {CONNECTIONS_PATH}:\n")));
        let webhooks = contract("xero-webhooks.yaml");
        assert!(webhooks.contains(&format!("\n    {SIGNATURE_HEADER}:\n")));
    }

    #[test]
    fn facts_the_readme_states() {
        let readme = contract("README.md");
        for fact in [
            format!("https://login.xero.com{AUTHORIZE_PATH}"),
            format!("https://identity.xero.com{TOKEN_PATH}"),
            format!("https://identity.xero.com{REVOCATION_PATH}"),
            format!("`{TENANT_HEADER}`"),
            format!("`{SIGNATURE_HEADER}`"),
            format!("`{OFFLINE_ACCESS}`"),
            format!("`{TRANSACTIONS_READ}`"),
            format!("{PROBLEM_MINUTE}|{PROBLEM_DAY}|{PROBLEM_APP_MINUTE}"),
            format!("{MAX_IN_FLIGHT} calls in flight, {PER_MINUTE} per minute"),
            "5,000 per day".to_owned(),
            "10,000 per minute".to_owned(),
            format!("up to {MAX_PAGE_SIZE}"),
            format!("{OFFSET_PAGE_SIZE} at a time"),
            "Access tokens live 30 minutes; refresh tokens 60 days".to_owned(),
            "30-minute grace period".to_owned(),
        ] {
            assert!(readme.contains(&fact), "{fact}");
        }
        let readme_lower = readme.to_ascii_lowercase();
        for header in [
            MIN_LIMIT_REMAINING,
            DAY_LIMIT_REMAINING,
            APP_MIN_LIMIT_REMAINING,
            RATE_LIMIT_PROBLEM,
        ] {
            assert!(readme_lower.contains(&format!("`{header}`")), "{header}");
        }
        for scope in GRANULAR_READ_SCOPES {
            assert!(readme.contains(&format!("`{scope}`")), "{scope}");
        }
        assert_eq!(PER_DAY, 5_000);
        assert_eq!(APP_PER_MINUTE, 10_000);
        assert_eq!(ACCESS_TOKEN_TTL_SECS, 1800);
        assert_eq!(REFRESH_GRACE_SECS, 1800);
        assert_eq!(REFRESH_TOKEN_TTL_SECS, 60 * 24 * 3600);
    }

    #[test]
    fn dates() {
        // The README's example, and one before 1970.
        assert_eq!(ms_date(1_439_434_356_790), "/Date(1439434356790+0000)/");
        assert_eq!(ms_date(-86_400_000), "/Date(-86400000+0000)/");
        let t = datetime!(2024-01-02 03:04:05.678 +13:00);
        assert_eq!(iso_seconds(t), "2024-01-01T14:04:05");
        for s in [
            "2024-01-01T14:04:05",
            "2024-01-01T14:04:05.000",
            "2024-01-01T14:04:05Z",
            "2024-01-02T03:04:05+13:00",
            "Mon, 01 Jan 2024 14:04:05 +0000",
        ] {
            assert_eq!(
                parse_if_modified_since(s),
                Some(datetime!(2024-01-01 14:04:05 UTC)),
                "{s}"
            );
        }
        assert_eq!(
            parse_if_modified_since("2024-01-01"),
            Some(datetime!(2024-01-01 00:00 UTC))
        );
        assert_eq!(parse_if_modified_since("not a date"), None);
    }

    #[test]
    fn webhook_signature_is_base64_hmac_sha256() {
        // RFC 4231 test case 2 (key "Jefe"), base64 of its hex MAC.
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }
}
