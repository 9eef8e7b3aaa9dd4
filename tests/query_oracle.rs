//! The question set's oracle (`query/oracle.rs`) proven against the
//! sandbox's own ground truth (`Sandbox::books`) where the two overlap, and
//! the question set (`query/questions.yaml`) checked: every expectation is
//! computable on both organisations' books, and every metric and dimension
//! of the semantic model is asked about. Needs no engine and no warehouse.

#[path = "query/oracle.rs"]
mod oracle;
#[path = "query/set.rs"]
mod set;

use std::collections::{BTreeMap, BTreeSet};

use oracle::{Expect, Oracle};
use set::{question_set, Expectation};
use xero_sandbox::{Sandbox, SandboxConfig};

/// The oracle agrees with the sandbox's own ground truth (`books()`) where
/// the two overlap, so it is proven independently of the engine.
#[test]
fn the_oracle_agrees_with_the_sandboxs_books() {
    let set = question_set();
    let as_of = oracle::parse_day(&set.as_of).expect("as_of");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = rt
        .block_on(Sandbox::start(
            SandboxConfig::new("oracle", "secret")
                .invoices(set.invoices)
                .seed(set.seed)
                .organisations(set.organisations)
                .as_of(as_of),
        ))
        .expect("sandbox");
    for org in sandbox.tenant_ids() {
        let books = sandbox.books(Some(&org), true).expect("books");
        let ledger = sandbox.ledger(Some(&org)).expect("ledger");
        let o = Oracle::new(&ledger);
        let one = |e: Expect| -> f64 {
            let got = o.expect(&e, as_of).expect("oracle");
            got.rows[0].cells[e.dimensions.len()]
                .as_f64()
                .unwrap_or(0.0)
        };
        let money = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let close = |what: &str, a: f64, b: f64| {
            assert!((a - b).abs() < 0.005, "{org} {what}: oracle {a}, books {b}");
        };
        let posted = &books["invoices"]["posted_by_type"];
        let m = |name: &str| Expect {
            metrics: vec![name.to_owned()],
            ..Expect::default()
        };
        close(
            "revenue",
            one(m("revenue")),
            money(&posted["ACCREC"]["sub_total"]),
        );
        close(
            "expenses",
            one(m("expenses")),
            money(&posted["ACCPAY"]["sub_total"]),
        );
        close(
            "invoice count",
            one(m("invoice_count")),
            money(&posted["ACCREC"]["count"]),
        );
        close(
            "revenue including tax",
            one(Expect {
                including_tax: true,
                ..m("revenue")
            }),
            money(&posted["ACCREC"]["total"]),
        );
        let by_status = &books["invoices"]["by_type_and_status"];
        close(
            "receivables",
            one(m("receivables")),
            money(&by_status["ACCREC:AUTHORISED"]["amount_due"]),
        );
        close(
            "payables",
            one(m("payables")),
            money(&by_status["ACCPAY:AUTHORISED"]["amount_due"]),
        );
        close(
            "cash received and paid",
            one(m("cash_received")) + one(m("cash_paid")),
            money(&books["payments"]["authorised_amount"]),
        );
        // Revenue by customer and month against the books' detail.
        let detail = o
            .expect(
                &Expect {
                    metrics: vec!["revenue".into(), "invoice_count".into()],
                    dimensions: vec!["customer".into(), "month".into()],
                    ..Expect::default()
                },
                as_of,
            )
            .expect("detail");
        let mut theirs: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for r in books["by_contact_month"].as_array().expect("detail") {
            if r["type"] == "ACCREC" {
                let e = theirs
                    .entry((
                        r["contact_name"].as_str().unwrap_or_default().to_owned(),
                        r["month"].as_str().unwrap_or_default().to_owned(),
                    ))
                    .or_default();
                e.0 += money(&r["sub_total"]);
                e.1 += money(&r["count"]);
            }
        }
        assert_eq!(detail.rows.len(), theirs.len(), "{org}: groups");
        for r in &detail.rows {
            let k = (
                r.cells[0].as_str().unwrap_or_default().to_owned(),
                r.cells[1].as_str().unwrap_or_default().to_owned(),
            );
            let t = theirs
                .get(&k)
                .unwrap_or_else(|| panic!("{org}: no {k:?} in the books"));
            close(&format!("revenue {k:?}"), money(&r.cells[2]), t.0);
            close(&format!("invoices {k:?}"), money(&r.cells[3]), t.1);
        }
        // Bank movements against the trial balance of the bank accounts.
        let bank = o
            .expect(
                &Expect {
                    metrics: vec!["bank_movement".into()],
                    dimensions: vec!["account".into()],
                    ..Expect::default()
                },
                as_of,
            )
            .expect("bank");
        for line in books["journals"]["trial_balance"].as_array().expect("tb") {
            if line["AccountType"] != "BANK" {
                continue;
            }
            let name = line["AccountName"].as_str().unwrap_or_default();
            let ours = bank
                .rows
                .iter()
                .find(|r| r.cells[0] == name)
                .map_or(0.0, |r| money(&r.cells[1]));
            close(&format!("bank {name}"), ours, money(&line["balance"]));
        }
        // Gross margin: revenue-type and direct-cost balances of the trial balance.
        let tb_margin: f64 = books["journals"]["trial_balance"]
            .as_array()
            .expect("tb")
            .iter()
            .filter(|l| {
                matches!(
                    l["AccountType"].as_str(),
                    Some("REVENUE" | "SALES" | "DIRECTCOSTS")
                )
            })
            .map(|l| -money(&l["balance"]))
            .sum();
        close("gross margin", one(m("gross_margin")), tb_margin);
        // The placeholders resolve.
        let names = oracle::placeholders(&ledger, as_of).expect("placeholders");
        eprintln!("{org} ({}): {names:?}", ledger.name);
        // Every expectation of the set is computable on these books.
        for q in &set.questions {
            if let Expectation::Rows(e) = &q.expect {
                let e = oracle::substitute_expect(e, &names);
                let want = o
                    .expect(&e, as_of)
                    .unwrap_or_else(|err| panic!("{}: {err}", q.id));
                assert!(
                    !want.rows.is_empty(),
                    "{}: the books have no rows for it",
                    q.id
                );
                // LEDGERLAKE_DUMP_EXPECTED=1 prints every expected answer.
                if std::env::var_os("LEDGERLAKE_DUMP_EXPECTED").is_some() {
                    eprintln!("{} {}\n{}", q.id, q.question, oracle::render(&want, 6));
                }
            }
        }
    }
    drop(sandbox);
}

