//! The question set's oracle: the rows a question must get, computed from a
//! sandbox organisation's own records (`xero_sandbox::Ledger`) and nothing
//! else — not the transformed tables, not the planner or the compiler.
//!
//! It follows `templates/semantic/model.yaml` definition by definition:
//! which documents count (type, status), which date a document is dated by,
//! which source a metric is measured over (the first whose dimensions cover
//! the question: documents, else invoice lines), and how money is converted
//! to the base currency — per document as the models' `to_base` macro does
//! (`round(cents / rate)`, rate 1 or missing unchanged), per line the same
//! (`net_amount_base`, `tax_amount_base`: a line including tax is the sum of
//! the two, each rounded), a credit note's sub_total as `ROUND(sub_total /
//! rate, 2)`. Money is kept in cents until the end.
// Shared by two test targets, each of which uses a part.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{json, Value};
use time::{Date, Month};
use xero_sandbox::ledger::{Ledger, LedgerAccount, LedgerInvoice};

/// What a question must get, in the semantic model's terms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub metrics: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Dimension → accepted values (equality, any of).
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
    /// Both ends inclusive; absent: all time up to the as-of date.
    #[serde(default)]
    pub period: Option<Span>,
    #[serde(default)]
    pub top: Option<usize>,
    #[serde(default)]
    pub bottom: Option<usize>,
    #[serde(default)]
    pub compare: Option<Compare>,
    #[serde(default)]
    pub share_of_total: bool,
    /// Documents in this currency only, reported in it.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub including_tax: bool,
}

/// Days as `YYYY-MM-DD`, both ends inclusive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The period of the same length just before: the same number of
    /// calendar months when the period is whole months, else of days.
    PreviousPeriod,
    /// The same dates one year earlier.
    PreviousYear,
}

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A dimension value: exactly.
    Dim,
    /// A number within this tolerance.
    Num(f64),
}

/// One expected row. `optional` rows (a comparison's groups that exist only
/// in the earlier period) may be missing from an answer.
#[derive(Debug, Clone)]
pub struct Row {
    pub cells: Vec<Value>,
    pub optional: bool,
}

/// The expected answer.
#[derive(Debug, Clone)]
pub struct Expected {
    pub columns: Vec<(String, Kind)>,
    pub rows: Vec<Row>,
    /// Top/bottom N: the order of the rows matters (`true` = descending).
    pub ranked: Option<bool>,
    /// How many leading columns are dimensions.
    pub dims: usize,
}

pub fn parse_day(text: &str) -> Result<Date, String> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text.trim(), f).map_err(|e| format!("{text}: {e}"))
}

/// The metrics of model.yaml this oracle knows.
pub const METRICS: &[&str] = &[
    "revenue",
    "expenses",
    "receivables",
    "overdue_receivables",
    "payables",
    "overdue_payables",
    "cash_received",
    "cash_paid",
    "invoice_count",
    "bill_count",
    "average_invoice_value",
    "distinct_customers",
    "distinct_suppliers",
    "average_days_to_pay",
    "credit_notes_issued",
    "net_revenue",
    "units_sold",
    "gross_margin",
    "bank_movement",
];

pub const DIMENSIONS: &[&str] = &[
    "customer",
    "supplier",
    "month",
    "quarter",
    "year",
    "account",
    "account_code",
    "account_type",
    "item",
    "status",
    "currency",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Invoices,
    Lines,
    Payments,
    CreditNotes,
    Journal,
}

impl Source {
    /// The dimensions model.yaml defines on the source (time grains are on every one).
    fn has(self, dim: &str) -> bool {
        if matches!(dim, "month" | "quarter" | "year") {
            return true;
        }
        match self {
            Source::Invoices | Source::Payments | Source::CreditNotes => {
                matches!(dim, "customer" | "supplier" | "status" | "currency")
            }
            Source::Lines => matches!(
                dim,
                "customer"
                    | "supplier"
                    | "status"
                    | "currency"
                    | "account"
                    | "account_code"
                    | "account_type"
                    | "item"
            ),
            Source::Journal => matches!(dim, "account" | "account_code" | "account_type"),
        }
    }

    fn has_currency(self) -> bool {
        !matches!(self, Source::Journal)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Count,
    CountDistinct,
    Avg,
}

/// How a metric's values are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Money,
    Count,
    Number,
    Days,
}

fn format_of(metric: &str) -> Format {
    match metric {
        "invoice_count" | "bill_count" | "distinct_customers" | "distinct_suppliers" => {
            Format::Count
        }
        "units_sold" => Format::Number,
        "average_days_to_pay" => Format::Days,
        _ => Format::Money,
    }
}

