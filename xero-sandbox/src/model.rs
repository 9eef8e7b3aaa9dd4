//! The sandbox's records, serialised exactly as the Accounting API writes
//! them (field names and casing from xero_accounting.yaml, `/Date(ms+0000)/`
//! instants, amounts as JSON numbers). Amounts are kept in cents so the books
//! add up exactly; instants are milliseconds since the epoch (UTC).

use std::borrow::Cow;

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::chart::{self, AccountDef, CHART};

/// Milliseconds since the Unix epoch, UTC.
pub(crate) type Ms = i64;
/// An amount in cents of some currency.
pub(crate) type Cents = i64;

pub(crate) const MS_PER_DAY: i64 = 86_400_000;

/// The instant of `ms` (the epoch if out of range).
pub(crate) fn ms_to_datetime(ms: Ms) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn ms_date<S: Serializer>(ms: &Ms, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::wire::ms_date(*ms))
}

fn opt_ms_date<S: Serializer>(ms: &Option<Ms>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => ms_date(ms, s),
        None => s.serialize_none(),
    }
}

pub(crate) fn cents_to_f64(c: Cents) -> f64 {
    c as f64 / 100.0
}

fn money_ser<S: Serializer>(c: &Cents, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(cents_to_f64(*c))
}

fn empty_list<S: Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_seq(Some(0))?.end()
}

/// Rounds `cents × rate_bp / 10_000` half away from zero.
pub(crate) fn apply_bp(cents: Cents, rate_bp: i64) -> Cents {
    let num = i128::from(cents) * i128::from(rate_bp);
    let q = num / 10_000;
    let r = num % 10_000;
    let q = if r.abs() * 2 >= 10_000 {
        q + num.signum()
    } else {
        q
    };
    q as Cents
}

/// An amount in a foreign currency converted to the base currency at
/// `rate` (units of the foreign currency per unit of the base), to cents.
pub(crate) fn to_base(cents: Cents, rate: f64) -> Cents {
    if rate == 1.0 || rate <= 0.0 {
        return cents;
    }
    (cents as f64 / rate).round() as Cents
}

/// `ContactID` and `Name` of a contact, as embedded in documents.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContactRef {
    #[serde(rename = "ContactID")]
    pub id: Uuid,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "HasValidationErrors")]
    pub has_validation_errors: bool,
}

/// The organisation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Organisation {
    #[serde(rename = "OrganisationID")]
    pub id: Uuid,
    pub name: String,
    pub legal_name: String,
    pub pays_tax: bool,
    pub version: &'static str,
    pub organisation_type: &'static str,
    pub base_currency: &'static str,
    pub country_code: &'static str,
    pub is_demo_company: bool,
    pub organisation_status: &'static str,
    pub tax_number: String,
    pub financial_year_end_day: u8,
    pub financial_year_end_month: u8,
    pub sales_tax_basis: &'static str,
    pub sales_tax_period: &'static str,
    pub default_sales_tax: &'static str,
    pub default_purchases_tax: &'static str,
    #[serde(rename = "CreatedDateUTC", serialize_with = "ms_date")]
    pub created: Ms,
    pub timezone: &'static str,
    pub organisation_entity_type: &'static str,
    pub short_code: String,
    pub class: &'static str,
    pub edition: &'static str,
    pub line_of_business: &'static str,
    pub addresses: Vec<Address>,
    pub phones: Vec<Phone>,
}

/// An address.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Address {
    pub address_type: &'static str,
    pub address_line1: String,
    pub city: &'static str,
    pub region: &'static str,
    pub postal_code: String,
    pub country: &'static str,
}

/// A phone number.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Phone {
    pub phone_type: &'static str,
    pub phone_number: String,
    pub phone_area_code: String,
    pub phone_country_code: &'static str,
}

