//! The deterministic demo-company generator.
//!
//! Everything comes from one ChaCha8 stream seeded by the sandbox seed and
//! the organisation's position, so a seed, an invoice count and an as-of
//! date always give the same books. Work is linear in the number of
//! records: documents are made in date order, each with its payments,
//! credits and journals, and the journals are numbered by one stable sort at
//! the end.

use std::borrow::Cow;
use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::chart::{self, CHART};
use super::model::*;
use super::org::{OrgData, Table};
use super::query::QueryCache;

/// What to generate for one organisation.
#[derive(Debug, Clone)]
pub(crate) struct GenConfig {
    pub seed: u64,
    pub org_index: usize,
    pub invoices: usize,
    /// Every generated event happens before this instant (UTC ms).
    pub as_of_ms: Ms,
}

const ORG_NAMES: &[&str] = &[
    "Demo Company (NZ)",
    "Kauri Consulting Ltd",
    "Harbour Foods Ltd",
    "Summit Builders Ltd",
    "Fern Design Studio",
];

const HOUR: i64 = 3_600_000;

/// Items sold and items bought (indices into [`chart::ITEMS`]).
const SOLD: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const BOUGHT: &[usize] = &[0, 1, 2, 3, 4, 5, 10, 11];

const SERVICE_LINES: &[&str] = &[
    "Website design",
    "Monthly retainer",
    "Project management",
    "On-site support",
    "Workshop facilitation",
    "Freight and delivery",
    "Custom development",
];

const EXPENSE_LINES: &[&str] = &[
    "Office supplies",
    "Software subscription",
    "Courier charges",
    "Cleaning services",
    "Power and gas",
    "Mobile and internet",
    "Accounting fees",
    "Team lunch",
    "Domestic flights",
    "Printer lease",
];

fn day_floor(ms: Ms) -> Ms {
    ms.div_euclid(MS_PER_DAY) * MS_PER_DAY
}

/// Generates the books of one organisation.
pub(crate) fn generate(cfg: &GenConfig) -> OrgData {
    let seed = cfg
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(cfg.org_index as u64);
    let as_of = day_floor(cfg.as_of_ms);
    let mut d = OrgData {
        org: placeholder_org(),
        currencies: chart::CURRENCIES
            .iter()
            .map(|(code, description, _)| Currency { code, description })
            .collect(),
        tax_rates: (0..chart::TAXES.len()).map(TaxRate).collect(),
        tracking: Vec::new(),
        accounts: Vec::new(),
        items: Vec::new(),
        contacts: Table::new(),
        invoices: Table::new(),
        credit_notes: Table::new(),
        payments: Table::new(),
        bank_transactions: Table::new(),
        manual_journals: Table::new(),
        journals: Vec::new(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        id_counter: seed.rotate_left(17) ^ 0x05EE_D1D5,
        clock_ms: cfg.as_of_ms,
        version: 0,
        next_invoice_number: 1,
        next_credit_number: 1,
        cache: QueryCache::default(),
    };
    let mut g = Gen {
        d: &mut d,
        as_of,
        customers: Vec::new(),
        suppliers: Vec::new(),
    };
    g.reference_data(cfg);
    g.contacts(cfg.invoices);
    g.invoices(cfg.invoices);
    g.standalone_credit_notes((cfg.invoices / 40).max(1));
    g.bank_transactions((cfg.invoices / 8).max(3));
    g.manual_journals((cfg.invoices / 250).max(2));
    // Number the general ledger in the order things were posted.
    d.journals.sort_by_key(|j| j.created);
    for (i, j) in d.journals.iter_mut().enumerate() {
        j.journal_number = i as i64 + 1;
    }
    d.clock_ms = cfg.as_of_ms.max(d.clock_ms);
    d
}

fn placeholder_org() -> Organisation {
    Organisation {
        id: uuid::Uuid::nil(),
        name: String::new(),
        legal_name: String::new(),
        pays_tax: true,
        version: "NZ",
        organisation_type: "COMPANY",
        base_currency: chart::BASE_CURRENCY,
        country_code: "NZ",
        is_demo_company: true,
        organisation_status: "ACTIVE",
        tax_number: String::new(),
        financial_year_end_day: 31,
        financial_year_end_month: 3,
        sales_tax_basis: "INVOICE",
        sales_tax_period: "TWOMONTHS",
        default_sales_tax: "Tax Exclusive",
        default_purchases_tax: "Tax Exclusive",
        created: 0,
        timezone: "NEWZEALANDSTANDARDTIME",
        organisation_entity_type: "COMPANY",
        short_code: String::new(),
        class: "DEMO",
        edition: "BUSINESS",
        line_of_business: "Professional services",
        addresses: Vec::new(),
        phones: Vec::new(),
    }
}

pub(crate) struct Gen<'a> {
    pub d: &'a mut OrgData,
    as_of: Ms,
    customers: Vec<usize>,
    suppliers: Vec<usize>,
}

