//! The query service's question set (issue 11): every question of
//! `query/questions.yaml` asked through the offline engine over a sandbox
//! company's transformed dataset, and its rows compared with what the
//! company's own books say (`query/oracle.rs`, computed from the sandbox's
//! records, never through the transformed tables or the planner).
//!
//! One sandbox with two organisations (different books) is ingested and
//! transformed into two tenants of one local cloud, in process (the tenant
//! job's library: its ingest and its transform). `cargo test --workspace
//! --test query_questions -- --nocapture` prints the report: correct,
//! declined and wrong counts, the accuracy, and every miss with its
//! question, plan, SQL and difference (`LEDGERLAKE_QUESTION_REPORT=<file>`
//! writes it to a file as well).

#[path = "query/oracle.rs"]
mod oracle;
#[path = "query/set.rs"]
mod set;

// The tenant job's test support: a tenant's resources and grants from the
// reconciler's own plan, shared rather than copied.
#[path = "../tenant-job/tests/support/mod.rs"]
mod job_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, Warehouse};
use cloud_local::LocalAdapters;
use tempfile::TempDir;
use time::Date;
use xero::client::XeroClient;
use xero::limits::{LimitConfig, RateLimits};
use xero::resources::Resource;
use xero_sandbox::{Ledger, Sandbox, SandboxConfig, SandboxLimits};

use query::answer::Answer;
use query::engine::{Ask, EngineConfig, GeneratorChoice, QueryEngine, TenantScope};
use query::plan::Plan;
use query::semantic::SemanticModel;

use oracle::{Expect, Expected, Oracle};
use set::{question_set, Expectation, QuestionSet};

/// The share of questions that must be answered exactly right.
const MIN_ACCURACY: f64 = 0.85;

/// One tenant: its identity and the books of the organisation it ingested.
struct Books {
    id: TenantId,
    cred: Credential,
    ledger: Ledger,
}

/// Both tenants, ingested and transformed once for every test of this file.
struct World {
    _dir: TempDir,
    adapters: LocalAdapters,
    tenants: Vec<Books>,
    as_of: Date,
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    // Built on a runtime of its own: each test has its own runtime, and the
    // world (a local cloud on a folder) outlives them all.
    WORLD.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(build_world())
        })
        .join()
        .expect("building the world")
    })
}

async fn build_world() -> World {
    let set = question_set();
    let as_of = oracle::parse_day(&set.as_of).expect("as_of");
    let sandbox = Sandbox::start(
        SandboxConfig::new(job_support::CLIENT_ID, job_support::CLIENT_SECRET)
            .invoices(set.invoices)
            .seed(set.seed)
            .organisations(set.organisations)
            .as_of(as_of)
            .limits(SandboxLimits {
                enabled: false,
                per_minute: 1_000_000,
                per_day: 10_000_000,
                app_per_minute: 10_000_000,
                ..SandboxLimits::default()
            }),
    )
    .await
    .expect("sandbox");
    let dir = TempDir::new().expect("tempdir");
    let adapters = job_support::open(dir.path());
    let tokens = sandbox.issue_tokens(None);
    let mut tenants = Vec::new();
    for (n, org) in sandbox.tenant_ids().iter().enumerate() {
        let problems = sandbox.problems(Some(org)).expect("org");
        assert!(
            problems.is_empty(),
            "the sandbox's books are unsound: {problems:?}"
        );
        let id = TenantId::parse(&format!("books{n}")).expect("tenant id");
        let cred = job_support::provision(&adapters, &id).await;
        let cloud = adapters.clone().into_cloud();
        // The tenant job's own ingest, with a client bound to this organisation.
        let client = XeroClient::builder(
            org.clone(),
            Arc::new(xero::token::StaticToken(tokens.access_token.clone())),
        )
        .api_base(sandbox.api_base())
        .limits(RateLimits::new(LimitConfig {
            per_minute: 1_000_000,
            per_day: 10_000_000,
            app_per_minute: 10_000_000,
            ..LimitConfig::default()
        }))
        .build()
        .expect("client");
        let bucket = naming::bucket_name(None, &id);
        tenant_job::ingest::run(&tenant_job::ingest::IngestContext {
            cloud: cloud.clone(),
            cred: cred.clone(),
            bucket: bucket.clone(),
            run_id: "r1".into(),
            client,
            resources: Resource::ALL.to_vec(),
            manifests_written: None,
        })
        .await
        .expect("ingest");
        let report = tenant_job::transform::run(&tenant_job::transform::TransformContext {
            cloud,
            cred: cred.clone(),
            bucket,
            raw_dataset: naming::raw_dataset(&id),
            transformed_dataset: naming::transformed_dataset(&id),
            run_id: "r1".into(),
            dialect: tenant_job::transform::Dialect::DuckDb,
        })
        .await
        .expect("transform");
        eprintln!(
            "tenant {id}: organisation {org}, {} tables in {} ms",
            report.models.len(),
            report.timings.total_ms
        );
        let ledger = sandbox.ledger(Some(org)).expect("ledger");
        tenants.push(Books { id, cred, ledger });
    }
    sandbox.shutdown().await;
    World {
        _dir: dir,
        adapters,
        tenants,
        as_of,
    }
}

