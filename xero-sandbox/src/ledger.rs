//! A read-only snapshot of one organisation's records, for tests that work
//! out expected answers from the books themselves (the query service's
//! question set) rather than through the API, the transformation or the
//! planner. Owned and public: nothing in it reaches back into the sandbox.
//!
//! Money is in cents of the document's currency (`i64`), exactly as the
//! sandbox keeps it; dates are the documents' days (the sandbox writes every
//! date as midnight UTC, `+0000`).

use time::Date;

use super::chart::{self, CHART};
use super::model::{ms_to_datetime, Ms};
use super::org::OrgData;

/// One organisation's books.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// The organisation's id (the `xero-tenant-id`).
    pub tenant_id: String,
    pub name: String,
    /// ISO 4217, e.g. `NZD`.
    pub base_currency: String,
    /// The financial year ends on this day of this month (1-12).
    pub financial_year_end_day: u8,
    pub financial_year_end_month: u8,
    pub invoices: Vec<LedgerInvoice>,
    pub payments: Vec<LedgerPayment>,
    pub credit_notes: Vec<LedgerCreditNote>,
    pub accounts: Vec<LedgerAccount>,
    pub items: Vec<LedgerItem>,
    pub contacts: Vec<LedgerContact>,
    /// Every line of every journal posted (reversals included).
    pub journal_lines: Vec<LedgerJournalLine>,
}

/// A sales invoice (`ACCREC`) or bill (`ACCPAY`) at its latest version.
#[derive(Debug, Clone)]
pub struct LedgerInvoice {
    pub id: String,
    /// `ACCREC` or `ACCPAY`.
    pub kind: String,
    /// DRAFT, SUBMITTED, AUTHORISED, PAID, VOIDED or DELETED.
    pub status: String,
    pub contact_id: String,
    /// The name as the document carries it (the contact's own record may differ after an edit).
    pub contact_name: String,
    pub date: Date,
    pub due_date: Date,
    pub fully_paid_on: Option<Date>,
    pub currency_code: String,
    /// Units of the document's currency per unit of the base currency.
    pub currency_rate: f64,
    pub sub_total: i64,
    pub total_tax: i64,
    pub total: i64,
    pub amount_due: i64,
    /// Whether line amounts include tax (`LineAmountTypes` = Inclusive).
    pub tax_inclusive: bool,
    pub lines: Vec<LedgerLine>,
}

/// A line of an invoice.
#[derive(Debug, Clone)]
pub struct LedgerLine {
    pub item_code: Option<String>,
    pub account_code: String,
    pub quantity: f64,
    /// As entered: tax-inclusive when the document's amounts are.
    pub line_amount: i64,
    pub tax_amount: i64,
}

impl LedgerLine {
    /// The line's amount excluding tax.
    pub fn net(&self, tax_inclusive: bool) -> i64 {
        if tax_inclusive {
            self.line_amount - self.tax_amount
        } else {
            self.line_amount
        }
    }
}

/// A payment of an invoice or bill.
#[derive(Debug, Clone)]
pub struct LedgerPayment {
    pub invoice_id: String,
    pub date: Date,
    /// AUTHORISED or DELETED.
    pub status: String,
    /// In the invoice's currency.
    pub amount: i64,
    pub currency_rate: f64,
}

/// A credit note, sales (`ACCRECCREDIT`) or purchase (`ACCPAYCREDIT`).
#[derive(Debug, Clone)]
pub struct LedgerCreditNote {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub date: Date,
    pub contact_id: String,
    pub contact_name: String,
    pub currency_code: String,
    pub currency_rate: f64,
    pub sub_total: i64,
    pub total: i64,
}

/// An account of the chart.
#[derive(Debug, Clone)]
pub struct LedgerAccount {
    pub code: String,
    pub name: String,
    /// Xero's account type (BANK, REVENUE, DIRECTCOSTS, …).
    pub kind: String,
    pub class: String,
}

/// A product or service.
#[derive(Debug, Clone)]
pub struct LedgerItem {
    pub code: String,
    pub name: String,
}

/// A contact as its own record names it.
#[derive(Debug, Clone)]
pub struct LedgerContact {
    pub id: String,
    pub name: String,
}

/// A line of the general ledger, in the base currency (positive = debit).
#[derive(Debug, Clone)]
pub struct LedgerJournalLine {
    pub date: Date,
    pub account_code: String,
    pub account_name: String,
    pub account_type: String,
    pub net: i64,
}

fn day(ms: Ms) -> Date {
    ms_to_datetime(ms).date()
}

