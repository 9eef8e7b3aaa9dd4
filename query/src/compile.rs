//! A plan into SQL, deterministically, in the warehouse's dialect.
//!
//! Each metric is measured over one source (the first of its measures whose
//! source gives every dimension and filter the plan uses). The measures of a
//! source are computed in one pass with conditional aggregation
//! (`SUM(CASE WHEN <metric's conditions> AND <period> THEN value END)`), so a
//! comparison with an earlier period is one more column of the same scan;
//! the sources are then joined on the dimensions. Every value placed in the
//! SQL is either from the semantic model or a quoted literal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::Date;

use crate::guard::Dialect;
use crate::plan::{iso_date, Period, Plan, RankDirection};
use crate::semantic::{Aggregate, Format, Grain, Measure, Metric, SemanticModel};
use crate::timephrase;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("I don't know the measure \"{0}\"")]
    UnknownMetric(String),
    #[error("I don't know the dimension \"{0}\"")]
    UnknownDimension(String),
    #[error("{metric} can't be broken down or filtered by {dimensions}")]
    NoSource { metric: String, dimensions: String },
    #[error("{0} is only kept in the base currency")]
    BaseCurrencyOnly(String),
    #[error("{0} is a balance: it is known as of the as-of date only, not for an earlier period or by month")]
    BalanceOverTime(String),
    #[error("a comparison works over totals or non-time breakdowns, not by {0}")]
    CompareOverTime(String),
    #[error("the plan names no measure")]
    NoMetric,
    #[error("{0}")]
    AsOf(#[from] crate::plan::AsOfOutOfRange),
    /// The plan's period, or the one it is compared with, is not one to query.
    #[error("{0}")]
    Period(#[from] timephrase::PeriodError),
}

/// The SQL of a plan, and the columns it returns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub sql: String,
    /// Dimension columns first, then metric columns.
    pub dimension_columns: Vec<String>,
    pub metric_columns: Vec<String>,
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn date_literal(day: Date) -> String {
    format!("DATE '{}'", iso_date::format(day))
}

fn grain_expr(grain: Grain, date: &str, dialect: Dialect) -> String {
    match (grain, dialect) {
        (Grain::Month, Dialect::DuckDb) => format!("strftime({date}, '%Y-%m')"),
        (Grain::Month, Dialect::BigQuery) => format!("FORMAT_DATE('%Y-%m', {date})"),
        (Grain::Quarter, Dialect::DuckDb) => format!(
            "CAST(EXTRACT(YEAR FROM {date}) AS VARCHAR) || '-Q' || CAST(EXTRACT(QUARTER FROM {date}) AS VARCHAR)"
        ),
        (Grain::Quarter, Dialect::BigQuery) => format!("FORMAT_DATE('%Y-Q%Q', {date})"),
        (Grain::Year, _) => format!("EXTRACT(YEAR FROM {date})"),
    }
}

struct Chosen<'m> {
    key: String,
    metric: &'m Metric,
    measure: &'m Measure,
}

