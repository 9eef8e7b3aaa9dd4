//! The prompt of a question: the tera templates of `templates/prompts`
//! rendered over the semantic model (metrics, their labels and synonyms,
//! balances, the dimensions each can be grouped by), the transformed tables
//! and their documented columns, the worked examples, the as-of date and the
//! rules; then the conversation so far and the question.
//!
//! What goes in is the model, the documentation and the user's own words,
//! never a row of the tenant's data: nothing here can read the warehouse.
//! The templates, examples and schema are compiled in, so a binary's prompt
//! is the one its tests checked.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tera::Tera;
use time::Date;

use super::error::LlmError;
use super::tables::{transformed_tables, TableDoc};
use super::{LlmRequest, Message};
use crate::plan::{iso_date, Plan};
use crate::semantic::{Grain, SemanticModel};

pub const SYSTEM_TEMPLATE: &str = include_str!("../../../templates/prompts/system.tera");
pub const USER_TEMPLATE: &str = include_str!("../../../templates/prompts/user.tera");
pub const CORRECTION_TEMPLATE: &str = include_str!("../../../templates/prompts/correction.tera");
pub const EXAMPLES_YAML: &str = include_str!("../../../templates/prompts/examples.yaml");
/// The JSON schema of a reply, sent as the providers' structured-output setting.
pub const REPLY_SCHEMA_JSON: &str = include_str!("../../../templates/prompts/plan.schema.json");
/// The schema's name where a provider wants one (OpenAI's `json_schema.name`).
pub const REPLY_SCHEMA_NAME: &str = "ledgerlake_reply";

/// What a prompt is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptContext {
    /// The day relative periods are counted from.
    pub as_of: Date,
    pub question: String,
    /// The conversation so far: each earlier question and the plan it got.
    pub history: Vec<(String, Plan)>,
    /// The model's previous reply to this question was unusable: show it why.
    pub correction: Option<Correction>,
}

/// A reply that could not be used, and why (an [`LlmError::BadReply`]'s
/// reason, a guard's refusal, a plan the compiler rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub previous_reply: String,
    pub error: String,
}

/// `templates/prompts/examples.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// The as-of date the examples' periods were worked out against.
    pub as_of: String,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub question: String,
    /// For a follow-up: the conversation's previous question and plan.
    #[serde(default)]
    pub previous: Option<Previous>,
    /// `{plan: …}`, `{sql: …}` or `{decline: …}`, as the model should write it.
    pub reply: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    pub question: String,
    pub plan: serde_json::Value,
}

/// The worked examples.
pub fn examples() -> Result<Examples, LlmError> {
    serde_yaml_ng::from_str(EXAMPLES_YAML)
        .map_err(|e| LlmError::Prompt(format!("templates/prompts/examples.yaml: {e}")))
}

/// The reply schema.
pub fn reply_schema() -> Result<serde_json::Value, LlmError> {
    serde_json::from_str(REPLY_SCHEMA_JSON)
        .map_err(|e| LlmError::Prompt(format!("templates/prompts/plan.schema.json: {e}")))
}

