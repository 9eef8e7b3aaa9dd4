//! What a question gets back: the rows, the SQL behind them, a chart
//! suggestion and a short explanation, or (`answered: false`) the reason it
//! was declined or refused.

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// A column of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerColumn {
    pub name: String,
    /// The warehouse's type name (`DECIMAL(18,2)`, `VARCHAR`, `DATE`, …).
    pub data_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartType {
    Bar,
    Line,
    Table,
    Number,
}

/// How the answer is best drawn: `x` is the category or time column, `y` the value columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chart {
    #[serde(rename = "type")]
    pub chart_type: ChartType,
    pub x: Option<String>,
    pub y: Vec<String>,
}

/// Which generator produced the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorKind {
    /// The offline planner.
    Offline,
    /// An LLM provider (its name is in the answer's `generator_detail`).
    Llm,
}

/// Milliseconds spent in each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub plan_ms: u64,
    pub guard_ms: u64,
    pub execute_ms: u64,
    pub total_ms: u64,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question: String,
    /// False when the question was declined (not understood) or refused (by the guard).
    pub answered: bool,
    pub plan: Option<Plan>,
    /// The SQL that ran (as the guard admitted it); empty when nothing ran.
    pub sql: String,
    pub columns: Vec<AnswerColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: usize,
    /// A row, size or time cap cut the result short.
    pub truncated: bool,
    pub chart: Chart,
    pub explanation: String,
    pub generator: GeneratorKind,
    /// The provider and model when an LLM generated the SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_detail: Option<String>,
    /// Why it was not answered, as a stable code (`not_understood`,
    /// `guard:<reason>`, `execution_failed`, `no_data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    pub timings_ms: Timings,
}

impl Answer {
    /// An answer that declines, with the reason in the explanation and no rows.
    pub fn declined(
        question: &str,
        plan: Option<Plan>,
        generator: GeneratorKind,
        code: &str,
        explanation: String,
    ) -> Answer {
        Answer {
            question: question.to_owned(),
            answered: false,
            plan,
            sql: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            row_count: 0,
            truncated: false,
            chart: Chart {
                chart_type: ChartType::Table,
                x: None,
                y: Vec::new(),
            },
            explanation,
            generator,
            generator_detail: None,
            refusal: Some(code.to_owned()),
            timings_ms: Timings::default(),
        }
    }
}