/// An account of the chart (static facts from [`CHART`], ids per org).
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub id: Uuid,
    pub def: usize,
    pub updated: Ms,
    /// Deleted (Xero deletes an account no transaction uses outright): it
    /// stays in place, since documents find accounts by chart index, but no
    /// listing shows it.
    pub deleted: bool,
}

impl Account {
    pub(crate) fn def(&self) -> &'static AccountDef {
        &CHART[self.def]
    }
}

impl Serialize for Account {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out<'a> {
            #[serde(rename = "AccountID")]
            id: Uuid,
            code: &'a str,
            name: &'a str,
            status: &'a str,
            #[serde(rename = "Type")]
            kind: &'a str,
            tax_type: &'a str,
            class: &'a str,
            system_account: &'a str,
            enable_payments_to_account: bool,
            show_in_expense_claims: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            bank_account_number: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            bank_account_type: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            currency_code: Option<&'a str>,
            reporting_code: String,
            reporting_code_name: &'a str,
            has_attachments: bool,
            add_to_watchlist: bool,
            #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
            updated: Ms,
        }
        let d = self.def();
        Out {
            id: self.id,
            code: d.code,
            name: d.name,
            status: d.status,
            kind: d.kind,
            tax_type: d.tax_type,
            class: d.class,
            system_account: d.system,
            enable_payments_to_account: d.bank,
            show_in_expense_claims: d.class == "EXPENSE",
            bank_account_number: d.bank.then(|| format!("12-3456-{:07}-00", 100 + self.def)),
            bank_account_type: d.bank.then_some("BANK"),
            currency_code: d
                .bank
                .then(|| d.bank_currency.unwrap_or(chart::BASE_CURRENCY)),
            reporting_code: format!("{}.{}", &d.class[..3], d.code),
            reporting_code_name: d.name,
            has_attachments: false,
            add_to_watchlist: d.bank,
            updated: self.updated,
        }
        .serialize(s)
    }
}

/// `{AccountID, Code}` (and the name for bank accounts) inside documents.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccountRef {
    pub id: Uuid,
    pub def: usize,
    pub with_name: bool,
}

impl Serialize for AccountRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "AccountID")]
            id: Uuid,
            #[serde(rename = "Code")]
            code: &'a str,
            #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
        }
        let d = &CHART[self.def];
        Out {
            id: self.id,
            code: d.code,
            name: self.with_name.then_some(d.name),
        }
        .serialize(s)
    }
}

/// A tracking category on a line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LineTracking {
    #[serde(rename = "TrackingCategoryID")]
    pub category_id: Uuid,
    #[serde(rename = "TrackingOptionID")]
    pub option_id: Uuid,
    #[serde(rename = "Name")]
    pub name: &'static str,
    #[serde(rename = "Option")]
    pub option: &'static str,
}

/// A line of an invoice, credit note or bank transaction.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LineItem {
    #[serde(rename = "LineItemID")]
    pub id: Uuid,
    pub description: Cow<'static, str>,
    pub quantity: f64,
    #[serde(serialize_with = "money_ser")]
    pub unit_amount: Cents,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_code: Option<&'static str>,
    pub account_code: &'static str,
    #[serde(rename = "AccountID")]
    pub account_id: Uuid,
    pub tax_type: &'static str,
    #[serde(serialize_with = "money_ser")]
    pub tax_amount: Cents,
    #[serde(serialize_with = "money_ser")]
    pub line_amount: Cents,
    pub tracking: Vec<LineTracking>,
    #[serde(skip)]
    pub account: usize,
}

impl LineItem {
    /// The amount excluding tax, given the document's line amount type.
    pub(crate) fn net(&self, inclusive: bool) -> Cents {
        if inclusive {
            self.line_amount - self.tax_amount
        } else {
            self.line_amount
        }
    }
}