/// Compiles `plan` for `dialect`, with balances taken as of `as_of`.
pub fn compile(
    model: &SemanticModel,
    plan: &Plan,
    as_of: Date,
    dialect: Dialect,
) -> Result<Compiled, CompileError> {
    if plan.metrics.is_empty() {
        return Err(CompileError::NoMetric);
    }
    // The dates are counted with below (the comparison's period) and may
    // come from an LLM's plan: checked first, so bad ones are refused, not
    // computed with.
    crate::plan::check_as_of(as_of)?;
    if let Some(period) = &plan.period {
        timephrase::check_period(period, as_of)?;
    }
    for d in plan
        .dimensions
        .iter()
        .chain(plan.filters.iter().map(|f| &f.dimension))
    {
        if model.dimension(d).is_none() {
            return Err(CompileError::UnknownDimension(d.clone()));
        }
    }
    let needed_dims: Vec<&str> = plan
        .dimensions
        .iter()
        .chain(plan.filters.iter().map(|f| &f.dimension))
        .map(String::as_str)
        .collect();
    let time_dims: Vec<&String> = plan
        .dimensions
        .iter()
        .filter(|d| model.dimension(d).is_some_and(|d| d.grain.is_some()))
        .collect();
    if let (Some(_), Some(d)) = (plan.compare, time_dims.first()) {
        return Err(CompileError::CompareOverTime((*d).clone()));
    }

    // The base metrics to measure (formulas expanded), in a stable order.
    let mut base: Vec<String> = Vec::new();
    for name in &plan.metrics {
        let metric = model
            .metric(name)
            .ok_or_else(|| CompileError::UnknownMetric(name.clone()))?;
        let parts = match &metric.formula {
            Some(f) => model.formula_metrics(f),
            None => vec![name.clone()],
        };
        for p in parts {
            if !base.contains(&p) {
                base.push(p);
            }
        }
    }
    let mut chosen: Vec<Chosen<'_>> = Vec::new();
    for key in &base {
        let metric = model
            .metric(key)
            .ok_or_else(|| CompileError::UnknownMetric(key.clone()))?;
        if metric.balance {
            let past = plan.period.as_ref().is_some_and(|p| p.end < as_of);
            if past || !time_dims.is_empty() || plan.compare.is_some() {
                return Err(CompileError::BalanceOverTime(metric.label.clone()));
            }
        }
        let measure = metric
            .measures
            .iter()
            .find(|m| {
                needed_dims.iter().all(|d| {
                    model
                        .dimension(d)
                        .is_some_and(|dim| dim.available_on(&m.source))
                })
            })
            .ok_or_else(|| CompileError::NoSource {
                metric: metric.label.clone(),
                dimensions: needed_dims.join(", "),
            })?;
        if plan.currency.is_some()
            && (measure.value.is_none() || model.sources[&measure.source].currency.is_none())
            && metric.format == Format::Money
        {
            return Err(CompileError::BaseCurrencyOnly(metric.label.clone()));
        }
        chosen.push(Chosen {
            key: key.clone(),
            metric,
            measure,
        });
    }

    let current = plan.period.clone();
    let previous = match (&current, plan.compare) {
        (Some(p), Some(c)) => Some(timephrase::previous(p, c)?),
        _ => None,
    };

    // One CTE per source.
    let mut by_source: BTreeMap<&str, Vec<&Chosen<'_>>> = BTreeMap::new();
    for c in &chosen {
        by_source
            .entry(c.measure.source.as_str())
            .or_default()
            .push(c);
    }
    let dim_alias = |i: usize| format!("d{i}");
    let mut ctes = Vec::new();
    for (source_name, measures) in &by_source {
        let source = &model.sources[*source_name];
        let mut exprs: Vec<String> = Vec::new();
        let mut select = Vec::new();
        for (i, d) in plan.dimensions.iter().enumerate() {
            let dim = model
                .dimension(d)
                .ok_or_else(|| CompileError::UnknownDimension(d.clone()))?;
            let expr = match dim.grain {
                Some(g) => grain_expr(g, &source.date, dialect),
                None => dim.on[*source_name].clone(),
            };
            exprs.push(expr.clone());
            select.push(format!("{expr} AS {}", dim_alias(i)));
        }
        let mut conditions_any = Vec::new();
        for c in measures {
            let value = measure_value(c.measure, plan, dialect);
            let condition = c.measure.condition.replace("{as_of}", &date_literal(as_of));
            exprs.push(value.clone());
            exprs.push(condition.clone());
            let mut columns = vec![(format!("m_{}", c.key), current.as_ref())];
            if previous.is_some() {
                columns.push((format!("p_{}", c.key), previous.as_ref()));
            }
            for (column, period) in columns {
                let mut cond = format!("({condition})");
                if let (Some(p), false) = (period, c.metric.balance) {
                    let _ = write!(
                        cond,
                        " AND {} BETWEEN {} AND {}",
                        source.date,
                        date_literal(p.start),
                        date_literal(p.end)
                    );
                } else if !c.metric.balance {
                    let _ = write!(cond, " AND {} <= {}", source.date, date_literal(as_of));
                }
                select.push(format!(
                    "{} AS {column}",
                    aggregate(c.measure.aggregate, &cond, &value)
                ));
                if !conditions_any.contains(&cond) {
                    conditions_any.push(cond);
                }
            }
        }
        // The measures' conditions as one group: the filters below apply to all.
        let mut wheres = vec![format!("(({}))", conditions_any.join(") OR ("))];
        for f in &plan.filters {
            let dim = model
                .dimension(&f.dimension)
                .ok_or_else(|| CompileError::UnknownDimension(f.dimension.clone()))?;
            if let Some(expr) = dim.on.get(*source_name) {
                exprs.push(expr.clone());
                let values: Vec<String> = f.values.iter().map(|v| literal(v)).collect();
                wheres.push(format!("{expr} IN ({})", values.join(", ")));
            }
        }
        if let (Some(code), Some(column)) = (&plan.currency, &source.currency) {
            exprs.push(column.clone());
            wheres.push(format!("{column} = {}", literal(code)));
        }
        let from = with_joins(source, &exprs.join(" "));
        let mut cte = format!(
            "s_{source_name} AS (SELECT {} FROM {from} WHERE {}",
            select.join(", "),
            wheres.join(" AND ")
        );
        if !plan.dimensions.is_empty() {
            let groups: Vec<String> = (0..plan.dimensions.len()).map(dim_alias).collect();
            let _ = write!(cte, " GROUP BY {}", groups.join(", "));
        }
        cte.push(')');
        ctes.push((source_name.to_string(), cte));
    }

    // Join the sources on the dimensions.
    let dims: Vec<String> = (0..plan.dimensions.len()).map(dim_alias).collect();
    let sources: Vec<&String> = ctes.iter().map(|(s, _)| s).collect();
    let mut sql = String::from("WITH ");
    sql.push_str(
        &ctes
            .iter()
            .map(|(_, c)| c.clone())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let from_clause = if sources.len() == 1 {
        format!(" FROM s_{} AS k", sources[0])
    } else if dims.is_empty() {
        let mut f = format!(" FROM s_{}", sources[0]);
        for s in &sources[1..] {
            let _ = write!(f, " CROSS JOIN s_{s}");
        }
        f
    } else {
        let keys: Vec<String> = sources
            .iter()
            .map(|s| format!("SELECT {} FROM s_{s}", dims.join(", ")))
            .collect();
        let _ = write!(sql, ", k AS ({})", keys.join(" UNION DISTINCT "));
        let mut f = String::from(" FROM k");
        for s in &sources {
            let on: Vec<String> = dims
                .iter()
                .map(|d| format!("s_{s}.{d} IS NOT DISTINCT FROM k.{d}"))
                .collect();
            let _ = write!(f, " LEFT JOIN s_{s} ON {}", on.join(" AND "));
        }
        f
    };
    let qualify = |key: &str, prefix: &str| -> String {
        let c = chosen.iter().find(|c| c.key == key);
        let source = c.map(|c| c.measure.source.as_str()).unwrap_or_default();
        let column = if sources.len() == 1 {
            format!("k.{prefix}_{key}")
        } else {
            format!("s_{source}.{prefix}_{key}")
        };
        match c.map(|c| c.measure.aggregate) {
            Some(Aggregate::Sum | Aggregate::Count | Aggregate::CountDistinct) => {
                format!("COALESCE({column}, 0)")
            }
            _ => column,
        }
    };
    let metric_expr = |name: &str, prefix: &str| -> String {
        let metric = &model.metrics[name];
        let raw = match &metric.formula {
            Some(formula) => {
                let mut out = formula.clone();
                for part in model.formula_metrics(formula) {
                    out = replace_word(&out, &part, &qualify(&part, prefix));
                }
                format!("({out})")
            }
            None => qualify(name, prefix),
        };
        // Money to the cent (sums of converted line amounts are floats),
        // days to a tenth, counts as they are.
        match (
            metric.format,
            chosen
                .iter()
                .find(|c| c.key == name)
                .map(|c| c.measure.aggregate),
        ) {
            (Format::Days, _) => format!("ROUND({raw}, 1)"),
            (Format::Money, _) | (_, Some(Aggregate::Avg)) => format!("ROUND({raw}, 2)"),
            _ => raw,
        }
    };
    let mut select = Vec::new();
    for (i, d) in plan.dimensions.iter().enumerate() {
        let column = if sources.len() == 1 || !dims.is_empty() {
            format!("k.{}", dim_alias(i))
        } else {
            dim_alias(i)
        };
        select.push(format!("{column} AS {d}"));
    }
    let mut metric_columns = Vec::new();
    for name in &plan.metrics {
        let now = metric_expr(name, "m");
        select.push(format!("{now} AS {name}"));
        metric_columns.push(name.clone());
        if previous.is_some() {
            let before = metric_expr(name, "p");
            select.push(format!("{before} AS {name}_previous"));
            select.push(format!("{now} - {before} AS {name}_change"));
            select.push(format!(
                "ROUND(100.0 * ({now} - {before}) / NULLIF({before}, 0), 1) AS {name}_change_pct"
            ));
            metric_columns.extend([
                format!("{name}_previous"),
                format!("{name}_change"),
                format!("{name}_change_pct"),
            ]);
        }
    }
    if plan.share_of_total {
        let first = &plan.metrics[0];
        let now = metric_expr(first, "m");
        select.push(format!(
            "ROUND(100.0 * {now} / NULLIF(SUM({now}) OVER (), 0), 1) AS {first}_share_pct"
        ));
        metric_columns.push(format!("{first}_share_pct"));
    }
    let _ = write!(sql, " SELECT {}{from_clause}", select.join(", "));

    // Order: ranked by the first metric; else time ascending; else the first metric descending.
    let first = &plan.metrics[0];
    let order = if let Some(rank) = plan.rank {
        let dir = match rank.direction {
            RankDirection::Top => "DESC",
            RankDirection::Bottom => "ASC",
        };
        let mut o = format!(" ORDER BY {first} {dir} NULLS LAST");
        for d in &plan.dimensions {
            let _ = write!(o, ", {d}");
        }
        let _ = write!(o, " LIMIT {}", rank.n);
        o
    } else if !time_dims.is_empty() {
        let mut keys: Vec<String> = time_dims.iter().map(|d| (*d).clone()).collect();
        for d in &plan.dimensions {
            if !keys.contains(d) {
                keys.push(d.clone());
            }
        }
        format!(" ORDER BY {}", keys.join(", "))
    } else if !plan.dimensions.is_empty() {
        format!(
            " ORDER BY {first} DESC NULLS LAST, {}",
            plan.dimensions.join(", ")
        )
    } else {
        String::new()
    };
    sql.push_str(&order);
    Ok(Compiled {
        sql,
        dimension_columns: plan.dimensions.clone(),
        metric_columns,
    })
}

/// Whether `text` refers to a column of `alias` (`alias.` not inside another name).
fn uses_alias(text: &str, alias: &str) -> bool {
    let needle = format!("{alias}.");
    text.match_indices(&needle).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The source's FROM with the joins the expressions need, each after the
/// joins its own condition refers to.
fn with_joins(source: &crate::semantic::Source, used: &str) -> String {
    let mut needed: Vec<&str> = source
        .joins
        .keys()
        .filter(|a| uses_alias(used, a))
        .map(String::as_str)
        .collect();
    // A needed join's condition may need another join.
    loop {
        let more: Vec<&str> = source
            .joins
            .iter()
            .filter(|(a, _)| !needed.contains(&a.as_str()))
            .filter(|(a, _)| needed.iter().any(|n| uses_alias(&source.joins[*n], a)))
            .map(|(a, _)| a.as_str())
            .collect();
        if more.is_empty() {
            break;
        }
        needed.extend(more);
    }
    let mut from = source.from.clone();
    let mut emitted: Vec<&str> = Vec::new();
    while emitted.len() < needed.len() {
        let next = needed.iter().copied().find(|a| {
            !emitted.contains(a)
                && needed.iter().all(|other| {
                    other == a || emitted.contains(other) || !uses_alias(&source.joins[*a], other)
                })
        });
        // A cycle cannot be ordered; the model's check keeps them out, and
        // the rest is emitted as written rather than lost.
        let next = next.or_else(|| needed.iter().copied().find(|a| !emitted.contains(a)));
        let Some(alias) = next else { break };
        from.push(' ');
        from.push_str(&source.joins[alias]);
        emitted.push(alias);
    }
    from
}

fn measure_value(measure: &Measure, plan: &Plan, dialect: Dialect) -> String {
    if dialect == Dialect::BigQuery {
        if let Some(v) = &measure.value_bigquery {
            return v.clone();
        }
    }
    let in_document = plan.currency.is_some();
    let pick = |doc: &Option<String>, base: &Option<String>| -> Option<String> {
        if in_document {
            doc.clone().or_else(|| base.clone())
        } else {
            base.clone().or_else(|| doc.clone())
        }
    };
    if plan.including_tax {
        if let Some(v) = pick(&measure.with_tax, &measure.with_tax_base) {
            return v;
        }
    }
    pick(&measure.value, &measure.value_base).unwrap_or_else(|| "NULL".to_owned())
}

fn aggregate(aggregate: Aggregate, condition: &str, value: &str) -> String {
    match aggregate {
        Aggregate::Sum => format!("SUM(CASE WHEN {condition} THEN {value} END)"),
        Aggregate::Count => format!("COUNT(CASE WHEN {condition} THEN {value} END)"),
        Aggregate::CountDistinct => {
            format!("COUNT(DISTINCT CASE WHEN {condition} THEN {value} END)")
        }
        Aggregate::Avg => format!("AVG(CASE WHEN {condition} THEN {value} END)"),
    }
}

fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(word) {
        let before = rest[..pos].chars().next_back();
        let after = rest[pos + word.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..pos]);
        if part(before) || part(after) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[pos + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The period a plan covers, for the explanation.
pub fn describe_period(period: Option<&Period>, as_of: Date) -> String {
    match period {
        Some(p) => format!(
            "{} to {}{}",
            iso_date::format(p.start),
            iso_date::format(p.end),
            if p.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.label)
            }
        ),
        None => format!("all time to {}", iso_date::format(as_of)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{admit, GuardPolicy};
    use crate::plan::{Comparison, Filter, Rank};
    use time::macros::date;

    fn model() -> SemanticModel {
        SemanticModel::builtin().expect("model")
    }

    fn admitted(plan: &Plan, dialect: Dialect) -> String {
        let compiled = compile(&model(), plan, date!(2026 - 08 - 15), dialect).expect("compiles");
        let policy = GuardPolicy::new("transformed_acme", None, 1000);
        match admit(&compiled.sql, dialect, &policy) {
            Ok(a) => a.sql,
            Err(r) => panic!("guard refused {}: {r}", compiled.sql),
        }
    }

    fn quarter() -> Period {
        Period {
            start: date!(2026 - 04 - 01),
            end: date!(2026 - 06 - 30),
            label: "last quarter".to_owned(),
        }
    }

    #[test]
    fn every_metric_alone_and_by_each_dimension_passes_the_guard_in_both_dialects() {
        let model = model();
        for dialect in [Dialect::DuckDb, Dialect::BigQuery] {
            for metric in model.metrics.keys() {
                let plan = Plan {
                    metrics: vec![metric.clone()],
                    period: if model.metrics[metric].balance {
                        None
                    } else {
                        Some(quarter())
                    },
                    ..Plan::default()
                };
                admitted(&plan, dialect);
                for dim in model.dimensions.keys() {
                    let plan = Plan {
                        dimensions: vec![dim.clone()],
                        ..plan.clone()
                    };
                    match compile(&model, &plan, date!(2026 - 08 - 15), dialect) {
                        Ok(_) => {
                            admitted(&plan, dialect);
                        }
                        Err(CompileError::NoSource { .. } | CompileError::BalanceOverTime(_)) => {}
                        Err(e) => panic!("{metric} by {dim}: {e}"),
                    }
                }
            }
        }
    }

    #[test]
    fn comparisons_shares_formulas_and_filters_compile() {
        let plan = Plan {
            metrics: vec!["net_revenue".to_owned(), "average_invoice_value".to_owned()],
            dimensions: vec!["customer".to_owned()],
            filters: vec![Filter {
                dimension: "customer".to_owned(),
                values: vec!["O'Brien & Co".to_owned()],
            }],
            period: Some(quarter()),
            compare: Some(Comparison::PreviousYear),
            rank: Some(Rank {
                direction: RankDirection::Top,
                n: 5,
            }),
            share_of_total: true,
            currency: Some("USD".to_owned()),
            including_tax: false,
        };
        let sql = admitted(&plan, Dialect::DuckDb);
        assert!(sql.contains("'O''Brien & Co'"), "{sql}");
        // Several measures' conditions are one group the filters apply to.
        let compiled =
            compile(&model(), &plan, date!(2026 - 08 - 15), Dialect::DuckDb).expect("sql");
        assert!(
            compiled.sql.contains(") AND c.name IN ('O''Brien & Co')"),
            "{}",
            compiled.sql
        );
        assert!(sql.contains("DATE '2025-04-01'"), "{sql}");
        assert!(sql.contains("LIMIT 5"), "{sql}");
    }

    #[test]
    fn a_join_comes_after_the_join_its_condition_refers_to() {
        // Payments by customer: the contact join refers to the invoice join.
        let plan = Plan {
            metrics: vec!["cash_received".to_owned()],
            dimensions: vec!["customer".to_owned()],
            period: Some(quarter()),
            ..Plan::default()
        };
        let sql = admitted(&plan, Dialect::DuckDb);
        let invoices = sql.find("JOIN fct_invoices AS i").expect("invoice join");
        let contacts = sql.find("JOIN dim_contacts AS c").expect("contact join");
        assert!(invoices < contacts, "{sql}");
        assert!(uses_alias("x AND i.type = 1", "i"));
        assert!(!uses_alias("sub_total_bi.x", "i"));
    }

    #[test]
    fn balances_refuse_past_periods_and_time_grains() {
        let plan = Plan {
            metrics: vec!["receivables".to_owned()],
            period: Some(quarter()),
            ..Plan::default()
        };
        let e = compile(&model(), &plan, date!(2026 - 08 - 15), Dialect::DuckDb).expect_err("past");
        assert!(matches!(e, CompileError::BalanceOverTime(_)));
    }

    fn compared(start: Date, end: Date) -> Plan {
        Plan {
            metrics: vec!["revenue".to_owned()],
            period: Some(Period {
                start,
                end,
                label: String::new(),
            }),
            compare: Some(Comparison::PreviousPeriod),
            ..Plan::default()
        }
    }

    #[test]
    fn a_comparison_whose_earlier_period_leaves_the_calendar_is_refused_not_a_panic() {
        // "revenue between 0000-01-02 and 9999-12-31 versus the previous
        // period" as of 9999-12-31: the period before underflowed.
        let plan = compared(date!(0000 - 01 - 02), date!(9999 - 12 - 31));
        let e = compile(&model(), &plan, date!(9999 - 12 - 31), Dialect::DuckDb)
            .expect_err("out of range");
        assert!(e.to_string().contains("out of range"), "{e}");
        // An as-of date in range, and an LLM's period from the first day there is.
        let plan = compared(Date::MIN, date!(2026 - 08 - 15));
        let e = compile(&model(), &plan, date!(2026 - 08 - 15), Dialect::DuckDb)
            .expect_err("out of range");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn a_plan_s_period_must_start_before_it_ends_and_end_by_the_as_of_date() {
        let as_of = date!(2026 - 08 - 15);
        for (start, end, said) in [
            // Compiled before, comparing with a period after it.
            (
                date!(2026 - 06 - 30),
                date!(2026 - 04 - 01),
                "the period starts on 2026-06-30, after it ends on 2026-04-01",
            ),
            // The day count's overflow the other way.
            (date!(9999 - 12 - 31), Date::MIN, "out of range"),
            (
                date!(2026 - 07 - 01),
                date!(2026 - 09 - 30),
                "the period ends on 2026-09-30, after the as-of date 2026-08-15",
            ),
        ] {
            let e = compile(&model(), &compared(start, end), as_of, Dialect::DuckDb)
                .expect_err("refused");
            assert!(e.to_string().contains(said), "{start} {end}: {e}");
        }
        let sql = admitted(
            &compared(date!(2026 - 04 - 01), date!(2026 - 06 - 30)),
            Dialect::DuckDb,
        );
        assert!(sql.contains("DATE '2026-01-01'"), "{sql}");
    }
}
