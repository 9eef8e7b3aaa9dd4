//! Changes between syncs: new, edited, voided and paid invoices, edited or
//! new contacts, contacts erased on a GDPR request, and items and unused
//! accounts deleted. Every change takes a stamp later than everything before
//! it, moves `UpdatedDateUTC` (a deleted item or account simply leaves its
//! listing, as in Xero), and posts the journals Xero would (a posting for
//! approvals and payments, a reversal for voids, reversal plus new posting
//! for edits of approved invoices).

use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::gen::Gen;
use super::model::*;
use super::org::OrgData;

/// Most records one request may change per kind.
pub const MAX_CHANGES_PER_KIND: usize = 10_000;

/// What to change (`POST /sandbox/changes`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeRequest {
    /// The organisation (default: the first).
    pub tenant: Option<String>,
    /// New invoices or bills (mostly approved, some drafts).
    pub create: usize,
    /// Edits of unpaid invoices (a line added, the reference changed).
    pub edit: usize,
    /// Voids of approved, unpaid invoices.
    pub void: usize,
    /// Payments of approved invoices (in full or in part).
    pub pay: usize,
    /// Edits of contacts (details changed, or archived/restored).
    pub contacts: usize,
    /// New contacts.
    pub new_contacts: usize,
    /// Contacts erased on a GDPR request: `ContactStatus` GDPRREQUEST, their
    /// personal details blanked.
    pub gdpr_contacts: usize,
    /// Items deleted (gone from the Items listing).
    pub delete_items: usize,
    /// Accounts deleted: only those no transaction uses and the generator
    /// never picks, not system or bank accounts (the ones Xero lets go);
    /// gone from the Accounts listing.
    pub delete_accounts: usize,
    /// Wait until the webhook deliveries of these changes are done.
    pub await_webhooks: bool,
}

/// One changed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// `Invoices`, `Contacts`, `Payments`, `Items` or `Accounts`.
    pub resource: String,
    /// The record's id.
    pub id: String,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub event: String,
    /// What happened (`create`, `edit`, `void`, `pay`, `contact`, `gdpr`,
    /// `delete_item`, `delete_account`).
    pub kind: String,
}

/// What a change request did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeReport {
    /// The organisation.
    pub tenant_id: String,
    /// Records changed, in order.
    pub changed: Vec<Changed>,
    /// Journals added.
    pub journals_added: usize,
    /// The first and last change stamps (`UpdatedDateUTC` values).
    pub first_stamp: Option<String>,
    /// See `first_stamp`.
    pub last_stamp: Option<String>,
    /// Kinds that found fewer candidates than asked for.
    pub shortfalls: Vec<String>,
}

fn stamp_text(ms: Ms) -> String {
    crate::wire::ms_date(ms)
}

