//! Listing: the query parameters the Accounting API takes (paging,
//! `If-Modified-Since`, `order`, `where`, id and status filters) and the
//! selection of records they describe.
//!
//! A listing without filters in the default order is a slice of the table,
//! so paging 100,000 invoices costs a page's worth of work per call. A
//! filtered or reordered listing is computed once per data version and
//! cached, so walking its pages is linear too.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::model::*;
use crate::wire::{self, DEFAULT_PAGE_SIZE};

/// A listing the client asked for wrongly (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadQuery(pub String);

/// Parsed query parameters (names are case-insensitive, as Xero's are).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListParams {
    pub page: Option<u32>,
    pub page_size: u32,
    pub since: Option<Ms>,
    pub order: Option<(String, bool)>,
    pub ids: Option<HashSet<Uuid>>,
    pub statuses: Option<HashSet<String>>,
    pub contact_ids: Option<HashSet<Uuid>>,
    pub numbers: Option<HashSet<String>>,
    pub include_archived: bool,
    pub summary_only: bool,
    pub where_clauses: Vec<Clause>,
    pub offset: i64,
    pub payments_only: bool,
}

fn parse_uuid_list(name: &str, v: &str) -> Result<HashSet<Uuid>, BadQuery> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Uuid::parse_str(s.trim())
                .map_err(|_| BadQuery(format!("{name}: {:?} is not a GUID", truncate(s))))
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

impl ListParams {
    /// Parses the query string pairs and the `If-Modified-Since` value.
    pub(crate) fn parse(pairs: &[(String, String)], since: Option<&str>) -> Result<Self, BadQuery> {
        let mut p = ListParams {
            page_size: DEFAULT_PAGE_SIZE,
            ..Default::default()
        };
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "page" => {
                    let n: u32 = v.trim().parse().map_err(|_| {
                        BadQuery(format!(
                            "page must be a positive integer, not {:?}",
                            truncate(v)
                        ))
                    })?;
                    if n == 0 {
                        return Err(BadQuery("page must be 1 or more".into()));
                    }
                    p.page = Some(n);
                }
                "pagesize" => {
                    let n: u32 = v.trim().parse().map_err(|_| {
                        BadQuery(format!(
                            "pageSize must be a positive integer, not {:?}",
                            truncate(v)
                        ))
                    })?;
                    if n == 0 {
                        return Err(BadQuery("pageSize must be 1 or more".into()));
                    }
                    p.page_size = n.min(wire::MAX_PAGE_SIZE);
                }
                "offset" => {
                    p.offset = v.trim().parse().map_err(|_| {
                        BadQuery(format!("offset must be an integer, not {:?}", truncate(v)))
                    })?;
                }
                "order" => p.order = Some(parse_order(v)?),
                "ids" => p.ids = Some(parse_uuid_list("IDs", v)?),
                "contactids" => p.contact_ids = Some(parse_uuid_list("ContactIDs", v)?),
                "statuses" => {
                    p.statuses = Some(
                        v.split(',')
                            .map(|s| s.trim().to_ascii_uppercase())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "invoicenumbers" => {
                    p.numbers = Some(
                        v.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    )
                }
                "includearchived" => p.include_archived = v.trim().eq_ignore_ascii_case("true"),
                "summaryonly" => p.summary_only = v.trim().eq_ignore_ascii_case("true"),
                "paymentsonly" => p.payments_only = v.trim().eq_ignore_ascii_case("true"),
                "where" => p.where_clauses = parse_where(v)?,
                // Accepted and ignored: they do not change what is listed here.
                _ => {}
            }
        }
        if let Some(s) = since {
            p.since = Some(parse_since(s)?);
        }
        Ok(p)
    }

    /// Whether anything narrows or reorders the default listing.
    fn is_plain(&self) -> bool {
        self.since.is_none()
            && self.order.is_none()
            && self.ids.is_none()
            && self.statuses.is_none()
            && self.contact_ids.is_none()
            && self.numbers.is_none()
            && self.where_clauses.is_empty()
    }