/// The sources a measured metric may use, in model.yaml's order of preference.
fn sources_of(metric: &str) -> &'static [Source] {
    match metric {
        "revenue" | "expenses" => &[Source::Invoices, Source::Lines],
        "receivables"
        | "overdue_receivables"
        | "payables"
        | "overdue_payables"
        | "invoice_count"
        | "bill_count"
        | "distinct_customers"
        | "distinct_suppliers"
        | "average_days_to_pay" => &[Source::Invoices],
        "cash_received" | "cash_paid" => &[Source::Payments],
        "credit_notes_issued" => &[Source::CreditNotes],
        "units_sold" => &[Source::Lines],
        "gross_margin" | "bank_movement" => &[Source::Journal],
        _ => &[],
    }
}

fn is_balance(metric: &str) -> bool {
    matches!(
        metric,
        "receivables" | "overdue_receivables" | "payables" | "overdue_payables"
    )
}

/// A row of a source that a metric counts, with what its dimensions read.
#[derive(Debug, Clone, Default)]
struct Fact {
    date: Option<Date>,
    /// Customer or supplier: the contact's name as dim_contacts has it.
    contact: Option<String>,
    contact_id: String,
    status: Option<String>,
    currency: Option<String>,
    account: Option<String>,
    account_code: Option<String>,
    account_type: Option<String>,
    item: Option<String>,
    /// Cents for money, a quantity, or days.
    value: f64,
}

impl Fact {
    fn dim(&self, dim: &str) -> Value {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        match dim {
            "customer" | "supplier" => text(&self.contact),
            "status" => text(&self.status),
            "currency" => text(&self.currency),
            "account" => text(&self.account),
            "account_code" => text(&self.account_code),
            "account_type" => text(&self.account_type),
            "item" => text(&self.item),
            "month" => self.date.map_or(Value::Null, |d| {
                json!(format!("{:04}-{:02}", d.year(), u8::from(d.month())))
            }),
            "quarter" => self.date.map_or(Value::Null, |d| {
                json!(format!(
                    "{:04}-Q{}",
                    d.year(),
                    (u8::from(d.month()) - 1) / 3 + 1
                ))
            }),
            "year" => self.date.map_or(Value::Null, |d| json!(d.year())),
            other => panic!("unknown dimension {other}"),
        }
    }
}

/// The models' `to_base` macro: a document's amount in the base currency,
/// rounded to the cent per document.
pub fn to_base(cents: i64, rate: f64) -> i64 {
    if rate == 1.0 || rate <= 0.0 {
        return cents;
    }
    (cents as f64 / rate).round() as i64
}

/// model.yaml's per-line conversion: `ROUND(amount / rate, 2)` in floating point.
pub fn round_div(cents: i64, rate: f64) -> i64 {
    if rate == 0.0 {
        return cents;
    }
    ((cents as f64 / 100.0) / rate * 100.0).round() as i64
}

/// The books with their lookups.
pub struct Oracle<'a> {
    pub ledger: &'a Ledger,
    contacts: HashMap<&'a str, &'a str>,
    items: HashMap<&'a str, &'a str>,
    accounts: HashMap<&'a str, &'a LedgerAccount>,
    invoices: HashMap<&'a str, &'a LedgerInvoice>,
}

/// One evaluation's settings (the question's, or its comparison period's).
#[derive(Debug, Clone)]
struct Slice<'e> {
    expect: &'e Expect,
    range: Option<(Date, Date)>,
    as_of: Date,
}

type Key = Vec<KeyPart>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart {
    Null,
    Int(i64),
    Text(String),
}

fn key_part(v: &Value) -> KeyPart {
    match v {
        Value::Null => KeyPart::Null,
        Value::Number(n) => KeyPart::Int(n.as_i64().unwrap_or_default()),
        Value::String(s) => KeyPart::Text(s.clone()),
        other => KeyPart::Text(other.to_string()),
    }
}

fn key_value(k: &KeyPart) -> Value {
    match k {
        KeyPart::Null => Value::Null,
        KeyPart::Int(i) => json!(i),
        KeyPart::Text(s) => json!(s),
    }
}

