//! The catalogue of Accounting API resources ingestion reads.
//!
//! Everything the client needs to know about a resource — its path, the key
//! of the array in the response envelope, its id and change-stamp fields, and
//! how it pages — is data here rather than code per resource, so adding a
//! resource is one entry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a resource pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Paging {
    /// `page` (1-based) and `pageSize` (up to 1000); responses may carry a
    /// `pagination` object.
    Page,
    /// `offset` = the last `JournalNumber` seen; 100 records per call.
    Offset,
    /// Everything in one call.
    None,
}

/// Records per call of offset-paged resources (fixed by Xero).
pub const OFFSET_PAGE_SIZE: usize = 100;
/// The largest `pageSize` Xero accepts.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// An Accounting API resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resource {
    /// The organisation itself.
    Organisation,
    /// Chart of accounts.
    Accounts,
    /// Customers and suppliers.
    Contacts,
    /// Sales invoices and bills, with line items.
    Invoices,
    /// Credit notes.
    CreditNotes,
    /// Payments.
    Payments,
    /// Spend and receive money.
    BankTransactions,
    /// Manual journals.
    ManualJournals,
    /// The general ledger: every journal with its lines.
    Journals,
    /// Products and services.
    Items,
    /// Tax rates.
    TaxRates,
    /// Tracking categories and their options.
    TrackingCategories,
    /// Currencies enabled for the organisation.
    Currencies,
}

/// Static facts about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// Name, as in the path and the envelope.
    pub name: &'static str,
    /// Path under the API base.
    pub path: &'static str,
    /// Key of the records array in the response.
    pub envelope: &'static str,
    /// The field identifying a record.
    pub id_field: &'static str,
    /// The change stamp used as the incremental cursor (`UpdatedDateUTC`,
    /// `CreatedDateUTC` for journals), if any.
    pub updated_field: Option<&'static str>,
    /// Paging kind.
    pub paging: Paging,
    /// Whether `includeArchived=true` is needed to see archived records.
    pub include_archived: bool,
    /// The field saying whether Xero still holds the record (`Status`,
    /// `ContactStatus`): Xero reports a deletion as a change to it
    /// (DELETED, VOIDED, ARCHIVED; a contact's GDPRREQUEST, once Xero erased
    /// its personal data). An account or item deleted outright only leaves
    /// the listing, which `If-Modified-Since` cannot show: see
    /// [`Resource::listed_in_full`].
    pub status_field: Option<&'static str>,
}

impl Resource {
    /// Every resource, in a sensible ingestion order (reference data first).
    pub const ALL: [Resource; 13] = [
        Resource::Organisation,
        Resource::Currencies,
        Resource::TaxRates,
        Resource::TrackingCategories,
        Resource::Accounts,
        Resource::Items,
        Resource::Contacts,
        Resource::Invoices,
        Resource::CreditNotes,
        Resource::Payments,
        Resource::BankTransactions,
        Resource::ManualJournals,
        Resource::Journals,
    ];

    /// Facts about this resource.
    pub const fn info(self) -> ResourceInfo {
        const fn info(
            name: &'static str,
            envelope: &'static str,
            id_field: &'static str,
            updated_field: Option<&'static str>,
            paging: Paging,
            include_archived: bool,
        ) -> ResourceInfo {
            ResourceInfo {
                name,
                path: name,
                envelope,
                id_field,
                updated_field,
                paging,
                include_archived,
                status_field: None,
            }
        }
        const UPDATED: Option<&str> = Some("UpdatedDateUTC");
        const STATUS: Option<&str> = Some("Status");
        let info = match self {
            Resource::Organisation => ResourceInfo {
                name: "Organisation",
                path: "Organisation",
                envelope: "Organisations",
                id_field: "OrganisationID",
                updated_field: None,
                paging: Paging::None,
                include_archived: false,
                status_field: None,
            },
            Resource::Accounts => info(
                "Accounts",
                "Accounts",
                "AccountID",
                UPDATED,
                Paging::None,
                false,
            ),
            Resource::Contacts => info(
                "Contacts",
                "Contacts",
                "ContactID",
                UPDATED,
                Paging::Page,
                true,
            ),
            Resource::Invoices => info(
                "Invoices",
                "Invoices",
                "InvoiceID",
                UPDATED,
                Paging::Page,
                true,
            ),
            Resource::CreditNotes => info(
                "CreditNotes",
                "CreditNotes",
                "CreditNoteID",
                UPDATED,
                Paging::Page,
                false,
            ),
            Resource::Payments => info(
                "Payments",
                "Payments",
                "PaymentID",
                UPDATED,
                Paging::Page,
                false,
            ),
            Resource::BankTransactions => info(
                "BankTransactions",
                "BankTransactions",
                "BankTransactionID",
                UPDATED,
                Paging::Page,
                false,
            ),
            Resource::ManualJournals => info(
                "ManualJournals",
                "ManualJournals",
                "ManualJournalID",
                UPDATED,
                Paging::Page,
                false,
            ),
            Resource::Journals => info(
                "Journals",
                "Journals",
                "JournalID",
                Some("CreatedDateUTC"),
                Paging::Offset,
                false,
            ),
            Resource::Items => info("Items", "Items", "ItemID", UPDATED, Paging::None, false),
            Resource::TaxRates => {
                info("TaxRates", "TaxRates", "TaxType", None, Paging::None, false)
            }
            Resource::TrackingCategories => info(
                "TrackingCategories",
                "TrackingCategories",
                "TrackingCategoryID",
                None,
                Paging::None,
                true,
            ),
            Resource::Currencies => info(
                "Currencies",
                "Currencies",
                "Code",
                None,
                Paging::None,
                false,
            ),
        };
        let status_field = match self {
            Resource::Contacts => Some("ContactStatus"),
            Resource::Accounts
            | Resource::Invoices
            | Resource::CreditNotes
            | Resource::Payments
            | Resource::BankTransactions
            | Resource::ManualJournals
            | Resource::TaxRates
            | Resource::TrackingCategories => STATUS,
            Resource::Organisation
            | Resource::Journals
            | Resource::Items
            | Resource::Currencies => None,
        };
        ResourceInfo {
            status_field,
            ..info
        }
    }