    /// A key naming the selection (everything but the page).
    fn selection_key(&self, resource: &str, archived_matters: bool) -> String {
        let sorted = |set: &Option<HashSet<String>>| {
            set.as_ref().map(|s| {
                let mut v: Vec<&String> = s.iter().collect();
                v.sort();
                format!("{v:?}")
            })
        };
        let sorted_ids = |set: &Option<HashSet<Uuid>>| {
            set.as_ref().map(|s| {
                let mut v: Vec<&Uuid> = s.iter().collect();
                v.sort();
                format!("{v:?}")
            })
        };
        format!(
            "{resource}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}",
            self.since,
            self.order,
            sorted_ids(&self.ids),
            sorted(&self.statuses),
            sorted_ids(&self.contact_ids),
            sorted(&self.numbers),
            archived_matters && self.include_archived,
            self.where_clauses,
        )
    }
}

/// `If-Modified-Since`: see [`wire::parse_if_modified_since`].
pub(crate) fn parse_since(s: &str) -> Result<Ms, BadQuery> {
    let t = wire::parse_if_modified_since(s)
        .ok_or_else(|| BadQuery(format!("If-Modified-Since {:?} is not a date", truncate(s))))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Ms)
}

fn parse_order(v: &str) -> Result<(String, bool), BadQuery> {
    let mut parts = v.split_whitespace();
    let field = parts
        .next()
        .ok_or_else(|| BadQuery("order needs a field".into()))?
        .to_owned();
    let desc = match parts.next().map(|s| s.to_ascii_uppercase()) {
        None => false,
        Some(s) if s == "ASC" => false,
        Some(s) if s == "DESC" => true,
        Some(s) => {
            return Err(BadQuery(format!(
                "order direction must be ASC or DESC, not {:?}",
                truncate(&s)
            )))
        }
    };
    if parts.next().is_some() {
        return Err(BadQuery("the sandbox orders by one field".into()));
    }
    Ok((field, desc))
}

/// One `Path == value` or `Path != value` condition of a `where`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    path: Vec<String>,
    negate: bool,
    value: Value,
}

/// Parses the subset of Xero's `where` language the sandbox supports:
/// conditions `Path == value` / `Path != value` joined by `AND` (or `&&`),
/// where value is `"text"`, `Guid("…")`, `true`, `false` or a number.
pub(crate) fn parse_where(v: &str) -> Result<Vec<Clause>, BadQuery> {
    let unsupported = || {
        BadQuery(format!(
            "unsupported where clause {:?}: the sandbox supports Path==\"value\", Path==Guid(\"…\"), true/false and numbers, joined by AND",
            truncate(v)
        ))
    };
    let mut out = Vec::new();
    let normalised = v.replace("&&", " AND ");
    let mut rest = normalised.as_str();
    let mut parts = Vec::new();
    loop {
        let upper = rest.to_ascii_uppercase();
        match upper.find(" AND ") {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + 5..];
            }
            None => {
                parts.push(rest);
                break;
            }
        }
    }
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lhs, rhs, negate) = if let Some(i) = part.find("!=") {
            (&part[..i], &part[i + 2..], true)
        } else if let Some(i) = part.find("==") {
            (&part[..i], &part[i + 2..], false)
        } else {
            return Err(unsupported());
        };
        let path: Vec<String> = lhs.trim().split('.').map(|s| s.trim().to_owned()).collect();
        if path
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(unsupported());
        }
        let rhs = rhs.trim();
        let value = if let Some(inner) = rhs
            .strip_prefix("Guid(\"")
            .or_else(|| rhs.strip_prefix("guid(\""))
            .and_then(|r| r.strip_suffix("\")"))
        {
            let id = Uuid::parse_str(inner).map_err(|_| unsupported())?;
            Value::String(id.to_string())
        } else if let Some(s) = rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Value::String(s.to_owned())
        } else if rhs.eq_ignore_ascii_case("true") {
            Value::Bool(true)
        } else if rhs.eq_ignore_ascii_case("false") {
            Value::Bool(false)
        } else if let Ok(n) = rhs.parse::<f64>() {
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(unsupported)?
        } else {
            return Err(unsupported());
        };
        out.push(Clause {
            path,
            negate,
            value,
        });
    }
    Ok(out)
}

fn clause_matches(record: &Value, c: &Clause) -> bool {
    let mut v = record;
    for p in &c.path {
        match v.get(p) {
            Some(x) => v = x,
            None => return c.negate,
        }
    }
    let equal = match (v, &c.value) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    };
    equal != c.negate
}

