//! The semantic model (`templates/semantic/model.yaml`): metrics, the
//! sources they are measured over, and dimensions. Loaded once and checked:
//! every measure names a source, every formula names metrics, every
//! dimension's expression names a source.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The model compiled into the binary.
pub const MODEL_YAML: &str = include_str!("../../templates/semantic/model.yaml");

#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error("the semantic model is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("the semantic model is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticModel {
    pub sources: BTreeMap<String, Source>,
    pub metrics: BTreeMap<String, Metric>,
    pub dimensions: BTreeMap<String, Dimension>,
}

/// A fact table metrics are measured over, with the joins its dimensions need.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `table AS alias`.
    pub from: String,
    /// The date column periods filter on.
    pub date: String,
    /// The document currency column; absent when the source is in the base currency only.
    #[serde(default)]
    pub currency: Option<String>,
    /// Joins by alias, added when an expression uses `<alias>.` (in this order).
    #[serde(default)]
    pub joins: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Money,
    Count,
    Number,
    Days,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub label: String,
    pub synonyms: Vec<String>,
    pub format: Format,
    /// A balance is taken as of a date (outstanding amounts), not summed over a period.
    #[serde(default)]
    pub balance: bool,
    /// Ways to measure it, in order of preference.
    #[serde(default)]
    pub measures: Vec<Measure>,
    /// Or: an expression over other metrics (by name).
    #[serde(default)]
    pub formula: Option<String>,
    /// Dimensions used when the question names none.
    #[serde(default)]
    pub default_dimensions: Vec<String>,
    /// The chart of accounts must have an account of this type (gross margin needs direct costs).
    #[serde(default)]
    pub requires_account_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Sum,
    Count,
    CountDistinct,
    Avg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub source: String,
    pub aggregate: Aggregate,
    /// In the document's currency; absent when the source has base amounts only.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_base: Option<String>,
    #[serde(default)]
    pub value_bigquery: Option<String>,
    #[serde(default)]
    pub with_tax: Option<String>,
    #[serde(default)]
    pub with_tax_base: Option<String>,
    #[serde(rename = "where")]
    pub condition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub label: String,
    pub synonyms: Vec<String>,
    /// The tenant's own names this dimension's values come from.
    #[serde(default)]
    pub vocabulary: Option<String>,
    /// A time grain over the source's date column.
    #[serde(default)]
    pub grain: Option<Grain>,
    /// The expression per source (not for time grains, which every source has).
    #[serde(default)]
    pub on: BTreeMap<String, String>,
}

impl Dimension {
    /// Whether the dimension can be computed over `source`.
    pub fn available_on(&self, source: &str) -> bool {
        self.grain.is_some() || self.on.contains_key(source)
    }
}

impl SemanticModel {
    /// The model compiled into the binary.
    pub fn builtin() -> Result<SemanticModel, SemanticError> {
        Self::from_yaml(MODEL_YAML)
    }

    pub fn from_yaml(text: &str) -> Result<SemanticModel, SemanticError> {
        let model: SemanticModel = serde_yaml_ng::from_str(text)?;
        model.check()?;
        Ok(model)
    }

    fn check(&self) -> Result<(), SemanticError> {
        let bad = |m: String| Err(SemanticError::Inconsistent(m));
        for (name, metric) in &self.metrics {
            match (&metric.formula, metric.measures.is_empty()) {
                (Some(formula), true) => {
                    let used = self.formula_metrics(formula);
                    if used.is_empty() {
                        return bad(format!("metric {name}: its formula names no metric"));
                    }
                    for u in used {
                        if self.metrics[&u].formula.is_some() {
                            return bad(format!("metric {name}: formula uses formula metric {u}"));
                        }
                    }
                }
                (None, false) => {}
                _ => {
                    return bad(format!(
                        "metric {name}: needs measures or a formula, not both"
                    ))
                }
            }
            for m in &metric.measures {
                if !self.sources.contains_key(&m.source) {
                    return bad(format!("metric {name}: unknown source {}", m.source));
                }
                if m.value.is_none() && m.value_base.is_none() {
                    return bad(format!("metric {name}: a measure without a value"));
                }
            }
            for d in &metric.default_dimensions {
                if !self.dimensions.contains_key(d) {
                    return bad(format!("metric {name}: unknown default dimension {d}"));
                }
            }
        }
        for (name, dim) in &self.dimensions {
            if dim.grain.is_none() && dim.on.is_empty() {
                return bad(format!("dimension {name}: no expression on any source"));
            }
            for source in dim.on.keys() {
                if !self.sources.contains_key(source) {
                    return bad(format!("dimension {name}: unknown source {source}"));
                }
            }
        }
        Ok(())
    }

    /// The metrics a formula names (whole words), in the order of the model.
    pub fn formula_metrics(&self, formula: &str) -> Vec<String> {
        let words: Vec<&str> = formula
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        self.metrics
            .keys()
            .filter(|m| words.contains(&m.as_str()))
            .cloned()
            .collect()
    }

    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.get(name)
    }

    pub fn dimension(&self, name: &str) -> Option<&Dimension> {
        self.dimensions.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_model_loads_and_is_consistent() {
        let model = SemanticModel::builtin().expect("builtin model");
        assert!(model.metrics.contains_key("revenue"));
        assert_eq!(
            model.formula_metrics("COALESCE(revenue, 0) - COALESCE(credit_notes_issued, 0)"),
            vec!["credit_notes_issued".to_owned(), "revenue".to_owned()]
        );
    }

    #[test]
    fn an_unknown_source_is_refused() {
        let text = MODEL_YAML.replace("- source: payments", "- source: paymentz");
        let err = SemanticModel::from_yaml(&text).expect_err("unknown source");
        assert!(err.to_string().contains("paymentz"), "{err}");
    }
}
