//! The ground truth: totals an end-to-end test can compare what it
//! ingested and transformed against, and the consistency checks the books
//! always pass (listed under `problems`, empty when all is well).
//!
//! Base-currency amounts convert each document at its own `CurrencyRate`
//! (amount ÷ rate, rounded to cents per document), then add up.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::chart::{self, CHART};
use super::model::*;
use super::org::OrgData;

fn month(ms: Ms) -> String {
    let d = ms_to_datetime(ms);
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

fn money(c: Cents) -> f64 {
    cents_to_f64(c)
}

#[derive(Default, Serialize)]
struct Sum {
    count: u64,
    sub_total: f64,
    total_tax: f64,
    total: f64,
    amount_due: f64,
    amount_paid: f64,
    amount_credited: f64,
}

#[derive(Default, Clone, Copy)]
struct SumC {
    count: u64,
    sub_total: Cents,
    total_tax: Cents,
    total: Cents,
    amount_due: Cents,
    amount_paid: Cents,
    amount_credited: Cents,
}

impl SumC {
    fn add_invoice(&mut self, inv: &Invoice) {
        let r = inv.currency_rate;
        self.count += 1;
        self.sub_total += to_base(inv.sub_total, r);
        self.total_tax += to_base(inv.total_tax, r);
        self.total += to_base(inv.total, r);
        self.amount_due += to_base(inv.amount_due, r);
        self.amount_paid += to_base(inv.amount_paid, r);
        self.amount_credited += to_base(inv.amount_credited, r);
    }

    fn out(self) -> Sum {
        Sum {
            count: self.count,
            sub_total: money(self.sub_total),
            total_tax: money(self.total_tax),
            total: money(self.total),
            amount_due: money(self.amount_due),
            amount_paid: money(self.amount_paid),
            amount_credited: money(self.amount_credited),
        }
    }
}

/// The books of one organisation as JSON; `detail` adds the per contact and
/// month breakdown.
pub(crate) fn books(org: &OrgData, detail: bool) -> Value {
    let mut by_status: BTreeMap<String, SumC> = BTreeMap::new();
    let mut by_type: BTreeMap<&str, SumC> = BTreeMap::new();
    let mut by_currency: BTreeMap<&str, (u64, Cents, Cents)> = BTreeMap::new();
    let mut by_contact_month: BTreeMap<(String, &str, String), (String, SumC)> = BTreeMap::new();
    for inv in &org.invoices.rows {
        by_status
            .entry(format!("{}:{}", inv.kind, inv.status))
            .or_default()
            .add_invoice(inv);
        if inv.is_posted() {
            by_type.entry(inv.kind).or_default().add_invoice(inv);
            let c = by_currency.entry(inv.currency_code).or_default();
            c.0 += 1;
            c.1 += inv.total;
            c.2 += inv.amount_due;
            if detail {
                by_contact_month
                    .entry((inv.contact.id.to_string(), inv.kind, month(inv.date)))
                    .or_insert_with(|| (inv.contact.name.clone(), SumC::default()))
                    .1
                    .add_invoice(inv);
            }
        }
    }
    let mut payments = (0u64, 0 as Cents, 0u64);
    for p in &org.payments.rows {
        if p.status == "AUTHORISED" {
            payments.0 += 1;
            payments.1 += to_base(p.amount, p.currency_rate);
        } else {
            payments.2 += 1;
        }
    }
    let mut credit = BTreeMap::<String, (u64, Cents, Cents)>::new();
    for cn in &org.credit_notes.rows {
        let e = credit
            .entry(format!("{}:{}", cn.kind, cn.status))
            .or_default();
        e.0 += 1;
        e.1 += to_base(cn.total, cn.currency_rate);
        e.2 += to_base(cn.remaining_credit, cn.currency_rate);
    }
    let mut balances = vec![0 as Cents; CHART.len()];
    let mut lines = 0u64;
    let mut unbalanced = 0u64;
    for j in &org.journals {
        let mut sum = 0;
        for l in &j.journal_lines {
            balances[l.account] += l.net;
            sum += l.net;
            lines += 1;
        }
        if sum != 0 {
            unbalanced += 1;
        }
    }
    let trial_balance: Vec<Value> = balances
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0)
        .map(|(i, b)| json!({"AccountID": org.accounts[i].id, "AccountCode": CHART[i].code, "AccountName": CHART[i].name, "AccountType": CHART[i].kind, "Class": CHART[i].class, "balance": money(*b)}))
        .collect();
    let status_counts =
        |st: &dyn Fn(&Invoice) -> bool| org.invoices.rows.iter().filter(|i| st(i)).count();
    let mut out = json!({
        "tenant_id": org.tenant_id(),
        "name": org.org.name,
        "base_currency": chart::BASE_CURRENCY,
        "counts": {
            "Accounts": org.accounts.iter().filter(|a| !a.deleted).count(),
            "Contacts": org.contacts.len(),
            "ContactsArchived": org.contacts.rows.iter().filter(|c| c.contact_status == "ARCHIVED").count(),
            "Invoices": org.invoices.len(),
            "InvoicesVoided": status_counts(&|i| i.status == "VOIDED"),
            "InvoicesDeleted": status_counts(&|i| i.status == "DELETED"),
            "CreditNotes": org.credit_notes.len(),
            "Payments": org.payments.len(),
            "BankTransactions": org.bank_transactions.len(),
            "ManualJournals": org.manual_journals.len(),
            "Journals": org.journals.len(),
            "JournalLines": lines,
            "Items": org.items.len(),
            "TaxRates": org.tax_rates.len(),
            "TrackingCategories": org.tracking.len(),
            "Currencies": org.currencies.len(),
        },
        "invoices": {
            "by_type_and_status": by_status.into_iter().map(|(k, v)| (k, v.out())).collect::<BTreeMap<_, _>>(),
            "posted_by_type": by_type.into_iter().map(|(k, v)| (k, v.out())).collect::<BTreeMap<_, _>>(),
            "posted_by_currency": by_currency.into_iter().map(|(k, v)| (k, json!({"count": v.0, "total": money(v.1), "amount_due": money(v.2)}))).collect::<BTreeMap<_, _>>(),
        },
        "payments": {"authorised": payments.0, "authorised_amount": money(payments.1), "deleted": payments.2},
        "credit_notes": credit.into_iter().map(|(k, v)| (k, json!({"count": v.0, "total": money(v.1), "remaining_credit": money(v.2)}))).collect::<BTreeMap<_, _>>(),
        "journals": {
            "count": org.journals.len(),
            "last_journal_number": org.journals.last().map_or(0, |j| j.journal_number),
            "lines": lines,
            "unbalanced": unbalanced,
            "trial_balance": trial_balance,
            "trial_balance_sum": money(balances.iter().sum()),
        },
        "problems": problems(org),
    });
    if detail {
        let rows: Vec<Value> = by_contact_month
            .into_iter()
            .map(|((contact_id, kind, month), (name, s))| {
                let s = s.out();
                json!({"contact_id": contact_id, "contact_name": name, "type": kind, "month": month,
                       "count": s.count, "sub_total": s.sub_total, "total_tax": s.total_tax, "total": s.total,
                       "amount_due": s.amount_due, "amount_paid": s.amount_paid})
            })
            .collect();
        out["by_contact_month"] = Value::Array(rows);
    }
    out
}