impl<'a> Oracle<'a> {
    pub fn new(ledger: &'a Ledger) -> Oracle<'a> {
        Oracle {
            ledger,
            contacts: ledger
                .contacts
                .iter()
                .map(|c| (c.id.as_str(), c.name.as_str()))
                .collect(),
            items: ledger
                .items
                .iter()
                .map(|i| (i.code.as_str(), i.name.as_str()))
                .collect(),
            accounts: ledger
                .accounts
                .iter()
                .map(|a| (a.code.as_str(), a))
                .collect(),
            invoices: ledger.invoices.iter().map(|i| (i.id.as_str(), i)).collect(),
        }
    }

    /// dim_contacts' name: the contact's record, or its unknown member.
    fn contact_name(&self, id: &str) -> String {
        self.contacts
            .get(id)
            .map_or_else(|| "Unknown contact".to_owned(), |n| (*n).to_owned())
    }

    /// The item's name; the code itself when the books have no such item.
    fn item_name(&self, code: Option<&str>) -> Option<String> {
        let code = code?;
        Some(
            self.items
                .get(code)
                .map_or_else(|| code.to_owned(), |n| (*n).to_owned()),
        )
    }

    fn account_of(&self, code: &str) -> (Option<String>, Option<String>) {
        match self.accounts.get(code) {
            Some(a) => (Some(a.name.clone()), Some(a.kind.clone())),
            None => (
                Some("Unknown account".to_owned()),
                Some("UNKNOWN".to_owned()),
            ),
        }
    }

    /// The source a measured metric is computed over for this question.
    fn source_for(&self, metric: &str, e: &Expect) -> Result<Source, String> {
        let needed: Vec<&str> = e
            .dimensions
            .iter()
            .chain(e.filters.keys())
            .map(String::as_str)
            .collect();
        sources_of(metric)
            .iter()
            .copied()
            .find(|s| needed.iter().all(|d| s.has(d)))
            .ok_or_else(|| format!("no source of {metric} has every dimension of {needed:?}"))
    }

    /// The rows `metric` counts, with their values (before period and filters).
    fn facts(&self, metric: &str, source: Source, s: &Slice<'_>) -> Vec<Fact> {
        let e = s.expect;
        let named = e.currency.as_deref();
        let tax = e.including_tax;
        let mut out = Vec::new();
        let posted = |st: &str| st == "AUTHORISED" || st == "PAID";
        let kind_of = |m: &str| match m {
            "revenue"
            | "receivables"
            | "overdue_receivables"
            | "cash_received"
            | "invoice_count"
            | "distinct_customers"
            | "average_days_to_pay"
            | "units_sold" => "ACCREC",
            _ => "ACCPAY",
        };
        let doc = |inv: &LedgerInvoice| Fact {
            date: Some(inv.date),
            contact: Some(self.contact_name(&inv.contact_id)),
            contact_id: inv.contact_id.clone(),
            status: Some(inv.status.clone()),
            currency: Some(inv.currency_code.clone()),
            ..Fact::default()
        };
        let money = |cents: i64, rate: f64| -> f64 {
            if named.is_some() {
                cents as f64
            } else {
                to_base(cents, rate) as f64
            }
        };
        match source {
            Source::Invoices => {
                let kind = kind_of(metric);
                for inv in self.ledger.invoices.iter().filter(|i| i.kind == kind) {
                    let value = match metric {
                        "revenue" | "expenses" if posted(&inv.status) => money(
                            if tax { inv.total } else { inv.sub_total },
                            inv.currency_rate,
                        ),
                        "receivables" | "payables"
                            if inv.status == "AUTHORISED" && inv.date <= s.as_of =>
                        {
                            money(inv.amount_due, inv.currency_rate)
                        }
                        "overdue_receivables" | "overdue_payables"
                            if inv.status == "AUTHORISED"
                                && inv.date <= s.as_of
                                && inv.due_date < s.as_of =>
                        {
                            money(inv.amount_due, inv.currency_rate)
                        }
                        "invoice_count" | "bill_count" | "distinct_customers"
                        | "distinct_suppliers"
                            if posted(&inv.status) =>
                        {
                            1.0
                        }
                        "average_days_to_pay" if inv.status == "PAID" => match inv.fully_paid_on {
                            Some(paid) => (paid - inv.date).whole_days() as f64,
                            None => continue,
                        },
                        _ => continue,
                    };
                    out.push(Fact { value, ..doc(inv) });
                }
            }
            Source::Lines => {
                let kind = kind_of(metric);
                for inv in self.ledger.invoices.iter() {
                    if inv.kind != kind || !posted(&inv.status) {
                        continue;
                    }
                    for l in &inv.lines {
                        let net = l.net(inv.tax_inclusive);
                        let rate = inv.currency_rate;
                        let value = match metric {
                            "units_sold" => l.quantity,
                            _ if named.is_some() && tax => (net + l.tax_amount) as f64,
                            _ if named.is_some() => net as f64,
                            // fct_invoice_lines' net_amount_base and tax_amount_base.
                            _ if tax => (to_base(net, rate) + to_base(l.tax_amount, rate)) as f64,
                            _ => to_base(net, rate) as f64,
                        };
                        let (account, account_type) = self.account_of(&l.account_code);
                        out.push(Fact {
                            value,
                            account,
                            account_type,
                            account_code: Some(l.account_code.clone()),
                            item: self.item_name(l.item_code.as_deref()),
                            ..doc(inv)
                        });
                    }
                }
            }
            Source::Payments => {
                let kind = kind_of(metric);
                for p in &self.ledger.payments {
                    // fct_payments JOIN fct_invoices: a payment of an unknown invoice drops out.
                    let Some(inv) = self.invoices.get(p.invoice_id.as_str()) else {
                        continue;
                    };
                    if inv.kind != kind || p.status == "DELETED" {
                        continue;
                    }
                    out.push(Fact {
                        date: Some(p.date),
                        status: Some(p.status.clone()),
                        value: money(p.amount, p.currency_rate),
                        ..doc(inv)
                    });
                }
            }
            Source::CreditNotes => {
                for cn in &self.ledger.credit_notes {
                    if cn.kind != "ACCRECCREDIT" || !posted(&cn.status) {
                        continue;
                    }
                    let value = match (named.is_some(), tax) {
                        (true, false) => cn.sub_total as f64,
                        (true, true) => cn.total as f64,
                        (false, false) => round_div(cn.sub_total, cn.currency_rate) as f64,
                        (false, true) => to_base(cn.total, cn.currency_rate) as f64,
                    };
                    out.push(Fact {
                        date: Some(cn.date),
                        contact: Some(self.contact_name(&cn.contact_id)),
                        contact_id: cn.contact_id.clone(),
                        status: Some(cn.status.clone()),
                        currency: Some(cn.currency_code.clone()),
                        value,
                        ..Fact::default()
                    });
                }
            }
            Source::Journal => {
                for j in &self.ledger.journal_lines {
                    let value = match metric {
                        "gross_margin"
                            if matches!(
                                j.account_type.as_str(),
                                "REVENUE" | "SALES" | "DIRECTCOSTS"
                            ) =>
                        {
                            -(j.net as f64)
                        }
                        "bank_movement" if j.account_type == "BANK" => j.net as f64,
                        _ => continue,
                    };
                    out.push(Fact {
                        date: Some(j.date),
                        account: Some(j.account_name.clone()),
                        account_code: Some(j.account_code.clone()),
                        account_type: Some(j.account_type.clone()),
                        value,
                        ..Fact::default()
                    });
                }
            }
        }
        out
    }

    /// A measured metric per group (cents for money), over the slice.
    fn measured(&self, metric: &str, s: &Slice<'_>) -> Result<BTreeMap<Key, f64>, String> {
        let e = s.expect;
        let source = self.source_for(metric, e)?;
        if e.currency.is_some() && !source.has_currency() {
            return Err(format!("{metric} has no currency to filter on"));
        }
        let agg = match metric {
            "invoice_count" | "bill_count" => Agg::Count,
            "distinct_customers" | "distinct_suppliers" => Agg::CountDistinct,
            "average_days_to_pay" => Agg::Avg,
            _ => Agg::Sum,
        };
        let mut sums: BTreeMap<Key, (f64, u64, BTreeSet<String>)> = BTreeMap::new();
        for f in self.facts(metric, source, s) {
            // Balances are taken at the as-of date, not summed over the period.
            if !is_balance(metric) {
                if let (Some((start, end)), Some(d)) = (s.range, f.date) {
                    if d < start || d > end {
                        continue;
                    }
                }
                if s.range.is_none() && f.date.is_some_and(|d| d > s.as_of) {
                    continue;
                }
            }
            if let Some(c) = &e.currency {
                if f.currency.as_deref() != Some(c.as_str()) {
                    continue;
                }
            }
            let keep = e.filters.iter().all(|(dim, values)| match f.dim(dim) {
                Value::String(v) => values.contains(&v),
                Value::Number(n) => values.iter().any(|x| *x == n.to_string()),
                _ => false,
            });
            if !keep {
                continue;
            }
            let key: Key = e.dimensions.iter().map(|d| key_part(&f.dim(d))).collect();
            let entry = sums.entry(key).or_default();
            entry.0 += f.value;
            entry.1 += 1;
            entry.2.insert(f.contact_id.clone());
        }
        Ok(sums
            .into_iter()
            .map(|(k, (sum, n, distinct))| {
                let v = match agg {
                    Agg::Sum => sum,
                    Agg::Count => n as f64,
                    Agg::CountDistinct => distinct.len() as f64,
                    Agg::Avg => sum / n as f64,
                };
                (k, v)
            })
            .collect())
    }

    /// A metric per group, formulas included; `None` where a formula has no value.
    fn metric(&self, metric: &str, s: &Slice<'_>) -> Result<BTreeMap<Key, Option<f64>>, String> {
        match metric {
            "average_invoice_value" => {
                let revenue = self.measured("revenue", s)?;
                let count = self.measured("invoice_count", s)?;
                Ok(revenue
                    .iter()
                    .map(|(k, r)| {
                        let n = count.get(k).copied().unwrap_or(0.0);
                        (k.clone(), (n > 0.0).then(|| r / n))
                    })
                    .collect())
            }
            "net_revenue" => {
                let revenue = self.measured("revenue", s)?;
                let credits = self.measured("credit_notes_issued", s)?;
                let keys: BTreeSet<&Key> = revenue.keys().chain(credits.keys()).collect();
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let r = revenue.get(k).copied().unwrap_or(0.0);
                        let c = credits.get(k).copied().unwrap_or(0.0);
                        (k.clone(), Some(r - c))
                    })
                    .collect())
            }
            m if METRICS.contains(&m) => Ok(self
                .measured(m, s)?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect()),
            other => Err(format!("unknown metric {other}")),
        }
    }

    /// The expected answer to `e` asked on `as_of`.
    pub fn expect(&self, e: &Expect, as_of: Date) -> Result<Expected, String> {
        if e.metrics.is_empty() {
            return Err("no metric".into());
        }
        for d in e.dimensions.iter().chain(e.filters.keys()) {
            if !DIMENSIONS.contains(&d.as_str()) {
                return Err(format!("unknown dimension {d}"));
            }
        }
        let range = match &e.period {
            Some(p) => Some((parse_day(&p.start)?, parse_day(&p.end)?)),
            None => None,
        };
        // A balance is known as of the as-of day only: amount_due is today's,
        // so an earlier day's balance is not in the books the model reads.
        if range.is_some() && e.metrics.iter().any(|m| is_balance(m)) {
            return Err("a balance has no period: it is taken on the as-of day".into());
        }
        let slice = Slice {
            expect: e,
            range,
            as_of,
        };
        let previous = match e.compare {
            None => None,
            Some(c) => {
                let (start, end) = range.ok_or("a comparison needs a period")?;
                // The financial year starts the month after its year-end month.
                let fy_start = self.ledger.financial_year_end_month % 12 + 1;
                let (ps, pe) = previous_range(start, end, c, fy_start)?;
                Some(Slice {
                    expect: e,
                    range: Some((ps, pe)),
                    as_of: pe,
                })
            }
        };
        let mut current = Vec::new();
        let mut earlier = Vec::new();
        for m in &e.metrics {
            current.push(self.metric(m, &slice)?);
            if let Some(p) = &previous {
                earlier.push(self.metric(m, p)?);
            }
        }
        // Groups: those of the current period; a comparison's earlier-only groups are optional.
        let mut keys: BTreeMap<Key, bool> = BTreeMap::new();
        for map in &current {
            for k in map.keys() {
                keys.insert(k.clone(), false);
            }
        }
        for map in &earlier {
            for k in map.keys() {
                keys.entry(k.clone()).or_insert(true);
            }
        }
        if e.dimensions.is_empty() {
            // A query without GROUP BY answers one row, even over no rows.
            keys.entry(Vec::new()).or_insert(false);
        }
        let first = &e.metrics[0];
        let total: f64 = current[0].values().flatten().sum();
        let mut columns: Vec<(String, Kind)> = e
            .dimensions
            .iter()
            .map(|d| (d.clone(), Kind::Dim))
            .collect();
        let line_level = e.metrics.iter().any(|m| {
            self.source_for(m, e).ok() == Some(Source::Lines) && !matches!(m.as_str(), "units_sold")
        });
        for m in &e.metrics {
            let tol = tolerance(m, line_level);
            columns.push((m.clone(), Kind::Num(tol)));
            if e.compare.is_some() {
                columns.push((format!("{m}_previous"), Kind::Num(tol)));
                columns.push((format!("{m}_change"), Kind::Num(tol * 2.0)));
                columns.push((format!("{m}_change_pct"), Kind::Num(0.05)));
            }
        }
        if e.share_of_total {
            columns.push((format!("{first}_share_pct"), Kind::Num(0.05)));
        }
        let mut rows: Vec<(Row, Option<f64>)> = Vec::new();
        for (key, optional) in keys {
            let mut cells: Vec<Value> = key.iter().map(key_value).collect();
            let mut sort_value = None;
            for (i, m) in e.metrics.iter().enumerate() {
                let cur = current[i].get(&key).copied().flatten();
                if i == 0 {
                    sort_value = cur;
                }
                cells.push(report(m, cur));
                if e.compare.is_some() {
                    let prev = earlier[i].get(&key).copied().flatten();
                    cells.push(report(m, prev));
                    let change = match (cur, prev) {
                        (None, None) => None,
                        (c, p) => Some(c.unwrap_or(0.0) - p.unwrap_or(0.0)),
                    };
                    cells.push(report(m, change));
                    cells.push(match (change, prev) {
                        (Some(c), Some(p)) if p != 0.0 => json!(round_to(c / p * 100.0, 4)),
                        _ => Value::Null,
                    });
                }
            }
            if e.share_of_total {
                cells.push(match sort_value {
                    Some(v) if total != 0.0 => json!(round_to(v / total * 100.0, 4)),
                    _ => Value::Null,
                });
            }
            rows.push((Row { cells, optional }, sort_value));
        }
        let ranked = match (e.top, e.bottom) {
            (Some(_), Some(_)) => return Err("top and bottom".into()),
            (Some(n), None) => Some((true, n)),
            (None, Some(n)) => Some((false, n)),
            (None, None) => None,
        };
        let time_dims = e
            .dimensions
            .iter()
            .any(|d| matches!(d.as_str(), "month" | "quarter" | "year"));
        match ranked {
            Some((desc, n)) => {
                rows.retain(|(r, _)| !r.optional);
                rows.sort_by(|a, b| {
                    let (x, y) = (a.1.unwrap_or(f64::MIN), b.1.unwrap_or(f64::MIN));
                    if desc {
                        y.total_cmp(&x)
                    } else {
                        x.total_cmp(&y)
                    }
                });
                rows.truncate(n);
            }
            None if time_dims => {}
            None => {
                rows.sort_by(|a, b| b.1.unwrap_or(f64::MIN).total_cmp(&a.1.unwrap_or(f64::MIN)))
            }
        }
        let _ = first;
        Ok(Expected {
            columns,
            rows: rows.into_iter().map(|(r, _)| r).collect(),
            ranked: ranked.map(|(desc, _)| desc),
            dims: e.dimensions.len(),
        })
    }
}

