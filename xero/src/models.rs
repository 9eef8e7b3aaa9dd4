//! Light typed views of the records consumers look at most.
//!
//! Ingestion stores the raw JSON (every field, unknown ones included); these
//! structs are for code that wants to read a few fields without indexing into
//! `serde_json::Value`. Unknown fields are ignored here, not lost: they are
//! still in the [`crate::record::Record`]. Amounts are `f64`, fine for checks
//! and display; exact arithmetic belongs to the warehouse, which reads the raw
//! JSON numbers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

fn opt_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    crate::dates::deserialize_option(d)
}

/// A reference to a contact inside another record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContactRef {
    /// `ContactID`.
    #[serde(rename = "ContactID")]
    pub contact_id: Option<String>,
    /// `Name`.
    pub name: Option<String>,
}

/// An invoice line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LineItem {
    /// `LineItemID`.
    #[serde(rename = "LineItemID")]
    pub line_item_id: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `Quantity`.
    pub quantity: Option<f64>,
    /// `UnitAmount`.
    pub unit_amount: Option<f64>,
    /// `ItemCode`.
    pub item_code: Option<String>,
    /// `AccountCode`.
    pub account_code: Option<String>,
    /// `TaxType`.
    pub tax_type: Option<String>,
    /// `TaxAmount`.
    pub tax_amount: Option<f64>,
    /// `LineAmount`.
    pub line_amount: Option<f64>,
}

/// A sales invoice (`ACCREC`) or bill (`ACCPAY`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Invoice {
    /// `InvoiceID`.
    #[serde(rename = "InvoiceID")]
    pub invoice_id: String,
    /// `InvoiceNumber`.
    pub invoice_number: Option<String>,
    /// `Type`: ACCREC or ACCPAY.
    #[serde(rename = "Type")]
    pub invoice_type: Option<String>,
    /// `Status`: DRAFT, SUBMITTED, AUTHORISED, PAID, VOIDED, DELETED.
    pub status: Option<String>,
    /// `Contact`.
    pub contact: Option<ContactRef>,
    /// `Date`.
    #[serde(deserialize_with = "opt_date")]
    pub date: Option<OffsetDateTime>,
    /// `DueDate`.
    #[serde(deserialize_with = "opt_date")]
    pub due_date: Option<OffsetDateTime>,
    /// `CurrencyCode`.
    pub currency_code: Option<String>,
    /// `CurrencyRate`.
    pub currency_rate: Option<f64>,
    /// `LineAmountTypes`: Exclusive, Inclusive or NoTax.
    pub line_amount_types: Option<String>,
    /// `SubTotal`.
    pub sub_total: Option<f64>,
    /// `TotalTax`.
    pub total_tax: Option<f64>,
    /// `Total`.
    pub total: Option<f64>,
    /// `AmountDue`.
    pub amount_due: Option<f64>,
    /// `AmountPaid`.
    pub amount_paid: Option<f64>,
    /// `AmountCredited`.
    pub amount_credited: Option<f64>,
    /// `LineItems`.
    pub line_items: Vec<LineItem>,
    /// `UpdatedDateUTC`.
    #[serde(rename = "UpdatedDateUTC", deserialize_with = "opt_date")]
    pub updated_date_utc: Option<OffsetDateTime>,
}

/// A customer or supplier.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Contact {
    /// `ContactID`.
    #[serde(rename = "ContactID")]
    pub contact_id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `ContactStatus`: ACTIVE, ARCHIVED, GDPRREQUEST.
    pub contact_status: Option<String>,
    /// `EmailAddress`.
    pub email_address: Option<String>,
    /// `IsCustomer`.
    pub is_customer: Option<bool>,
    /// `IsSupplier`.
    pub is_supplier: Option<bool>,
    /// `DefaultCurrency`.
    pub default_currency: Option<String>,
    /// `UpdatedDateUTC`.
    #[serde(rename = "UpdatedDateUTC", deserialize_with = "opt_date")]
    pub updated_date_utc: Option<OffsetDateTime>,
}