    /// The resource's name (e.g. `Invoices`).
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Path under the API base.
    pub const fn path(self) -> &'static str {
        self.info().path
    }

    /// Key of the records array in the response.
    pub const fn envelope(self) -> &'static str {
        self.info().envelope
    }

    /// Id field.
    pub const fn id_field(self) -> &'static str {
        self.info().id_field
    }

    /// Change-stamp field, if any.
    pub const fn updated_field(self) -> Option<&'static str> {
        self.info().updated_field
    }

    /// The status field, if the resource has one (see [`ResourceInfo::status_field`]).
    pub const fn status_field(self) -> Option<&'static str> {
        self.info().status_field
    }

    /// Whether every run lists the resource in full, so that a record
    /// missing from a listing is gone from Xero: every unpaged resource (one
    /// call either way, and few records; Accounts and Items can be deleted
    /// outright, which no `If-Modified-Since` listing shows) and any without
    /// a change stamp to send `If-Modified-Since` with.
    pub const fn listed_in_full(self) -> bool {
        let info = self.info();
        matches!(info.paging, Paging::None) || info.updated_field.is_none()
    }

    /// Paging kind.
    pub const fn paging(self) -> Paging {
        self.info().paging
    }

    /// Whether `If-Modified-Since` narrows this resource (it has a stamp).
    /// Ingestion sends it only for a resource not [`listed_in_full`](Self::listed_in_full).
    pub const fn supports_if_modified_since(self) -> bool {
        self.info().updated_field.is_some()
    }

    /// A lower-case name for storage paths (`raw/<resource>/…`).
    pub fn storage_name(self) -> String {
        self.name().to_ascii_lowercase()
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown resource name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Xero resource {0:?}")]
pub struct UnknownResource(pub String);

impl FromStr for Resource {
    type Err = UnknownResource;

    /// Accepts the API name in any case (`Invoices`, `invoices`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownResource(s.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_matches_the_contract() {
        assert_eq!(Resource::Invoices.envelope(), "Invoices");
        assert_eq!(Resource::Invoices.id_field(), "InvoiceID");
        assert_eq!(Resource::Organisation.envelope(), "Organisations");
        assert_eq!(Resource::Journals.updated_field(), Some("CreatedDateUTC"));
        assert_eq!(Resource::Journals.paging(), Paging::Offset);
        assert_eq!(Resource::Accounts.paging(), Paging::None);
        assert!(!Resource::Currencies.supports_if_modified_since());
        // Unpaged resources are listed in full every run, paged ones are not.
        for r in Resource::ALL {
            assert_eq!(r.listed_in_full(), r.paging() == Paging::None, "{r}");
        }
        // Every resource documented as paged in the spec pages by page.
        for r in [
            Resource::Invoices,
            Resource::Contacts,
            Resource::CreditNotes,
            Resource::BankTransactions,
            Resource::ManualJournals,
            Resource::Payments,
        ] {
            assert_eq!(r.paging(), Paging::Page, "{r}");
        }
        // Paths, envelopes and id fields appear in the OpenAPI file.
        let spec = crate::test_support::accounting_spec();
        let spec = spec.as_str();
        for r in Resource::ALL {
            assert!(spec.contains(&format!("\n  /{}:\n", r.path())), "path {r}");
            assert!(
                spec.contains(&format!("\n    {}:\n", r.envelope())),
                "envelope {r}"
            );
            assert!(spec.contains(&format!(" {}:", r.id_field())), "id {r}");
            if let Some(status) = r.status_field() {
                assert!(spec.contains(&format!(" {status}:")), "status {r}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>().unwrap(), r);
            assert_eq!(r.storage_name().parse::<Resource>().unwrap(), r);
        }
        assert!("Quotes".parse::<Resource>().is_err());
        let mut sorted = Resource::ALL.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), 13);
    }
}