/// The snapshot of `org`.
pub(crate) fn snapshot(org: &OrgData) -> Ledger {
    let invoices = org
        .invoices
        .rows
        .iter()
        .map(|inv| LedgerInvoice {
            id: inv.id.to_string(),
            kind: inv.kind.to_owned(),
            status: inv.status.to_owned(),
            contact_id: inv.contact.id.to_string(),
            contact_name: inv.contact.name.clone(),
            date: day(inv.date),
            due_date: day(inv.due_date),
            fully_paid_on: inv.fully_paid_on_date.map(day),
            currency_code: inv.currency_code.to_owned(),
            currency_rate: inv.currency_rate,
            sub_total: inv.sub_total,
            total_tax: inv.total_tax,
            total: inv.total,
            amount_due: inv.amount_due,
            tax_inclusive: inv.line_amount_types == "Inclusive",
            lines: inv
                .line_items
                .iter()
                .map(|l| LedgerLine {
                    item_code: l.item_code.map(str::to_owned),
                    account_code: l.account_code.to_owned(),
                    quantity: l.quantity,
                    line_amount: l.line_amount,
                    tax_amount: l.tax_amount,
                })
                .collect(),
        })
        .collect();
    let payments = org
        .payments
        .rows
        .iter()
        .map(|p| LedgerPayment {
            invoice_id: p.invoice.id.to_string(),
            date: day(p.date),
            status: p.status.to_owned(),
            amount: p.amount,
            currency_rate: p.currency_rate,
        })
        .collect();
    let credit_notes = org
        .credit_notes
        .rows
        .iter()
        .map(|cn| LedgerCreditNote {
            id: cn.id.to_string(),
            kind: cn.kind.to_owned(),
            status: cn.status.to_owned(),
            date: day(cn.date),
            contact_id: cn.contact.id.to_string(),
            contact_name: cn.contact.name.clone(),
            currency_code: cn.currency_code.to_owned(),
            currency_rate: cn.currency_rate,
            sub_total: cn.sub_total,
            total: cn.total,
        })
        .collect();
    let accounts = org
        .accounts
        .iter()
        .filter(|a| !a.deleted)
        .map(|a| {
            let d = a.def();
            LedgerAccount {
                code: d.code.to_owned(),
                name: d.name.to_owned(),
                kind: d.kind.to_owned(),
                class: d.class.to_owned(),
            }
        })
        .collect();
    let items = org
        .items
        .iter()
        .map(|i| {
            let d = &chart::ITEMS[i.def];
            LedgerItem {
                code: d.code.to_owned(),
                name: d.name.to_owned(),
            }
        })
        .collect();
    let contacts = org
        .contacts
        .rows
        .iter()
        .map(|c| LedgerContact {
            id: c.id.to_string(),
            name: c.name.clone(),
        })
        .collect();
    let journal_lines = org
        .journals
        .iter()
        .flat_map(|j| {
            let date = day(j.journal_date);
            j.journal_lines.iter().map(move |l| {
                let d = &CHART[l.account];
                LedgerJournalLine {
                    date,
                    account_code: d.code.to_owned(),
                    account_name: d.name.to_owned(),
                    account_type: d.kind.to_owned(),
                    net: l.net,
                }
            })
        })
        .collect();
    Ledger {
        tenant_id: org.tenant_id().to_string(),
        name: org.org.name.clone(),
        base_currency: org.org.base_currency.to_owned(),
        financial_year_end_day: org.org.financial_year_end_day,
        financial_year_end_month: org.org.financial_year_end_month,
        invoices,
        payments,
        credit_notes,
        accounts,
        items,
        contacts,
        journal_lines,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gen::{generate, GenConfig};

    #[test]
    fn the_snapshot_holds_every_record_and_adds_up() {
        let d = generate(&GenConfig {
            seed: 7,
            org_index: 0,
            invoices: 200,
            as_of_ms: 1_767_225_600_000,
        });
        let l = snapshot(&d);
        assert_eq!(l.invoices.len(), 200);
        assert_eq!(l.payments.len(), d.payments.len());
        assert_eq!(l.credit_notes.len(), d.credit_notes.len());
        assert_eq!(l.accounts.len(), CHART.len());
        // Every journal balances, so the snapshot's lines add up to zero.
        assert_eq!(l.journal_lines.iter().map(|j| j.net).sum::<i64>(), 0);
        // Lines add up to the document's sub_total.
        for inv in &l.invoices {
            let net: i64 = inv.lines.iter().map(|x| x.net(inv.tax_inclusive)).sum();
            assert_eq!(net, inv.sub_total, "{}", inv.id);
        }
        // Documents are dated before the as-of day (2026-01-01).
        let as_of = time::macros::date!(2026 - 01 - 01);
        assert!(l.invoices.iter().all(|i| i.date < as_of));
    }
}