/// Tax on a line amount at `rate_bp`.
pub(crate) fn line_tax(line_amount: Cents, rate_bp: i64, amount_type: &str) -> Cents {
    match amount_type {
        "NoTax" => 0,
        // Inclusive: tax = amount × r / (1 + r).
        "Inclusive" => {
            let num = i128::from(line_amount) * i128::from(rate_bp);
            let den = 10_000 + i128::from(rate_bp);
            let q = num / den;
            let r = num % den;
            (if r.abs() * 2 >= den {
                q + num.signum()
            } else {
                q
            }) as Cents
        }
        _ => apply_bp(line_amount, rate_bp),
    }
}

/// Totals of lines: (SubTotal, TotalTax, Total).
pub(crate) fn totals(lines: &[LineItem], amount_type: &str) -> (Cents, Cents, Cents) {
    let tax: Cents = lines.iter().map(|l| l.tax_amount).sum();
    let amounts: Cents = lines.iter().map(|l| l.line_amount).sum();
    if amount_type == "Inclusive" {
        (amounts - tax, tax, amounts)
    } else {
        (amounts, tax, amounts + tax)
    }
}

/// A contact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Contact {
    #[serde(rename = "ContactID")]
    pub id: Uuid,
    pub contact_number: String,
    pub account_number: String,
    pub contact_status: &'static str,
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub email_address: String,
    pub bank_account_details: String,
    pub tax_number: String,
    pub accounts_receivable_tax_type: &'static str,
    pub accounts_payable_tax_type: &'static str,
    pub addresses: Vec<Address>,
    pub phones: Vec<Phone>,
    pub is_supplier: bool,
    pub is_customer: bool,
    pub default_currency: &'static str,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
    #[serde(serialize_with = "empty_list")]
    pub contact_groups: (),
    #[serde(serialize_with = "empty_list")]
    pub contact_persons: (),
    pub has_attachments: bool,
    pub has_validation_errors: bool,
}

impl Contact {
    pub(crate) fn as_ref(&self) -> ContactRef {
        ContactRef {
            id: self.id,
            name: self.name.clone(),
            has_validation_errors: false,
        }
    }
}

/// A payment as summarised inside an invoice.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PaymentSummary {
    #[serde(rename = "PaymentID")]
    pub id: Uuid,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    #[serde(serialize_with = "money_ser")]
    pub amount: Cents,
    pub reference: String,
    pub currency_rate: f64,
    pub has_account: bool,
    pub has_validation_errors: bool,
}

/// A credit note as summarised inside an invoice.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreditSummary {
    #[serde(rename = "CreditNoteID")]
    pub id: Uuid,
    pub credit_note_number: String,
    #[serde(serialize_with = "money_ser")]
    pub applied_amount: Cents,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    #[serde(serialize_with = "money_ser")]
    pub total: Cents,
    pub has_errors: bool,
}

/// A sales invoice or bill.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Invoice {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "InvoiceID")]
    pub id: Uuid,
    pub invoice_number: String,
    pub reference: String,
    pub payments: Vec<PaymentSummary>,
    pub credit_notes: Vec<CreditSummary>,
    #[serde(serialize_with = "empty_list")]
    pub prepayments: (),
    #[serde(serialize_with = "empty_list")]
    pub overpayments: (),
    #[serde(serialize_with = "money_ser")]
    pub amount_due: Cents,
    #[serde(serialize_with = "money_ser")]
    pub amount_paid: Cents,
    #[serde(serialize_with = "money_ser")]
    pub amount_credited: Cents,
    pub sent_to_contact: bool,
    pub currency_rate: f64,
    pub is_discounted: bool,
    pub has_attachments: bool,
    pub has_errors: bool,
    pub contact: ContactRef,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    #[serde(serialize_with = "ms_date")]
    pub due_date: Ms,
    pub status: &'static str,
    pub line_amount_types: &'static str,
    pub line_items: Vec<LineItem>,
    #[serde(serialize_with = "money_ser")]
    pub sub_total: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total_tax: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total: Cents,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_ms_date"
    )]
    pub fully_paid_on_date: Option<Ms>,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
    pub currency_code: &'static str,
    #[serde(skip)]
    pub created: Ms,
    /// When the invoice was approved (its journal's time), if ever.
    #[serde(skip)]
    pub authorised_at: Option<Ms>,
}

