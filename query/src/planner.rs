//! The offline planner: a question into a [`Plan`], by matching business
//! terms (with synonyms and typos), the tenant's own names and time phrases.
//! It never guesses: a question it cannot map is declined, naming what it
//! did understand. A follow-up ("and last year?", "only Acme") refines the
//! previous plan of the conversation.

use std::collections::BTreeSet;

use std::sync::OnceLock;

use regex::Regex;
use strsim::osa_distance;
use time::Date;

use crate::plan::{Filter, Plan, Rank, RankDirection};
use crate::semantic::SemanticModel;
use crate::timephrase;
use crate::vocabulary::Vocabulary;

/// What the planner made of a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Plan {
        plan: Plan,
        /// What it understood, in words, for the explanation.
        understood: Vec<String>,
    },
    Declined {
        understood: Vec<String>,
        reason: String,
    },
}

/// The question's text, lower-cased byte for byte (ASCII only, so offsets
/// stay those of the original), with the parts already understood blanked.
struct Text {
    original: String,
    rest: String,
}

impl Text {
    fn new(question: &str) -> Text {
        let cleaned: String = question
            .chars()
            .map(|c| match c {
                '?' | '!' | ';' | '"' | '\u{201c}' | '\u{201d}' => ' ',
                c => c,
            })
            .collect();
        Text {
            rest: cleaned.to_ascii_lowercase(),
            original: cleaned,
        }
    }

    fn take(&mut self, start: usize, end: usize) {
        let blank: String = self.rest[start..end]
            .chars()
            .map(|c| " ".repeat(c.len_utf8()))
            .collect();
        self.rest.replace_range(start..end, &blank);
    }