/// A key to order by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SortKey {
    Int(i64),
    Str(String),
}

/// What listing needs to know about a record beyond [`Row`].
pub(crate) trait Listable: Row + Serialize {
    fn status(&self) -> &str {
        ""
    }
    fn contact_id(&self) -> Option<Uuid> {
        None
    }
    fn number(&self) -> Option<&str> {
        None
    }
    /// Whether records of this kind can be archived (then listings look
    /// for archived ones to hide).
    const CAN_ARCHIVE: bool = false;
    /// Hidden unless `includeArchived=true`.
    fn archived(&self) -> bool {
        false
    }
    /// Deleted outright: never listed.
    fn deleted(&self) -> bool {
        false
    }
    /// The key for `order=<field>` (field in lower case); `None` if the
    /// field cannot be ordered by.
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        match field {
            "updateddateutc" => Some(SortKey::Int(self.updated())),
            _ => None,
        }
    }
}

impl Listable for Invoice {
    fn status(&self) -> &str {
        self.status
    }
    fn contact_id(&self) -> Option<Uuid> {
        Some(self.contact.id)
    }
    fn number(&self) -> Option<&str> {
        Some(&self.invoice_number)
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "date" => SortKey::Int(self.date),
            "duedate" => SortKey::Int(self.due_date),
            "invoicenumber" => SortKey::Str(self.invoice_number.clone()),
            "invoiceid" => SortKey::Str(self.id.to_string()),
            "total" => SortKey::Int(self.total),
            "amountdue" => SortKey::Int(self.amount_due),
            "status" => SortKey::Str(self.status.to_owned()),
            "type" => SortKey::Str(self.kind.to_owned()),
            "contact.name" => SortKey::Str(self.contact.name.clone()),
            _ => return None,
        })
    }
}

impl Listable for Contact {
    const CAN_ARCHIVE: bool = true;
    fn status(&self) -> &str {
        self.contact_status
    }
    fn archived(&self) -> bool {
        self.contact_status == "ARCHIVED"
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "name" => SortKey::Str(self.name.clone()),
            "contactid" => SortKey::Str(self.id.to_string()),
            "contactnumber" => SortKey::Str(self.contact_number.clone()),
            "emailaddress" => SortKey::Str(self.email_address.clone()),
            _ => return None,
        })
    }
}

impl Listable for CreditNote {
    fn status(&self) -> &str {
        self.status
    }
    fn contact_id(&self) -> Option<Uuid> {
        Some(self.contact.id)
    }
    fn number(&self) -> Option<&str> {
        Some(&self.credit_note_number)
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "date" => SortKey::Int(self.date),
            "creditnotenumber" => SortKey::Str(self.credit_note_number.clone()),
            "creditnoteid" => SortKey::Str(self.id.to_string()),
            "total" => SortKey::Int(self.total),
            _ => return None,
        })
    }
}

impl Listable for Payment {
    fn status(&self) -> &str {
        self.status
    }
    fn contact_id(&self) -> Option<Uuid> {
        self.invoice.contact.as_ref().map(|c| c.id)
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "date" => SortKey::Int(self.date),
            "amount" => SortKey::Int(self.amount),
            "paymentid" => SortKey::Str(self.id.to_string()),
            _ => return None,
        })
    }
}

impl Listable for BankTransaction {
    fn status(&self) -> &str {
        self.status
    }
    fn contact_id(&self) -> Option<Uuid> {
        Some(self.contact.id)
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "date" => SortKey::Int(self.date),
            "total" => SortKey::Int(self.total),
            "banktransactionid" => SortKey::Str(self.id.to_string()),
            _ => return None,
        })
    }
}

impl Listable for ManualJournal {
    fn status(&self) -> &str {
        self.status
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "date" => SortKey::Int(self.date),
            "manualjournalid" => SortKey::Str(self.id.to_string()),
            _ => return None,
        })
    }
}

impl Listable for Account {
    fn status(&self) -> &str {
        self.def().status
    }
    fn deleted(&self) -> bool {
        self.deleted
    }
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "code" => SortKey::Str(self.def().code.to_owned()),
            "name" => SortKey::Str(self.def().name.to_owned()),
            "type" => SortKey::Str(self.def().kind.to_owned()),
            _ => return None,
        })
    }
}

