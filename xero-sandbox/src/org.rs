//! One organisation's books: the tables the API serves, and the builders
//! that keep them consistent (documents, payments and the journals they
//! post), shared by the generator and the change operations.

use std::borrow::Cow;
use std::collections::HashMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::chart::{self, CHART};
use super::model::*;
use super::query::QueryCache;

/// SplitMix64's output function: a bijection on u64.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Records in creation order (the default order of listings) with an id
/// index.
#[derive(Debug)]
pub(crate) struct Table<T> {
    pub rows: Vec<T>,
    pub by_id: HashMap<Uuid, usize>,
}

impl<T: Row> Table<T> {
    pub(crate) fn new() -> Self {
        Self {
            rows: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    pub(crate) fn push(&mut self, row: T) -> usize {
        let i = self.rows.len();
        self.by_id.insert(row.id(), i);
        self.rows.push(row);
        i
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// One organisation.
#[derive(Debug)]
pub(crate) struct OrgData {
    pub org: Organisation,
    pub currencies: Vec<Currency>,
    pub tax_rates: Vec<TaxRate>,
    pub tracking: Vec<TrackingCategory>,
    /// Index = index into [`CHART`].
    pub accounts: Vec<Account>,
    pub items: Vec<Item>,
    pub contacts: Table<Contact>,
    pub invoices: Table<Invoice>,
    pub credit_notes: Table<CreditNote>,
    pub payments: Table<Payment>,
    pub bank_transactions: Table<BankTransaction>,
    pub manual_journals: Table<ManualJournal>,
    /// In `JournalNumber` order; numbers are 1..=len.
    pub journals: Vec<Journal>,
    pub rng: ChaCha8Rng,
    /// Position in the id sequence (ids are a bijective mix of it, so they
    /// never repeat and cost a few multiplications each).
    pub id_counter: u64,
    /// The latest change stamp handed out; stamps only move forward.
    pub clock_ms: Ms,
    /// Bumped on every change (invalidates cached listings).
    pub version: u64,
    pub next_invoice_number: u64,
    pub next_credit_number: u64,
    pub cache: QueryCache,
}

/// The parts of a document a journal is made from.
pub(crate) struct Posting<'a> {
    pub source_type: &'static str,
    pub source_id: Uuid,
    pub date: Ms,
    pub created: Ms,
    pub reference: String,
    pub lines: &'a [LineItem],
    pub inclusive: bool,
    pub rate: f64,
    /// The balancing account (receivables, payables, bank).
    pub control: usize,
    /// +1 when the document's lines are debits (bills, spend money,
    /// sales credit notes), -1 when credits (invoices, receive money).
    pub sign: i64,
}

impl OrgData {
    /// A fresh v4-shaped id from the organisation's generator.
    pub(crate) fn new_id(&mut self) -> Uuid {
        self.id_counter = self.id_counter.wrapping_add(1);
        let hi = splitmix64(self.id_counter);
        let lo = splitmix64(hi ^ 0xD1B5_4A32_D192_ED03);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_le_bytes());
        bytes[8..].copy_from_slice(&lo.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn with_ids(&mut self, mut lines: Vec<JournalLine>) -> Vec<JournalLine> {
        for l in &mut lines {
            l.id = self.new_id();
        }
        lines
    }

    /// A change stamp after every earlier one: now, or 1 ms past the last.
    pub(crate) fn stamp(&mut self, now_ms: Ms) -> Ms {
        self.clock_ms = now_ms.max(self.clock_ms + 1);
        self.version += 1;
        self.clock_ms
    }

    pub(crate) fn account_id(&self, chart_index: usize) -> Uuid {
        self.accounts
            .get(chart_index)
            .map(|a| a.id)
            .unwrap_or_default()
    }

    /// A line of `quantity × unit` on `account` with tax computed for the
    /// document's line amount type.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn line(
        &mut self,
        description: Cow<'static, str>,
        quantity: i64,
        unit: Cents,
        item_code: Option<&'static str>,
        account: usize,
        tax_type: &'static str,
        amount_type: &str,
        tracking: Vec<LineTracking>,
    ) -> LineItem {
        let line_amount = quantity * unit;
        let tax_type = if amount_type == "NoTax" {
            "NONE"
        } else {
            tax_type
        };
        let tax_amount = line_tax(line_amount, chart::tax(tax_type).rate_bp, amount_type);
        LineItem {
            id: self.new_id(),
            description,
            quantity: quantity as f64,
            unit_amount: unit,
            item_code,
            account_code: CHART[account].code,
            account_id: self.account_id(account),
            tax_type,
            tax_amount,
            line_amount,
            tracking,
            account,
        }
    }

    /// A random active tracking option for a line (or none).
    pub(crate) fn maybe_tracking(&mut self) -> Vec<LineTracking> {
        if self.tracking.is_empty() || self.rng.gen_bool(0.5) {
            return Vec::new();
        }
        let c = self.rng.gen_range(0..self.tracking.len());
        let cat = &self.tracking[c];
        let active: Vec<&TrackingOption> = cat
            .options
            .iter()
            .filter(|o| o.status == "ACTIVE")
            .collect();
        if active.is_empty() {
            return Vec::new();
        }
        let o = active[self.rng.gen_range(0..active.len())];
        vec![LineTracking {
            category_id: cat.id,
            option_id: o.id,
            name: cat.name,
            option: o.name,
        }]
    }

    /// Appends a journal (numbered later by the generator, or now when
    /// `number` is set).
    pub(crate) fn push_journal(&mut self, mut j: Journal, number: bool) {
        if number {
            j.journal_number = self.journals.len() as i64 + 1;
        }
        self.journals.push(j);
    }

    fn journal_line(
        &mut self,
        account: usize,
        description: Cow<'static, str>,
        net: Cents,
        tax: Cents,
        tax_type: Option<&'static str>,
    ) -> JournalLine {
        JournalLine {
            id: self.new_id(),
            account_id: self.account_id(account),
            account,
            description,
            net,
            tax,
            tax_type,
        }
    }

    /// The journal a posted document produces; balanced by construction
    /// (the control line takes the negative sum of the others, in the base
    /// currency).
    pub(crate) fn document_journal(&mut self, p: Posting<'_>) -> Journal {
        let mut lines = Vec::with_capacity(p.lines.len() + 2);
        let mut tax_total = 0;
        for l in p.lines {
            let net = to_base(l.net(p.inclusive), p.rate);
            let tax = to_base(l.tax_amount, p.rate);
            tax_total += tax;
            let jl = self.journal_line(
                l.account,
                l.description.clone(),
                p.sign * net,
                p.sign * tax,
                Some(l.tax_type),
            );
            lines.push(jl);
        }
        if tax_total != 0 {
            let jl =
                self.journal_line(chart::A_GST, Cow::Borrowed(""), p.sign * tax_total, 0, None);
            lines.push(jl);
        }
        let sum: Cents = lines.iter().map(|l: &JournalLine| l.net).sum();
        let control = self.journal_line(p.control, Cow::Borrowed(""), -sum, 0, None);
        lines.insert(0, control);
        Journal {
            id: self.new_id(),
            journal_date: p.date,
            journal_number: 0,
            created: p.created,
            reference: p.reference,
            source_id: p.source_id,
            source_type: p.source_type,
            journal_lines: lines,
        }
    }

    /// A two-line journal moving `amount` (base currency) from `credit` to
    /// `debit`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn transfer_journal(
        &mut self,
        source_type: &'static str,
        source_id: Uuid,
        date: Ms,
        created: Ms,
        reference: String,
        debit: usize,
        credit: usize,
        amount: Cents,
    ) -> Journal {
        let d = self.journal_line(debit, Cow::Borrowed(""), amount, 0, None);
        let c = self.journal_line(credit, Cow::Borrowed(""), -amount, 0, None);
        Journal {
            id: self.new_id(),
            journal_date: date,
            journal_number: 0,
            created,
            reference,
            source_id,
            source_type,
            journal_lines: vec![d, c],
        }
    }

    /// The reversal of `j` at `created` (voiding, deleting, editing).
    pub(crate) fn reversal(&mut self, j: &Journal, created: Ms) -> Journal {
        let lines = j
            .journal_lines
            .iter()
            .map(|l| JournalLine {
                id: Uuid::nil(),
                net: -l.net,
                tax: -l.tax,
                ..l.clone()
            })
            .collect();
        let lines = self.with_ids(lines);
        Journal {
            id: self.new_id(),
            journal_date: j.journal_date,
            journal_number: 0,
            created,
            reference: j.reference.clone(),
            source_id: j.source_id,
            source_type: j.source_type,
            journal_lines: lines,
        }
    }

    /// The journal of an approved invoice.
    pub(crate) fn invoice_journal(&mut self, inv: &Invoice, created: Ms) -> Journal {
        let (control, sign) = if inv.kind == "ACCREC" {
            (chart::A_AR, -1)
        } else {
            (chart::A_AP, 1)
        };
        self.document_journal(Posting {
            source_type: inv.kind,
            source_id: inv.id,
            date: inv.date,
            created,
            reference: inv.reference.clone(),
            lines: &inv.line_items,
            inclusive: inv.line_amount_types == "Inclusive",
            rate: inv.currency_rate,
            control,
            sign,
        })
    }

    /// The journal of an approved credit note.
    pub(crate) fn credit_note_journal(&mut self, cn: &CreditNote, created: Ms) -> Journal {
        let (control, sign) = if cn.kind == "ACCRECCREDIT" {
            (chart::A_AR, 1)
        } else {
            (chart::A_AP, -1)
        };
        self.document_journal(Posting {
            source_type: cn.kind,
            source_id: cn.id,
            date: cn.date,
            created,
            reference: cn.reference.clone(),
            lines: &cn.line_items,
            inclusive: cn.line_amount_types == "Inclusive",
            rate: cn.currency_rate,
            control,
            sign,
        })
    }

    /// The journal of a bank transaction.
    pub(crate) fn bank_journal(&mut self, bt: &BankTransaction, created: Ms) -> Journal {
        let (source_type, sign) = if bt.kind == "RECEIVE" {
            ("CASHREC", -1)
        } else {
            ("CASHPAID", 1)
        };
        self.document_journal(Posting {
            source_type,
            source_id: bt.id,
            date: bt.date,
            created,
            reference: bt.reference.clone(),
            lines: &bt.line_items,
            inclusive: bt.line_amount_types == "Inclusive",
            rate: bt.currency_rate,
            control: bt.bank_account.def,
            sign,
        })
    }

    /// The journal of a payment.
    pub(crate) fn payment_journal(&mut self, p: &Payment, created: Ms) -> Journal {
        let base = to_base(p.amount, p.currency_rate);
        let (debit, credit) = if p.payment_type == "ACCRECPAYMENT" {
            (p.account.def, chart::A_AR)
        } else {
            (chart::A_AP, p.account.def)
        };
        self.transfer_journal(
            p.payment_type,
            p.id,
            p.date,
            created,
            p.reference.clone(),
            debit,
            credit,
            base,
        )
    }

    /// The journal of a posted manual journal.
    pub(crate) fn manual_journal_journal(&mut self, mj: &ManualJournal, created: Ms) -> Journal {
        let lines: Vec<JournalLine> = mj
            .journal_lines
            .iter()
            .map(|l| JournalLine {
                id: Uuid::nil(),
                account_id: l.account_id,
                account: l.account,
                description: Cow::Owned(l.description.clone()),
                net: l.line_amount,
                tax: 0,
                tax_type: Some(l.tax_type),
            })
            .collect();
        let lines = self.with_ids(lines);
        Journal {
            id: self.new_id(),
            journal_date: mj.date,
            journal_number: 0,
            created,
            reference: mj.narration.clone(),
            source_id: mj.id,
            source_type: "MANJOURNAL",
            journal_lines: lines,
        }
    }

    /// The bank account payments in `currency` go to.
    pub(crate) fn bank_for(&self, currency: &str) -> usize {
        if currency == "USD" {
            chart::A_USD_BANK
        } else {
            chart::A_BANK
        }
    }

    /// A payment of `amount` on invoice `index` (not yet applied to it).
    pub(crate) fn new_payment(
        &mut self,
        index: usize,
        amount: Cents,
        date: Ms,
        created: Ms,
    ) -> Payment {
        let (kind, rate, currency, inv_ref) = {
            let inv = &self.invoices.rows[index];
            (
                inv.kind,
                inv.currency_rate,
                inv.currency_code,
                InvoiceRef {
                    id: inv.id,
                    invoice_number: inv.invoice_number.clone(),
                    kind: inv.kind,
                    contact: Some(inv.contact.clone()),
                    currency_code: Some(inv.currency_code),
                },
            )
        };
        let bank = self.bank_for(currency);
        let bank_amount = if CHART[bank].bank_currency == Some(currency) {
            amount
        } else {
            to_base(amount, rate)
        };
        let reconciled = self.rng.gen_bool(0.8);
        Payment {
            id: self.new_id(),
            date,
            bank_amount,
            amount,
            reference: String::new(),
            currency_rate: rate,
            payment_type: if kind == "ACCREC" {
                "ACCRECPAYMENT"
            } else {
                "ACCPAYPAYMENT"
            },
            status: "AUTHORISED",
            updated: created,
            has_account: true,
            is_reconciled: reconciled,
            account: AccountRef {
                id: self.account_id(bank),
                def: bank,
                with_name: false,
            },
            invoice: inv_ref,
            has_validation_errors: false,
            created,
            invoice_index: index,
        }
    }

    /// Records a payment on its invoice (summary, amounts, status) and
    /// stores it; returns the payment's journal.
    pub(crate) fn apply_payment(&mut self, p: Payment, at: Ms) -> Journal {
        let j = self.payment_journal(&p, p.created);
        let index = p.invoice_index;
        let summary = PaymentSummary {
            id: p.id,
            date: p.date,
            amount: p.amount,
            reference: p.reference.clone(),
            currency_rate: p.currency_rate,
            has_account: false,
            has_validation_errors: false,
        };
        let date = p.date;
        self.payments.push(p);
        if let Some(inv) = self.invoices.rows.get_mut(index) {
            inv.payments.push(summary);
            inv.recompute();
            if inv.amount_due == 0 {
                inv.status = "PAID";
                inv.fully_paid_on_date = Some(date);
            }
            inv.updated = inv.updated.max(at);
        }
        j
    }

    /// The organisation as `GET /connections` shows it.
    pub(crate) fn tenant_id(&self) -> Uuid {
        self.org.id
    }
}
