//! The question set's file, `questions.yaml` beside this one.
// Shared by two test targets, each of which uses a part.
#![allow(dead_code)]

use serde::Deserialize;

use crate::oracle::Expect;

pub const QUESTIONS: &str = include_str!("questions.yaml");

/// The question set: the sandbox it is asked of, and the questions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionSet {
    pub seed: u64,
    pub invoices: usize,
    pub organisations: usize,
    pub as_of: String,
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub question: String,
    pub as_of: String,
    /// The question this one follows up in the same conversation.
    #[serde(default)]
    pub follow_up_of: Option<String>,
    /// A batch the report gives its own accuracy (`held_out`: written after
    /// the engine was tuned on the others).
    #[serde(default)]
    pub batch: Option<String>,
    pub expect: Expectation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expectation {
    /// `declined`: the planner must say it cannot answer.
    Declined(Declined),
    Rows(Box<Expect>),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Declined {
    Declined,
}

/// The set, checked: unique ids, one as-of, follow-ups after what they follow.
pub fn question_set() -> QuestionSet {
    let set: QuestionSet = serde_yaml_ng::from_str(QUESTIONS).expect("questions.yaml");
    let mut ids = std::collections::BTreeSet::new();
    for q in &set.questions {
        assert!(ids.insert(q.id.clone()), "duplicate id {}", q.id);
        assert_eq!(q.as_of, set.as_of, "{}: as_of is the sandbox's", q.id);
        if let Some(parent) = &q.follow_up_of {
            assert!(
                ids.contains(parent),
                "{} follows {parent}, which must come first",
                q.id
            );
        }
    }
    set
}