impl Listable for Item {
    fn sort_key(&self, field: &str) -> Option<SortKey> {
        let d = &super::chart::ITEMS[self.def];
        Some(match field {
            "updateddateutc" => SortKey::Int(self.updated),
            "code" => SortKey::Str(d.code.to_owned()),
            "name" => SortKey::Str(d.name.to_owned()),
            _ => return None,
        })
    }
}

/// Cached selections, newest first; entries of older data versions are
/// dropped on sight.
#[derive(Debug, Default)]
pub(crate) struct QueryCache {
    entries: Mutex<VecDeque<CacheEntry>>,
}

/// (selection key, data version, selected row indices).
type CacheEntry = (String, u64, Arc<Vec<u32>>);

const CACHE_ENTRIES: usize = 32;

impl QueryCache {
    fn get_or(
        &self,
        key: String,
        version: u64,
        make: impl FnOnce() -> Result<Vec<u32>, BadQuery>,
    ) -> Result<Arc<Vec<u32>>, BadQuery> {
        {
            let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            e.retain(|(_, v, _)| *v == version);
            if let Some((_, _, sel)) = e.iter().find(|(k, _, _)| *k == key) {
                return Ok(sel.clone());
            }
        }
        let sel = Arc::new(make()?);
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        e.push_front((key, version, sel.clone()));
        e.truncate(CACHE_ENTRIES);
        Ok(sel)
    }
}

/// The records a listing selects, as indices into `rows`, or `None` for
/// "all of them in table order".
pub(crate) fn select<T: Listable>(
    resource: &str,
    rows: &[T],
    p: &ListParams,
    cache: &QueryCache,
    version: u64,
) -> Result<Option<Arc<Vec<u32>>>, BadQuery> {
    let archived_matters = T::CAN_ARCHIVE && rows.iter().any(Listable::archived);
    if p.is_plain() && (p.include_archived || !archived_matters) {
        return Ok(None);
    }
    let order_field = match &p.order {
        Some((f, desc)) => {
            let lower = f.to_ascii_lowercase();
            if let Some(first) = rows.first() {
                if first.sort_key(&lower).is_none() {
                    return Err(BadQuery(format!(
                        "the sandbox cannot order {resource} by {:?}",
                        truncate(f)
                    )));
                }
            }
            Some((lower, *desc))
        }
        None => None,
    };
    let key = p.selection_key(resource, archived_matters);
    cache
        .get_or(key, version, || {
            let mut out: Vec<u32> = Vec::new();
            for (i, r) in rows.iter().enumerate() {
                if matches(r, p)? {
                    out.push(i as u32);
                }
            }
            if let Some((field, desc)) = order_field {
                let mut keyed: Vec<(SortKey, u32)> = out
                    .iter()
                    .map(|&i| {
                        (
                            rows[i as usize].sort_key(&field).unwrap_or(SortKey::Int(0)),
                            i,
                        )
                    })
                    .collect();
                if desc {
                    keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                } else {
                    keyed.sort();
                }
                out = keyed.into_iter().map(|(_, i)| i).collect();
            }
            Ok(out)
        })
        .map(Some)
}