impl Invoice {
    pub(crate) fn is_posted(&self) -> bool {
        matches!(self.status, "AUTHORISED" | "PAID")
    }

    /// Recomputes the totals and the amount due from the lines, payments
    /// and credits.
    pub(crate) fn recompute(&mut self) {
        let (sub, tax, total) = totals(&self.line_items, self.line_amount_types);
        self.sub_total = sub;
        self.total_tax = tax;
        self.total = total;
        self.amount_paid = self.payments.iter().map(|p| p.amount).sum();
        self.amount_credited = self.credit_notes.iter().map(|c| c.applied_amount).sum();
        self.amount_due = match self.status {
            "VOIDED" | "DELETED" => 0,
            _ => self.total - self.amount_paid - self.amount_credited,
        };
    }
}

/// An allocation of a credit note to an invoice.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Allocation {
    #[serde(rename = "AllocationID")]
    pub id: Uuid,
    #[serde(serialize_with = "money_ser")]
    pub amount: Cents,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    pub invoice: InvoiceRef,
    pub is_deleted: bool,
}

/// `{InvoiceID, InvoiceNumber, Type}` inside allocations and payments.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InvoiceRef {
    #[serde(rename = "InvoiceID")]
    pub id: Uuid,
    pub invoice_number: String,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<&'static str>,
}

/// A credit note.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreditNote {
    #[serde(rename = "CreditNoteID")]
    pub id: Uuid,
    pub credit_note_number: String,
    #[serde(serialize_with = "empty_list")]
    pub payments: (),
    pub currency_rate: f64,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub reference: String,
    #[serde(serialize_with = "money_ser")]
    pub remaining_credit: Cents,
    pub allocations: Vec<Allocation>,
    pub has_attachments: bool,
    pub contact: ContactRef,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    pub status: &'static str,
    pub line_amount_types: &'static str,
    pub line_items: Vec<LineItem>,
    #[serde(serialize_with = "money_ser")]
    pub sub_total: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total_tax: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total: Cents,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_ms_date"
    )]
    pub fully_paid_on_date: Option<Ms>,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
    pub currency_code: &'static str,
}

/// A payment of an invoice.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Payment {
    #[serde(rename = "PaymentID")]
    pub id: Uuid,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    #[serde(serialize_with = "money_ser")]
    pub bank_amount: Cents,
    #[serde(serialize_with = "money_ser")]
    pub amount: Cents,
    pub reference: String,
    pub currency_rate: f64,
    pub payment_type: &'static str,
    pub status: &'static str,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
    pub has_account: bool,
    pub is_reconciled: bool,
    pub account: AccountRef,
    pub invoice: InvoiceRef,
    pub has_validation_errors: bool,
    #[serde(skip)]
    pub created: Ms,
    /// Index of the invoice in its table.
    #[serde(skip)]
    pub invoice_index: usize,
}

/// A spend- or receive-money transaction.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BankTransaction {
    #[serde(rename = "BankTransactionID")]
    pub id: Uuid,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub contact: ContactRef,
    pub line_items: Vec<LineItem>,
    pub bank_account: AccountRef,
    pub is_reconciled: bool,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    pub reference: String,
    pub currency_code: &'static str,
    pub currency_rate: f64,
    pub status: &'static str,
    pub line_amount_types: &'static str,
    #[serde(serialize_with = "money_ser")]
    pub sub_total: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total_tax: Cents,
    #[serde(serialize_with = "money_ser")]
    pub total: Cents,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
    pub has_attachments: bool,
}

