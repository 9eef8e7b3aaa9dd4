//! The walk over the query's tree: explicit recursion over the constructs the
//! guard knows, each judged; every other construct is refused.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Distinct, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    GroupByExpr, InTarget, Join, JoinConstraint, JoinOperator, LimitClause, NamedWindowExpr,
    ObjectName, ObjectNamePart, Offset, OrderBy, OrderByExpr, OrderByKind, OrderBySort, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor,
    TableWithJoins, Value, WildcardAdditionalOptions, WindowFrameBound, WindowSpec, WindowType,
};

use super::functions;
use super::names::{self, check_ident, Resolved};
use super::refusal::snippet;
use super::{Dialect, GuardPolicy, Refusal};

/// Judges the whole query; returns the tables it reads.
pub fn judge(
    query: &Query,
    dialect: Dialect,
    policy: &GuardPolicy,
) -> Result<BTreeSet<String>, Refusal> {
    let mut walker = Walker {
        dialect,
        policy,
        scope: Vec::new(),
        tables: BTreeSet::new(),
    };
    walker.query(query)?;
    Ok(walker.tables)
}

/// A LIMIT or OFFSET: a non-negative integer literal (as `u128`, so a huge
/// one compares as huge rather than failing).
pub fn literal_count(expr: &Expr) -> Result<u128, Refusal> {
    let refuse = || Refusal::InvalidLimit(snippet(&expr.to_string()));
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(digits, false)
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(digits.parse::<u128>().unwrap_or(u128::MAX))
            }
            _ => Err(refuse()),
        },
        _ => Err(refuse()),
    }
}

struct Walker<'a> {
    dialect: Dialect,
    policy: &'a GuardPolicy,
    /// The CTE names visible here, innermost last.
    scope: Vec<String>,
    tables: BTreeSet<String>,
}

fn unsupported(what: &str) -> Refusal {
    Refusal::Unsupported(what.to_owned())
}

fn unsupported_at(what: &str, piece: &impl std::fmt::Display) -> Refusal {
    Refusal::Unsupported(format!("{what} {}", snippet(&piece.to_string())))
}