    /// Finds `phrase` as whole words in what is left.
    fn find_phrase(&self, phrase: &str) -> Option<(usize, usize)> {
        let mut from = 0;
        while let Some(pos) = self.rest[from..].find(phrase) {
            let start = from + pos;
            let end = start + phrase.len();
            let before = self.rest[..start].chars().next_back();
            let after = self.rest[end..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary(before) && boundary(after) {
                return Some((start, end));
            }
            from = start + phrase.len().max(1);
            if from >= self.rest.len() {
                break;
            }
        }
        None
    }

    /// The words left, with their byte ranges.
    fn words(&self) -> Vec<(usize, usize, &str)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in self.rest.char_indices() {
            let part = c.is_alphanumeric() || c == '\'' || c == '-' || c == '&';
            match (part, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    out.push((s, i, &self.rest[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, self.rest.len(), &self.rest[s..]));
        }
        out
    }
}

/// Words that carry no meaning of their own in a question.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "each",
    "for",
    "from",
    "get",
    "give",
    "had",
    "has",
    "have",
    "how",
    "i",
    "in",
    "is",
    "it",
    "its",
    "list",
    "me",
    "much",
    "my",
    "of",
    "on",
    "only",
    "or",
    "our",
    "over",
    "per",
    "please",
    "show",
    "so",
    "tell",
    "than",
    "that",
    "the",
    "their",
    "them",
    "there",
    "this",
    "to",
    "total",
    "totals",
    "us",
    "was",
    "we",
    "were",
    "what",
    "what's",
    "whats",
    "which",
    "who",
    "with",
    "just",
    "did",
    "made",
    "make",
    "were",
    "been",
    "many",
    "amount",
    "value",
    "breakdown",
    "broken",
    "down",
    "split",
    "group",
    "grouped",
    "sum",
    "number",
    "overall",
    "whole",
    "entire",
    "period",
    "time",
    "during",
    "across",
    "between",
    "compare",
    "ever",
    "far",
    "date",
    "ones",
    "those",
    "these",
    "them",
    "each",
    "every",
    "see",
    "want",
    "know",
    "would",
    "like",
    "let",
    "now",
    "currently",
    "current",
    "right",
    "again",
    "instead",
    "then",
    "also",
    "same",
    "but",
    "ranked",
    "rank",
    "ranking",
    "sorted",
    "order",
    "ordered",
    "biggest",
    "largest",
    "highest",
    "most",
    "best",
    "smallest",
    "lowest",
    "least",
    "worst",
    "top",
    "bottom",
    "first",
    "last",
];

const TAX_PHRASES: &[&str] = &[
    "gst-inclusive",
    "gst inclusive",
    "vat-inclusive",
    "vat inclusive",
    "tax-inclusive",
    "including tax",
    "including gst",
    "including vat",
    "incl tax",
    "incl. tax",
    "inc tax",
    "inc gst",
    "incl gst",
    "with tax",
    "tax inclusive",
    "gross of tax",
    "with gst",
];

const CURRENCY_NAMES: &[(&str, &str)] = &[
    ("us dollars", "USD"),
    ("us dollar", "USD"),
    ("euros", "EUR"),
    ("euro", "EUR"),
    ("pounds", "GBP"),
    ("sterling", "GBP"),
    ("australian dollars", "AUD"),
    ("aussie dollars", "AUD"),
    ("new zealand dollars", "NZD"),
    ("canadian dollars", "CAD"),
    ("yen", "JPY"),
];

const FOLLOW_UP_STARTS: &[&str] = &[
    "and ",
    "what about",
    "how about",
    "only ",
    "just ",
    "same ",
    "now ",
    "but ",
    "then ",
    "instead",
    "for ",
    "break it down",
    "split it",
    "by ",
    "excluding",
    "in ",
];

/// The words of time phrases, whose typos ("quater", "febuary") the
/// phrases' patterns would otherwise miss.
const TIME_WORDS: &[&str] = &[
    "quarter",
    "quarters",
    "month",
    "months",
    "year",
    "years",
    "financial",
    "fiscal",
    "previous",
    "january",
    "february",
    "march",
    "april",
    "august",
    "september",
    "october",
    "november",
    "december",
    "between",
    "since",
    "yesterday",
    "today",
];

/// The question with typos of time words corrected (one edit, words of five
/// letters or more), so "last quater" reads as "last quarter".
fn correct_time_words(question: &str) -> String {
    let mut out = String::with_capacity(question.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let lower = word.to_ascii_lowercase();
        let fixed = (lower.len() >= 5 && !TIME_WORDS.contains(&lower.as_str()))
            .then(|| {
                TIME_WORDS
                    .iter()
                    .find(|t| t.len().abs_diff(lower.len()) <= 1 && osa_distance(&lower, t) == 1)
            })
            .flatten();
        match fixed {
            Some(t) => out.push_str(t),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in question.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Maps a question onto a plan, or declines it.
pub fn plan(
    model: &SemanticModel,
    vocabulary: &Vocabulary,
    question: &str,
    as_of: Date,
    previous: Option<&Plan>,
) -> Planned {
    let mut text = Text::new(&correct_time_words(question));
    let mut understood = Vec::new();
    let mut plan = Plan::default();

    let decline =
        |understood: Vec<String>, reason: String| Planned::Declined { understood, reason };
    // Every relative period is counted from the as-of date.
    if let Err(e) = crate::plan::check_as_of(as_of) {
        return decline(understood, format!("I can't answer as of that date: {e}."));
    }

    // Comparison first: "vs last year" must not be read as the period.
    if let Some(found) = timephrase::find_comparison(&text.rest) {
        plan.compare = Some(found.value);
        understood.push(format!(
            "compared with {}",
            match found.value {
                crate::plan::Comparison::PreviousYear => "the same period a year earlier",
                crate::plan::Comparison::PreviousPeriod => "the previous period",
            }
        ));
        text.take(found.start, found.end);
    }
    let mut period_named = false;
    // "and the month before?": the period before the previous question's.
    if let Some(previous_period) = previous.and_then(|p| p.period.as_ref()) {
        static BEFORE: OnceLock<Regex> = OnceLock::new();
        let before = BEFORE.get_or_init(|| {
            Regex::new(r"\bthe\s+(?:month|quarter|year|period|week|day)\s+before\b")
                .unwrap_or_else(|e| panic!("{e}"))
        });
        if let Some(m) = before.find(&text.rest) {
            // The previous plan is stored (and may be an LLM's): its period
            // may have no period before it.
            match timephrase::previous(previous_period, crate::plan::Comparison::PreviousPeriod) {
                Ok(mut period) => {
                    period.label = m.as_str().to_owned();
                    understood.push(understood_period(&period));
                    plan.period = Some(period);
                    period_named = true;
                }
                Err(e) => {
                    return decline(understood, format!("I can't answer for that period: {e}."))
                }
            }
            text.take(m.start(), m.end());
        }
    }
    if plan.period.is_some() {
        // Named already.
    } else if let Some(found) = timephrase::find_period(&text.rest, as_of, vocabulary.fy_start) {
        text.take(found.start, found.end);
        match found.value {
            Ok(period) => {
                understood.push(understood_period(&period));
                plan.period = Some(period);
                period_named = true;
            }
            Err(e) => return decline(understood, format!("I can't answer for that period: {e}.")),
        }
    }
    if text.find_phrase("all time").is_some() || text.find_phrase("ever").is_some() {
        period_named = true;
    }
    for phrase in TAX_PHRASES {
        if let Some((s, e)) = text.find_phrase(phrase) {
            plan.including_tax = true;
            understood.push("including tax".to_owned());
            text.take(s, e);
            break;
        }
    }
    for phrase in [
        "excluding tax",
        "excl tax",
        "ex tax",
        "before tax",
        "net of tax",
    ] {
        if let Some((s, e)) = text.find_phrase(phrase) {
            text.take(s, e);
        }
    }
    // A currency, by code or by name.
    let mut currency = None;
    for code in &vocabulary.currencies {
        if let Some((s, e)) = text.find_phrase(&code.to_ascii_lowercase()) {
            currency = Some((code.clone(), s, e));
            break;
        }
    }
    if currency.is_none() {
        for (name, code) in CURRENCY_NAMES {
            if let Some((s, e)) = text.find_phrase(name) {
                currency = Some(((*code).to_owned(), s, e));
                break;
            }
        }
    }
    if let Some((code, s, e)) = currency {
        text.take(s, e);
        understood.push(format!("in {code} (documents in {code} only)"));
        plan.currency = Some(code);
    }
    let share = [
        "share",
        "percentage",
        "percent",
        "% of",
        "proportion",
        "contribution",
    ]
    .iter()
    .any(|w| text.find_phrase(w).is_some() || (w.starts_with('%') && text.rest.contains(w)));
    if share {
        plan.share_of_total = true;
        understood.push("share of the total".to_owned());
    }
    let rank = find_rank(&mut text);

    // The tenant's own names.
    // Words the model uses for its own terms: an account called "Sales"
    // needs the word "account" beside it to be read as the account.
    let reserved: BTreeSet<String> = model
        .metrics
        .values()
        .flat_map(|m| m.synonyms.iter())
        .chain(model.dimensions.values().flat_map(|d| d.synonyms.iter()))
        .map(|s| s.to_ascii_lowercase())
        .collect();

    // Cash paid or received, however it is put ("which suppliers did we pay
    // the most cash to", "cash we collected").
    let mut cash_metrics = Vec::new();
    if let Some((cs, ce)) = text.find_phrase("cash") {
        let words = text.words();
        let verb = words.iter().find_map(|(s, e, w)| {
            if w.starts_with("pay") || *w == "paid" || w.starts_with("spent") {
                Some(("cash_paid", *s, *e))
            } else if w.starts_with("receiv") || w.starts_with("collect") || w.starts_with("got") {
                Some(("cash_received", *s, *e))
            } else {
                None
            }
        });
        if let Some((metric, s, e)) = verb {
            text.take(s, e);
            text.take(cs, ce);
            cash_metrics.push(metric.to_owned());
        }
    }

    let entities = match find_entities(&mut text, vocabulary, &reserved) {
        Ok(e) => e,
        Err(reason) => return decline(understood, reason),
    };

    // Metrics, then dimensions.
    let mut metrics = cash_metrics;
    for m in find_terms(
        &mut text,
        model.metrics.iter().map(|(k, m)| (k, &m.synonyms)),
        |_, _| true,
    ) {
        if !metrics.contains(&m) {
            metrics.push(m);
        }
    }
    // A dimension's word groups the answer only where the question asks for
    // a breakdown ("by customer", "top customers", "which items", "monthly"),
    // not where it is the subject ("how much do customers owe us").
    let lower = text.original.to_ascii_lowercase();
    let dimensions = find_terms(
        &mut text,
        model.dimensions.iter().map(|(k, d)| (k, &d.synonyms)),
        |start, synonym| asks_for_breakdown(&lower, start, synonym),
    );
    let mut dimensions: Vec<String> = dimensions;
    for (word, dim) in [
        ("trend", "month"),
        ("over time", "month"),
        ("monthly", "month"),
    ] {
        if let Some((s, e)) = text.find_phrase(word) {
            text.take(s, e);
            if !dimensions.iter().any(|d| d == dim) {
                dimensions.push(dim.to_owned());
            }
        }
    }

    // Subjects that are not in an organisation's invoices and ledger.
    const NOT_IN_THE_BOOKS: &[&str] = &[
        "payroll",
        "salary",
        "salaries",
        "wages",
        "employee",
        "employees",
        "staff",
        "headcount",
        "budget",
        "budgets",
        "forecast",
        "forecasts",
        "inventory",
        "stock",
        "weather",
        "timesheet",
        "timesheets",
    ];
    let rest_words: Vec<String> = text
        .words()
        .into_iter()
        .map(|(_, _, w)| w.to_owned())
        .collect();
    if let Some(w) = rest_words
        .iter()
        .find(|w| NOT_IN_THE_BOOKS.contains(&w.as_str()))
    {
        return decline(
            understood,
            format!("I can't answer that: there is no {w} data in these books (invoices, bills, payments, credit notes and the ledger)."),
        );
    }
    // "per staff member", "by region": a breakdown we do not have (a word
    // after "by" that is not a dimension's, nor followed by one: "by
    // invoice status" is by status).
    let original_words: Vec<String> = text
        .original
        .to_ascii_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let dimension_word = |w: &str| {
        model
            .dimensions
            .values()
            .any(|d| d.synonyms.iter().any(|s| s.split(' ').any(|p| p == w)))
    };
    let unknown_breakdown = original_words.windows(3).find(|p| {
        matches!(p[0].as_str(), "per" | "by" | "each")
            && rest_words.contains(&p[1])
            && p[1].len() >= 3
            && p[1].chars().all(char::is_alphabetic)
            && !STOPWORDS.contains(&p[1].as_str())
            && !dimension_word(&p[1])
            && !dimension_word(&p[2])
    });
    if let Some(pair) = unknown_breakdown {
        let known: Vec<&str> = model.dimensions.keys().map(String::as_str).collect();
        return decline(
            understood,
            format!(
                "I can't break answers down by \"{}\" yet; I can by {}.",
                pair[1],
                known.join(", ")
            ),
        );
    }

    // What is left that we did not understand: a capitalised word the
    // asker wrote (a name we do not know) is a reason to decline.
    let unknown: Vec<String> = text
        .words()
        .into_iter()
        .filter(|(s, _, w)| {
            let original = &text.original[*s..];
            let capital = original.chars().next().is_some_and(char::is_uppercase);
            capital && *s > 0 && !STOPWORDS.contains(w) && !w.chars().all(|c| c.is_ascii_digit())
        })
        .map(|(s, e, _)| text.original[s..e].to_owned())
        .collect();

    let follow_up = previous.is_some_and(|_| {
        let lower = text_start(question);
        metrics.is_empty() || FOLLOW_UP_STARTS.iter().any(|p| lower.starts_with(p))
    });

    // A count asked of documents or contacts ("how many suppliers sent us
    // bills") is not also their amount, unless the question names it.
    {
        let lower = question.to_ascii_lowercase();
        let says = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        let asked: Vec<String> = metrics.clone();
        let counts = |names: &[&str]| asked.iter().any(|m| names.contains(&m.as_str()));
        if counts(&["bill_count", "distinct_suppliers"])
            && !says(&[
                "spend", "spent", "expense", "cost", "purchase", "amount", "value", "total",
            ])
        {
            metrics.retain(|m| m != "expenses");
        }
        if counts(&["invoice_count", "distinct_customers"])
            && !says(&[
                "revenue", "sales", "turnover", "income", "amount", "value", "total",
            ])
        {
            metrics.retain(|m| m != "revenue");
        }
        // "how many chairs did we sell": units of an item.
        let item_asked = entities.iter().any(|f| f.dimension == "item");
        if lower.trim_start().starts_with("how many") && item_asked && metrics == ["revenue"] {
            metrics = vec!["units_sold".to_owned()];
        }
    }
    // "how many units did we sell": units, not also revenue, unless the
    // question names revenue in so many words.
    if metrics.iter().any(|m| m == "units_sold") {
        let lower = question.to_ascii_lowercase();
        let named = ["revenue", "sales", "turnover", "income", "takings"]
            .iter()
            .any(|w| lower.contains(w));
        if !named {
            metrics.retain(|m| m != "revenue");
        }
    }

    if follow_up {
        if let Some(prev) = previous {
            let mut next = prev.clone();
            if !metrics.is_empty() {
                next.metrics = metrics.clone();
            }
            if let Some(period) = &plan.period {
                // "and the second quarter?" after a question about 2025
                // means 2025's: a month or quarter named without its year
                // takes the year of the previous question's period.
                let rebased = prev
                    .period
                    .as_ref()
                    .filter(|_| named_without_year(&period.label))
                    .and_then(|p| in_year(period, p.start.year(), as_of));
                next.period = Some(rebased.unwrap_or_else(|| period.clone()));
            }
            if plan.compare.is_some() {
                next.compare = plan.compare;
            }
            if plan.currency.is_some() {
                next.currency = plan.currency.clone();
            }
            if plan.including_tax {
                next.including_tax = true;
            }
            if share {
                next.share_of_total = true;
            }
            if rank.is_some() {
                next.rank = rank;
            }
            for d in &dimensions {
                if !next.dimensions.contains(d) {
                    next.dimensions.push(d.clone());
                }
            }
            for f in entities {
                next.filters.retain(|old| old.dimension != f.dimension);
                next.dimensions.retain(|d| *d != f.dimension);
                next.filters.push(f);
            }
            understood.insert(0, "a follow-up of the previous question".to_owned());
            if !unknown.is_empty() {
                return decline(understood, unknown_reason(&unknown));
            }
            return finish(model, vocabulary, next, understood);
        }
    }

    plan.metrics = metrics;
    plan.rank = rank;
    plan.dimensions = dimensions;
    // A dimension that has a filter is not also a grouping, unless asked "by" it.
    for f in &entities {
        let by = model
            .dimension(&f.dimension)
            .map(|d| {
                d.synonyms
                    .iter()
                    .any(|s| question.to_ascii_lowercase().contains(&format!("by {s}")))
            })
            .unwrap_or(false);
        if !by {
            plan.dimensions.retain(|d| *d != f.dimension);
        }
    }
    plan.filters = entities;

    if plan.metrics.is_empty() {
        // "top customers", "best selling items": the metric they rank by.
        let account_kind = plan
            .filters
            .iter()
            .filter(|f| f.dimension == "account")
            .flat_map(|f| f.values.iter())
            .find_map(|name| vocabulary.accounts.iter().find(|a| &a.name == name))
            .map(|a| a.account_type.as_str());
        let implied = if let Some(kind) = account_kind {
            match kind {
                "BANK" => Some("bank_movement"),
                "REVENUE" | "SALES" | "OTHERINCOME" => Some("revenue"),
                _ => Some("expenses"),
            }
        } else if plan.dimensions.iter().any(|d| d == "supplier")
            || plan.filters.iter().any(|f| f.dimension == "supplier")
        {
            Some("expenses")
        } else if plan
            .dimensions
            .iter()
            .chain(plan.filters.iter().map(|f| &f.dimension))
            .any(|d| d == "customer" || d == "item")
        {
            Some("revenue")
        } else {
            None
        };
        match implied {
            Some(m)
                if plan.rank.is_some()
                    || !plan.filters.is_empty()
                    || !plan.dimensions.is_empty() =>
            {
                plan.metrics.push(m.to_owned());
            }
            _ => {
                let known: Vec<&str> = model.metrics.values().map(|m| m.label.as_str()).collect();
                let reason = if unknown.is_empty() {
                    format!(
                        "I can't answer that yet: I found no measure I know in the question. I can answer about {}.",
                        known.join(", ")
                    )
                } else {
                    unknown_reason(&unknown)
                };
                return decline(understood, reason);
            }
        }
    }
    if !unknown.is_empty() {
        return decline(understood, unknown_reason(&unknown));
    }
    if !period_named && plan.period.is_none() && plan.compare.is_some() {
        return decline(
            understood,
            "I can't compare without a period: name one, e.g. \"this quarter vs last year\"."
                .to_owned(),
        );
    }
    finish(model, vocabulary, plan, understood)
}

/// Whether a period's words name a month or quarter without a year ("the
/// second quarter", "in March"), as opposed to "last quarter" or "Q2 2025".
/// How a period the question named is said back in the answer's "understood".
fn understood_period(period: &crate::plan::Period) -> String {
    format!(
        "period {} ({} to {})",
        period.label,
        crate::plan::iso_date::format(period.start),
        crate::plan::iso_date::format(period.end)
    )
}

fn named_without_year(label: &str) -> bool {
    static NAMED: OnceLock<Regex> = OnceLock::new();
    let named = NAMED.get_or_init(|| {
        Regex::new(r"^(?:(?:in|for|during|of|on)\s+)?(?:the\s+)?(?:q[1-4]|(?:first|second|third|fourth)\s+quarter|january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)$")
            .unwrap_or_else(|e| panic!("{e}"))
    });
    named.is_match(label.trim())
}

/// The same days of `year`, never past the as-of date.
fn in_year(period: &crate::plan::Period, year: i32, as_of: Date) -> Option<crate::plan::Period> {
    let shift = year - period.start.year();
    let start = timephrase::shift_years(period.start, shift)?;
    // A period to date (cut at the as-of date) covers its whole unit in a past year.
    let end = if period.end == as_of {
        let months = match period.label.to_ascii_lowercase() {
            l if l.contains("quarter") || l.starts_with('q') || l.contains(" q") => 3,
            _ => 1,
        };
        timephrase::months_before(start, -months)?.previous_day()?
    } else {
        timephrase::shift_years(period.end, shift)?
    };
    (start <= as_of).then(|| crate::plan::Period {
        start,
        end: end.min(as_of),
        label: format!("{} {year}", period.label),
    })
}

fn text_start(question: &str) -> String {
    question.trim_start().to_ascii_lowercase()
}

fn unknown_reason(unknown: &[String]) -> String {
    format!(
        "I can't answer that yet: I don't know {} in these books (not a customer, supplier, item, account or measure I know).",
        unknown
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Checks the plan against the model and the tenant's books, and describes it.
fn finish(
    model: &SemanticModel,
    vocabulary: &Vocabulary,
    mut plan: Plan,
    mut understood: Vec<String>,
) -> Planned {
    let mut seen = BTreeSet::new();
    plan.metrics.retain(|m| seen.insert(m.clone()));
    for m in &plan.metrics {
        if let Some(metric) = model.metric(m) {
            understood.push(format!("measure {}", metric.label.to_lowercase()));
            if let Some(required) = &metric.requires_account_type {
                if !vocabulary.account_types.contains(required) {
                    return Planned::Declined {
                        understood,
                        reason: format!(
                            "I can't work out {} for these books: the chart of accounts has no {required} account.",
                            metric.label.to_lowercase()
                        ),
                    };
                }
            }
            if plan.dimensions.is_empty() && plan.filters.is_empty() {
                plan.dimensions = metric.default_dimensions.clone();
            }
        }
    }
    for d in &plan.dimensions {
        understood.push(format!("by {d}"));
    }
    for f in &plan.filters {
        understood.push(format!("{} is {}", f.dimension, f.values.join(" or ")));
    }
    if let Some(rank) = plan.rank {
        understood.push(format!(
            "{} {}",
            match rank.direction {
                RankDirection::Top => "top",
                RankDirection::Bottom => "bottom",
            },
            rank.n
        ));
    }
    Planned::Plan { plan, understood }
}

/// A count in a question ("top 10", "which five"), when it fits a rank.
fn number_word(word: &str) -> Option<u32> {
    timephrase::number_word(word).and_then(|n| u32::try_from(n).ok())
}

/// "top 10", "bottom 5", "biggest customer" (one), "largest suppliers" (ten),
/// "which 5 customers owe us the most", "the 3 products with the fewest units".
fn find_rank(text: &mut Text) -> Option<Rank> {
    let words: Vec<(usize, usize, String)> = text
        .words()
        .into_iter()
        .map(|(s, e, w)| (s, e, w.to_owned()))
        .collect();
    let (i, direction) = words.iter().enumerate().find_map(|(i, (_, _, w))| {
        // "highest first" orders the rows; it does not keep one.
        if words.get(i + 1).is_some_and(|(_, _, n)| n == "first") {
            return None;
        }
        let d = match w.as_str() {
            "top" | "biggest" | "largest" | "highest" | "best" | "most" | "leading" => {
                RankDirection::Top
            }
            "bottom" | "smallest" | "lowest" | "worst" | "least" | "fewest" => {
                RankDirection::Bottom
            }
            _ => return None,
        };
        Some((i, d))
    })?;
    let (s, e) = (words[i].0, words[i].1);
    let next = words.get(i + 1).map(|(_, _, w)| w.as_str());
    // The count: right after the word, or "which 5 …", "the 3 …" elsewhere.
    let counted = next
        .and_then(number_word)
        .map(|n| (n, words[i + 1].0, words[i + 1].1))
        .or_else(|| {
            words.windows(3).find_map(|w| {
                let n = number_word(&w[1].2)?;
                let quantifier = matches!(w[0].2.as_str(), "which" | "the" | "our" | "my" | "what");
                let noun = w[2].2.chars().all(|c| c.is_alphabetic());
                (quantifier && noun && (1..=1000).contains(&n)).then_some((n, w[1].0, w[1].1))
            })
        });
    let n = match counted {
        Some((n, ns, ne)) => {
            text.take(ns, ne);
            n.clamp(1, 1000)
        }
        // A singular noun after it asks for one; a plural (or nothing) for ten.
        None => {
            let plural = next.is_some_and(|n| n.ends_with('s') && n != "sales" && n != "business");
            if plural || next.is_none() {
                10
            } else {
                1
            }
        }
    };
    text.take(s, e);
    Some(Rank { direction, n })
}

/// Generic words of business names, never enough to identify one.
const NAME_NOISE: &[&str] = &[
    "ltd", "limited", "group", "co", "&", "and", "the", "nz", "inc", "llc", "company", "holdings",
    "trust", "partners", "services",
];

/// Customers, suppliers, items and accounts named in the question, as filters.
fn find_entities(
    text: &mut Text,
    vocabulary: &Vocabulary,
    reserved: &BTreeSet<String>,
) -> Result<Vec<Filter>, String> {
    let mut filters: Vec<Filter> = Vec::new();
    let add = |filters: &mut Vec<Filter>, dimension: &str, value: String| {
        if let Some(f) = filters.iter_mut().find(|f| f.dimension == dimension) {
            if !f.values.contains(&value) {
                f.values.push(value);
            }
        } else {
            filters.push(Filter {
                dimension: dimension.to_owned(),
                values: vec![value],
            });
        }
    };

    // Contacts: the whole name, or a part of it (two words or more, or one
    // distinctive word) that names exactly one contact.
    let index = vocabulary.contact_index();
    // Longest names first, so "Kauri Traders NZ Ltd" wins over "Kauri Traders Ltd".
    for contact in &index.longest_first {
        if let Some((s, e)) = text.find_phrase(&contact.lower) {
            text.take(s, e);
            add(&mut filters, contact.dimension, contact.name.clone());
        }
    }
    // Partial names: the longest run of words that starts a contact's name.
    let words: Vec<(usize, usize, String)> = text
        .words()
        .into_iter()
        .map(|(s, e, w)| (s, e, w.to_owned()))
        .collect();
    let mut i = 0;
    while i < words.len() {
        let mut matched = None;
        for len in (1..=4.min(words.len() - i)).rev() {
            let phrase: Vec<&str> = words[i..i + len]
                .iter()
                .map(|(_, _, w)| w.as_str())
                .collect();
            if len == 1
                && (phrase[0].len() < 4
                    || NAME_NOISE.contains(&phrase[0])
                    || STOPWORDS.contains(&phrase[0]))
            {
                continue;
            }
            let prefix = phrase.join(" ");
            let hits = index.starting_with(&prefix);
            if hits.is_empty() {
                continue;
            }
            // Only the one part of the question that names it: a common word
            // such as "summit" alone must name exactly one contact.
            let distinct: BTreeSet<&str> = hits.iter().map(|c| c.name.as_str()).collect();
            if distinct.len() == 1 {
                // "Pacific Consulting Group" is not "Pacific Plumbing Ltd":
                // a capitalised word right after the part that differs from
                // the name's next word means another name.
                let next_word = words.get(i + len).filter(|(s, _, _)| {
                    text.original[*s..]
                        .chars()
                        .next()
                        .is_some_and(char::is_uppercase)
                });
                let name_next = hits[0].lower[prefix.len()..].split_whitespace().next();
                let other_name = match (next_word, name_next) {
                    (Some((_, _, w)), Some(n)) => w != n,
                    _ => false,
                };
                if !other_name {
                    matched = Some((len, hits[0].name.clone(), hits[0].dimension));
                    break;
                }
                continue;
            }
            if len >= 2 || is_name_trigger(&words, i) {
                let mut names: Vec<&str> = distinct.into_iter().collect();
                names.truncate(5);
                return Err(format!(
                    "\"{prefix}\" could be any of {}: which one?",
                    names.join(", ")
                ));
            }
        }
        if let Some((len, name, dimension)) = matched {
            let (s, e) = (words[i].0, words[i + len - 1].1);
            text.take(s, e);
            add(&mut filters, dimension, name);
            i += len;
        } else {
            i += 1;
        }
    }

    // Items: by name (whole words) or by code as the asker wrote it.
    for item in &vocabulary.items {
        if let Some(name) = &item.name {
            let lower = name.to_ascii_lowercase();
            let bare = lower.split(" (").next().unwrap_or(&lower).to_owned();
            let plural = format!("{bare}s");
            for candidate in [lower.clone(), bare, plural] {
                if candidate.len() >= 4 {
                    if let Some((s, e)) = text.find_phrase(&candidate) {
                        text.take(s, e);
                        add(&mut filters, "item", name.clone());
                        break;
                    }
                }
            }
        }
        let code = item.code.to_ascii_lowercase();
        if let Some((s, e)) = text.find_phrase(&code) {
            if text.original.get(s..e) == Some(item.code.as_str())
                || preceded_by(text, s, &["item", "product", "sku", "code"])
            {
                text.take(s, e);
                add(
                    &mut filters,
                    "item",
                    item.name.clone().unwrap_or_else(|| item.code.clone()),
                );
            }
        }
    }

    // Accounts: by name; a name that is also a business term ("Sales")
    // only with the word "account" beside it.
    for account in &vocabulary.accounts {
        let lower = account.name.to_ascii_lowercase();
        let mut spans = Vec::new();
        if lower.len() >= 4 && !reserved.contains(&lower) && !STOPWORDS.contains(&lower.as_str()) {
            for phrase in [
                format!("the {lower} account"),
                format!("{lower} account"),
                lower.clone(),
            ] {
                if let Some(span) = text.find_phrase(&phrase) {
                    spans.push(span);
                    break;
                }
            }
        }
        for phrase in [format!("{lower} account"), format!("account {lower}")] {
            if let Some(span) = text.find_phrase(&phrase) {
                spans.push(span);
            }
        }
        if let Some(code) = &account.code {
            if let Some(span) = text.find_phrase(&format!("account {}", code.to_ascii_lowercase()))
            {
                spans.push(span);
            }
        }
        if let Some((s, e)) = spans.first().copied() {
            text.take(s, e);
            add(&mut filters, "account", account.name.clone());
        }
    }
    Ok(filters)
}

/// Words that, just before a dimension's word, ask for a breakdown by it.
const BREAKDOWN_TRIGGERS: &[&str] = &[
    "by",
    "per",
    "each",
    "every",
    "which",
    "what",
    "top",
    "bottom",
    "biggest",
    "largest",
    "best",
    "worst",
    "smallest",
    "highest",
    "lowest",
    "most",
    "least",
    "across",
    "breakdown",
    "split",
    "and",
    "leading",
    "main",
    "key",
    "all",
];

/// Whether the dimension word at `start` asks for a breakdown: an adjective
/// of time ("monthly"), a trigger among the two words before it ("by",
/// "top 10", "which"), or "breakdown" right after it.
fn asks_for_breakdown(lower: &str, start: usize, synonym: &str) -> bool {
    if synonym.ends_with("ly")
        || synonym == "annual"
        || synonym.starts_with("per ")
        || synonym.starts_with("each ")
        || synonym.contains(" by ")
    {
        return true;
    }
    let before: Vec<&str> = lower[..start]
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty() && !matches!(*w, "our" | "the" | "my" | "of" | "10" | "5"))
        .collect();
    let near = before.iter().rev().take(2);
    let triggered = near
        .clone()
        .any(|w| BREAKDOWN_TRIGGERS.contains(w) || w.chars().all(|c| c.is_ascii_digit()));
    let after = lower[start + synonym.len().min(lower.len() - start)..].trim_start();
    triggered || after.starts_with("breakdown") || after.starts_with("split") || start == 0
}

fn is_name_trigger(words: &[(usize, usize, String)], i: usize) -> bool {
    i > 0
        && matches!(
            words[i - 1].2.as_str(),
            "for" | "from" | "only" | "to" | "customer" | "supplier" | "client" | "vendor" | "just"
        )
}

fn preceded_by(text: &Text, start: usize, words: &[&str]) -> bool {
    let before = text.rest[..start].trim_end();
    words.iter().any(|w| before.ends_with(w))
}

/// Terms (metrics or dimensions) named in the question, in the order they
/// appear: whole phrases first (longest first), then single words with a
/// typo or two.
fn find_terms<'a>(
    text: &mut Text,
    terms: impl Iterator<Item = (&'a String, &'a Vec<String>)>,
    accept: impl Fn(usize, &str) -> bool,
) -> Vec<String> {
    let mut synonyms: Vec<(&String, &String)> = Vec::new();
    for (key, list) in terms {
        for s in list {
            synonyms.push((key, s));
        }
    }
    synonyms.sort_by_key(|(_, s)| std::cmp::Reverse(s.len()));
    let mut found: Vec<(usize, String)> = Vec::new();
    for (key, synonym) in &synonyms {
        while let Some((s, e)) = text.find_phrase(synonym) {
            text.take(s, e);
            if accept(s, synonym) {
                found.push((s, (*key).clone()));
            }
        }
    }
    // Typos: a word of five letters or more within one edit (two from eight)
    // of a one-word synonym, and not a word in its own right.
    let words: Vec<(usize, usize, String)> = text
        .words()
        .into_iter()
        .map(|(s, e, w)| (s, e, w.to_owned()))
        .collect();
    for (s, e, word) in words {
        if word.len() < 5 || STOPWORDS.contains(&word.as_str()) {
            continue;
        }
        let allowed = if word.len() >= 8 { 2 } else { 1 };
        // Optimal string alignment: edits and swaps of neighbours, which
        // is what typing gets wrong, without the cost of the full distance.
        let best = synonyms
            .iter()
            .filter(|(_, syn)| {
                !syn.contains(' ') && syn.len() >= 5 && syn.len().abs_diff(word.len()) <= allowed
            })
            .map(|(key, syn)| (osa_distance(&word, syn), *key))
            .filter(|(d, _)| *d <= allowed)
            .min_by_key(|(d, _)| *d);
        // An inflection of a term ("received" for "receive", "invoices" for
        // "invoiced") is another word, not a typo.
        let stem = |w: &str| {
            let w = w
                .strip_suffix("ed")
                .or_else(|| w.strip_suffix("es"))
                .unwrap_or(w);
            w.strip_suffix('s')
                .or_else(|| w.strip_suffix('d'))
                .or_else(|| w.strip_suffix('e'))
                .unwrap_or(w)
                .to_owned()
        };
        let best = best.filter(|(_, key)| {
            !synonyms
                .iter()
                .any(|(k, syn)| k == key && !syn.contains(' ') && stem(syn) == stem(&word))
        });
        let best = best.filter(|_| {
            !synonyms.iter().any(|(_, syn)| {
                let (short, long) = if syn.len() < word.len() {
                    (syn.as_str(), word.as_str())
                } else {
                    (word.as_str(), syn.as_str())
                };
                long.strip_prefix(short).is_some_and(|rest| {
                    matches!(rest, "s" | "d" | "ed" | "es" | "ing" | "r" | "er")
                })
            })
        });
        if let Some((_, key)) = best {
            text.take(s, e);
            if accept(s, &word) {
                found.push((s, key.clone()));
            }
        }
    }
    found.sort_by_key(|(s, _)| *s);
    let mut out: Vec<String> = Vec::new();
    for (_, key) in found {
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::{Account, Item};
    use time::macros::date;

    const AS_OF: Date = date!(2026 - 08 - 15);

    fn vocabulary() -> Vocabulary {
        Vocabulary {
            customers: vec![
                "Kauri Traders Ltd".to_owned(),
                "Kauri Design Group".to_owned(),
                "Summit Foods Limited".to_owned(),
            ],
            suppliers: vec!["Harbour Supplies & Co".to_owned()],
            accounts: vec![
                Account {
                    code: Some("200".to_owned()),
                    name: "Sales".to_owned(),
                    account_type: "REVENUE".to_owned(),
                },
                Account {
                    code: Some("469".to_owned()),
                    name: "Rent".to_owned(),
                    account_type: "OVERHEADS".to_owned(),
                },
                Account {
                    code: Some("090".to_owned()),
                    name: "Business Bank Account".to_owned(),
                    account_type: "BANK".to_owned(),
                },
            ],
            items: vec![Item {
                code: "DESK".to_owned(),
                name: Some("Standing Desk".to_owned()),
            }],
            currencies: vec!["NZD".to_owned(), "USD".to_owned()],
            base_currency: Some("NZD".to_owned()),
            ..Vocabulary::default()
        }
    }

    fn planned(question: &str, previous: Option<&Plan>) -> Plan {
        let model = SemanticModel::builtin().expect("model");
        match plan(&model, &vocabulary(), question, AS_OF, previous) {
            Planned::Plan { plan, .. } => plan,
            Planned::Declined { reason, .. } => panic!("{question}: declined: {reason}"),
        }
    }

    fn declined(question: &str) -> String {
        let model = SemanticModel::builtin().expect("model");
        match plan(&model, &vocabulary(), question, AS_OF, None) {
            Planned::Plan { plan, .. } => panic!("{question}: planned {plan:?}"),
            Planned::Declined { reason, .. } => reason,
        }
    }

    #[test]
    fn top_customers_by_revenue_last_quarter() {
        let p = planned("Top 10 customers by revenue last quarter", None);
        assert_eq!(p.metrics, ["revenue"]);
        assert_eq!(p.dimensions, ["customer"]);
        assert_eq!(
            p.rank,
            Some(Rank {
                direction: RankDirection::Top,
                n: 10
            })
        );
        let period = p.period.expect("period");
        assert_eq!(
            (period.start, period.end),
            (date!(2026 - 04 - 01), date!(2026 - 06 - 30))
        );
    }

    #[test]
    fn typos_synonyms_names_and_currencies() {
        let p = planned("revnue by custmer this year", None);
        assert_eq!(
            (p.metrics.as_slice(), p.dimensions.as_slice()),
            (&["revenue".to_owned()][..], &["customer".to_owned()][..])
        );
        let p = planned("How much did Summit Foods spend with us in USD?", None);
        assert_eq!(
            p.filters,
            vec![Filter {
                dimension: "customer".to_owned(),
                values: vec!["Summit Foods Limited".to_owned()]
            }]
        );
        assert_eq!(p.currency.as_deref(), Some("USD"));
        let p = planned("turnover of DESK including tax", None);
        assert_eq!(p.filters[0].values, ["Standing Desk"]);
        assert!(p.including_tax);
        let p = planned("how many invoices did we send last month", None);
        assert_eq!(p.metrics, ["invoice_count"]);
    }

    #[test]
    fn follow_ups_refine_the_previous_plan() {
        let first = planned("revenue by month this year", None);
        let p = planned("and last year?", Some(&first));
        assert_eq!(p.metrics, ["revenue"]);
        assert_eq!(p.dimensions, ["month"]);
        assert_eq!(p.period.expect("period").start, date!(2025 - 01 - 01));
        let p = planned("only Kauri Traders", Some(&first));
        assert_eq!(p.filters[0].values, ["Kauri Traders Ltd"]);
        let p = planned("what about expenses?", Some(&first));
        assert_eq!(p.metrics, ["expenses"]);
    }

    #[test]
    fn a_dimension_word_groups_only_when_a_breakdown_is_asked() {
        let p = planned(
            "How much do customers owe us, and how much is overdue?",
            None,
        );
        assert_eq!(p.metrics, ["receivables", "overdue_receivables"]);
        assert!(p.dimensions.is_empty(), "{:?}", p.dimensions);
        let p = planned("which customers owe us the most", None);
        assert_eq!(p.dimensions, ["customer"]);
        let p = planned("customers by revenue this year", None);
        assert_eq!(p.dimensions, ["customer"]);
        let p = planned("sales by customer and month this year", None);
        assert_eq!(p.dimensions, ["customer", "month"]);
    }

    #[test]
    fn a_follow_up_names_a_quarter_of_the_previous_question_s_year() {
        let first = planned("What were total sales in the first quarter of 2025?", None);
        let p = planned("and the second quarter?", Some(&first));
        let period = p.period.expect("period");
        assert_eq!(
            (period.start, period.end),
            (date!(2025 - 04 - 01), date!(2025 - 06 - 30))
        );
        let p = planned("and in March?", Some(&first));
        assert_eq!(p.period.expect("period").start, date!(2025 - 03 - 01));
        let p = planned("and last quarter?", Some(&first));
        assert_eq!(p.period.expect("period").start, date!(2026 - 04 - 01));
        let p = planned("How much did Summit Foods pay us last year?", None);
        assert_eq!(p.metrics, ["cash_received"]);
        let p = planned("outstanding invoices by customer", None);
        assert_eq!(p.metrics, ["receivables"]);
        let p = planned(
            "Show revenue by customer for July 2026, highest first",
            None,
        );
        assert_eq!(p.rank, None);
        let p = planned("How many Standing Desks did we sell in 2025?", None);
        assert_eq!(p.metrics, ["units_sold"]);
        let p = planned("How many suppliers sent us bills this year?", None);
        assert_eq!(p.metrics, ["distinct_suppliers"]);
        let p = planned("How much GST-inclusive revenue did we make in June?", None);
        assert!(p.including_tax);
    }

    #[test]
    fn typos_of_time_words_are_corrected() {
        assert_eq!(
            correct_time_words("top 5 suplier by expenses last quater"),
            "top 5 suplier by expenses last quarter"
        );
        assert_eq!(
            correct_time_words("revenue in Febuary"),
            "revenue in february"
        );
        let p = planned("top 5 suplier by expenses last quater", None);
        assert_eq!(p.period.expect("period").start, date!(2026 - 04 - 01));
        assert_eq!(p.dimensions, ["supplier"]);
        assert!(declined("revenue next month").contains("after the as-of date"));
    }

    #[test]
    fn counts_verbs_accounts_and_periods_before() {
        let p = planned("how many units did we sell last month", None);
        assert_eq!(p.metrics, ["units_sold"]);
        let p = planned("How much have we sold this month so far?", None);
        assert_eq!(p.metrics, ["revenue"]);
        let p = planned("revenue by invoice status this year", None);
        assert_eq!(p.dimensions, ["status"]);
        assert!(declined("How much did Summit Traders Group buy from us?").contains("Traders"));
        let p = planned("Which 5 customers owe us the most?", None);
        assert_eq!(
            p.rank,
            Some(Rank {
                direction: RankDirection::Top,
                n: 5
            })
        );
        let p = planned("the 3 products with the fewest units sold in 2025", None);
        assert_eq!(
            p.rank,
            Some(Rank {
                direction: RankDirection::Bottom,
                n: 3
            })
        );
        assert_eq!(p.metrics, ["units_sold"]);
        let p = planned(
            "Which 3 suppliers did we pay the most cash to last quarter?",
            None,
        );
        assert_eq!(p.metrics, ["cash_paid"]);
        assert_eq!(p.dimensions, ["supplier"]);
        let p = planned("how many bills did we receive this quarter?", None);
        assert_eq!(p.metrics, ["bill_count"]);
        let p = planned("How much did we spend on Rent last year?", None);
        assert_eq!(p.metrics, ["expenses"]);
        assert_eq!(p.filters[0].values, ["Rent"]);
        let p = planned("movement in the Business Bank Account this year", None);
        assert_eq!(p.metrics, ["bank_movement"]);
        let first = planned("expenses last month", None);
        let p = planned("and the month before?", Some(&first));
        assert!(p.dimensions.is_empty(), "{:?}", p.dimensions);
        assert_eq!(p.period.expect("period").start, date!(2026 - 06 - 01));
        let p = planned(
            "sales in the last 30 days compared to the previous 30 days",
            None,
        );
        assert_eq!(p.compare, Some(crate::plan::Comparison::PreviousPeriod));
    }

    #[test]
    fn what_it_cannot_map_is_declined_not_guessed() {
        assert!(declined("Show me payroll costs per staff member").contains("payroll"));
        assert!(declined("revenue by region this year").contains("region"));
        assert!(declined("what's the weather in Auckland").contains("can't"));
        assert!(declined("revenue from Narnia last year").contains("Narnia"));
        assert!(declined("revenue from kauri last year").contains("which one"));
        assert!(declined("revenue in 2031").contains("after the as-of date"));
    }

    #[test]
    fn dates_at_the_calendar_s_edge_are_declined() {
        let model = SemanticModel::builtin().expect("model");
        let question = "revenue between 0000-01-02 and 9999-12-31 versus the previous period";
        for as_of in [date!(9999 - 12 - 31), AS_OF] {
            match plan(&model, &vocabulary(), question, as_of, None) {
                Planned::Plan { plan, .. } => panic!("{as_of}: planned {plan:?}"),
                Planned::Declined { reason, .. } => {
                    assert!(reason.contains("out of range"), "{as_of}: {reason}")
                }
            }
        }
        // "and the month before?" after a stored plan whose period has none before it.
        let previous = Plan {
            metrics: vec!["revenue".to_owned()],
            period: Some(crate::plan::Period {
                start: Date::MIN,
                end: AS_OF,
                label: String::new(),
            }),
            ..Plan::default()
        };
        match plan(
            &model,
            &vocabulary(),
            "and the month before?",
            AS_OF,
            Some(&previous),
        ) {
            Planned::Plan { plan, .. } => panic!("planned {plan:?}"),
            Planned::Declined { reason, .. } => {
                assert!(reason.contains("out of range"), "{reason}")
            }
        }
    }
}