/// How close a metric's reported value must be.
fn tolerance(metric: &str, line_level: bool) -> f64 {
    match format_of(metric) {
        Format::Count => 0.001,
        Format::Number => 0.001,
        Format::Days => 0.05,
        Format::Money if metric == "average_invoice_value" => 0.05,
        // Lines are converted one by one, each rounded to the cent.
        Format::Money if line_level => 0.02,
        Format::Money => 0.01,
    }
}

fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// A metric's value as the answer reports it (money in currency units).
fn report(metric: &str, v: Option<f64>) -> Value {
    let Some(v) = v else { return Value::Null };
    match format_of(metric) {
        Format::Money => json!(round_to(v / 100.0, 4)),
        Format::Count => json!(v.round() as i64),
        Format::Number | Format::Days => json!(round_to(v, 4)),
    }
}

fn add_months(d: Date, months: i32) -> Result<Date, String> {
    let total = d.year() * 12 + i32::from(u8::from(d.month())) - 1 + months;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let month = Month::try_from(m as u8).map_err(|e| e.to_string())?;
    let last = month.length(y);
    Date::from_calendar_date(y, month, d.day().min(last)).map_err(|e| e.to_string())
}

fn is_month_start(d: Date) -> bool {
    d.day() == 1
}

fn is_month_end(d: Date) -> bool {
    d.next_day().is_some_and(|n| n.day() == 1)
}