/// Applies `req` to `org` at wall-clock `now_ms`.
pub(crate) fn apply(org: &mut OrgData, req: &ChangeRequest, now_ms: Ms) -> ChangeReport {
    let journals_before = org.journals.len();
    let mut report = ChangeReport {
        tenant_id: org.tenant_id().to_string(),
        ..Default::default()
    };
    let mut first = None;
    let mut last = None;
    let mut note =
        |report: &mut ChangeReport, resource: &str, id: Uuid, event: &str, kind: &str, t: Ms| {
            first.get_or_insert(t);
            last = Some(t);
            report.changed.push(Changed {
                resource: resource.into(),
                id: id.to_string(),
                event: event.into(),
                kind: kind.into(),
            });
        };
    let cap = |n: usize| n.min(MAX_CHANGES_PER_KIND);

    for _ in 0..cap(req.new_contacts) {
        let t = org.stamp(now_ms);
        let id = new_contact(org, t);
        note(&mut report, "Contacts", id, "CREATE", "contact", t);
    }
    for _ in 0..cap(req.create) {
        let t = org.stamp(now_ms);
        match create_invoice(org, t) {
            Some(id) => note(&mut report, "Invoices", id, "CREATE", "create", t),
            None => {
                report.shortfalls.push("create".into());
                break;
            }
        }
    }
    for _ in 0..cap(req.edit) {
        let Some(i) = find(org, |inv| {
            matches!(inv.status, "DRAFT" | "SUBMITTED" | "AUTHORISED")
                && inv.payments.is_empty()
                && inv.credit_notes.is_empty()
        }) else {
            report.shortfalls.push("edit".into());
            break;
        };
        let t = org.stamp(now_ms);
        let id = edit_invoice(org, i, t);
        note(&mut report, "Invoices", id, "UPDATE", "edit", t);
    }
    for _ in 0..cap(req.void) {
        let Some(i) = find(org, |inv| {
            inv.status == "AUTHORISED" && inv.payments.is_empty() && inv.credit_notes.is_empty()
        }) else {
            report.shortfalls.push("void".into());
            break;
        };
        let t = org.stamp(now_ms);
        let id = void_invoice(org, i, t);
        note(&mut report, "Invoices", id, "UPDATE", "void", t);
    }
    for _ in 0..cap(req.pay) {
        let Some(i) = find(org, |inv| inv.status == "AUTHORISED" && inv.amount_due > 0) else {
            report.shortfalls.push("pay".into());
            break;
        };
        let t = org.stamp(now_ms);
        let (inv_id, pay_id) = pay_invoice(org, i, t, now_ms);
        note(&mut report, "Payments", pay_id, "CREATE", "pay", t);
        note(&mut report, "Invoices", inv_id, "UPDATE", "pay", t);
    }
    for _ in 0..cap(req.contacts) {
        // An erased contact is not edited again.
        let Some(i) = find_contact(org, |c| c.contact_status != "GDPRREQUEST") else {
            report.shortfalls.push("contacts".into());
            break;
        };
        let t = org.stamp(now_ms);
        let id = edit_contact(org, i, t);
        note(&mut report, "Contacts", id, "UPDATE", "contact", t);
    }
    for _ in 0..cap(req.gdpr_contacts) {
        let Some(i) = find_contact(org, |c| c.contact_status != "GDPRREQUEST") else {
            report.shortfalls.push("gdpr_contacts".into());
            break;
        };
        let t = org.stamp(now_ms);
        let id = erase_contact(org, i, t);
        note(&mut report, "Contacts", id, "UPDATE", "gdpr", t);
    }
    for _ in 0..cap(req.delete_items) {
        if org.items.is_empty() {
            report.shortfalls.push("delete_items".into());
            break;
        }
        let i = org.rng.gen_range(0..org.items.len());
        // The stamp only orders the change and invalidates cached listings.
        let t = org.stamp(now_ms);
        let item = org.items.remove(i);
        note(&mut report, "Items", item.id, "DELETE", "delete_item", t);
    }
    for _ in 0..cap(req.delete_accounts) {
        let Some(i) = deletable_account(org) else {
            report.shortfalls.push("delete_accounts".into());
            break;
        };
        let t = org.stamp(now_ms);
        org.accounts[i].deleted = true;
        let id = org.accounts[i].id;
        note(&mut report, "Accounts", id, "DELETE", "delete_account", t);
    }
    report.journals_added = org.journals.len() - journals_before;
    report.first_stamp = first.map(stamp_text);
    report.last_stamp = last.map(stamp_text);
    report
}

/// A random record matching `pred`: random probes first, then a scan from
/// a random start (so finding one costs O(1) expected when they are common).
fn find(org: &mut OrgData, pred: impl Fn(&Invoice) -> bool) -> Option<usize> {
    let n = org.invoices.len();
    if n == 0 {
        return None;
    }
    for _ in 0..64 {
        let i = org.rng.gen_range(0..n);
        if pred(&org.invoices.rows[i]) {
            return Some(i);
        }
    }
    let start = org.rng.gen_range(0..n);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| pred(&org.invoices.rows[i]))
}

/// A random contact matching `pred`, as [`find`] does for invoices.
fn find_contact(org: &mut OrgData, pred: impl Fn(&Contact) -> bool) -> Option<usize> {
    let n = org.contacts.len();
    if n == 0 {
        return None;
    }
    for _ in 0..64 {
        let i = org.rng.gen_range(0..n);
        if pred(&org.contacts.rows[i]) {
            return Some(i);
        }
    }
    let start = org.rng.gen_range(0..n);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| pred(&org.contacts.rows[i]))
}

/// The last active account Xero would let go: not a system or bank
/// account, never picked by the generator (so no later document uses it)
/// and on no journal line.
fn deletable_account(org: &OrgData) -> Option<usize> {
    use super::chart;
    let generated = |i: usize| {
        [
            chart::A_BANK,
            chart::A_USD_BANK,
            chart::A_SALES,
            chart::A_OTHER_REVENUE,
            chart::A_INTEREST,
            chart::A_COGS,
            chart::A_AR,
            chart::A_AP,
            chart::A_GST,
            chart::A_DRAWINGS,
            chart::A_FUNDS,
        ]
        .contains(&i)
            || chart::EXPENSE_ACCOUNTS.contains(&i)
    };
    (0..org.accounts.len()).rev().find(|&i| {
        let a = &org.accounts[i];
        let d = a.def();
        !a.deleted
            && d.status == "ACTIVE"
            && d.system.is_empty()
            && !d.bank
            && !generated(i)
            && !org
                .journals
                .iter()
                .any(|j| j.journal_lines.iter().any(|l| l.account == i))
    })
}

fn today(t: Ms) -> Ms {
    t.div_euclid(MS_PER_DAY) * MS_PER_DAY
}

