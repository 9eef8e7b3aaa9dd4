//! Why a query was refused: a typed error with a stable code and a bounded,
//! human message naming the offending piece.

/// The longest excerpt of the input a refusal quotes (in characters).
const SNIPPET_MAX_CHARS: usize = 80;

/// Why the guard refused a query. [`Refusal::code`] is stable (for the API,
/// logs and tests); the message names the offending piece, quoted through
/// [`snippet`] so it is bounded and escapes control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the query is {len} bytes long; at most {max} are accepted")]
    TooLong { len: usize, max: usize },

    #[error("the SQL does not parse: {0}")]
    Parse(String),

    #[error("no statement was given")]
    Empty,

    #[error("exactly one statement is accepted; {0} were given")]
    MultipleStatements(usize),

    #[error("only a query (SELECT) is accepted, not {0}")]
    NotAQuery(String),

    #[error("SELECT … INTO writes a table; only reading is accepted ({0})")]
    SelectInto(String),

    #[error(
        "{0} is outside the tenant's dataset; only the tenant's transformed dataset may be read"
    )]
    ForeignDataset(String),

    #[error("{0} names another project; only the tenant's own project may qualify a table")]
    ForeignProject(String),

    #[error("{0} is not a table of the tenant's dataset nor a CTE in scope")]
    UnknownTable(String),

    #[error("{0} is an information schema outside the tenant's dataset, or a view of it that is not offered")]
    InformationSchema(String),

    #[error("{0} is a wildcard table; name each table")]
    WildcardTable(String),

    #[error("{0} is a table function; only tables of the tenant's dataset may be read")]
    TableFunction(String),

    #[error("{0} reads outside the warehouse (a file, a URL or an external source)")]
    ExternalRead(String),

    #[error("the function {0} is not on the guard's allow-list")]
    FunctionNotAllowed(String),

    #[error("the identifier {0} is not accepted (only ASCII identifiers of letters, digits and underscores name tables)")]
    InvalidIdentifier(String),

    #[error("WITH RECURSIVE is not accepted ({0})")]
    RecursiveCte(String),

    #[error("the LIMIT or OFFSET {0} is not a non-negative integer literal")]
    InvalidLimit(String),

    #[error("{0} is not supported by the guard")]
    Unsupported(String),
}

impl Refusal {
    /// The stable code of the refusal, one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLong { .. } => "too_long",
            Refusal::Parse(_) => "parse_error",
            Refusal::Empty => "empty",
            Refusal::MultipleStatements(_) => "multiple_statements",
            Refusal::NotAQuery(_) => "not_a_query",
            Refusal::SelectInto(_) => "select_into",
            Refusal::ForeignDataset(_) => "foreign_dataset",
            Refusal::ForeignProject(_) => "foreign_project",
            Refusal::UnknownTable(_) => "unknown_table",
            Refusal::InformationSchema(_) => "information_schema",
            Refusal::WildcardTable(_) => "wildcard_table",
            Refusal::TableFunction(_) => "table_function",
            Refusal::ExternalRead(_) => "external_read",
            Refusal::FunctionNotAllowed(_) => "function_not_allowed",
            Refusal::InvalidIdentifier(_) => "invalid_identifier",
            Refusal::RecursiveCte(_) => "recursive_cte",
            Refusal::InvalidLimit(_) => "invalid_limit",
            Refusal::Unsupported(_) => "unsupported_construct",
        }
    }

    /// Every code a refusal can have.
    pub const CODES: &'static [&'static str] = &[
        "too_long",
        "parse_error",
        "empty",
        "multiple_statements",
        "not_a_query",
        "select_into",
        "foreign_dataset",
        "foreign_project",
        "unknown_table",
        "information_schema",
        "wildcard_table",
        "table_function",
        "external_read",
        "function_not_allowed",
        "invalid_identifier",
        "recursive_cte",
        "invalid_limit",
        "unsupported_construct",
    ];
}

/// A piece of the input as a refusal quotes it: control and non-ASCII
/// characters escaped, at most [`SNIPPET_MAX_CHARS`] characters, marked with
/// `…` when cut, in backquotes.
pub fn snippet(piece: &str) -> String {
    let mut out = String::with_capacity(SNIPPET_MAX_CHARS + 8);
    out.push('`');
    let mut written = 0usize;
    for c in piece.chars() {
        let escaped: String = if c.is_ascii() && !c.is_ascii_control() {
            c.to_string()
        } else {
            c.escape_default().to_string()
        };
        if written + escaped.chars().count() > SNIPPET_MAX_CHARS {
            out.push('…');
            break;
        }
        written += escaped.chars().count();
        out.push_str(&escaped);
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_bounded_and_escaped() {
        let long = "x".repeat(10_000);
        let s = snippet(&long);
        assert!(s.chars().count() <= SNIPPET_MAX_CHARS + 3, "{s}");
        assert!(s.ends_with("…`"));
        assert_eq!(snippet("a\nb"), "`a\\nb`");
        assert_eq!(snippet("trаnsformed"), "`tr\\u{430}nsformed`");
    }

    #[test]
    fn every_variant_has_a_listed_code() {
        let all = [
            Refusal::TooLong { len: 1, max: 0 },
            Refusal::Parse(String::new()),
            Refusal::Empty,
            Refusal::MultipleStatements(2),
            Refusal::NotAQuery(String::new()),
            Refusal::SelectInto(String::new()),
            Refusal::ForeignDataset(String::new()),
            Refusal::ForeignProject(String::new()),
            Refusal::UnknownTable(String::new()),
            Refusal::InformationSchema(String::new()),
            Refusal::WildcardTable(String::new()),
            Refusal::TableFunction(String::new()),
            Refusal::ExternalRead(String::new()),
            Refusal::FunctionNotAllowed(String::new()),
            Refusal::InvalidIdentifier(String::new()),
            Refusal::RecursiveCte(String::new()),
            Refusal::InvalidLimit(String::new()),
            Refusal::Unsupported(String::new()),
        ];
        assert_eq!(all.len(), Refusal::CODES.len());
        for (r, code) in all.iter().zip(Refusal::CODES) {
            assert_eq!(r.code(), *code);
        }
    }
}