fn engine(w: &World) -> Arc<QueryEngine> {
    let warehouse: Arc<dyn Warehouse> = w.adapters.warehouse.clone();
    Arc::new(QueryEngine::new(
        Arc::new(SemanticModel::builtin().expect("semantic model")),
        warehouse,
        EngineConfig::default(),
        None,
    ))
}

fn scope(b: &Books) -> TenantScope {
    TenantScope {
        tenant: b.id.clone(),
        credential: b.cred.clone(),
        dataset: naming::transformed_dataset(&b.id),
        project: None,
        offline_only: true,
        warehouse: None,
    }
}

/// How one question went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered with the expected rows, or declined as it should be.
    Correct,
    /// Declined (or refused) a question it should have answered.
    Declined,
    /// Answered with other rows, or answered what it should decline.
    Wrong,
    /// The engine returned an error.
    Crashed,
}

struct Graded {
    id: String,
    outcome: Outcome,
    /// Answered with rows that are another tenant's answer and not its own.
    foreign: bool,
    detail: String,
    /// The rows answered (empty when declined).
    rows: Vec<Vec<serde_json::Value>>,
    batch: Option<String>,
}

/// Asks every question as tenant `me`, grading each against the oracle.
async fn ask_all(
    w: &World,
    engine: &Arc<QueryEngine>,
    me: usize,
    set: &QuestionSet,
) -> Vec<Graded> {
    let books = &w.tenants[me];
    let names = oracle::placeholders(&books.ledger, w.as_of).expect("placeholders");
    let others: Vec<(&Books, BTreeMap<String, String>)> = w
        .tenants
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, b)| {
            let n = oracle::placeholders(&b.ledger, w.as_of).expect("placeholders");
            (b, n)
        })
        .collect();
    let own = Oracle::new(&books.ledger);
    let scope = scope(books);
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    let mut out = Vec::new();
    for q in &set.questions {
        let text = oracle::substitute(&q.question, &names);
        let as_of = oracle::parse_day(&q.as_of).expect("as_of");
        let previous = q.follow_up_of.as_ref().and_then(|p| plans.get(p).cloned());
        // On a task of its own, so a panic in the engine is graded as a
        // crash of this question and the rest are still asked.
        let asked = {
            let (engine, scope) = (engine.clone(), scope.clone());
            let ask = Ask {
                question: text.clone(),
                as_of,
                generator: GeneratorChoice::Auto,
                previous,
            };
            tokio::spawn(async move { engine.ask(&scope, &ask).await.map_err(|e| e.to_string()) })
                .await
                .unwrap_or_else(|e| Err(format!("the engine panicked: {e}")))
        };
        let answer: Answer = match asked {
            Ok(a) => a,
            Err(e) => {
                out.push(Graded {
                    id: q.id.clone(),
                    outcome: Outcome::Crashed,
                    foreign: false,
                    detail: format!("Q: {text}\n  error: {e}"),
                    rows: Vec::new(),
                    batch: q.batch.clone(),
                });
                continue;
            }
        };
        if let Some(plan) = &answer.plan {
            plans.insert(q.id.clone(), plan.clone());
        }
        let head = format!(
            "Q: {text}\n  plan: {}\n  sql: {}\n  explanation: {}",
            answer.plan.as_ref().map_or_else(
                || "-".to_owned(),
                |p| serde_json::to_string(p).unwrap_or_default()
            ),
            if answer.sql.is_empty() {
                "-"
            } else {
                answer.sql.as_str()
            },
            answer.explanation
        );
        let graded = match &q.expect {
            Expectation::Declined(_) if !answer.answered => {
                (Outcome::Correct, false, String::new())
            }
            Expectation::Declined(_) => (
                Outcome::Wrong,
                false,
                format!(
                    "{head}\n  answered a question it should decline ({} rows)",
                    answer.row_count
                ),
            ),
            Expectation::Rows(e) => {
                let e = oracle::substitute_expect(e, &names);
                let want = own
                    .expect(&e, as_of)
                    .unwrap_or_else(|err| panic!("{}: the expectation is invalid: {err}", q.id));
                if !answer.answered {
                    (
                        Outcome::Declined,
                        false,
                        format!(
                            "{head}\n  declined ({}), expected:\n{}",
                            answer.refusal.clone().unwrap_or_default(),
                            indent(&oracle::render(&want, 8))
                        ),
                    )
                } else {
                    let columns: Vec<String> =
                        answer.columns.iter().map(|c| c.name.clone()).collect();
                    let diffs = oracle::differences(&want, &columns, &answer.rows);
                    let foreign = !diffs.is_empty()
                        && others.iter().any(|(b, n)| {
                            let theirs = Oracle::new(&b.ledger)
                                .expect(&oracle::substitute_expect(&e, n), as_of);
                            theirs.is_ok_and(|t: Expected| {
                                oracle::differences(&t, &columns, &answer.rows).is_empty()
                            })
                        });
                    if diffs.is_empty() {
                        (Outcome::Correct, false, String::new())
                    } else {
                        (
                            Outcome::Wrong,
                            foreign,
                            format!(
                                "{head}\n  differences:\n{}\n  expected:\n{}  got ({} rows): {}",
                                indent(
                                    &diffs
                                        .iter()
                                        .take(12)
                                        .cloned()
                                        .collect::<Vec<_>>()
                                        .join("\n")
                                ),
                                indent(&oracle::render(&want, 8)),
                                answer.row_count,
                                got_rows(&columns, &answer.rows, 8)
                            ),
                        )
                    }
                }
            }
        };
        // Whatever it answered, the SQL names no other tenant's dataset.
        let mut foreign = graded.1;
        for (b, _) in &others {
            if answer.sql.contains(&naming::transformed_dataset(&b.id))
                || answer.sql.contains(&naming::raw_dataset(&b.id))
            {
                foreign = true;
            }
        }
        out.push(Graded {
            id: q.id.clone(),
            outcome: graded.0,
            foreign,
            detail: graded.2,
            rows: answer.rows.clone(),
            batch: q.batch.clone(),
        });
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn got_rows(columns: &[String], rows: &[Vec<serde_json::Value>], limit: usize) -> String {
    let mut out = format!("{columns:?}");
    for r in rows.iter().take(limit) {
        let _ = write!(out, "\n    {}", serde_json::Value::Array(r.clone()));
    }
    if rows.len() > limit {
        let _ = write!(out, "\n    …");
    }
    out
}

struct Tally {
    correct: usize,
    declined: usize,
    wrong: usize,
    crashed: usize,
}

fn tally(graded: &[Graded]) -> Tally {
    let n = |o: Outcome| graded.iter().filter(|g| g.outcome == o).count();
    Tally {
        correct: n(Outcome::Correct),
        declined: n(Outcome::Declined),
        wrong: n(Outcome::Wrong),
        crashed: n(Outcome::Crashed),
    }
}

fn report(title: &str, graded: &[Graded]) -> String {
    let t = tally(graded);
    let total = graded.len();
    let mut out = format!(
        "== {title}: {total} questions: {} correct, {} declined, {} wrong, {} crashed; accuracy {:.1}%\n",
        t.correct,
        t.declined,
        t.wrong,
        t.crashed,
        100.0 * t.correct as f64 / total.max(1) as f64
    );
    let batches: std::collections::BTreeSet<&str> =
        graded.iter().filter_map(|g| g.batch.as_deref()).collect();
    for b in batches {
        let part: Vec<&Graded> = graded
            .iter()
            .filter(|g| g.batch.as_deref() == Some(b))
            .collect();
        let correct = part
            .iter()
            .filter(|g| g.outcome == Outcome::Correct)
            .count();
        let _ = writeln!(
            out,
            "   of which batch {b}: {} questions, {correct} correct; accuracy {:.1}%",
            part.len(),
            100.0 * correct as f64 / part.len().max(1) as f64
        );
    }
    for g in graded.iter().filter(|g| g.outcome != Outcome::Correct) {
        let _ = writeln!(
            out,
            "-- {} {:?}{}\n  {}",
            g.id,
            g.outcome,
            if g.foreign {
                " (ANOTHER TENANT'S ROWS)"
            } else {
                ""
            },
            g.detail.trim_end()
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_question_set_is_answered_from_the_tenants_own_books() {
    let w = world();
    let set = question_set();
    let engine = engine(w);
    let graded = ask_all(w, &engine, 0, &set).await;
    let text = report("question set, tenant books0", &graded);
    println!("{text}");
    if let Ok(path) = std::env::var("LEDGERLAKE_QUESTION_REPORT") {
        std::fs::write(&path, &text).expect("write the report");
    }
    let t = tally(&graded);
    assert_eq!(t.crashed, 0, "the engine failed on a question");
    for (q, g) in set.questions.iter().zip(&graded) {
        if matches!(q.expect, Expectation::Declined(_)) {
            assert_eq!(g.outcome, Outcome::Correct, "{} must be declined", q.id);
        }
        assert!(
            !g.foreign,
            "{} was answered with another tenant's rows",
            q.id
        );
    }
    let accuracy = t.correct as f64 / graded.len() as f64;
    assert!(
        accuracy >= MIN_ACCURACY,
        "accuracy {:.1}% is under {:.0}%",
        accuracy * 100.0,
        MIN_ACCURACY * 100.0
    );
}

/// Two organisations with different books asking the same questions: each
/// tenant gets its own books' answers, and those differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_asking_the_same_questions_get_their_own_answers() {
    let w = world();
    let set = question_set();
    let engine = engine(w);
    assert!(w.tenants.len() >= 2);
    // The books differ: the same question has different true answers.
    let revenue = Expect {
        metrics: vec!["revenue".into()],
        ..Expect::default()
    };
    let truth: Vec<Expected> = w.tenants[..2]
        .iter()
        .map(|b| {
            Oracle::new(&b.ledger)
                .expect(&revenue, w.as_of)
                .expect("oracle")
        })
        .collect();
    assert_ne!(
        truth[0].rows[0].cells, truth[1].rows[0].cells,
        "the two organisations' books are alike"
    );
    let mut text = String::new();
    let mut answers = Vec::new();
    for me in 0..2 {
        let graded = ask_all(w, &engine, me, &set).await;
        text.push_str(&report(&format!("two tenants, tenant books{me}"), &graded));
        for g in &graded {
            assert!(
                !g.foreign,
                "books{me}: {} was answered with another tenant's rows",
                g.id
            );
        }
        let t = tally(&graded);
        assert_eq!(t.crashed, 0, "books{me}: the engine failed on a question");
        assert!(
            t.correct as f64 >= MIN_ACCURACY * graded.len() as f64,
            "books{me}: {} of {} correct",
            t.correct,
            graded.len()
        );
        answers.push(graded);
    }
    // Correct for both and with different rows: each got its own books.
    let differing = answers[0]
        .iter()
        .zip(&answers[1])
        .filter(|(a, b)| {
            a.outcome == Outcome::Correct
                && b.outcome == Outcome::Correct
                && !a.rows.is_empty()
                && a.rows != b.rows
        })
        .count();
    let _ = writeln!(
        text,
        "{differing} questions answered correctly for both tenants with different rows"
    );
    println!("{text}");
    assert!(
        differing * 2 >= set.questions.len(),
        "only {differing} questions got different (correct) answers for the two tenants"
    );
}

/// A tenant asking about a customer only the other tenant has never gets
/// that customer's figures: it is declined (an unknown name) or finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_of_another_tenant_is_unknown_here() {
    let w = world();
    let engine = engine(w);
    for (me, other) in [(0, 1), (1, 0)] {
        let mine: std::collections::BTreeSet<&str> = w.tenants[me]
            .ledger
            .contacts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let theirs = Oracle::new(&w.tenants[other].ledger);
        let by_customer = theirs
            .expect(
                &Expect {
                    metrics: vec!["revenue".into()],
                    dimensions: vec!["customer".into()],
                    ..Expect::default()
                },
                w.as_of,
            )
            .expect("oracle");
        // Their biggest customer whose name this tenant's books do not have.
        let Some((name, revenue)) = by_customer.rows.iter().find_map(|r| {
            let name = r.cells[0].as_str()?;
            (!mine.contains(name)).then(|| (name.to_owned(), r.cells[1].clone()))
        }) else {
            continue;
        };
        let answer = engine
            .ask(
                &scope(&w.tenants[me]),
                &Ask {
                    question: format!("How much did {name} buy from us?"),
                    as_of: w.as_of,
                    generator: GeneratorChoice::Auto,
                    previous: None,
                },
            )
            .await
            .expect("ask");
        let leaked = answer.rows.iter().flatten().any(|v| *v == revenue);
        let empty = answer
            .rows
            .iter()
            .flatten()
            .all(|v| v.is_null() || v.as_f64() == Some(0.0) || v.is_string());
        println!(
            "books{me} asked about {name} (books{other}'s customer): answered {}, rows {:?}, {}",
            answer.answered, answer.rows, answer.explanation
        );
        assert!(!leaked, "books{me} got books{other}'s revenue from {name}");
        assert!(
            !answer.answered || empty,
            "books{me} answered about {name}, whom its books do not have: {:?}",
            answer.rows
        );
    }
}