/// A line of a general-ledger journal.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JournalLine {
    /// `JournalLineID`.
    #[serde(rename = "JournalLineID")]
    pub journal_line_id: Option<String>,
    /// `AccountID`.
    #[serde(rename = "AccountID")]
    pub account_id: Option<String>,
    /// `AccountCode`.
    pub account_code: Option<String>,
    /// `AccountType`.
    pub account_type: Option<String>,
    /// `AccountName`.
    pub account_name: Option<String>,
    /// `NetAmount` (debits positive, credits negative).
    pub net_amount: Option<f64>,
    /// `GrossAmount`.
    pub gross_amount: Option<f64>,
    /// `TaxAmount`.
    pub tax_amount: Option<f64>,
}

/// A general-ledger journal.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Journal {
    /// `JournalID`.
    #[serde(rename = "JournalID")]
    pub journal_id: String,
    /// `JournalNumber`, the offset cursor.
    pub journal_number: i64,
    /// `JournalDate`.
    #[serde(deserialize_with = "opt_date")]
    pub journal_date: Option<OffsetDateTime>,
    /// `CreatedDateUTC`.
    #[serde(rename = "CreatedDateUTC", deserialize_with = "opt_date")]
    pub created_date_utc: Option<OffsetDateTime>,
    /// `SourceID`.
    #[serde(rename = "SourceID")]
    pub source_id: Option<String>,
    /// `SourceType`.
    pub source_type: Option<String>,
    /// `JournalLines`.
    pub journal_lines: Vec<JournalLine>,
}

impl Journal {
    /// Sum of net amounts; zero for a balanced journal.
    pub fn imbalance(&self) -> f64 {
        self.journal_lines.iter().filter_map(|l| l.net_amount).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn invoice_from_spec_shaped_json() {
        let json = r#"{
            "Type": "ACCREC", "InvoiceID": "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2",
            "InvoiceNumber": "INV-0001", "Status": "AUTHORISED",
            "Contact": {"ContactID": "5cc8cf28-567e-4d43-b287-687cfcaec47c", "Name": "Katherine Warren"},
            "Date": "/Date(1511827200000+0000)/", "DateString": "2017-11-28T00:00:00",
            "DueDate": "/Date(1512432000000+0000)/",
            "LineAmountTypes": "Exclusive", "SubTotal": 40.00, "TotalTax": 6.00, "Total": 46.00,
            "AmountDue": 46.00, "AmountPaid": 0.00, "CurrencyCode": "NZD",
            "UpdatedDateUTC": "/Date(1511893792820+0000)/",
            "LineItems": [{"Description": "Tires", "Quantity": 4.0, "UnitAmount": 10.00,
                            "TaxAmount": 6.00, "LineAmount": 40.00, "AccountCode": "200",
                            "LineItemID": "5f7a612b-fdcc-4d33-90fa-a9f6bc6db32f"}],
            "SomethingNew": {"x": 1}
        }"#;
        let inv: Invoice = serde_json::from_str(json).unwrap();
        assert_eq!(inv.invoice_number.as_deref(), Some("INV-0001"));
        assert_eq!(inv.date, Some(datetime!(2017-11-28 00:00 UTC)));
        assert_eq!(inv.line_items.len(), 1);
        let lines: f64 = inv.line_items.iter().filter_map(|l| l.line_amount).sum();
        assert_eq!(lines + inv.total_tax.unwrap(), inv.total.unwrap());
        assert_eq!(
            inv.contact.unwrap().name.as_deref(),
            Some("Katherine Warren")
        );
    }

    #[test]
    fn journal_balance() {
        let json = r#"{"JournalID":"1b31feeb-aa23-404c-8c19-24c827c53661","JournalDate":"/Date(1539993600000+0000)/","JournalNumber":1,"CreatedDateUTC":"/Date(1541176243467+0000)/","JournalLines":[{"NetAmount":40.00},{"NetAmount":-40.00}]}"#;
        let j: Journal = serde_json::from_str(json).unwrap();
        assert_eq!(j.journal_number, 1);
        assert_eq!(j.imbalance(), 0.0);
    }
}