/// The comparison period of `[start, end]`.
/// `fy_start` is the month (1-12) the organisation's financial year starts in.
pub fn previous_range(
    start: Date,
    end: Date,
    c: Compare,
    fy_start: u8,
) -> Result<(Date, Date), String> {
    match c {
        Compare::PreviousYear => Ok((add_months(start, -12)?, add_months(end, -12)?)),
        // Calendar months (a month, quarter or year, to date or whole) move
        // back by as many months as they touch: this month to date compares
        // with the same days of last month, last quarter with the one before.
        Compare::PreviousPeriod if is_month_start(start) => {
            let touched = (end.year() - start.year()) * 12 + i32::from(u8::from(end.month()))
                - i32::from(u8::from(start.month()))
                + 1;
            // templates/semantic/README.md: whole months move back by as many
            // months; a period to date by its calendar unit (a quarter to
            // date compares with the same days of the quarter before, a
            // year or financial year to date with those of the year before).
            let start_month = u8::from(start.month());
            let months = if is_month_end(end) || touched <= 1 {
                touched.max(1)
            } else if touched <= 3 && (start_month - 1) % 3 == 0 {
                3
            } else if touched <= 12 && (start_month == 1 || start_month == fy_start) {
                12
            } else {
                touched
            };
            let ps = add_months(start, -months)?;
            let pe = if is_month_end(end) {
                let first = add_months(end.replace_day(1).map_err(|e| e.to_string())?, -months)?;
                first
                    .replace_day(first.month().length(first.year()))
                    .map_err(|e| e.to_string())?
            } else {
                add_months(end, -months)?
            };
            Ok((ps, pe))
        }
        Compare::PreviousPeriod => {
            let days = (end - start).whole_days() + 1;
            let pe = start.previous_day().ok_or("no day before")?;
            Ok((pe - time::Duration::days(days - 1), pe))
        }
    }
}

