//! The tenant's own names, read from its transformed dataset: customers,
//! suppliers, accounts, items and currencies (so "only Acme" and "revenue
//! from consulting" resolve to filters), and the organisation's financial
//! year and base currency. Names only: never amounts.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloud::ports::warehouse::{QueryRequest, QueryResult, Warehouse};
use cloud::ports::Credential;
use cloud::CloudResult;
use serde_json::Value;
use time::Month;

/// How many names of each kind are read at most.
pub const MAX_NAMES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub code: Option<String>,
    pub name: String,
    pub account_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub code: String,
    pub name: Option<String>,
}

/// A tenant's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    pub customers: Vec<String>,
    pub suppliers: Vec<String>,
    pub accounts: Vec<Account>,
    pub items: Vec<Item>,
    pub currencies: Vec<String>,
    pub statuses: Vec<String>,
    pub account_types: BTreeSet<String>,
    /// The first month of the financial year.
    pub fy_start: Month,
    pub base_currency: Option<String>,
    /// Customers and suppliers in lower case, built on first use.
    pub contacts: OnceLock<Arc<ContactIndex>>,
}

/// A customer or supplier, as the planner matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedContact {
    pub lower: String,
    pub name: String,
    /// `customer` or `supplier`.
    pub dimension: &'static str,
}

/// The tenant's contacts, lower-cased once: longest names first (a whole
/// name in the question), and sorted (names starting with a phrase).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactIndex {
    pub longest_first: Vec<IndexedContact>,
    sorted: Vec<IndexedContact>,
}

impl ContactIndex {
    /// Contacts whose lower-case name starts with the words of `prefix`
    /// (`prefix` followed by a space, or all of it).
    pub fn starting_with(&self, prefix: &str) -> Vec<&IndexedContact> {
        let from = self.sorted.partition_point(|c| c.lower.as_str() < prefix);
        self.sorted[from..]
            .iter()
            .take_while(|c| c.lower.starts_with(prefix))
            .filter(|c| c.lower.len() == prefix.len() || c.lower[prefix.len()..].starts_with(' '))
            .collect()
    }
}