impl<'a> Gen<'a> {
    /// A generator over existing books (for changes): documents dated
    /// before `as_of`, contacts from the active ones.
    pub(crate) fn over(d: &'a mut OrgData, as_of: Ms) -> Self {
        let mut customers = Vec::new();
        let mut suppliers = Vec::new();
        for (i, c) in d.contacts.rows.iter().enumerate() {
            if c.contact_status != "ACTIVE" {
                continue;
            }
            if c.is_customer {
                customers.push(i);
            }
            if c.is_supplier {
                suppliers.push(i);
            }
        }
        Gen {
            d,
            as_of,
            customers,
            suppliers,
        }
    }

    fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.d.rng
    }

    /// A moment during business hours on `day`, never at or after as-of.
    fn at(&mut self, day: Ms) -> Ms {
        let t = day_floor(day) + self.rng().gen_range(8 * HOUR..18 * HOUR);
        t.min(self.as_of - 1000)
    }

    fn address(&mut self) -> Address {
        let (city, region) = *chart::CITIES
            .choose(self.rng())
            .unwrap_or(&("Auckland", "Auckland"));
        let street = chart::STREETS
            .choose(self.rng())
            .copied()
            .unwrap_or("Queen Street");
        let n = self.rng().gen_range(1..400);
        let postcode = self.rng().gen_range(1000..9999);
        Address {
            address_type: "POBOX",
            address_line1: format!("{n} {street}"),
            city,
            region,
            postal_code: postcode.to_string(),
            country: "New Zealand",
        }
    }

    fn phone(&mut self) -> Phone {
        let area = self.rng().gen_range(3..=9);
        let number = self.rng().gen_range(2_000_000..9_999_999);
        Phone {
            phone_type: "DEFAULT",
            phone_number: number.to_string(),
            phone_area_code: format!("0{area}"),
            phone_country_code: "64",
        }
    }

    fn reference_data(&mut self, cfg: &GenConfig) {
        let as_of = self.as_of;
        let id = self.d.new_id();
        let name = match ORG_NAMES.get(cfg.org_index) {
            Some(n) => (*n).to_owned(),
            None => format!("Demo Company {} (NZ)", cfg.org_index + 1),
        };
        let address = self.address();
        let phone = self.phone();
        let short = self.rng().gen_range(100_000..999_999);
        let tax_no = self.rng().gen_range(10_000_000..99_999_999);
        self.d.org = Organisation {
            id,
            legal_name: name.clone(),
            name,
            tax_number: format!("{tax_no}"),
            created: as_of - 3 * 365 * MS_PER_DAY,
            short_code: format!("!{short}"),
            addresses: vec![Address {
                address_type: "STREET",
                ..address
            }],
            phones: vec![phone],
            ..placeholder_org()
        };
        let setup = as_of - 800 * MS_PER_DAY;
        for def in 0..CHART.len() {
            let id = self.d.new_id();
            let updated = setup + def as i64 * 60_000;
            self.d.accounts.push(Account {
                id,
                def,
                updated,
                deleted: false,
            });
        }
        for def in 0..chart::ITEMS.len() {
            let id = self.d.new_id();
            let updated = setup + HOUR + def as i64 * 60_000;
            self.d.items.push(Item { id, def, updated });
        }
        for (name, options) in chart::TRACKING {
            let id = self.d.new_id();
            let opts = options
                .iter()
                .map(|o| TrackingOption {
                    id: self.d.new_id(),
                    name: o,
                    status: if o.contains("(old)") {
                        "ARCHIVED"
                    } else {
                        "ACTIVE"
                    },
                })
                .collect();
            self.d.tracking.push(TrackingCategory {
                id,
                name,
                status: "ACTIVE",
                options: opts,
            });
        }
    }

    fn contacts(&mut self, invoices: usize) {
        let n = (invoices / 20).clamp(4, 20_000);
        let mut names = HashSet::new();
        let start = self.as_of - 760 * MS_PER_DAY;
        for i in 0..n {
            // The first two are a customer and a supplier so both kinds
            // of document always exist.
            let roll: f64 = self.rng().gen();
            let (customer, supplier) = match i {
                0 => (true, false),
                1 => (false, true),
                _ if roll < 0.6 => (true, false),
                _ if roll < 0.9 => (false, true),
                _ => (true, true),
            };
            let person = self.rng().gen_bool(0.3);
            let first = *chart::FIRST_NAMES.choose(self.rng()).unwrap_or(&"Sam");
            let last = *chart::LAST_NAMES.choose(self.rng()).unwrap_or(&"Smith");
            let mut name = if person {
                format!("{first} {last}")
            } else {
                let w = chart::COMPANY_WORDS
                    .choose(self.rng())
                    .copied()
                    .unwrap_or("Kauri");
                let k = chart::COMPANY_KINDS
                    .choose(self.rng())
                    .copied()
                    .unwrap_or("Traders");
                let s = chart::COMPANY_SUFFIXES
                    .choose(self.rng())
                    .copied()
                    .unwrap_or("Ltd");
                format!("{w} {k} {s}")
            };
            if !names.insert(name.clone()) {
                name = format!("{name} ({})", i + 1);
                names.insert(name.clone());
            }
            let currency = if i > 1 && self.rng().gen_bool(0.12) {
                let k = self.rng().gen_range(1..chart::CURRENCIES.len());
                chart::CURRENCIES[k].0
            } else {
                chart::BASE_CURRENCY
            };
            let created = start + self.rng().gen_range(0..30 * MS_PER_DAY);
            let address = self.address();
            let phone = self.phone();
            let domain: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(16)
                .collect::<String>()
                .to_ascii_lowercase();
            let id = self.d.new_id();
            let contact = Contact {
                id,
                contact_number: format!("C{:05}", i + 1),
                account_number: if customer {
                    format!("AR-{:05}", i + 1)
                } else {
                    String::new()
                },
                // Archived contacts keep their history.
                contact_status: if i % 17 == 3 { "ARCHIVED" } else { "ACTIVE" },
                first_name: if person {
                    first.to_owned()
                } else {
                    String::new()
                },
                last_name: if person {
                    last.to_owned()
                } else {
                    String::new()
                },
                email_address: format!("accounts@{domain}.example.co.nz"),
                bank_account_details: String::new(),
                tax_number: String::new(),
                accounts_receivable_tax_type: if customer { "OUTPUT2" } else { "" },
                accounts_payable_tax_type: if supplier { "INPUT2" } else { "" },
                addresses: vec![address],
                phones: vec![phone],
                is_supplier: supplier,
                is_customer: customer,
                default_currency: currency,
                updated: created,
                contact_groups: (),
                contact_persons: (),
                has_attachments: false,
                has_validation_errors: false,
                name,
            };
            let index = self.d.contacts.push(contact);
            if customer {
                self.customers.push(index);
            }
            if supplier {
                self.suppliers.push(index);
            }
        }
    }

    /// A contact from `list`, skewed so a few contacts carry most of the
    /// business.
    fn pick(&mut self, customers: bool) -> usize {
        let u: f64 = self.d.rng.gen();
        let list = if customers {
            &self.customers
        } else {
            &self.suppliers
        };
        let len = list.len().max(1);
        let k = ((len as f64) * u * u) as usize;
        list.get(k.min(len - 1)).copied().unwrap_or(0)
    }

    fn rate_for(&mut self, currency: &str) -> f64 {
        let base = chart::CURRENCIES
            .iter()
            .find(|c| c.0 == currency)
            .map_or(1.0, |c| c.2);
        if base == 1.0 {
            return 1.0;
        }
        let jitter: f64 = self.rng().gen_range(0.97..1.03);
        ((base * jitter) * 1e6).round() / 1e6
    }

    /// Converts a base-currency price to `rate`'s currency, to cents.
    fn price(&self, base_cents: Cents, rate: f64) -> Cents {
        ((base_cents as f64) * rate).round().max(1.0) as Cents
    }

    fn sale_lines(&mut self, rate: f64, amount_type: &str, foreign: bool) -> Vec<LineItem> {
        let n = self.rng().gen_range(1..=4);
        let tax_type = if foreign { "ZERORATED" } else { "OUTPUT2" };
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            let tracking = self.d.maybe_tracking();
            let line = if self.rng().gen_bool(0.65) {
                let it = &chart::ITEMS[*SOLD.choose(self.rng()).unwrap_or(&0)];
                let qty = self.rng().gen_range(1..=10);
                let unit = self.price(it.sale_cents, rate);
                let account = if it.code.starts_with("CONS") || it.code == "TRAIN" {
                    chart::A_OTHER_REVENUE
                } else {
                    chart::A_SALES
                };
                self.d.line(
                    Cow::Borrowed(it.name),
                    qty,
                    unit,
                    Some(it.code),
                    account,
                    tax_type,
                    amount_type,
                    tracking,
                )
            } else {
                let desc = SERVICE_LINES
                    .choose(self.rng())
                    .copied()
                    .unwrap_or("Services");
                let qty = self.rng().gen_range(1..=5);
                let unit = self.rng().gen_range(5_000..300_000);
                let unit = self.price(unit, rate);
                self.d.line(
                    Cow::Borrowed(desc),
                    qty,
                    unit,
                    None,
                    chart::A_SALES,
                    tax_type,
                    amount_type,
                    tracking,
                )
            };
            lines.push(line);
        }
        lines
    }

    fn purchase_lines(&mut self, rate: f64, amount_type: &str, foreign: bool) -> Vec<LineItem> {
        let n = self.rng().gen_range(1..=3);
        let tax_type = if foreign { "GSTONIMPORTS" } else { "INPUT2" };
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            let tracking = self.d.maybe_tracking();
            let line = if self.rng().gen_bool(0.3) {
                let it = &chart::ITEMS[*BOUGHT.choose(self.rng()).unwrap_or(&0)];
                let qty = self.rng().gen_range(1..=20);
                let unit = self.price(it.purchase_cents, rate);
                self.d.line(
                    Cow::Borrowed(it.name),
                    qty,
                    unit,
                    Some(it.code),
                    chart::A_COGS,
                    tax_type,
                    amount_type,
                    tracking,
                )
            } else {
                let account = *chart::EXPENSE_ACCOUNTS
                    .choose(self.rng())
                    .unwrap_or(&chart::A_COGS);
                let desc = EXPENSE_LINES
                    .choose(self.rng())
                    .copied()
                    .unwrap_or("Expenses");
                let unit = self.rng().gen_range(2_000..500_000);
                let unit = self.price(unit, rate);
                let tax = if CHART[account].tax_type == "NONE" {
                    "NONE"
                } else {
                    tax_type
                };
                self.d.line(
                    Cow::Borrowed(desc),
                    1,
                    unit,
                    None,
                    account,
                    tax,
                    amount_type,
                    tracking,
                )
            };
            lines.push(line);
        }
        lines
    }

    fn amount_type(&mut self) -> &'static str {
        let r: f64 = self.rng().gen();
        if r < 0.8 {
            "Exclusive"
        } else if r < 0.92 {
            "Inclusive"
        } else {
            "NoTax"
        }
    }

    fn invoices(&mut self, n: usize) {
        let as_of = self.as_of;
        let mut days: Vec<i64> = (0..n).map(|_| self.d.rng.gen_range(1..=730)).collect();
        days.sort_unstable_by(|a, b| b.cmp(a));
        for days_ago in days {
            let date = as_of - days_ago * MS_PER_DAY;
            self.invoice(date);
        }
    }

    /// An invoice or bill dated `date`, created at `created`, in `status`
    /// (totals computed, not stored, nothing posted).
    pub(crate) fn draft_invoice(
        &mut self,
        date: Ms,
        created: Ms,
        status: &'static str,
    ) -> Option<Invoice> {
        let sale =
            !self.customers.is_empty() && (self.suppliers.is_empty() || self.rng().gen_bool(0.7));
        if !sale && self.suppliers.is_empty() {
            return None;
        }
        let ci = self.pick(sale);
        let (contact, currency) = {
            let c = &self.d.contacts.rows[ci];
            (c.as_ref(), c.default_currency)
        };
        let rate = self.rate_for(currency);
        let foreign = currency != chart::BASE_CURRENCY;
        let amount_type = self.amount_type();
        let lines = if sale {
            self.sale_lines(rate, amount_type, foreign)
        } else {
            self.purchase_lines(rate, amount_type, foreign)
        };
        let terms = if sale { 20 } else { 30 };
        let (number, reference) = if sale {
            let n = self.d.next_invoice_number;
            self.d.next_invoice_number += 1;
            let po = self.rng().gen_range(1000..99999);
            (
                format!("INV-{n:05}"),
                if self.rng().gen_bool(0.5) {
                    format!("PO-{po}")
                } else {
                    String::new()
                },
            )
        } else {
            let s = self.rng().gen_range(10_000..999_999);
            (format!("SUP-{s}"), String::new())
        };
        let id = self.d.new_id();
        let mut inv = Invoice {
            kind: if sale { "ACCREC" } else { "ACCPAY" },
            id,
            invoice_number: number,
            reference,
            payments: Vec::new(),
            credit_notes: Vec::new(),
            prepayments: (),
            overpayments: (),
            amount_due: 0,
            amount_paid: 0,
            amount_credited: 0,
            sent_to_contact: sale && status != "DRAFT",
            currency_rate: rate,
            is_discounted: false,
            has_attachments: false,
            has_errors: false,
            contact,
            date,
            due_date: date + terms * MS_PER_DAY,
            status,
            line_amount_types: amount_type,
            line_items: lines,
            sub_total: 0,
            total_tax: 0,
            total: 0,
            fully_paid_on_date: None,
            updated: created,
            currency_code: currency,
            created,
            authorised_at: None,
        };
        inv.recompute();
        Some(inv)
    }

    /// A line like the ones of `inv` (for edits).
    pub(crate) fn extra_line(
        &mut self,
        sale: bool,
        rate: f64,
        amount_type: &str,
        foreign: bool,
    ) -> Option<LineItem> {
        let mut lines = if sale {
            self.sale_lines(rate, amount_type, foreign)
        } else {
            self.purchase_lines(rate, amount_type, foreign)
        };
        lines.truncate(1);
        lines.pop()
    }

    fn invoice(&mut self, date: Ms) {
        let created = self.at(date);
        let r: f64 = self.rng().gen();
        let status = if r < 0.04 {
            "DRAFT"
        } else if r < 0.07 {
            "SUBMITTED"
        } else if r < 0.09 {
            "DELETED"
        } else if r < 0.13 {
            "VOIDED"
        } else if r < 0.38 {
            "AUTHORISED"
        } else {
            "PAID"
        };
        let draft_status = if status == "PAID" {
            "AUTHORISED"
        } else {
            status
        };
        let Some(mut inv) = self.draft_invoice(date, created, draft_status) else {
            return;
        };
        inv.recompute();
        let posted = matches!(status, "AUTHORISED" | "PAID" | "VOIDED");
        let mut journals = Vec::new();
        if posted {
            inv.authorised_at = Some(created);
            journals.push(self.d.invoice_journal(&inv, created));
        }
        if status == "VOIDED" {
            let later = date + self.d.rng.gen_range(1..30) * MS_PER_DAY;
            let void_at = self.at(later).max(created + 1);
            let rev = self.d.reversal(&journals[0], void_at);
            journals.push(rev);
            inv.status = "VOIDED";
            inv.updated = void_at;
        }
        if status == "DELETED" {
            let later = date + self.d.rng.gen_range(0..10) * MS_PER_DAY;
            inv.updated = self.at(later).max(created);
        }
        inv.recompute();
        for j in journals {
            self.d.push_journal(j, false);
        }
        let index = self.d.invoices.push(inv);
        if !posted || status == "VOIDED" {
            return;
        }
        // Credits, then payments.
        if self.rng().gen_bool(0.05) {
            self.allocated_credit(index);
        }
        let remaining = self.d.invoices.rows[index].amount_due;
        let due = self.d.invoices.rows[index].due_date;
        let window = ((due - date) / MS_PER_DAY + 20).max(1);
        let last_day = as_of_day(self.as_of) - MS_PER_DAY;
        if status == "PAID" && remaining > 0 {
            let split = remaining > 100 && self.rng().gen_bool(0.2);
            let first = if split {
                let f: f64 = self.rng().gen_range(0.3..0.7);
                ((remaining as f64) * f).round() as Cents
            } else {
                remaining
            };
            let d1 = (date + self.d.rng.gen_range(0..window) * MS_PER_DAY)
                .min(last_day)
                .max(date);
            self.pay(index, first, d1);
            if split {
                let d2 = (d1 + self.d.rng.gen_range(1..30) * MS_PER_DAY)
                    .min(last_day)
                    .max(d1);
                self.pay(index, remaining - first, d2);
            }
        } else if status == "PAID" {
            // Fully credited.
            let inv = &mut self.d.invoices.rows[index];
            inv.status = "PAID";
            inv.fully_paid_on_date = inv.credit_notes.last().map(|c| c.date);
        } else if remaining > 2 {
            let r: f64 = self.rng().gen();
            if r < 0.3 {
                let f: f64 = self.rng().gen_range(0.2..0.8);
                let amount = (((remaining as f64) * f).round() as Cents).clamp(1, remaining - 1);
                let d1 = (date + self.d.rng.gen_range(0..window) * MS_PER_DAY)
                    .min(last_day)
                    .max(date);
                self.pay(index, amount, d1);
            } else if r < 0.32 {
                // Paid, then the payment was deleted.
                let d1 = (date + self.d.rng.gen_range(0..window) * MS_PER_DAY)
                    .min(last_day)
                    .max(date);
                let t1 = self.at(d1).max(created + 1);
                let mut p = self.d.new_payment(index, remaining, d1, t1);
                let j = self.d.payment_journal(&p, t1);
                let t2 = (t1 + self.d.rng.gen_range(1..72) * HOUR).min(self.as_of - 1);
                let rev = self.d.reversal(&j, t2);
                p.status = "DELETED";
                p.updated = t2;
                self.d.push_journal(j, false);
                self.d.push_journal(rev, false);
                self.d.payments.push(p);
                let inv = &mut self.d.invoices.rows[index];
                inv.updated = inv.updated.max(t2);
            }
        }
    }

    fn pay(&mut self, index: usize, amount: Cents, day: Ms) {
        let created = self.d.invoices.rows[index].created;
        let t = self.at(day).max(created + 1);
        let p = self.d.new_payment(index, amount, day, t);
        let j = self.d.apply_payment(p, t);
        self.d.push_journal(j, false);
    }

    /// A credit note for part of invoice `index`, allocated to it.
    fn allocated_credit(&mut self, index: usize) {
        let (
            kind,
            contact,
            currency,
            rate,
            amount_type,
            first,
            date,
            inv_id,
            inv_no,
            inv_kind,
            created,
        ) = {
            let inv = &self.d.invoices.rows[index];
            let Some(first) = inv.line_items.first().cloned() else {
                return;
            };
            (
                if inv.kind == "ACCREC" {
                    "ACCRECCREDIT"
                } else {
                    "ACCPAYCREDIT"
                },
                inv.contact.clone(),
                inv.currency_code,
                inv.currency_rate,
                inv.line_amount_types,
                first,
                inv.date,
                inv.id,
                inv.invoice_number.clone(),
                inv.kind,
                inv.created,
            )
        };
        let f: f64 = self.rng().gen_range(0.1..0.5);
        let unit = (((first.line_amount as f64) * f).round() as Cents).max(1);
        let desc = format!("Credit for {inv_no}");
        let line = self.d.line(
            Cow::Owned(desc),
            1,
            unit,
            None,
            first.account,
            first.tax_type,
            amount_type,
            Vec::new(),
        );
        let cn_day = (date + self.d.rng.gen_range(1..20) * MS_PER_DAY)
            .min(as_of_day(self.as_of) - MS_PER_DAY)
            .max(date);
        let t = self.at(cn_day).max(created + 1);
        let (sub, tax, total) = totals(std::slice::from_ref(&line), amount_type);
        let full = self.rng().gen_bool(0.8);
        let applied = if full { total } else { (total / 2).max(1) };
        let number = self.credit_number(kind);
        let id = self.d.new_id();
        let alloc_id = self.d.new_id();
        let cn = CreditNote {
            id,
            credit_note_number: number.clone(),
            payments: (),
            currency_rate: rate,
            kind,
            reference: inv_no.clone(),
            remaining_credit: total - applied,
            allocations: vec![Allocation {
                id: alloc_id,
                amount: applied,
                date: cn_day,
                invoice: InvoiceRef {
                    id: inv_id,
                    invoice_number: inv_no,
                    kind: inv_kind,
                    contact: None,
                    currency_code: None,
                },
                is_deleted: false,
            }],
            has_attachments: false,
            contact,
            date: cn_day,
            status: if full { "PAID" } else { "AUTHORISED" },
            line_amount_types: amount_type,
            line_items: vec![line],
            sub_total: sub,
            total_tax: tax,
            total,
            fully_paid_on_date: full.then_some(cn_day),
            updated: t,
            currency_code: currency,
        };
        let j = self.d.credit_note_journal(&cn, t);
        self.d.push_journal(j, false);
        self.d.credit_notes.push(cn);
        let inv = &mut self.d.invoices.rows[index];
        inv.credit_notes.push(CreditSummary {
            id,
            credit_note_number: number,
            applied_amount: applied,
            date: cn_day,
            total,
            has_errors: false,
        });
        inv.recompute();
        inv.updated = inv.updated.max(t);
    }

    fn credit_number(&mut self, kind: &str) -> String {
        if kind == "ACCRECCREDIT" {
            let n = self.d.next_credit_number;
            self.d.next_credit_number += 1;
            format!("CN-{n:04}")
        } else {
            let s = self.rng().gen_range(1000..99999);
            format!("SCN-{s}")
        }
    }

    fn standalone_credit_notes(&mut self, n: usize) {
        for _ in 0..n {
            let sale = self.rng().gen_bool(0.6);
            let ci = self.pick(sale);
            let (contact, currency) = {
                let c = &self.d.contacts.rows[ci];
                (c.as_ref(), c.default_currency)
            };
            let rate = self.rate_for(currency);
            let foreign = currency != chart::BASE_CURRENCY;
            let amount_type = self.amount_type();
            let mut lines = if sale {
                self.sale_lines(rate, amount_type, foreign)
            } else {
                self.purchase_lines(rate, amount_type, foreign)
            };
            lines.truncate(2);
            let days_ago = self.rng().gen_range(1..=700);
            let date = self.as_of - days_ago * MS_PER_DAY;
            let t = self.at(date);
            let r: f64 = self.rng().gen();
            let status = if r < 0.6 {
                "AUTHORISED"
            } else if r < 0.8 {
                "DRAFT"
            } else if r < 0.9 {
                "VOIDED"
            } else {
                "DELETED"
            };
            let kind = if sale { "ACCRECCREDIT" } else { "ACCPAYCREDIT" };
            let number = self.credit_number(kind);
            let (sub, tax, total) = totals(&lines, amount_type);
            let id = self.d.new_id();
            let mut cn = CreditNote {
                id,
                credit_note_number: number,
                payments: (),
                currency_rate: rate,
                kind,
                reference: String::new(),
                remaining_credit: if status == "AUTHORISED" { total } else { 0 },
                allocations: Vec::new(),
                has_attachments: false,
                contact,
                date,
                status,
                line_amount_types: amount_type,
                line_items: lines,
                sub_total: sub,
                total_tax: tax,
                total,
                fully_paid_on_date: None,
                updated: t,
                currency_code: currency,
            };
            if matches!(status, "AUTHORISED" | "VOIDED") {
                let j = self.d.credit_note_journal(&cn, t);
                if status == "VOIDED" {
                    let v = (t + self.d.rng.gen_range(1..240) * HOUR).min(self.as_of - 1);
                    let rev = self.d.reversal(&j, v);
                    self.d.push_journal(rev, false);
                    cn.updated = v;
                }
                self.d.push_journal(j, false);
            }
            self.d.credit_notes.push(cn);
        }
    }

    fn bank_transactions(&mut self, n: usize) {
        let mut days: Vec<i64> = (0..n).map(|_| self.d.rng.gen_range(1..=730)).collect();
        days.sort_unstable_by(|a, b| b.cmp(a));
        for days_ago in days {
            let date = self.as_of - days_ago * MS_PER_DAY;
            let receive = self.rng().gen_bool(0.3);
            let ci = self.pick(receive);
            let contact = self.d.contacts.rows[ci].as_ref();
            let usd = self.rng().gen_bool(0.08);
            let (currency, bank) = if usd {
                ("USD", chart::A_USD_BANK)
            } else {
                (chart::BASE_CURRENCY, chart::A_BANK)
            };
            let rate = self.rate_for(currency);
            let amount_type = if self.rng().gen_bool(0.7) {
                "Inclusive"
            } else {
                "Exclusive"
            };
            let lines = if receive {
                let account = if self.rng().gen_bool(0.2) {
                    chart::A_INTEREST
                } else {
                    chart::A_OTHER_REVENUE
                };
                let unit = self.rng().gen_range(1_000..200_000);
                let unit = self.price(unit, rate);
                let tax = if usd || account == chart::A_INTEREST {
                    "NONE"
                } else {
                    "OUTPUT2"
                };
                vec![self.d.line(
                    Cow::Borrowed("Sundry receipt"),
                    1,
                    unit,
                    None,
                    account,
                    tax,
                    amount_type,
                    Vec::new(),
                )]
            } else {
                self.purchase_lines(rate, amount_type, usd)
            };
            let t = self.at(date);
            let r: f64 = self.rng().gen();
            let status = if r < 0.94 {
                "AUTHORISED"
            } else if r < 0.97 {
                "DELETED"
            } else {
                "VOIDED"
            };
            let (sub, tax, total) = totals(&lines, amount_type);
            let id = self.d.new_id();
            let bank_ref = AccountRef {
                id: self.d.account_id(bank),
                def: bank,
                with_name: true,
            };
            let reconciled = self.rng().gen_bool(0.85);
            let mut bt = BankTransaction {
                id,
                kind: if receive { "RECEIVE" } else { "SPEND" },
                contact,
                line_items: lines,
                bank_account: bank_ref,
                is_reconciled: reconciled,
                date,
                reference: String::new(),
                currency_code: currency,
                currency_rate: rate,
                status,
                line_amount_types: amount_type,
                sub_total: sub,
                total_tax: tax,
                total,
                updated: t,
                has_attachments: false,
            };
            let j = self.d.bank_journal(&bt, t);
            if status != "AUTHORISED" {
                let v = (t + self.d.rng.gen_range(1..240) * HOUR).min(self.as_of - 1);
                let rev = self.d.reversal(&j, v);
                self.d.push_journal(rev, false);
                bt.updated = v;
            }
            self.d.push_journal(j, false);
            self.d.bank_transactions.push(bt);
        }
    }

    fn manual_journals(&mut self, n: usize) {
        for k in 0..n {
            let days_ago = self.rng().gen_range(1..=730);
            let date = self.as_of - days_ago * MS_PER_DAY;
            let t = self.at(date);
            let amount = self.rng().gen_range(10_000..2_000_000);
            let (narration, debit, credit) = match k % 3 {
                0 => ("Owner funds introduced", chart::A_BANK, chart::A_FUNDS),
                1 => ("Owner drawings", chart::A_DRAWINGS, chart::A_BANK),
                _ => (
                    "Accrued expenses",
                    *chart::EXPENSE_ACCOUNTS
                        .choose(self.rng())
                        .unwrap_or(&chart::A_COGS),
                    chart::A_AP,
                ),
            };
            let r: f64 = self.rng().gen();
            let status = if r < 0.85 {
                "POSTED"
            } else if r < 0.95 {
                "DRAFT"
            } else {
                "VOIDED"
            };
            let id = self.d.new_id();
            let lines = vec![
                ManualJournalLine {
                    line_amount: amount,
                    account_code: CHART[debit].code,
                    account_id: self.d.account_id(debit),
                    description: narration.to_owned(),
                    tax_type: "NONE",
                    tax_amount: 0,
                    is_blank: false,
                    account: debit,
                },
                ManualJournalLine {
                    line_amount: -amount,
                    account_code: CHART[credit].code,
                    account_id: self.d.account_id(credit),
                    description: narration.to_owned(),
                    tax_type: "NONE",
                    tax_amount: 0,
                    is_blank: false,
                    account: credit,
                },
            ];
            let mut mj = ManualJournal {
                id,
                narration: narration.to_owned(),
                journal_lines: lines,
                date,
                line_amount_types: "NoTax",
                status,
                show_on_cash_basis_reports: true,
                has_attachments: false,
                updated: t,
            };
            if status != "DRAFT" {
                let j = self.d.manual_journal_journal(&mj, t);
                if status == "VOIDED" {
                    let v = (t + self.d.rng.gen_range(1..240) * HOUR).min(self.as_of - 1);
                    let rev = self.d.reversal(&j, v);
                    self.d.push_journal(rev, false);
                    mj.updated = v;
                }
                self.d.push_journal(j, false);
            }
            self.d.manual_journals.push(mj);
        }
    }
}

fn as_of_day(as_of: Ms) -> Ms {
    day_floor(as_of)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn item_tables_agree() {
        for (i, it) in chart::ITEMS.iter().enumerate() {
            assert_eq!(SOLD.contains(&i), it.sold, "{}", it.code);
            assert_eq!(BOUGHT.contains(&i), it.purchased, "{}", it.code);
        }
    }

    #[test]
    fn tiny_and_empty_books_are_sound() {
        for invoices in [0, 1, 2, 5, 50] {
            let d = generate(&GenConfig {
                seed: 3,
                org_index: 0,
                invoices,
                as_of_ms: 1_767_225_600_000,
            });
            assert_eq!(d.invoices.len(), invoices);
            assert!(super::super::books::problems(&d).is_empty(), "{invoices}");
            assert!(d.journals.iter().all(|j| j.created < 1_767_225_600_000));
        }
    }
}