fn matches<T: Listable>(r: &T, p: &ListParams) -> Result<bool, BadQuery> {
    if r.archived() && !p.include_archived {
        return Ok(false);
    }
    if let Some(since) = p.since {
        if r.updated() < since {
            return Ok(false);
        }
    }
    if let Some(ids) = &p.ids {
        if !ids.contains(&r.id()) {
            return Ok(false);
        }
    }
    if let Some(st) = &p.statuses {
        if !st.contains(r.status()) {
            return Ok(false);
        }
    }
    if let Some(c) = &p.contact_ids {
        if !r.contact_id().is_some_and(|id| c.contains(&id)) {
            return Ok(false);
        }
    }
    if let Some(n) = &p.numbers {
        if !r.number().is_some_and(|x| n.contains(x)) {
            return Ok(false);
        }
    }
    if !p.where_clauses.is_empty() {
        let v =
            serde_json::to_value(r).map_err(|e| BadQuery(format!("cannot evaluate where: {e}")))?;
        if !p.where_clauses.iter().all(|c| clause_matches(&v, c)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One page of a paged listing: the indices of its records and the
/// `pagination` object.
pub(crate) struct PageOf {
    pub indices: Vec<u32>,
    pub pagination: Pagination,
}

/// The `pagination` object.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pagination {
    pub page: u64,
    pub page_size: u64,
    pub page_count: u64,
    pub item_count: u64,
}

/// Cuts page `p.page` (default 1) out of a selection of `total` rows.
pub(crate) fn page_of(selection: Option<&[u32]>, total_rows: usize, p: &ListParams) -> PageOf {
    let item_count = selection.map_or(total_rows, <[u32]>::len);
    let size = p.page_size.max(1) as usize;
    let page = p.page.unwrap_or(1).max(1) as usize;
    let start = (page - 1).saturating_mul(size).min(item_count);
    let end = start.saturating_add(size).min(item_count);
    let indices = match selection {
        Some(sel) => sel[start..end].to_vec(),
        None => (start as u32..end as u32).collect(),
    };
    PageOf {
        indices,
        pagination: Pagination {
            page: page as u64,
            page_size: size as u64,
            page_count: item_count.div_ceil(size) as u64,
            item_count: item_count as u64,
        },
    }
}

/// Journals after `offset` (by `JournalNumber`), changed since, up to 100.
pub(crate) fn journal_page(journals: &[Journal], p: &ListParams) -> Vec<u32> {
    let mut start = usize::try_from(p.offset.max(0))
        .unwrap_or(usize::MAX)
        .min(journals.len());
    if let Some(since) = p.since {
        start = start.max(journals.partition_point(|j| j.created < since));
    }
    let mut out = Vec::with_capacity(wire::OFFSET_PAGE_SIZE);
    for (i, j) in journals.iter().enumerate().skip(start) {
        if p.payments_only && !j.is_payment() {
            continue;
        }
        out.push(i as u32);
        if out.len() == wire::OFFSET_PAGE_SIZE {
            break;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn params() {
        let p = ListParams::parse(
            &pairs(&[
                ("PAGE", "3"),
                ("pageSize", "5000"),
                ("order", "UpdatedDateUTC DESC"),
            ]),
            Some("2024-01-02T03:04:05"),
        )
        .unwrap();
        assert_eq!(p.page, Some(3));
        assert_eq!(p.page_size, 1000);
        assert_eq!(p.order, Some(("UpdatedDateUTC".into(), true)));
        assert_eq!(p.since, Some(1_704_164_645_000));
        assert!(ListParams::parse(&pairs(&[("page", "0")]), None).is_err());
        assert!(ListParams::parse(&pairs(&[("page", "x")]), None).is_err());
        assert!(ListParams::parse(&pairs(&[("order", "Date SIDEWAYS")]), None).is_err());
        assert!(ListParams::parse(&[], Some("yesterday")).is_err());
        assert!(ListParams::parse(&[], Some("Tue, 02 Jan 2024 03:04:05 GMT")).is_ok());
    }

    #[test]
    fn where_subset() {
        let c = parse_where(r#"Type=="ACCREC" AND Contact.ContactID==Guid("5cc8cf28-567e-4d43-b287-687cfcaec47c") && Status!="PAID""#).unwrap();
        assert_eq!(c.len(), 3);
        let rec = json!({"Type": "ACCREC", "Status": "AUTHORISED", "Contact": {"ContactID": "5cc8cf28-567e-4d43-b287-687cfcaec47c"}});
        assert!(c.iter().all(|c| clause_matches(&rec, c)));
        let rec2 = json!({"Type": "ACCREC", "Status": "PAID", "Contact": {"ContactID": "5cc8cf28-567e-4d43-b287-687cfcaec47c"}});
        assert!(!c.iter().all(|c| clause_matches(&rec2, c)));
        assert!(parse_where("Date >= DateTime(2020,1,1)").is_err());
        assert!(parse_where("Name.Contains(\"x\")").is_err());
    }

    #[test]
    fn paging() {
        let p = ListParams {
            page: Some(3),
            page_size: 1000,
            ..Default::default()
        };
        let pg = page_of(None, 2500, &p);
        assert_eq!(pg.indices.len(), 500);
        assert_eq!(pg.indices[0], 2000);
        assert_eq!(pg.pagination.page_count, 3);
        let p4 = ListParams { page: Some(4), ..p };
        assert!(page_of(None, 2500, &p4).indices.is_empty());
    }
}