/// The dimensions `metric` can be grouped or filtered by: those available on
/// one of its measures' sources; for a formula, those all its metrics have.
pub fn metric_dimensions(model: &SemanticModel, metric: &str) -> Vec<String> {
    let Some(m) = model.metric(metric) else {
        return Vec::new();
    };
    match &m.formula {
        Some(formula) => {
            let parts: Vec<Vec<String>> = model
                .formula_metrics(formula)
                .iter()
                // The model's check keeps formulas one level deep, so this recursion ends.
                .map(|part| metric_dimensions(model, part))
                .collect();
            model
                .dimensions
                .keys()
                .filter(|d| parts.iter().all(|p| p.contains(d)))
                .cloned()
                .collect()
        }
        None => model
            .dimensions
            .iter()
            .filter(|(_, dim)| m.measures.iter().any(|ms| dim.available_on(&ms.source)))
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// The request for a question: system prompt, conversation, reply schema.
pub fn build_request(
    model: &SemanticModel,
    ctx: &PromptContext,
    stream: bool,
) -> Result<LlmRequest, LlmError> {
    let tera = templates()?;
    let as_of = iso_date::format(ctx.as_of);
    let system = render(tera, "system.tera", &system_view(model, &as_of)?)?;
    let user = |question: &str| {
        render(
            tera,
            "user.tera",
            &UserView {
                as_of: &as_of,
                question,
            },
        )
        .map(|text| Message::user(text.trim_end()))
    };
    let mut messages = Vec::with_capacity(ctx.history.len() * 2 + 3);
    for (question, plan) in &ctx.history {
        messages.push(user(question)?);
        messages.push(Message::assistant(plan_reply(plan)?));
    }
    messages.push(user(&ctx.question)?);
    if let Some(correction) = &ctx.correction {
        messages.push(Message::assistant(correction.previous_reply.clone()));
        let text = render(
            tera,
            "correction.tera",
            &CorrectionView {
                error: &correction.error,
            },
        )?;
        messages.push(Message::user(text.trim_end()));
    }
    Ok(LlmRequest {
        system: system.trim().to_owned(),
        messages,
        schema: Some(reply_schema()?),
        stream,
    })
}

/// An earlier plan as the assistant turn that gave it.
fn plan_reply(plan: &Plan) -> Result<String, LlmError> {
    serde_json::to_string(&serde_json::json!({ "plan": plan }))
        .map_err(|e| LlmError::Prompt(format!("a plan of the history: {e}")))
}

fn templates() -> Result<&'static Tera, LlmError> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = Tera::default();
        // Prompts are plain text: nothing to escape, and escaping would
        // garble the JSON of the examples.
        tera.autoescape_on(Vec::new());
        tera.add_raw_templates(vec![
            ("system.tera", SYSTEM_TEMPLATE),
            ("user.tera", USER_TEMPLATE),
            ("correction.tera", CORRECTION_TEMPLATE),
        ])
        .map_err(|e| tera_message(&e))?;
        Ok(tera)
    })
    .as_ref()
    .map_err(|e| LlmError::Prompt(e.clone()))
}

fn render(tera: &Tera, name: &str, view: &impl Serialize) -> Result<String, LlmError> {
    let context = tera::Context::from_serialize(view)
        .map_err(|e| LlmError::Prompt(format!("{name}: {}", tera_message(&e))))?;
    tera.render(name, &context)
        .map_err(|e| LlmError::Prompt(format!("{name}: {}", tera_message(&e))))
}

/// A tera error with its causes: its own message often says only "failed to render".
fn tera_message(e: &tera::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[derive(Serialize)]
struct SystemView {
    as_of: String,
    metrics: Vec<MetricView>,
    dimensions: Vec<DimensionView>,
    tables: Vec<TableDoc>,
    examples_as_of: String,
    examples: Vec<ExampleView>,
}

#[derive(Serialize)]
struct MetricView {
    name: String,
    label: String,
    synonyms: Vec<String>,
    balance: bool,
    formula: Option<String>,
    dimensions: Vec<String>,
    default_dimensions: Vec<String>,
    requires_account_type: Option<String>,
}

#[derive(Serialize)]
struct DimensionView {
    name: String,
    label: String,
    synonyms: Vec<String>,
    grain: Option<&'static str>,
}

#[derive(Serialize)]
struct ExampleView {
    question: String,
    reply: String,
    previous_question: Option<String>,
    previous_reply: Option<String>,
}

#[derive(Serialize)]
struct UserView<'a> {
    as_of: &'a str,
    question: &'a str,
}

#[derive(Serialize)]
struct CorrectionView<'a> {
    error: &'a str,
}

