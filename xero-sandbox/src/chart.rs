//! Fixed reference data of the demo company: chart of accounts, tax rates,
//! currencies, items and the words names are made of. Every organisation
//! uses the same tables; ids are drawn per organisation.

/// One account of the chart.
#[derive(Debug)]
pub(crate) struct AccountDef {
    pub code: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub class: &'static str,
    pub tax_type: &'static str,
    pub system: &'static str,
    pub status: &'static str,
    /// For bank accounts: the currency (`None` = base currency).
    pub bank_currency: Option<&'static str>,
    pub bank: bool,
}

const fn acct(
    code: &'static str,
    name: &'static str,
    kind: &'static str,
    class: &'static str,
    tax_type: &'static str,
) -> AccountDef {
    AccountDef {
        code,
        name,
        kind,
        class,
        tax_type,
        system: "",
        status: "ACTIVE",
        bank_currency: None,
        bank: false,
    }
}

/// The chart. Indices into it are used throughout (see the `A_*` constants).
pub(crate) const CHART: &[AccountDef] = &[
    AccountDef {
        bank: true,
        ..acct("090", "Business Bank Account", "BANK", "ASSET", "NONE")
    },
    AccountDef {
        bank: true,
        ..acct("091", "Business Savings Account", "BANK", "ASSET", "NONE")
    },
    AccountDef {
        bank: true,
        bank_currency: Some("USD"),
        ..acct("092", "USD Business Account", "BANK", "ASSET", "NONE")
    },
    acct("200", "Sales", "REVENUE", "REVENUE", "OUTPUT2"),
    acct("260", "Other Revenue", "REVENUE", "REVENUE", "OUTPUT2"),
    acct("270", "Interest Income", "REVENUE", "REVENUE", "NONE"),
    acct(
        "310",
        "Cost of Goods Sold",
        "DIRECTCOSTS",
        "EXPENSE",
        "INPUT2",
    ),
    acct("400", "Advertising", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct("404", "Bank Fees", "OVERHEADS", "EXPENSE", "NONE"),
    acct("408", "Cleaning", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct(
        "412",
        "Consulting & Accounting",
        "EXPENSE",
        "EXPENSE",
        "INPUT2",
    ),
    acct("420", "Entertainment", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct("429", "General Expenses", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct("433", "Insurance", "EXPENSE", "EXPENSE", "INPUT2"),
    acct(
        "445",
        "Light, Power, Heating",
        "OVERHEADS",
        "EXPENSE",
        "INPUT2",
    ),
    acct("453", "Office Expenses", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct(
        "461",
        "Printing & Stationery",
        "OVERHEADS",
        "EXPENSE",
        "INPUT2",
    ),
    acct("469", "Rent", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct(
        "473",
        "Repairs and Maintenance",
        "OVERHEADS",
        "EXPENSE",
        "INPUT2",
    ),
    acct(
        "489",
        "Telephone & Internet",
        "OVERHEADS",
        "EXPENSE",
        "INPUT2",
    ),
    acct("493", "Travel - National", "OVERHEADS", "EXPENSE", "INPUT2"),
    acct(
        "494",
        "Travel - International",
        "OVERHEADS",
        "EXPENSE",
        "NONE",
    ),
    AccountDef {
        system: "DEBTORS",
        ..acct("610", "Accounts Receivable", "CURRENT", "ASSET", "NONE")
    },
    acct("620", "Prepayments", "CURRENT", "ASSET", "NONE"),
    acct("710", "Office Equipment", "FIXED", "ASSET", "INPUT2"),
    AccountDef {
        system: "CREDITORS",
        ..acct("800", "Accounts Payable", "CURRLIAB", "LIABILITY", "NONE")
    },
    AccountDef {
        system: "GST",
        ..acct("820", "GST", "CURRLIAB", "LIABILITY", "NONE")
    },
    acct("880", "Owner A Drawings", "EQUITY", "EQUITY", "NONE"),
    acct(
        "881",
        "Owner A Funds Introduced",
        "EQUITY",
        "EQUITY",
        "NONE",
    ),
    AccountDef {
        system: "RETAINEDEARNINGS",
        ..acct("960", "Retained Earnings", "EQUITY", "EQUITY", "NONE")
    },
    AccountDef {
        status: "ARCHIVED",
        ..acct("470", "Staff Training", "OVERHEADS", "EXPENSE", "INPUT2")
    },
];

pub(crate) const A_BANK: usize = 0;
pub(crate) const A_USD_BANK: usize = 2;
pub(crate) const A_SALES: usize = 3;
pub(crate) const A_OTHER_REVENUE: usize = 4;
pub(crate) const A_INTEREST: usize = 5;
pub(crate) const A_COGS: usize = 6;
/// Expense accounts bills and spend money use (indices into [`CHART`]).
pub(crate) const EXPENSE_ACCOUNTS: &[usize] =
    &[6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
pub(crate) const A_AR: usize = 22;
pub(crate) const A_AP: usize = 25;
pub(crate) const A_GST: usize = 26;
pub(crate) const A_DRAWINGS: usize = 27;
pub(crate) const A_FUNDS: usize = 28;

/// A tax rate.
#[derive(Debug)]
pub(crate) struct TaxDef {
    pub tax_type: &'static str,
    pub name: &'static str,
    pub report_tax_type: &'static str,
    /// Rate in hundredths of a percent (15% = 1500).
    pub rate_bp: i64,
    pub status: &'static str,
}

pub(crate) const TAXES: &[TaxDef] = &[
    TaxDef {
        tax_type: "OUTPUT2",
        name: "GST on Income",
        report_tax_type: "OUTPUT",
        rate_bp: 1500,
        status: "ACTIVE",
    },
    TaxDef {
        tax_type: "INPUT2",
        name: "GST on Expenses",
        report_tax_type: "INPUT",
        rate_bp: 1500,
        status: "ACTIVE",
    },
    TaxDef {
        tax_type: "NONE",
        name: "No GST",
        report_tax_type: "NONE",
        rate_bp: 0,
        status: "ACTIVE",
    },
    TaxDef {
        tax_type: "ZERORATED",
        name: "Zero Rated",
        report_tax_type: "OUTPUT",
        rate_bp: 0,
        status: "ACTIVE",
    },
    TaxDef {
        tax_type: "GSTONIMPORTS",
        name: "GST on Imports",
        report_tax_type: "GSTONIMPORTS",
        rate_bp: 1500,
        status: "ACTIVE",
    },
    TaxDef {
        tax_type: "EXEMPTOUTPUT",
        name: "Exempt Output (legacy)",
        report_tax_type: "EXEMPTOUTPUT",
        rate_bp: 0,
        status: "ARCHIVED",
    },
];

/// The tax rate of `tax_type`.
pub(crate) fn tax(tax_type: &str) -> &'static TaxDef {
    TAXES
        .iter()
        .find(|t| t.tax_type == tax_type)
        .unwrap_or(&TAXES[2])
}

/// Currencies: code, description, units of it per unit of the base
/// currency (NZD) on average.
pub(crate) const CURRENCIES: &[(&str, &str, f64)] = &[
    ("NZD", "New Zealand Dollar", 1.0),
    ("USD", "United States Dollar", 0.60),
    ("AUD", "Australian Dollar", 0.92),
    ("GBP", "British Pound", 0.47),
    ("EUR", "Euro", 0.55),
];

pub(crate) const BASE_CURRENCY: &str = "NZD";

/// An item (product or service).
#[derive(Debug)]
pub(crate) struct ItemDef {
    pub code: &'static str,
    pub name: &'static str,
    pub sale_cents: i64,
    pub purchase_cents: i64,
    pub sold: bool,
    pub purchased: bool,
}

const fn item(
    code: &'static str,
    name: &'static str,
    sale_cents: i64,
    purchase_cents: i64,
) -> ItemDef {
    ItemDef {
        code,
        name,
        sale_cents,
        purchase_cents,
        sold: sale_cents > 0,
        purchased: purchase_cents > 0,
    }
}

pub(crate) const ITEMS: &[ItemDef] = &[
    item("BOOK", "Fiction Books", 1995, 1100),
    item("DESK", "Standing Desk", 89900, 52000),
    item("CHAIR", "Ergonomic Chair", 45900, 27500),
    item("LAMP", "Desk Lamp", 6450, 3100),
    item("CABLE", "USB-C Cable", 1999, 450),
    item("MON27", "27in Monitor", 54900, 38900),
    item("CONS-HR", "Consulting (hour)", 18000, 0),
    item("INST", "Installation", 25000, 0),
    item("SUPP-M", "Support (month)", 9900, 0),
    item("TRAIN", "Training Session", 120000, 0),
    item("PAPER", "Paper (box)", 0, 2450),
    item("TONER", "Toner Cartridge", 0, 8900),
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Aroha", "Ben", "Chloe", "Daniel", "Emma", "Finn", "Grace", "Hemi", "Isla", "Jack", "Kiri",
    "Liam", "Mia", "Noah", "Olivia", "Pita", "Quinn", "Ruby", "Sam", "Tama", "Una", "Vera",
    "Wiremu", "Xavier", "Yasmin", "Zoe",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Anderson", "Brown", "Clarke", "Davies", "Edwards", "Fraser", "Green", "Harris", "Ihaka",
    "Jones", "King", "Lee", "Martin", "Ngata", "O'Brien", "Patel", "Robinson", "Smith", "Taylor",
    "Walker", "Williams", "Wilson", "Young", "Zhang",
];

pub(crate) const COMPANY_WORDS: &[&str] = &[
    "Kauri",
    "Harbour",
    "Summit",
    "Fern",
    "Pacific",
    "Southern",
    "Coastal",
    "Alpine",
    "Tui",
    "Kea",
    "Totara",
    "Rimu",
    "Pohutukawa",
    "Beacon",
    "Orchard",
    "Meridian",
    "Northern",
    "Silver",
    "Riverstone",
    "Bluebird",
];

pub(crate) const COMPANY_KINDS: &[&str] = &[
    "Traders",
    "Consulting",
    "Design",
    "Foods",
    "Logistics",
    "Supplies",
    "Builders",
    "Media",
    "Electrical",
    "Plumbing",
    "Motors",
    "Labs",
    "Studio",
    "Outfitters",
    "Partners",
];

pub(crate) const COMPANY_SUFFIXES: &[&str] = &["Ltd", "Limited", "& Co", "Group", "NZ Ltd"];

pub(crate) const CITIES: &[(&str, &str)] = &[
    ("Auckland", "Auckland"),
    ("Wellington", "Wellington"),
    ("Christchurch", "Canterbury"),
    ("Hamilton", "Waikato"),
    ("Tauranga", "Bay of Plenty"),
    ("Dunedin", "Otago"),
    ("Napier", "Hawke's Bay"),
    ("Nelson", "Nelson"),
];

pub(crate) const STREETS: &[&str] = &[
    "Queen Street",
    "Lambton Quay",
    "Colombo Street",
    "Victoria Street",
    "Cameron Road",
    "George Street",
    "Marine Parade",
    "Trafalgar Street",
];

/// Tracking categories: name and options (the last option of "Region" is
/// archived).
pub(crate) const TRACKING: &[(&str, &[&str])] = &[
    (
        "Region",
        &["North", "South", "East", "West", "Central (old)"],
    ),
    ("Department", &["Sales", "Services", "Operations"]),
];