/// Names the question set may refer to as `{placeholder}`, taken from the
/// books (so the set does not depend on the names a seed generates).
pub fn placeholders(ledger: &Ledger, as_of: Date) -> Result<BTreeMap<String, String>, String> {
    let o = Oracle::new(ledger);
    let ranked = |metric: &str, dim: &str| -> Result<Vec<String>, String> {
        let e = Expect {
            metrics: vec![metric.to_owned()],
            dimensions: vec![dim.to_owned()],
            ..Expect::default()
        };
        let got = o.expect(&e, as_of)?;
        let mut rows: Vec<(String, f64)> = got
            .rows
            .iter()
            .filter_map(|r| Some((r.cells[0].as_str()?.to_owned(), r.cells[1].as_f64()?)))
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(rows.into_iter().map(|(k, _)| k).collect())
    };
    let customers = ranked("revenue", "customer")?;
    let suppliers = ranked("expenses", "supplier")?;
    let items = ranked("units_sold", "item")?;
    let mut currencies: BTreeMap<&str, usize> = BTreeMap::new();
    for inv in &ledger.invoices {
        if inv.kind == "ACCREC"
            && matches!(inv.status.as_str(), "AUTHORISED" | "PAID")
            && inv.currency_code != ledger.base_currency
        {
            *currencies.entry(inv.currency_code.as_str()).or_default() += 1;
        }
    }
    let currency = currencies
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
        .map(|(c, _)| (*c).to_owned())
        .ok_or("no sales invoice in a foreign currency")?;
    let pick = |list: &[String], i: usize, what: &str| {
        list.get(i)
            .cloned()
            .ok_or_else(|| format!("fewer than {} {what}", i + 1))
    };
    let mut out = BTreeMap::new();
    out.insert("top_customer".into(), pick(&customers, 0, "customers")?);
    out.insert("second_customer".into(), pick(&customers, 1, "customers")?);
    out.insert("top_supplier".into(), pick(&suppliers, 0, "suppliers")?);
    // The best-selling item (lines without an item have no name and are left out).
    let item = items.first().cloned().ok_or("no item sold")?;
    out.insert("top_item".into(), item);
    out.insert("currency".into(), currency);
    out.insert("base_currency".into(), ledger.base_currency.clone());
    Ok(out)
}