/// The set covers the semantic model: every metric and every dimension is
/// asked about, there are follow-ups and questions to decline.
#[test]
fn the_question_set_covers_every_metric_and_dimension() {
    let set = question_set();
    assert!(
        set.questions.len() >= 90,
        "{} questions",
        set.questions.len()
    );
    let mut metrics = BTreeSet::new();
    let mut dimensions = BTreeSet::new();
    let mut declined = 0;
    for q in &set.questions {
        match &q.expect {
            Expectation::Declined(_) => declined += 1,
            Expectation::Rows(e) => {
                metrics.extend(e.metrics.iter().cloned());
                dimensions.extend(e.dimensions.iter().cloned());
                dimensions.extend(e.filters.keys().cloned());
            }
        }
    }
    for m in oracle::METRICS {
        assert!(metrics.contains(*m), "no question about {m}");
    }
    for d in oracle::DIMENSIONS {
        assert!(dimensions.contains(*d), "no question by or filtered on {d}");
    }
    let model: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(include_str!("../templates/semantic/model.yaml")).expect("model");
    for key in ["metrics", "dimensions"] {
        let known: &[&str] = if key == "metrics" {
            oracle::METRICS
        } else {
            oracle::DIMENSIONS
        };
        for (name, _) in model[key].as_mapping().expect("mapping") {
            let name = name.as_str().expect("name");
            assert!(
                known.contains(&name),
                "the oracle does not know {key} {name}"
            );
        }
    }
    assert!(declined >= 3, "{declined} questions to decline");
    assert!(
        set.questions
            .iter()
            .filter(|q| q.follow_up_of.is_some())
            .count()
            >= 8
    );
}