fn create_invoice(org: &mut OrgData, t: Ms) -> Option<Uuid> {
    let approve = org.rng.gen_bool(0.8);
    let status = if approve { "AUTHORISED" } else { "DRAFT" };
    let mut inv = {
        let mut g = Gen::over(org, t + 1);
        g.draft_invoice(today(t), t, status)?
    };
    if approve {
        inv.authorised_at = Some(t);
        let j = org.invoice_journal(&inv, t);
        org.push_journal(j, true);
    }
    let id = inv.id;
    org.invoices.push(inv);
    Some(id)
}

fn edit_invoice(org: &mut OrgData, i: usize, t: Ms) -> Uuid {
    let old = org.invoices.rows[i].clone();
    let sale = old.kind == "ACCREC";
    let foreign = old.currency_code != super::chart::BASE_CURRENCY;
    let line = {
        let mut g = Gen::over(org, t + 1);
        g.extra_line(sale, old.currency_rate, old.line_amount_types, foreign)
    };
    let mut new = old.clone();
    if let Some(l) = line {
        new.line_items.push(l);
    }
    new.reference = format!("Revised {}", ms_to_datetime(t).date());
    new.recompute();
    new.updated = t;
    if old.is_posted() {
        let before = org.invoice_journal(&old, t);
        let rev = org.reversal(&before, t);
        org.push_journal(rev, true);
        let after = org.invoice_journal(&new, t);
        org.push_journal(after, true);
    }
    let id = new.id;
    org.invoices.rows[i] = new;
    id
}

fn void_invoice(org: &mut OrgData, i: usize, t: Ms) -> Uuid {
    let inv = org.invoices.rows[i].clone();
    let posting = org.invoice_journal(&inv, t);
    let rev = org.reversal(&posting, t);
    org.push_journal(rev, true);
    let row = &mut org.invoices.rows[i];
    row.status = "VOIDED";
    row.recompute();
    row.updated = t;
    row.id
}

fn pay_invoice(org: &mut OrgData, i: usize, t: Ms, now_ms: Ms) -> (Uuid, Uuid) {
    let due = org.invoices.rows[i].amount_due;
    let partial = due >= 2 && org.rng.gen_bool(0.3);
    let amount = if partial { (due / 2).max(1) } else { due };
    let p = org.new_payment(i, amount, today(now_ms), t);
    let pay_id = p.id;
    let j = org.apply_payment(p, t);
    org.push_journal(j, true);
    (org.invoices.rows[i].id, pay_id)
}

/// Xero's answer to a GDPR request: the contact stays (documents point at
/// it) with status GDPRREQUEST and its personal details gone.
fn erase_contact(org: &mut OrgData, i: usize, t: Ms) -> Uuid {
    let c = &mut org.contacts.rows[i];
    c.contact_status = "GDPRREQUEST";
    c.name = format!("Erased contact {}", c.contact_number);
    c.first_name.clear();
    c.last_name.clear();
    c.email_address.clear();
    c.bank_account_details.clear();
    c.tax_number.clear();
    c.addresses.clear();
    c.phones.clear();
    c.updated = t;
    c.id
}

fn edit_contact(org: &mut OrgData, i: usize, t: Ms) -> Uuid {
    let archive_toggle = org.rng.gen_bool(0.2);
    let n: u32 = org.rng.gen_range(1000..9999);
    let c = &mut org.contacts.rows[i];
    if archive_toggle {
        c.contact_status = if c.contact_status == "ARCHIVED" {
            "ACTIVE"
        } else {
            "ARCHIVED"
        };
    } else {
        c.email_address = format!(
            "accounts+{n}@{}",
            c.email_address.split('@').nth(1).unwrap_or("example.co.nz")
        );
        if let Some(p) = c.phones.first_mut() {
            p.phone_number = format!("55{n}");
        }
    }
    c.updated = t;
    c.id
}

fn new_contact(org: &mut OrgData, t: Ms) -> Uuid {
    let id = org.new_id();
    let n = org.contacts.len() + 1;
    let customer = org.rng.gen_bool(0.7);
    let template = org.contacts.rows.first().cloned();
    let contact = Contact {
        id,
        contact_number: format!("C{n:05}"),
        account_number: if customer {
            format!("AR-{n:05}")
        } else {
            String::new()
        },
        contact_status: "ACTIVE",
        name: format!("New Contact {n}"),
        first_name: String::new(),
        last_name: String::new(),
        email_address: format!("accounts@newcustomer{n}.example.co.nz"),
        bank_account_details: String::new(),
        tax_number: String::new(),
        accounts_receivable_tax_type: if customer { "OUTPUT2" } else { "" },
        accounts_payable_tax_type: if customer { "" } else { "INPUT2" },
        addresses: template
            .as_ref()
            .map(|c| c.addresses.clone())
            .unwrap_or_default(),
        phones: template.map(|c| c.phones).unwrap_or_default(),
        is_supplier: !customer,
        is_customer: customer,
        default_currency: super::chart::BASE_CURRENCY,
        updated: t,
        contact_groups: (),
        contact_persons: (),
        has_attachments: false,
        has_validation_errors: false,
    };
    org.contacts.push(contact);
    id
}