/// Every broken invariant, as text (at most 100).
pub(crate) fn problems(org: &OrgData) -> Vec<String> {
    let mut out = Vec::new();
    let mut paid_by_invoice = vec![0 as Cents; org.invoices.len()];
    for p in &org.payments.rows {
        if p.status == "AUTHORISED" {
            if let Some(x) = paid_by_invoice.get_mut(p.invoice_index) {
                *x += p.amount;
            }
        }
        if p.amount <= 0 {
            out.push(format!("payment {} has amount {}", p.id, p.amount));
        }
    }
    for (i, inv) in org.invoices.rows.iter().enumerate() {
        let (sub, tax, total) = totals(&inv.line_items, inv.line_amount_types);
        let paid: Cents = inv.payments.iter().map(|p| p.amount).sum();
        let credited: Cents = inv.credit_notes.iter().map(|c| c.applied_amount).sum();
        let expected_due = match inv.status {
            "VOIDED" | "DELETED" => 0,
            _ => inv.total - inv.amount_paid - inv.amount_credited,
        };
        let mut bad = Vec::new();
        if (inv.sub_total, inv.total_tax, inv.total) != (sub, tax, total)
            || inv.total != inv.sub_total + inv.total_tax
        {
            bad.push("totals do not match the lines");
        }
        if inv.amount_paid != paid || paid != paid_by_invoice[i] {
            bad.push("AmountPaid does not match the payments");
        }
        if inv.amount_credited != credited {
            bad.push("AmountCredited does not match the credit notes");
        }
        if inv.amount_due != expected_due || inv.amount_due < 0 {
            bad.push("AmountDue is not Total - AmountPaid - AmountCredited (>= 0)");
        }
        if inv.status == "PAID" && inv.amount_due != 0 {
            bad.push("PAID with an amount due");
        }
        if matches!(inv.status, "VOIDED" | "DELETED" | "DRAFT" | "SUBMITTED")
            && (paid != 0 || credited != 0)
        {
            bad.push("payments or credits on an unapproved or voided invoice");
        }
        for b in bad {
            out.push(format!("invoice {} ({}): {b}", inv.invoice_number, inv.id));
        }
    }
    for cn in &org.credit_notes.rows {
        let allocated: Cents = cn.allocations.iter().map(|a| a.amount).sum();
        let (sub, tax, total) = totals(&cn.line_items, cn.line_amount_types);
        if (cn.sub_total, cn.total_tax, cn.total) != (sub, tax, total) {
            out.push(format!(
                "credit note {}: totals do not match the lines",
                cn.id
            ));
        }
        if matches!(cn.status, "AUTHORISED" | "PAID") && cn.remaining_credit != cn.total - allocated
        {
            out.push(format!(
                "credit note {}: RemainingCredit is not Total - allocations",
                cn.id
            ));
        }
    }
    let mut last_created = i64::MIN;
    for (k, j) in org.journals.iter().enumerate() {
        let sum: Cents = j.journal_lines.iter().map(|l| l.net).sum();
        if sum != 0 {
            out.push(format!(
                "journal {} does not balance ({sum})",
                j.journal_number
            ));
        }
        if j.journal_number != k as i64 + 1 {
            out.push(format!(
                "journal at position {k} has number {}",
                j.journal_number
            ));
        }
        if j.created < last_created {
            out.push(format!(
                "journal {} was created before its predecessor",
                j.journal_number
            ));
        }
        last_created = j.created;
    }
    out.truncate(100);
    out
}