impl Default for Vocabulary {
    fn default() -> Self {
        Vocabulary {
            customers: Vec::new(),
            suppliers: Vec::new(),
            accounts: Vec::new(),
            items: Vec::new(),
            currencies: Vec::new(),
            statuses: [
                "DRAFT",
                "SUBMITTED",
                "AUTHORISED",
                "PAID",
                "VOIDED",
                "DELETED",
            ]
            .map(str::to_owned)
            .to_vec(),
            account_types: BTreeSet::new(),
            fy_start: Month::January,
            base_currency: None,
            contacts: OnceLock::new(),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Vocabulary {
    /// Reads the names from the tenant's transformed dataset, as the tenant.
    pub async fn load(
        warehouse: &dyn Warehouse,
        credential: &Credential,
        dataset: &str,
        timeout: Duration,
    ) -> CloudResult<Vocabulary> {
        let run = |sql: &'static str| {
            let request = QueryRequest {
                dataset: dataset.to_owned(),
                sql: sql.to_owned(),
                max_rows: MAX_NAMES,
                timeout,
                max_bytes: None,
            };
            async move { warehouse.query(credential, &request).await }
        };
        let contacts: QueryResult = run("SELECT DISTINCT c.name, i.type FROM fct_invoices AS i \
             JOIN dim_contacts AS c ON c.contact_id = i.contact_id \
             WHERE i.status IN ('AUTHORISED', 'PAID') ORDER BY c.name")
        .await?;
        let accounts = run("SELECT code, name, type FROM dim_accounts ORDER BY code").await?;
        let items = run("SELECT code, CASE WHEN is_unknown THEN NULL ELSE name END AS name FROM dim_items ORDER BY code").await?;
        let currencies = run("SELECT currency_code, COUNT(*) AS documents, \
             SUM(CASE WHEN currency_rate = 1 THEN 1 ELSE 0 END) AS at_par \
             FROM fct_invoices GROUP BY currency_code ORDER BY at_par DESC, documents DESC")
        .await?;
        // Months from the start of the financial year on belong to the next
        // fiscal year (named by the year it ends in); the first such month starts it.
        let fiscal = run(
            "SELECT month, MAX(fiscal_year - year) AS ahead FROM dim_date GROUP BY month ORDER BY month",
        )
        .await?;

        let mut vocabulary = Vocabulary::default();
        let mut customers = BTreeSet::new();
        let mut suppliers = BTreeSet::new();
        for row in &contacts.rows {
            if let (Some(name), Some(kind)) =
                (row.first().and_then(text), row.get(1).and_then(text))
            {
                if kind == "ACCREC" {
                    customers.insert(name);
                } else {
                    suppliers.insert(name);
                }
            }
        }
        vocabulary.customers = customers.into_iter().collect();
        vocabulary.suppliers = suppliers.into_iter().collect();
        for row in &accounts.rows {
            if let Some(name) = row.get(1).and_then(text) {
                let account_type = row.get(2).and_then(text).unwrap_or_default();
                vocabulary.account_types.insert(account_type.clone());
                vocabulary.accounts.push(Account {
                    code: row.first().and_then(text),
                    name,
                    account_type,
                });
            }
        }
        for row in &items.rows {
            if let Some(code) = row.first().and_then(text) {
                vocabulary.items.push(Item {
                    code,
                    name: row.get(1).and_then(text),
                });
            }
        }
        vocabulary.currencies = currencies
            .rows
            .iter()
            .filter_map(|r| r.first().and_then(text))
            .collect();
        vocabulary.base_currency = vocabulary.currencies.first().cloned();
        vocabulary.currencies.sort();
        let fy_start = fiscal
            .rows
            .iter()
            .find(|r| r.get(1).and_then(integer) == Some(1))
            .and_then(|r| r.first().and_then(integer))
            .and_then(|m| u8::try_from(m).ok())
            .and_then(|m| Month::try_from(m).ok());
        vocabulary.fy_start = fy_start.unwrap_or(Month::January);
        Ok(vocabulary)
    }

    /// The contacts as the planner matches them (a customer who is also a
    /// supplier counts as a customer).
    pub fn contact_index(&self) -> Arc<ContactIndex> {
        self.contacts
            .get_or_init(|| {
                let customers: std::collections::HashSet<&String> = self.customers.iter().collect();
                let mut all: Vec<IndexedContact> = self
                    .customers
                    .iter()
                    .map(|n| (n, "customer"))
                    .chain(
                        self.suppliers
                            .iter()
                            .filter(|n| !customers.contains(n))
                            .map(|n| (n, "supplier")),
                    )
                    .map(|(name, dimension)| IndexedContact {
                        lower: name.to_ascii_lowercase(),
                        name: name.clone(),
                        dimension,
                    })
                    .collect();
                let mut sorted = all.clone();
                sorted.sort_by(|a, b| a.lower.cmp(&b.lower));
                all.sort_by_key(|c| std::cmp::Reverse(c.lower.len()));
                Arc::new(ContactIndex {
                    longest_first: all,
                    sorted,
                })
            })
            .clone()
    }

    /// The names a dimension's values come from (`vocabulary:` in the model).
    pub fn values(&self, kind: &str) -> Vec<String> {
        match kind {
            "customers" => self.customers.clone(),
            "suppliers" => self.suppliers.clone(),
            "accounts" => self.accounts.iter().map(|a| a.name.clone()).collect(),
            "items" => self
                .items
                .iter()
                .map(|i| i.name.clone().unwrap_or_else(|| i.code.clone()))
                .collect(),
            "currencies" => self.currencies.clone(),
            "statuses" => self.statuses.clone(),
            _ => Vec::new(),
        }
    }
}