/// `text` with every `{name}` replaced.
pub fn substitute(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in names {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The expectation with its placeholders replaced.
pub fn substitute_expect(e: &Expect, names: &BTreeMap<String, String>) -> Expect {
    let mut e = e.clone();
    e.filters = e
        .filters
        .iter()
        .map(|(k, vs)| (k.clone(), vs.iter().map(|v| substitute(v, names)).collect()))
        .collect();
    e.currency = e.currency.as_deref().map(|c| substitute(c, names));
    e
}

/// Why `got` (an answer's columns and rows) is not `want`; empty when it is.
pub fn differences(want: &Expected, columns: &[String], rows: &[Vec<Value>]) -> Vec<String> {
    let mut out = Vec::new();
    let want_names: Vec<&str> = want.columns.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&&str> = want_names
        .iter()
        .filter(|n| !columns.iter().any(|c| c == **n))
        .collect();
    let extra: Vec<&String> = columns
        .iter()
        .filter(|c| !want_names.contains(&c.as_str()))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        out.push(format!(
            "columns: want {want_names:?}, got {columns:?} (missing {missing:?}, extra {extra:?})"
        ));
        return out;
    }
    let index: Vec<usize> = want
        .columns
        .iter()
        .map(|(n, _)| columns.iter().position(|c| c == n).unwrap_or(0))
        .collect();
    // Got rows in the expected column order.
    let got: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            index
                .iter()
                .map(|&i| r.get(i).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    let dim_key = |cells: &[Value]| -> Vec<String> {
        cells[..want.dims].iter().map(dim_text).collect::<Vec<_>>()
    };
    let mut used = vec![false; got.len()];
    for w in &want.rows {
        let k = dim_key(&w.cells);
        let found = got
            .iter()
            .enumerate()
            .find(|(i, g)| !used[*i] && dim_key(g) == k);
        let Some((i, g)) = found else {
            if !w.optional {
                out.push(format!("missing row {}", show(&w.cells)));
            }
            continue;
        };
        used[i] = true;
        for (c, (name, kind)) in want.columns.iter().enumerate().skip(want.dims) {
            let Kind::Num(tol) = kind else { continue };
            if !close(&w.cells[c], &g[c], *tol) {
                out.push(format!(
                    "row {:?}: {name} want {}, got {}",
                    k, w.cells[c], g[c]
                ));
            }
        }
    }
    for (i, g) in got.iter().enumerate() {
        if used[i] {
            continue;
        }
        // A group whose every value is empty or zero says nothing either way.
        let empty = g[want.dims..]
            .iter()
            .all(|v| number(v).is_none_or(|x| x == 0.0));
        if !empty {
            out.push(format!("unexpected row {}", show(g)));
        }
    }
    if let Some(desc) = want.ranked {
        if got.len() > want.rows.len() {
            out.push(format!(
                "ranked: want {} rows, got {}",
                want.rows.len(),
                got.len()
            ));
        }
        let first = want.dims;
        let values: Vec<f64> = got
            .iter()
            .map(|g| number(&g[first]).unwrap_or(f64::NAN))
            .collect();
        let ordered = values
            .windows(2)
            .all(|w| if desc { w[0] >= w[1] } else { w[0] <= w[1] });
        if !ordered {
            out.push(format!(
                "ranked rows out of order ({}): {values:?}",
                if desc { "descending" } else { "ascending" }
            ));
        }
    }
    out
}

fn dim_text(v: &Value) -> String {
    match v {
        Value::Null => "∅".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Within `tol`; an empty value and zero are the same (no rows add up to nothing).
fn close(want: &Value, got: &Value, tol: f64) -> bool {
    let (w, g) = (number(want).unwrap_or(0.0), number(got).unwrap_or(0.0));
    if matches!(got, Value::String(s) if s.parse::<f64>().is_err()) {
        return false;
    }
    (w - g).abs() <= tol + 1e-9
}

fn show(cells: &[Value]) -> String {
    let parts: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// The rows of an expected answer, for a report.
pub fn render(want: &Expected, limit: usize) -> String {
    let names: Vec<&str> = want.columns.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = format!("{}\n", names.join(" | "));
    for r in want.rows.iter().take(limit) {
        out.push_str(&show(&r.cells));
        if r.optional {
            out.push_str(" (optional)");
        }
        out.push('\n');
    }
    if want.rows.len() > limit {
        out.push_str(&format!("… {} rows\n", want.rows.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn comparison_periods() {
        let prev = |s, e, c| previous_range(s, e, c, 4).expect("previous");
        // A whole quarter: the quarter before.
        assert_eq!(
            prev(
                date!(2026 - 04 - 01),
                date!(2026 - 06 - 30),
                Compare::PreviousPeriod
            ),
            (date!(2026 - 01 - 01), date!(2026 - 03 - 31))
        );
        // A month to date: the same days of the month before.
        assert_eq!(
            prev(
                date!(2026 - 08 - 01),
                date!(2026 - 08 - 20),
                Compare::PreviousPeriod
            ),
            (date!(2026 - 07 - 01), date!(2026 - 07 - 20))
        );
        // A whole month ending on the 31st: the whole month before.
        assert_eq!(
            prev(
                date!(2026 - 07 - 01),
                date!(2026 - 07 - 31),
                Compare::PreviousPeriod
            ),
            (date!(2026 - 06 - 01), date!(2026 - 06 - 30))
        );
        // A quarter, a year and a financial year (from April) to date: the same days of the one before.
        assert_eq!(
            prev(
                date!(2026 - 07 - 01),
                date!(2026 - 08 - 20),
                Compare::PreviousPeriod
            ),
            (date!(2026 - 04 - 01), date!(2026 - 05 - 20))
        );
        assert_eq!(
            prev(
                date!(2026 - 01 - 01),
                date!(2026 - 08 - 20),
                Compare::PreviousPeriod
            ),
            (date!(2025 - 01 - 01), date!(2025 - 08 - 20))
        );
        assert_eq!(
            prev(
                date!(2026 - 04 - 01),
                date!(2026 - 08 - 20),
                Compare::PreviousPeriod
            ),
            (date!(2025 - 04 - 01), date!(2025 - 08 - 20))
        );
        // Days: as many days just before.
        assert_eq!(
            prev(
                date!(2026 - 07 - 22),
                date!(2026 - 08 - 20),
                Compare::PreviousPeriod
            ),
            (date!(2026 - 06 - 22), date!(2026 - 07 - 21))
        );
        assert_eq!(
            prev(
                date!(2024 - 02 - 01),
                date!(2024 - 02 - 29),
                Compare::PreviousYear
            ),
            (date!(2023 - 02 - 01), date!(2023 - 02 - 28))
        );
    }

    #[test]
    fn conversions_round_as_the_models_do() {
        assert_eq!(to_base(6000, 0.6), 10000);
        assert_eq!(to_base(12345, 1.0), 12345);
        assert_eq!(to_base(12345, 0.0), 12345);
        // 100.01 / 0.6 = 166.683… → 166.68
        assert_eq!(round_div(10001, 0.6), 16668);
        assert_eq!(round_div(-10001, 0.6), -16668);
    }
}