/// A line of a manual journal (positive = debit).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ManualJournalLine {
    #[serde(serialize_with = "money_ser")]
    pub line_amount: Cents,
    pub account_code: &'static str,
    #[serde(rename = "AccountID")]
    pub account_id: Uuid,
    pub description: String,
    pub tax_type: &'static str,
    #[serde(serialize_with = "money_ser")]
    pub tax_amount: Cents,
    pub is_blank: bool,
    #[serde(skip)]
    pub account: usize,
}

/// A manual journal.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ManualJournal {
    #[serde(rename = "ManualJournalID")]
    pub id: Uuid,
    pub narration: String,
    pub journal_lines: Vec<ManualJournalLine>,
    #[serde(serialize_with = "ms_date")]
    pub date: Ms,
    pub line_amount_types: &'static str,
    pub status: &'static str,
    pub show_on_cash_basis_reports: bool,
    pub has_attachments: bool,
    #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
    pub updated: Ms,
}

/// A line of a general-ledger journal (positive = debit).
#[derive(Debug, Clone)]
pub(crate) struct JournalLine {
    pub id: Uuid,
    pub account_id: Uuid,
    pub account: usize,
    pub description: Cow<'static, str>,
    pub net: Cents,
    pub tax: Cents,
    pub tax_type: Option<&'static str>,
}

impl Serialize for JournalLine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out<'a> {
            #[serde(rename = "JournalLineID")]
            id: Uuid,
            #[serde(rename = "AccountID")]
            account_id: Uuid,
            account_code: &'a str,
            account_type: &'a str,
            account_name: &'a str,
            description: &'a str,
            net_amount: f64,
            gross_amount: f64,
            tax_amount: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            tax_type: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tax_name: Option<&'a str>,
            tracking_categories: [(); 0],
        }
        let d = &CHART[self.account];
        Out {
            id: self.id,
            account_id: self.account_id,
            account_code: d.code,
            account_type: d.kind,
            account_name: d.name,
            description: &self.description,
            net_amount: cents_to_f64(self.net),
            gross_amount: cents_to_f64(self.net + self.tax),
            tax_amount: cents_to_f64(self.tax),
            tax_type: self.tax_type,
            tax_name: self.tax_type.map(|t| chart::tax(t).name),
            tracking_categories: [],
        }
        .serialize(s)
    }
}

/// A general-ledger journal.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Journal {
    #[serde(rename = "JournalID")]
    pub id: Uuid,
    #[serde(serialize_with = "ms_date")]
    pub journal_date: Ms,
    pub journal_number: i64,
    #[serde(rename = "CreatedDateUTC", serialize_with = "ms_date")]
    pub created: Ms,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
    #[serde(rename = "SourceID")]
    pub source_id: Uuid,
    pub source_type: &'static str,
    pub journal_lines: Vec<JournalLine>,
}

impl Journal {
    pub(crate) fn is_payment(&self) -> bool {
        matches!(
            self.source_type,
            "ACCRECPAYMENT" | "ACCPAYPAYMENT" | "CASHREC" | "CASHPAID"
        )
    }
}

/// Product or service.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: Uuid,
    pub def: usize,
    pub updated: Ms,
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Details<'a> {
            unit_price: f64,
            account_code: &'a str,
            tax_type: &'a str,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out<'a> {
            #[serde(rename = "ItemID")]
            id: Uuid,
            code: &'a str,
            name: &'a str,
            description: &'a str,
            purchase_description: &'a str,
            is_sold: bool,
            is_purchased: bool,
            is_tracked_as_inventory: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            sales_details: Option<Details<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            purchase_details: Option<Details<'a>>,
            #[serde(rename = "UpdatedDateUTC", serialize_with = "ms_date")]
            updated: Ms,
        }
        let d = &chart::ITEMS[self.def];
        let sales_code = if d.code.starts_with("CONS") || d.code == "TRAIN" {
            CHART[chart::A_OTHER_REVENUE].code
        } else {
            CHART[chart::A_SALES].code
        };
        Out {
            id: self.id,
            code: d.code,
            name: d.name,
            description: d.name,
            purchase_description: d.name,
            is_sold: d.sold,
            is_purchased: d.purchased,
            is_tracked_as_inventory: false,
            sales_details: d.sold.then(|| Details {
                unit_price: cents_to_f64(d.sale_cents),
                account_code: sales_code,
                tax_type: "OUTPUT2",
            }),
            purchase_details: d.purchased.then(|| Details {
                unit_price: cents_to_f64(d.purchase_cents),
                account_code: CHART[chart::A_COGS].code,
                tax_type: "INPUT2",
            }),
            updated: self.updated,
        }
        .serialize(s)
    }
}