impl Walker<'_> {
    fn query(&mut self, q: &Query) -> Result<(), Refusal> {
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = q;
        if fetch.is_some() {
            return Err(unsupported("FETCH (use LIMIT)"));
        }
        if !locks.is_empty() {
            return Err(unsupported("FOR UPDATE/SHARE row locking"));
        }
        if for_clause.is_some() {
            return Err(unsupported("a FOR XML/JSON/BROWSE clause"));
        }
        if settings.is_some() {
            return Err(unsupported("SETTINGS"));
        }
        if format_clause.is_some() {
            return Err(unsupported("FORMAT"));
        }
        if !pipe_operators.is_empty() {
            return Err(unsupported("pipe syntax (|>)"));
        }
        let outer_scope = self.scope.len();
        let result = (|| {
            if let Some(with) = with {
                if with.recursive {
                    let names: Vec<String> = with
                        .cte_tables
                        .iter()
                        .map(|c| c.alias.name.value.clone())
                        .collect();
                    return Err(Refusal::RecursiveCte(snippet(&names.join(", "))));
                }
                for cte in &with.cte_tables {
                    if cte.from.is_some() {
                        return Err(unsupported("CTE … FROM"));
                    }
                    self.alias(&cte.alias)?;
                    // A CTE sees the ones before it, not itself.
                    self.query(&cte.query)?;
                    self.scope.push(cte.alias.name.value.clone());
                }
            }
            self.set_expr(body)?;
            if let Some(order_by) = order_by {
                self.order_by(order_by)?;
            }
            if let Some(limit) = limit_clause {
                self.limit(limit)?;
            }
            Ok(())
        })();
        self.scope.truncate(outer_scope);
        result
    }

    fn limit(&mut self, limit: &LimitClause) -> Result<(), Refusal> {
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT … BY"));
                }
                if let Some(limit) = limit {
                    literal_count(limit)?;
                }
                if let Some(Offset { value, .. }) = offset {
                    literal_count(value)?;
                }
                Ok(())
            }
            LimitClause::OffsetCommaLimit { .. } => Err(unsupported("LIMIT offset, count")),
        }
    }

    fn order_by(&mut self, order_by: &OrderBy) -> Result<(), Refusal> {
        if order_by.interpolate.is_some() {
            return Err(unsupported("ORDER BY … INTERPOLATE"));
        }
        match &order_by.kind {
            OrderByKind::All(options) => {
                if matches!(options.sort, Some(OrderBySort::Using(_))) {
                    return Err(unsupported("ORDER BY … USING"));
                }
                Ok(())
            }
            OrderByKind::Expressions(exprs) => self.order_by_exprs(exprs),
        }
    }

    fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Result<(), Refusal> {
        for e in exprs {
            if e.with_fill.is_some() {
                return Err(unsupported("ORDER BY … WITH FILL"));
            }
            if matches!(e.options.sort, Some(OrderBySort::Using(_))) {
                return Err(unsupported("ORDER BY … USING"));
            }
            self.expr(&e.expr)?;
        }
        Ok(())
    }

    fn set_expr(&mut self, body: &SetExpr) -> Result<(), Refusal> {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            SetExpr::Values(values) => {
                for row in &values.rows {
                    self.exprs(row)?;
                }
                Ok(())
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                Err(Refusal::NotAQuery(snippet(
                    &s.to_string()
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" "),
                )))
            }
            SetExpr::Table(t) => Err(unsupported_at("TABLE", t)),
        }
    }

    fn select(&mut self, s: &Select) -> Result<(), Refusal> {
        if let Some(into) = &s.into {
            return Err(Refusal::SelectInto(snippet(&into.to_string())));
        }
        if !s.optimizer_hints.is_empty() {
            return Err(unsupported("optimizer hints"));
        }
        if s.select_modifiers.is_some() {
            return Err(unsupported("SELECT modifiers"));
        }
        if s.top.is_some() {
            return Err(unsupported("TOP (use LIMIT)"));
        }
        if s.exclude.is_some() {
            return Err(unsupported("SELECT … EXCLUDE after the list"));
        }
        if !s.lateral_views.is_empty() {
            return Err(unsupported("LATERAL VIEW"));
        }
        if s.prewhere.is_some() {
            return Err(unsupported("PREWHERE"));
        }
        if !s.connect_by.is_empty() {
            return Err(unsupported("CONNECT BY"));
        }
        if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() {
            return Err(unsupported("CLUSTER/DISTRIBUTE/SORT BY"));
        }
        if s.value_table_mode.is_some() {
            return Err(unsupported("SELECT AS STRUCT/VALUE"));
        }
        // FROM first: its relations are what the rest may refer to.
        for t in &s.from {
            self.table_with_joins(t)?;
        }
        if let Some(Distinct::On(exprs)) = &s.distinct {
            self.exprs(exprs)?;
        }
        for item in &s.projection {
            self.select_item(item)?;
        }
        if let Some(e) = &s.selection {
            self.expr(e)?;
        }
        match &s.group_by {
            GroupByExpr::All(modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported("GROUP BY ALL WITH …"));
                }
            }
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported("GROUP BY … WITH ROLLUP/CUBE/TOTALS"));
                }
                self.exprs(exprs)?;
            }
        }
        if let Some(e) = &s.having {
            self.expr(e)?;
        }
        for window in &s.named_window {
            check_ident(&window.0)?;
            match &window.1 {
                NamedWindowExpr::NamedWindow(ident) => check_ident(ident)?,
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        if let Some(e) = &s.qualify {
            self.expr(e)?;
        }
        Ok(())
    }

    fn select_item(&mut self, item: &SelectItem) -> Result<(), Refusal> {
        match item {
            SelectItem::UnnamedExpr(e) => self.expr(e),
            SelectItem::ExprWithAlias { expr, alias } => {
                check_ident(alias)?;
                self.expr(expr)
            }
            SelectItem::ExprWithAliases { .. } => {
                Err(unsupported("an expression with several aliases"))
            }
            SelectItem::QualifiedWildcard(kind, options) => {
                match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => self.column_name(name)?,
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        return Err(unsupported_at("a wildcard over an expression", e))
                    }
                }
                self.wildcard_options(options)
            }
            SelectItem::Wildcard(options) => self.wildcard_options(options),
        }
    }

    /// `* EXCLUDE (…)`, `* EXCEPT (…)` and `* REPLACE (… AS c)` are allowed.
    fn wildcard_options(&mut self, o: &WildcardAdditionalOptions) -> Result<(), Refusal> {
        if o.opt_ilike.is_some() || o.opt_rename.is_some() || o.opt_alias.is_some() {
            return Err(unsupported("* ILIKE/RENAME/AS"));
        }
        if let Some(exclude) = &o.opt_exclude {
            // Only column names: nothing to judge beyond the identifiers.
            if !exclude.to_string().is_ascii() {
                return Err(Refusal::InvalidIdentifier(snippet(&exclude.to_string())));
            }
        }
        if let Some(except) = &o.opt_except {
            check_ident(&except.first_element)?;
            for ident in &except.additional_elements {
                check_ident(ident)?;
            }
        }
        if let Some(replace) = &o.opt_replace {
            for element in &replace.items {
                check_ident(&element.column_name)?;
                self.expr(&element.expr)?;
            }
        }
        Ok(())
    }

    fn table_with_joins(&mut self, t: &TableWithJoins) -> Result<(), Refusal> {
        self.table_factor(&t.relation)?;
        for join in &t.joins {
            self.join(join)?;
        }
        Ok(())
    }

    fn join(&mut self, join: &Join) -> Result<(), Refusal> {
        if join.global {
            return Err(unsupported("GLOBAL JOIN"));
        }
        self.table_factor(&join.relation)?;
        let constraint = match &join.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c) => c,
            JoinOperator::AsOf {
                match_condition,
                constraint,
            } => {
                self.expr(match_condition)?;
                constraint
            }
            other => {
                return Err(unsupported_at(
                    "the join",
                    &format!("{other:?}").chars().take(40).collect::<String>(),
                ))
            }
        };
        match constraint {
            JoinConstraint::On(e) => self.expr(e),
            JoinConstraint::Using(columns) => {
                for c in columns {
                    self.column_name(c)?;
                }
                Ok(())
            }
            JoinConstraint::Natural | JoinConstraint::None => Ok(()),
            JoinConstraint::UsingAlias(..) => Err(unsupported("USING (…) AS")),
        }
    }

    fn alias(&mut self, alias: &TableAlias) -> Result<(), Refusal> {
        check_ident(&alias.name)?;
        if alias.at.is_some() {
            return Err(unsupported("AT in a table alias"));
        }
        for column in &alias.columns {
            check_ident(&column.name)?;
            if column.data_type.is_some() {
                return Err(unsupported("a typed column alias"));
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Result<(), Refusal> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                if args.is_some() {
                    return Err(self.table_function(name));
                }
                if !with_hints.is_empty() || !index_directives.is_empty() {
                    return Err(unsupported_at("table hints on", name));
                }
                if version.is_some() {
                    return Err(unsupported_at(
                        "time travel (FOR SYSTEM_TIME / AT) on",
                        name,
                    ));
                }
                if *with_ordinality {
                    return Err(unsupported_at("WITH ORDINALITY on", name));
                }
                if !partitions.is_empty() {
                    return Err(unsupported_at("PARTITION on", name));
                }
                if json_path.is_some() {
                    return Err(unsupported_at("a JSON path on", name));
                }
                if sample.is_some() {
                    return Err(unsupported_at(
                        "sampling (TABLESAMPLE/USING SAMPLE) of",
                        name,
                    ));
                }
                if inheritance.is_some() {
                    return Err(unsupported_at("ONLY on", name));
                }
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                match names::resolve(name, self.dialect, self.policy, &self.scope)? {
                    Resolved::Cte => {}
                    Resolved::Table(table) => {
                        self.tables.insert(table);
                    }
                }
                Ok(())
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias,
                sample,
            } => {
                if sample.is_some() {
                    return Err(unsupported("sampling of a subquery"));
                }
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.query(subquery)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(alias) = alias {
                    self.alias(alias)?;
                }
                self.table_with_joins(table_with_joins)
            }
            TableFactor::Function { name, .. } => Err(self.table_function(name)),
            TableFactor::TableFunction { expr, .. } => match expr {
                Expr::Function(f) => Err(self.table_function(&f.name)),
                other => Err(Refusal::TableFunction(snippet(&other.to_string()))),
            },
            TableFactor::UNNEST { .. } => Err(Refusal::TableFunction("`UNNEST`".to_owned())),
            TableFactor::Pivot { .. } => Err(unsupported("PIVOT")),
            TableFactor::Unpivot { .. } | TableFactor::UnpivotExpr { .. } => {
                Err(unsupported("UNPIVOT"))
            }
            TableFactor::MatchRecognize { .. } => Err(unsupported("MATCH_RECOGNIZE")),
            TableFactor::JsonTable { .. } | TableFactor::OpenJsonTable { .. } => {
                Err(Refusal::TableFunction("`JSON_TABLE`".to_owned()))
            }
            TableFactor::XmlTable { .. } => Err(Refusal::TableFunction("`XMLTABLE`".to_owned())),
            TableFactor::SemanticView { .. } => Err(unsupported("SEMANTIC_VIEW")),
        }
    }

    /// The refusal for a function used as a relation.
    fn table_function(&self, name: &ObjectName) -> Refusal {
        let whole = snippet(&name.to_string());
        if functions::is_external(&lower_parts(name)) {
            Refusal::ExternalRead(whole)
        } else {
            Refusal::TableFunction(whole)
        }
    }

    /// A column or alias reference by name (`t.*`, `USING (c)`): identifiers only.
    fn column_name(&mut self, name: &ObjectName) -> Result<(), Refusal> {
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => check_ident(ident)?,
                ObjectNamePart::Function(_) => return Err(unsupported_at("the name", name)),
            }
        }
        Ok(())
    }

    fn exprs(&mut self, exprs: &[Expr]) -> Result<(), Refusal> {
        for e in exprs {
            self.expr(e)?;
        }
        Ok(())
    }

    fn boxed(&mut self, e: &Option<Box<Expr>>) -> Result<(), Refusal> {
        match e {
            Some(e) => self.expr(e),
            None => Ok(()),
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<(), Refusal> {
        match e {
            Expr::Identifier(ident) => check_ident(ident),
            Expr::CompoundIdentifier(idents) => {
                for ident in idents {
                    check_ident(ident)?;
                }
                Ok(())
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x) => self.expr(x),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::In {
                expr,
                target,
                negated: _,
                global,
            } => {
                if *global {
                    return Err(unsupported("GLOBAL IN"));
                }
                self.expr(expr)?;
                match target {
                    InTarget::List(list) => self.exprs(list),
                    InTarget::Subquery(q) => self.query(q),
                    InTarget::Unnest(_) => Err(Refusal::TableFunction("`IN UNNEST`".to_owned())),
                    InTarget::Table { name, .. } => Err(unsupported_at("IN <table>", name)),
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::BinaryOp { left, right, .. } => {
                self.expr(left)?;
                self.expr(right)
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                self.boxed(escape_char)
            }
            Expr::RLike { expr, pattern, .. } => {
                self.expr(expr)?;
                self.expr(pattern)
            }
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                self.expr(left)?;
                self.expr(right)
            }
            Expr::UnaryOp { expr, .. } => self.expr(expr),
            Expr::Cast {
                expr,
                data_type: _,
                format,
                kind: _,
            } => {
                if format.is_some() {
                    return Err(unsupported("CAST … FORMAT"));
                }
                self.expr(expr)
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.expr(timestamp)?;
                self.expr(time_zone)
            }
            Expr::Extract { expr, .. } => self.expr(expr),
            Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => self.expr(expr),
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr)?;
                self.boxed(substring_from)?;
                self.boxed(substring_for)
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.expr(expr)?;
                self.boxed(trim_what)?;
                if let Some(chars) = trim_characters {
                    self.exprs(chars)?;
                }
                Ok(())
            }
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => Err(unsupported_at("the parameter placeholder", p)),
                _ => Ok(()),
            },
            Expr::TypedString(t) => match &t.value.value {
                Value::Placeholder(p) => Err(unsupported_at("the parameter placeholder", p)),
                _ => Ok(()),
            },
            Expr::Function(f) => self.function(f),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.boxed(operand)?;
                for when in conditions {
                    self.expr(&when.condition)?;
                    self.expr(&when.result)?;
                }
                self.boxed(else_result)
            }
            Expr::Exists { subquery, .. } => self.query(subquery),
            Expr::Subquery(q) => self.query(q),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                for set in sets {
                    self.exprs(set)?;
                }
                Ok(())
            }
            Expr::Tuple(items) => self.exprs(items),
            Expr::Interval(interval) => self.expr(&interval.value),
            Expr::Array(array) => self.exprs(&array.elem),
            other => Err(unsupported_at("the expression", other)),
        }
    }

    fn function(&mut self, f: &sqlparser::ast::Function) -> Result<(), Refusal> {
        let parts = lower_parts(&f.name);
        let whole = || snippet(&f.name.to_string());
        let base = match parts.as_slice() {
            [name] => name.as_str(),
            // BigQuery's SAFE. prefix only turns errors into NULL.
            [safe, name] if self.dialect == Dialect::BigQuery && safe == "safe" => name.as_str(),
            _ => "",
        };
        if base.is_empty() || !functions::is_allowed(base) {
            return Err(if functions::is_external(&parts) {
                Refusal::ExternalRead(whole())
            } else {
                Refusal::FunctionNotAllowed(whole())
            });
        }
        // Names are checked above; every part must also be a plain identifier.
        self.column_name(&f.name)?;
        if f.uses_odbc_syntax {
            return Err(unsupported("ODBC function syntax"));
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return Err(unsupported_at("parametric call of", &f.name));
        }
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => self.query(q)?,
            FunctionArguments::List(list) => {
                for arg in &list.args {
                    let arg_expr = match arg {
                        FunctionArg::Unnamed(a) => a,
                        FunctionArg::Named { name, arg, .. } => {
                            check_ident(name)?;
                            arg
                        }
                        FunctionArg::ExprNamed { .. } => {
                            return Err(unsupported_at("an expression-named argument of", &f.name))
                        }
                    };
                    match arg_expr {
                        FunctionArgExpr::Expr(e) => self.expr(e)?,
                        FunctionArgExpr::QualifiedWildcard(name) => self.column_name(name)?,
                        FunctionArgExpr::Wildcard => {}
                        FunctionArgExpr::WildcardWithOptions(_) => {
                            return Err(unsupported_at("a wildcard with options in", &f.name))
                        }
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::IgnoreOrRespectNulls(_)
                        | FunctionArgumentClause::Separator(_) => {}
                        FunctionArgumentClause::OrderBy(exprs) => self.order_by_exprs(exprs)?,
                        FunctionArgumentClause::Limit(e) => {
                            literal_count(e)?;
                        }
                        _ => return Err(unsupported_at("an argument clause of", &f.name)),
                    }
                }
            }
        }
        self.order_by_exprs(&f.within_group)?;
        self.boxed(&f.filter)?;
        match &f.over {
            None => Ok(()),
            Some(WindowType::NamedWindow(ident)) => check_ident(ident),
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec),
        }
    }

    fn window_spec(&mut self, spec: &WindowSpec) -> Result<(), Refusal> {
        if let Some(name) = &spec.window_name {
            check_ident(name)?;
        }
        self.exprs(&spec.partition_by)?;
        self.order_by_exprs(&spec.order_by)?;
        if let Some(frame) = &spec.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(frame.end_bound.as_ref()) {
                match bound {
                    WindowFrameBound::CurrentRow => {}
                    WindowFrameBound::Preceding(e) | WindowFrameBound::Following(e) => {
                        self.boxed(e)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The parts of a name, ASCII-lowercased (non-ASCII kept, so it never
/// matches an allow-listed name).
fn lower_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
            ObjectNamePart::Function(_) => String::new(),
        })
        .collect()
}