fn system_view(model: &SemanticModel, as_of: &str) -> Result<SystemView, LlmError> {
    let metrics = model
        .metrics
        .iter()
        .map(|(name, m)| MetricView {
            name: name.clone(),
            label: m.label.clone(),
            synonyms: m.synonyms.clone(),
            balance: m.balance,
            formula: m.formula.clone(),
            dimensions: metric_dimensions(model, name),
            default_dimensions: m.default_dimensions.clone(),
            requires_account_type: m.requires_account_type.clone(),
        })
        .collect();
    let dimensions = model
        .dimensions
        .iter()
        .map(|(name, d)| DimensionView {
            name: name.clone(),
            label: d.label.clone(),
            synonyms: d.synonyms.clone(),
            grain: d.grain.map(|g| match g {
                Grain::Month => "month",
                Grain::Quarter => "quarter",
                Grain::Year => "year",
            }),
        })
        .collect();
    let worked = examples()?;
    let compact = |value: &serde_json::Value| {
        serde_json::to_string(value)
            .map_err(|e| LlmError::Prompt(format!("templates/prompts/examples.yaml: {e}")))
    };
    let examples = worked
        .examples
        .iter()
        .map(|e| {
            Ok(ExampleView {
                question: e.question.clone(),
                reply: compact(&e.reply)?,
                previous_question: e.previous.as_ref().map(|p| p.question.clone()),
                previous_reply: match &e.previous {
                    Some(p) => Some(compact(&serde_json::json!({ "plan": p.plan }))?),
                    None => None,
                },
            })
        })
        .collect::<Result<Vec<_>, LlmError>>()?;
    Ok(SystemView {
        as_of: as_of.to_owned(),
        metrics,
        dimensions,
        tables: transformed_tables()?,
        examples_as_of: worked.as_of,
        examples,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use time::macros::date;

    use super::*;
    use crate::guard::{admit, Dialect, GuardPolicy, TRANSFORMED_TABLES};
    use crate::llm::Role;

    fn model() -> SemanticModel {
        SemanticModel::builtin().expect("the builtin model")
    }

    fn context(question: &str) -> PromptContext {
        PromptContext {
            as_of: date!(2026 - 11 - 15),
            question: question.to_owned(),
            history: Vec::new(),
            correction: None,
        }
    }

    /// Checks a plan against the model: known metrics, known dimensions
    /// (grouped and filtered) that every metric of the plan can use.
    fn check_plan(model: &SemanticModel, value: &serde_json::Value, what: &str) -> Plan {
        let plan: Plan = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{what}: not a Plan: {e}"));
        assert!(!plan.metrics.is_empty(), "{what}: no metric");
        for metric in &plan.metrics {
            assert!(
                model.metric(metric).is_some(),
                "{what}: unknown metric {metric}"
            );
        }
        let used = plan
            .dimensions
            .iter()
            .chain(plan.filters.iter().map(|f| &f.dimension));
        for dimension in used {
            assert!(
                model.dimension(dimension).is_some(),
                "{what}: unknown dimension {dimension}"
            );
            for metric in &plan.metrics {
                assert!(
                    metric_dimensions(model, metric).contains(dimension),
                    "{what}: {metric} cannot be grouped by {dimension}"
                );
            }
        }
        if let Some(period) = &plan.period {
            assert!(period.start <= period.end, "{what}: period backwards");
        }
        plan
    }

    #[test]
    fn every_example_is_a_valid_reply_in_the_models_terms() {
        let model = model();
        let worked = examples().expect("examples.yaml parses");
        let as_of = iso_date::parse(&worked.as_of).expect("as_of is YYYY-MM-DD");
        let policy = GuardPolicy::new("transformed_acme", None, 1000);
        let mut kinds = BTreeSet::new();
        for example in &worked.examples {
            let what = &example.question;
            let object = example.reply.as_object().expect("reply is a map");
            assert_eq!(object.len(), 1, "{what}: one of plan, sql, decline");
            // The reply parses as the providers would parse it.
            let text = serde_json::to_string(&example.reply).expect("json");
            let parsed = crate::llm::reply::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(plan) = object.get("plan") {
                kinds.insert("plan");
                let plan = check_plan(&model, plan, what);
                assert_eq!(parsed, crate::llm::Generated::Plan(plan.clone()));
                if let Some(period) = &plan.period {
                    assert!(period.end <= as_of, "{what}: period after the as-of date");
                }
            } else if let Some(sql) = object.get("sql").and_then(|s| s.as_str()) {
                kinds.insert("sql");
                for dialect in [Dialect::DuckDb, Dialect::BigQuery] {
                    admit(sql, dialect, &policy)
                        .unwrap_or_else(|r| panic!("{what}: the guard refuses it: {r}"));
                }
            } else {
                kinds.insert("decline");
                assert!(object.get("decline").and_then(|d| d.as_str()).is_some());
            }
            if let Some(previous) = &example.previous {
                check_plan(&model, &previous.plan, &previous.question);
            }
        }
        assert_eq!(
            kinds,
            BTreeSet::from(["decline", "plan", "sql"]),
            "examples show every kind of reply"
        );
    }

    #[test]
    fn the_schema_is_json_and_its_plan_matches_the_plan_type() {
        let schema = reply_schema().expect("plan.schema.json parses");
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object().expect("an object").keys().cloned().collect()
        };
        assert_eq!(
            keys(&schema["properties"]),
            BTreeSet::from(["plan".into(), "sql".into(), "decline".into()])
        );
        let plan_schema = &schema["properties"]["plan"]["anyOf"][0];
        // Plan::default() serialises every field (options as null).
        let full = Plan {
            metrics: vec!["revenue".into()],
            period: Some(crate::plan::Period {
                start: date!(2026 - 01 - 01),
                end: date!(2026 - 01 - 31),
                label: "January".into(),
            }),
            rank: Some(crate::plan::Rank {
                direction: crate::plan::RankDirection::Top,
                n: 3,
            }),
            filters: vec![crate::plan::Filter {
                dimension: "customer".into(),
                values: vec!["Acme".into()],
            }],
            ..Plan::default()
        };
        let value = serde_json::to_value(&full).expect("plan serialises");
        assert_eq!(keys(&plan_schema["properties"]), keys(&value));
        // Strict structured outputs need every property required.
        let required: BTreeSet<String> = plan_schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .map(|v| v.as_str().expect("name").to_owned())
            .collect();
        assert_eq!(required, keys(&value));
        let props = &plan_schema["properties"];
        assert_eq!(
            keys(&props["period"]["anyOf"][0]["properties"]),
            keys(&value["period"])
        );
        assert_eq!(
            keys(&props["rank"]["anyOf"][0]["properties"]),
            keys(&value["rank"])
        );
        assert_eq!(
            keys(&props["filters"]["items"]["properties"]),
            keys(&value["filters"][0])
        );
        // The enums are the serde names.
        for (field, variants) in [
            ("compare", vec!["previous_period", "previous_year"]),
            ("rank", vec!["top", "bottom"]),
        ] {
            let schema_enum = if field == "rank" {
                &props["rank"]["anyOf"][0]["properties"]["direction"]["enum"]
            } else {
                &props["compare"]["anyOf"][0]["enum"]
            };
            assert_eq!(schema_enum, &serde_json::json!(variants), "{field}");
        }
        assert_eq!(
            serde_json::to_value(crate::plan::Comparison::PreviousYear).expect("json"),
            "previous_year"
        );
        // A plan the schema describes in full (every field, nulls included) parses.
        let reply = serde_json::json!({"plan": value, "sql": null, "decline": null});
        assert_eq!(
            crate::llm::reply::parse(&reply.to_string()).expect("parses"),
            crate::llm::Generated::Plan(full)
        );
    }

    #[test]
    fn the_system_prompt_carries_the_model_tables_examples_and_rules() {
        let model = model();
        let request =
            build_request(&model, &context("Revenue by customer?"), false).expect("request builds");
        let system = &request.system;
        assert!(system.contains("The as-of date is 2026-11-15."), "{system}");
        for (name, metric) in &model.metrics {
            assert!(
                system.contains(&format!("- {name}: {}", metric.label)),
                "{name}"
            );
            if metric.balance {
                assert!(system.contains(&format!("- {name}: {} (a balance", metric.label)));
            }
        }
        for (name, dimension) in &model.dimensions {
            assert!(
                system.contains(&format!("- {name}: {}", dimension.label)),
                "{name}"
            );
            assert!(system.contains(&dimension.synonyms.join(", ")), "{name}");
        }
        for table in TRANSFORMED_TABLES {
            assert!(system.contains(&format!("## {table}\n")), "{table}");
        }
        assert!(system.contains("- amount_due_base (money): amount_due in the base currency."));
        assert!(system.contains("Question: What was our revenue last quarter?\nReply: {\"plan\":{"));
        assert!(system.contains(r#""label":"last quarter""#));
        assert!(system.contains("Worked examples (answered as of 2026-09-30)"));
        assert!(system.contains("Exactly one read-only SELECT"));
        assert!(system.contains("Read only the tables below"));
        assert!(
            !system.contains("{{") && !system.contains("{%"),
            "unrendered tera"
        );
        // The revenue metric lists what it can be grouped by; net_revenue (a
        // formula) only what both its parts have.
        assert!(system
            .contains("Computed as: COALESCE(revenue, 0) - COALESCE(credit_notes_issued, 0)."));
        assert_eq!(request.schema, Some(reply_schema().expect("schema")));
        assert!(!request.stream);
        assert_eq!(
            request.messages,
            vec![Message::user(
                "Question (as of 2026-11-15): Revenue by customer?"
            )]
        );
    }

    #[test]
    fn history_and_a_correction_become_turns() {
        let model = model();
        let previous = Plan {
            metrics: vec!["revenue".into()],
            dimensions: vec!["customer".into()],
            ..Plan::default()
        };
        let mut ctx = context("and by month?");
        ctx.history = vec![("Revenue by customer".into(), previous.clone())];
        ctx.correction = Some(Correction {
            previous_reply: "Sure, here it is".into(),
            error: "the reply is not JSON".into(),
        });
        let request = build_request(&model, &ctx, true).expect("request builds");
        assert!(request.stream);
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![
                Role::User,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User
            ]
        );
        let replayed = crate::llm::reply::parse(&request.messages[1].content).expect("a plan");
        assert_eq!(replayed, crate::llm::Generated::Plan(previous));
        assert_eq!(
            request.messages[2].content,
            "Question (as of 2026-11-15): and by month?"
        );
        assert_eq!(request.messages[3].content, "Sure, here it is");
        assert!(request.messages[4]
            .content
            .starts_with("That reply could not be used: the reply is not JSON"));
    }

    #[test]
    fn template_syntax_in_a_question_is_only_text() {
        let request = build_request(&model(), &context("{{ as_of }} {% raw %}"), false)
            .expect("request builds");
        assert_eq!(
            request.messages[0].content,
            "Question (as of 2026-11-15): {{ as_of }} {% raw %}"
        );
    }

    #[test]
    fn metric_dimensions_follow_the_sources() {
        let model = model();
        let revenue = metric_dimensions(&model, "revenue");
        assert!(revenue.contains(&"item".to_owned()) && revenue.contains(&"customer".to_owned()));
        assert!(!metric_dimensions(&model, "receivables").contains(&"item".to_owned()));
        let net = metric_dimensions(&model, "net_revenue");
        assert!(net.contains(&"customer".to_owned()));
        // credit notes have no item, so net revenue cannot be split by item.
        assert!(!net.contains(&"item".to_owned()));
        assert!(metric_dimensions(&model, "no_such_metric").is_empty());
    }
}