/// A tax rate (static facts from the chart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaxRate(pub usize);

impl Serialize for TaxRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Component<'a> {
            name: &'a str,
            rate: f64,
            is_compound: bool,
            is_non_recoverable: bool,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Out<'a> {
            name: &'a str,
            tax_type: &'a str,
            report_tax_type: &'a str,
            can_apply_to_assets: bool,
            can_apply_to_equity: bool,
            can_apply_to_expenses: bool,
            can_apply_to_liabilities: bool,
            can_apply_to_revenue: bool,
            display_tax_rate: f64,
            effective_rate: f64,
            status: &'a str,
            tax_components: Vec<Component<'a>>,
        }
        let t = &chart::TAXES[self.0];
        let rate = t.rate_bp as f64 / 100.0;
        let output = t.report_tax_type.contains("OUTPUT");
        Out {
            name: t.name,
            tax_type: t.tax_type,
            report_tax_type: t.report_tax_type,
            can_apply_to_assets: !output,
            can_apply_to_equity: true,
            can_apply_to_expenses: !output,
            can_apply_to_liabilities: true,
            can_apply_to_revenue: t.tax_type != "INPUT2",
            display_tax_rate: rate,
            effective_rate: rate,
            status: t.status,
            tax_components: vec![Component {
                name: "GST",
                rate,
                is_compound: false,
                is_non_recoverable: false,
            }],
        }
        .serialize(s)
    }
}

/// A tracking option.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TrackingOption {
    #[serde(rename = "TrackingOptionID")]
    pub id: Uuid,
    pub name: &'static str,
    pub status: &'static str,
}

/// A tracking category.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TrackingCategory {
    #[serde(rename = "TrackingCategoryID")]
    pub id: Uuid,
    pub name: &'static str,
    pub status: &'static str,
    pub options: Vec<TrackingOption>,
}

/// A currency.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Currency {
    pub code: &'static str,
    pub description: &'static str,
}

/// A record as an organisation's tables keep it and listings select it: its
/// id and when it last changed (for a journal, which has no such stamp, when
/// it was created).
pub(crate) trait Row {
    fn id(&self) -> Uuid;
    fn updated(&self) -> Ms;
}

macro_rules! row {
    ($t:ty) => {
        impl Row for $t {
            fn id(&self) -> Uuid {
                self.id
            }
            fn updated(&self) -> Ms {
                self.updated
            }
        }
    };
}
row!(Contact);
row!(Invoice);
row!(CreditNote);
row!(Payment);
row!(BankTransaction);
row!(ManualJournal);
row!(Account);
row!(Item);

impl Row for Journal {
    fn id(&self) -> Uuid {
        self.id
    }
    fn updated(&self) -> Ms {
        self.created
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(apply_bp(1000, 1500), 150);
        assert_eq!(apply_bp(1003, 1500), 150); // 150.45
        assert_eq!(apply_bp(1004, 1500), 151); // 150.6
        assert_eq!(apply_bp(-1004, 1500), -151);
        assert_eq!(line_tax(1150, 1500, "Inclusive"), 150);
        assert_eq!(line_tax(1150, 1500, "NoTax"), 0);
        assert_eq!(to_base(6000, 0.6), 10000);
        assert_eq!(cents_to_f64(4600), 46.0);
        assert_eq!(serde_json::to_string(&cents_to_f64(1999)).unwrap(), "19.99");
    }
}
