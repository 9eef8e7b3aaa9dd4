//! The model's reply text into a [`Generated`]: tolerant of a code fence
//! around the JSON (models add them even when told not to), strict about
//! what is inside. Exactly one of `plan`, `sql`, `decline` must be given
//! (the others absent or null, as strict structured outputs send them); a
//! plan must be a [`Plan`] to the letter. Anything else is an
//! [`LlmError::BadReply`] saying what was wrong, which the engine can send
//! back to the model once as a correction.

use serde_json::Value;

use super::error::{excerpt, LlmError};
use super::Generated;
use crate::plan::Plan;

/// What a provider's reply says, before its text is parsed.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    pub text: String,
    /// The model (or the provider's filter) refused, and why.
    pub refusal: Option<String>,
    /// The reply stopped at the output token limit.
    pub cut_off: bool,
}

/// A completion into what the model generated: a refusal is a decline (the
/// question is not answered, and the user is told why); a reply cut off at
/// the token limit is a bad reply that says so.
pub(crate) fn finish(completion: Completion, max_tokens: u32) -> Result<Generated, LlmError> {
    if let Some(refusal) = completion.refusal.filter(|r| !r.trim().is_empty()) {
        return Ok(Generated::Decline(refusal));
    }
    if completion.cut_off {
        return Err(LlmError::BadReply {
            reason: format!("the reply was cut off at the output limit of {max_tokens} tokens"),
            excerpt: excerpt(completion.text.trim(), EXCERPT_CHARS),
            reply: completion.text,
        });
    }
    parse(&completion.text)
}

/// How much of a bad reply its error shows.
const EXCERPT_CHARS: usize = 160;

/// Parses a reply. `text` is what the model wrote, all of it.
pub fn parse(text: &str) -> Result<Generated, LlmError> {
    let bad = |reason: String| LlmError::BadReply {
        reason,
        excerpt: excerpt(text.trim(), EXCERPT_CHARS),
        reply: text.to_owned(),
    };
    let json = unfence(text);
    if json.is_empty() {
        return Err(bad("the reply is empty".to_owned()));
    }
    let value: Value =
        serde_json::from_str(json).map_err(|e| bad(format!("the reply is not JSON ({e})")))?;
    let Value::Object(fields) = value else {
        return Err(bad(
            "the reply is not a JSON object with plan, sql or decline".to_owned(),
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "plan" | "sql" | "decline"))
    {
        return Err(bad(format!(
            "unexpected field {other:?} (expected exactly one of plan, sql, decline)"
        )));
    }
    let given: Vec<(&String, &Value)> = fields.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(name, value)] = given.as_slice() else {
        return Err(bad(format!(
            "expected exactly one of plan, sql, decline; got {}",
            if given.is_empty() {
                "none".to_owned()
            } else {
                given
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    match name.as_str() {
        "plan" => {
            let plan: Plan = serde_json::from_value((*value).clone())
                .map_err(|e| bad(format!("the plan does not fit the plan schema: {e}")))?;
            if plan.metrics.is_empty() {
                return Err(bad("the plan names no metric".to_owned()));
            }
            Ok(Generated::Plan(plan))
        }
        "sql" => match value.as_str().map(str::trim) {
            Some(sql) if !sql.is_empty() => Ok(Generated::Sql(sql.to_owned())),
            _ => Err(bad("sql must be a non-empty string".to_owned())),
        },
        _ => match value.as_str().map(str::trim) {
            Some(reason) if !reason.is_empty() => Ok(Generated::Decline(reason.to_owned())),
            _ => Err(bad("decline must be a non-empty reason".to_owned())),
        },
    }
}

/// The text inside one code fence (```` ```json … ``` ````), or the text itself.
fn unfence(text: &str) -> &str {
    let text = text.trim();
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(inner) = rest.strip_suffix("```") else {
        return text;
    };
    // The info string ("json") runs to the end of the fence's first line.
    match inner.split_once('\n') {
        Some((info, body)) if !info.trim_start().starts_with('{') => body.trim(),
        _ => inner.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_sql_or_decline() {
        let plan = parse(r#"{"plan": {"metrics": ["revenue"], "dimensions": ["customer"]}}"#)
            .expect("plan");
        let Generated::Plan(plan) = plan else {
            panic!("not a plan: {plan:?}")
        };
        assert_eq!(plan.metrics, vec!["revenue"]);
        assert_eq!(
            parse(r#"{"sql": " SELECT 1 ", "plan": null, "decline": null}"#).expect("sql"),
            Generated::Sql("SELECT 1".into())
        );
        assert_eq!(
            parse(r#"{"decline": "not about the books"}"#).expect("decline"),
            Generated::Decline("not about the books".into())
        );
    }

    #[test]
    fn code_fences_are_tolerated() {
        for text in [
            "```json\n{\"decline\": \"x\"}\n```",
            "```\n{\"decline\": \"x\"}\n```",
            "  ```JSON\r\n{\"decline\": \"x\"}```  ",
            "```{\"decline\": \"x\"}```",
        ] {
            assert_eq!(
                parse(text).expect(text),
                Generated::Decline("x".into()),
                "{text}"
            );
        }
    }

    fn reason(text: &str) -> String {
        match parse(text) {
            Err(LlmError::BadReply { reason, .. }) => reason,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn anything_else_is_a_bad_reply_that_says_why() {
        assert!(reason("Revenue was up.").contains("not JSON"));
        assert!(reason("").contains("empty"));
        assert!(reason("[1]").contains("not a JSON object"));
        assert!(reason(r#"{"answer": 1}"#).contains("\"answer\""));
        assert!(reason(r#"{"sql": "SELECT 1", "decline": "no"}"#).contains("sql, decline"));
        assert!(reason(r#"{"plan": null}"#).contains("none"));
        assert!(
            reason(r#"{"plan": {"metrics": ["revenue"], "colour": "red"}}"#).contains("colour")
        );
        assert!(reason(r#"{"plan": {"metrics": []}}"#).contains("no metric"));
        assert!(reason(
            r#"{"plan": {"metrics": ["revenue"], "period": {"start": "1/7/2026", "end": "2026-09-30"}}}"#
        )
        .contains("plan schema"));
        assert!(reason(r#"{"sql": ""}"#).contains("non-empty"));
    }

    #[test]
    fn a_bad_reply_carries_an_excerpt_and_the_whole_reply() {
        let long = "x".repeat(1000);
        match parse(&long) {
            Err(LlmError::BadReply { excerpt, reply, .. }) => {
                assert!(excerpt.chars().count() <= EXCERPT_CHARS + 1);
                assert_eq!(reply, long);
            }
            other => panic!("{other:?}"),
        }
    }
}
