//! What the CLI prints: tables for people, JSON for scripts.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

use crate::controller::{Backoff, NextAttempt};
use crate::reconciler::TenantReport;
use cloud::naming::TenantId;
use job_contract::summary::{transform_warnings, TestWarning};

use crate::service::tokens::IssuedToken;
use crate::store::{
    ApiTokenRecord, Phase, ResourceRecord, ResourceStatus, RunRecord, Store, StoreError,
    TenantRecord,
};

/// How a command prints its result: a table for people, JSON for scripts,
/// CSV for an answer's rows (`query`; other commands print a table for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

/// `tenants show --output json`: `{"id", "phase", "resources": [{"kind", "name",
/// "status", "message"}], "xero": {"organisations", "needs_consent"}}`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub id: String,
    pub phase: String,
    /// The cell it was placed in; `local` for a tenant without one.
    pub cell: String,
    pub resources: Vec<ResourceView>,
    pub xero: XeroView,
    /// For a Failed tenant: its failed attempts and when the service's next
    /// pass is due (the controller's backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<NextAttempt>,
    #[serde(skip)]
    pub message: Option<String>,
}

/// The tenant's Xero connection as the control plane knows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XeroView {
    /// Connected organisation (Xero tenant) ids; empty before consent.
    pub organisations: Vec<String>,
    /// Xero refused the stored refresh token: someone must connect again.
    pub needs_consent: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    pub kind: String,
    pub name: String,
    pub status: String,
    pub message: Option<String>,
}

impl TenantView {
    /// The view of tenant `id` from the store; `None` when it does not exist.
    pub async fn load(store: &Store, id: &TenantId) -> Result<Option<TenantView>, StoreError> {
        let Some(tenant) = store.get_tenant(id).await? else {
            return Ok(None);
        };
        let resources = store.list_resources(id).await?;
        let xero = XeroView {
            organisations: store.connections_of(id).await?,
            needs_consent: store.needs_consent(id).await?,
        };
        Ok(Some(TenantView::new(&tenant, &resources, xero)))
    }

    pub fn new(tenant: &TenantRecord, resources: &[ResourceRecord], xero: XeroView) -> Self {
        TenantView {
            id: tenant.id.to_string(),
            phase: tenant.phase.to_string(),
            cell: tenant
                .cell
                .clone()
                .unwrap_or_else(|| crate::service::cells::NO_CELL.to_owned()),
            xero,
            retry: match tenant.phase {
                Phase::Failed => Backoff::default().next_attempt(resources),
                _ => None,
            },
            message: tenant.message.clone(),
            resources: resources
                .iter()
                .map(|r| ResourceView {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    status: r.status.to_string(),
                    message: r.message.clone(),
                })
                .collect(),
        }
    }

    fn ready(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.status == ResourceStatus::Ready.to_string())
            .count()
    }
}

pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One object for one tenant, an array for several.
pub fn print_views(views: &[TenantView], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return match views {
            [one] => print_json(one),
            many => print_json(many),
        };
    }
    for v in views {
        println!("tenant {}  phase {}  cell {}", v.id, v.phase, v.cell);
        if let Some(m) = &v.message {
            println!("  {m}");
        }
        if let Some(r) = &v.retry {
            println!(
                "  {} failed attempt{}; the service tries again after {}",
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            );
        }
        match (v.xero.needs_consent, v.xero.organisations.len()) {
            (true, _) => println!(
                "  Xero: needs consent again (the refresh token was refused); reconnect at /connect/xero?tenant={}",
                v.id
            ),
            (false, 0) => println!("  Xero: not connected"),
            (false, n) => println!("  Xero: connected ({n} organisation{})", if n == 1 { "" } else { "s" }),
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["KIND", "NAME", "STATUS", "MESSAGE"]);
        for r in &v.resources {
            table.add_row([
                r.kind.as_str(),
                r.name.as_str(),
                r.status.as_str(),
                r.message.as_deref().unwrap_or(""),
            ]);
        }
        println!("{table}");
    }
    Ok(())
}

pub fn print_list(views: &[TenantView], format: OutputFormat) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        phase: &'a str,
        cell: &'a str,
        resources_ready: usize,
        resources_total: usize,
    }
    let rows: Vec<Row> = views
        .iter()
        .map(|v| Row {
            id: &v.id,
            phase: &v.phase,
            cell: &v.cell,
            resources_ready: v.ready(),
            resources_total: v.resources.len(),
        })
        .collect();
    if format == OutputFormat::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no tenants");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["TENANT", "PHASE", "CELL", "RESOURCES READY"]);
    for r in &rows {
        table.add_row([
            r.id.to_owned(),
            r.phase.to_owned(),
            r.cell.to_owned(),
            format!("{}/{}", r.resources_ready, r.resources_total),
        ]);
    }
    println!("{table}");
    Ok(())
}

pub fn print_teardown(report: &TenantReport, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(report);
    }
    if report.phase.is_none() {
        println!(
            "tenant {} torn down ({} resources removed)",
            report.tenant, report.changed
        );
    }
    for kept in &report.kept {
        println!("kept {kept} (--keep-data)");
    }
    Ok(())
}

pub fn print_reconcile(reports: &[TenantReport], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(reports);
    }
    let changed: usize = reports.iter().map(|r| r.changed).sum();
    let failed = reports.iter().filter(|r| !r.is_success()).count();
    println!(
        "reconciled {} tenant(s): {} resource(s) changed, {} tenant(s) failed",
        reports.len(),
        changed,
        failed
    );
    for r in reports.iter().filter(|r| r.changed > 0 || !r.is_success()) {
        let phase = r
            .phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "deleted".to_owned());
        println!("  {}: {} ({} changed)", r.tenant, phase, r.changed);
    }
    Ok(())
}

fn run_duration(run: &RunRecord) -> Option<f64> {
    let start = run.started_at?;
    let end = run
        .finished_at
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    Some((end - start).as_seconds_f64())
}

/// Records ingested per resource, from the job's summary.
fn run_counts(run: &RunRecord) -> Vec<(String, u64)> {
    run.summary
        .as_ref()
        .and_then(|s| s.pointer("/ingest/resources"))
        .and_then(|r| r.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["records"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// `runs start` and `runs show`: the run record (JSON: the record itself,
/// with `duration_seconds`).
pub fn print_run(run: &RunRecord, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let mut value = serde_json::to_value(run)?;
        value["duration_seconds"] = serde_json::json!(run_duration(run));
        return print_json(&value);
    }
    println!(
        "run {}  tenant {}  {}  ({})",
        run.id, run.tenant, run.command, run.trigger
    );
    println!("  status    {}", run.status);
    if let Some(d) = run_duration(run) {
        println!("  duration  {d:.1} s");
    }
    if let Some(m) = &run.message {
        println!("  message   {m}");
    }
    for line in raw_upkeep(run) {
        println!("  {line}");
    }
    let counts = run_counts(run);
    if !counts.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["RESOURCE", "RECORDS"]);
        for (resource, records) in counts {
            table.add_row([resource, records.to_string()]);
        }
        println!("{table}");
    }
    if let Some(models) = run
        .summary
        .as_ref()
        .and_then(|s| s.pointer("/transform/models"))
        .and_then(|m| m.as_array())
    {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["MODEL", "ROWS"]);
        for m in models {
            table.add_row([
                m["name"].as_str().unwrap_or("?").to_owned(),
                m["rows"].to_string(),
            ]);
        }
        println!("{table}");
    }
    let warnings = run_warnings(run);
    if !warnings.is_empty() {
        println!(
            "  {} data test{} warned (the tables were published):",
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
        println!("{}", warnings_table(&warnings));
    }
    Ok(())
}

/// Whether the run's transform rebuilt the raw tables and what its
/// compaction deleted, from the job's summary (nothing for runs from before
/// they were reported, or that did not transform).
fn raw_upkeep(run: &RunRecord) -> Vec<String> {
    let Some(t) = run.summary.as_ref().and_then(|s| s.get("transform")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(rebuilt) = t.get("rebuilt").and_then(serde_json::Value::as_bool) {
        out.push(format!(
            "rebuilt   {}",
            if rebuilt {
                "yes (the raw tables were loaded from scratch)"
            } else {
                "no"
            }
        ));
    }
    if let Some(c) = t.get("compaction").filter(|c| c.is_object()) {
        let n = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        out.push(format!(
            "compacted {} manifest{}, {} page{}, {} of superseded raw pages deleted",
            n("manifests"),
            if n("manifests") == 1 { "" } else { "s" },
            n("pages"),
            if n("pages") == 1 { "" } else { "s" },
            human_bytes(n("bytes"))
        ));
        if n("rewritten") > 0 {
            out.push(format!(
                "          rewrote {} manifest{} to the records still kept: {} new page{}, {}",
                n("rewritten"),
                if n("rewritten") == 1 { "" } else { "s" },
                n("rewritten_pages"),
                if n("rewritten_pages") == 1 { "" } else { "s" },
                human_bytes(n("rewritten_bytes"))
            ));
        }
        if let Some(e) = c.get("error").and_then(serde_json::Value::as_str) {
            out.push(format!(
                "          stopped part-way (the next run finishes it): {e}"
            ));
        }
    }
    out
}

/// Bytes in the largest unit that keeps the number at least 1.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The data tests that warned, from the job's summary (none for older runs).
fn run_warnings(run: &RunRecord) -> Vec<TestWarning> {
    run.summary
        .as_ref()
        .and_then(|s| s.get("transform"))
        .map(transform_warnings)
        .unwrap_or_default()
}

/// Characters of a warning's sample shown in the table.
const SAMPLE_CHARS: usize = 160;

fn warnings_table(warnings: &[TestWarning]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["MODEL", "WARNING", "FAILING ROWS", "SAMPLE"]);
    for w in warnings {
        let test = w
            .test
            .strip_prefix(&format!("{}.", w.model))
            .unwrap_or(&w.test);
        let mut sample = w
            .sample
            .iter()
            .map(|row| row.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        if sample.chars().count() > SAMPLE_CHARS {
            sample = sample.chars().take(SAMPLE_CHARS).collect();
            sample.push('…');
        }
        table.add_row([
            w.model.clone(),
            test.to_owned(),
            w.failing_rows.to_string(),
            sample,
        ]);
    }
    table
}

/// `runs list`.
pub fn print_runs(runs: &[RunRecord], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(runs);
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "RUN", "TENANT", "COMMAND", "TRIGGER", "STATUS", "STARTED", "SECONDS", "RECORDS",
    ]);
    for r in runs {
        let started = r
            .started_at
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let records: u64 = run_counts(r).iter().map(|(_, n)| n).sum();
        table.add_row([
            r.id.clone(),
            r.tenant.to_string(),
            r.command.to_string(),
            r.trigger.to_string(),
            r.status.to_string(),
            started,
            run_duration(r)
                .map(|d| format!("{d:.1}"))
                .unwrap_or_default(),
            records.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn rfc3339(t: Option<time::OffsetDateTime>, none: &str) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| none.to_owned())
}

/// `tokens issue`: the secret alone on stdout (JSON: the token with its
/// `secret`), what it is and the warning that it is shown once on stderr.
pub fn print_issued_token(issued: &IssuedToken, format: OutputFormat) -> anyhow::Result<()> {
    let t = &issued.token;
    eprintln!(
        "issued token {} ({:?}) for tenant {}; expires {}",
        t.id,
        t.name,
        t.tenant,
        rfc3339(t.expires_at, "never")
    );
    eprintln!("warning: the secret is shown this once and cannot be shown again; store it now");
    match format {
        OutputFormat::Json => print_json(issued),
        OutputFormat::Table | OutputFormat::Csv => {
            println!("{}", issued.secret.expose_secret());
            Ok(())
        }
    }
}

/// `tokens list`: never a secret or a hash (the records hold neither).
pub fn print_tokens(tokens: &[ApiTokenRecord], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(tokens);
    }
    if tokens.is_empty() {
        println!("no tokens");
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["TOKEN", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED"]);
    for t in tokens {
        table.add_row([
            t.id.clone(),
            t.name.clone(),
            t.state(now).to_owned(),
            rfc3339(Some(t.created_at), ""),
            rfc3339(t.expires_at, "never"),
            rfc3339(t.last_used_at, "never"),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `tokens revoke`.
pub fn print_revoked_token(token: &ApiTokenRecord, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => print_json(token),
        OutputFormat::Table | OutputFormat::Csv => {
            println!(
                "token {} ({:?}) of tenant {} is revoked (since {})",
                token.id,
                token.name,
                token.tenant,
                rfc3339(token.revoked_at, "now")
            );
            Ok(())
        }
    }
}

/// `query`: the rows as a table (with the explanation and the SQL), the
/// whole recorded answer as JSON, or the rows as CSV.
pub fn print_answer(
    answer: &crate::service::questions::RecordedAnswer,
    format: OutputFormat,
) -> anyhow::Result<()> {
    use crate::service::questions::csv_field;
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let a = &answer.answer;
    match format {
        OutputFormat::Json => print_json(answer),
        OutputFormat::Csv => {
            let header: Vec<String> = a.columns.iter().map(|c| csv_field(&c.name)).collect();
            println!("{}", header.join(","));
            for row in &a.rows {
                let cells: Vec<String> = row.iter().map(|v| csv_field(&cell(v))).collect();
                println!("{}", cells.join(","));
            }
            Ok(())
        }
        OutputFormat::Table => {
            if a.answered {
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                table.set_header(a.columns.iter().map(|c| c.name.clone()));
                for row in &a.rows {
                    table.add_row(row.iter().map(cell));
                }
                println!("{table}");
            }
            println!("{}", a.explanation);
            if !a.sql.is_empty() {
                println!("\nSQL: {}", a.sql);
            }
            println!(
                "\nquery {} · conversation {} · {} ms",
                answer.id, answer.conversation, a.timings_ms.total_ms
            );
            Ok(())
        }
    }
}

/// `cells list`: one row per cell.
pub fn print_cells(
    cells: &[crate::service::cells::CellView],
    format: OutputFormat,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(cells);
    }
    if cells.is_empty() {
        println!("no cells (tenants have none: `cells add` registers one)");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["CELL", "PROJECT", "REGION", "STATE", "TENANTS", "ROOM"]);
    for c in cells {
        table.add_row([
            c.id.clone(),
            c.project.clone(),
            c.region.clone(),
            c.state.to_string(),
            format!("{}/{}", c.tenants, c.capacity),
            c.room.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `cells add|show|drain|activate`: one cell (with its tenants, when known).
pub fn print_cell<T: Serialize>(
    cell: &crate::service::cells::CellView,
    json: &T,
    format: OutputFormat,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(json);
    }
    println!(
        "cell {}  project {}  region {}  state {}",
        cell.id, cell.project, cell.region, cell.state
    );
    println!(
        "  tenants {}/{}, room for {} more",
        cell.tenants, cell.capacity, cell.room
    );
    if let Some(ids) = &cell.tenant_ids {
        if !ids.is_empty() {
            println!("  {}", ids.join(" "));
        }
    }
    Ok(())
}

/// `cells sync-secret`: what writing the Xero app's client secret did in each cell.
pub fn print_app_secret_syncs(
    synced: &[crate::service::cells::AppSecretSync],
    format: OutputFormat,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(synced);
    }
    if synced.is_empty() {
        println!("no cells (`cells add` registers one)");
        return Ok(());
    }
    for s in synced {
        println!(
            "cell {}  project {}  Xero app secret {}",
            s.cell, s.project, s.change
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunCommand, RunStatus, RunTrigger};

    fn run(summary: Option<serde_json::Value>) -> RunRecord {
        RunRecord {
            id: "run-1".into(),
            tenant: TenantId::parse("acme").expect("tenant"),
            command: RunCommand::Transform,
            trigger: RunTrigger::Operator,
            status: RunStatus::Succeeded,
            job: None,
            execution_id: None,
            message: None,
            summary,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn runs_show_lists_the_data_tests_that_warned() {
        let summary = serde_json::json!({
            "transform": {
                "models": [{"name": "fct_invoices", "rows": 120}],
                "warnings": [{
                    "model": "fct_invoices",
                    "test": "fct_invoices.relationship(contact_id -> dim_contacts.contact_id)",
                    "failing_rows": 34,
                    "sample": [{"invoice_id": "i-1", "contact_id": "c-9"}],
                }],
            },
        });
        let warnings = run_warnings(&run(Some(summary)));
        assert_eq!(warnings.len(), 1);
        let table = warnings_table(&warnings).to_string();
        for needle in [
            "fct_invoices",
            "relationship(contact_id -> dim_contacts.contact_id)",
            "34",
            "\"contact_id\":\"c-9\"",
        ] {
            assert!(table.contains(needle), "{needle} missing from\n{table}");
        }
        // Runs from before severities, and runs that did not transform.
        assert!(raw_upkeep(&run(None)).is_empty());
        assert!(run_warnings(&run(None)).is_empty());
        assert!(
            run_warnings(&run(Some(serde_json::json!({"transform": {"models": []}})))).is_empty()
        );
    }

    #[test]
    fn runs_show_says_whether_it_rebuilt_and_what_compaction_deleted() {
        let summary = serde_json::json!({
            "transform": {
                "models": [],
                "rebuilt": true,
                "compaction": {"manifests": 3, "pages": 1, "bytes": 2_621_440, "rewritten": 1,
                               "rewritten_pages": 2, "rewritten_bytes": 3072, "error": "injected"},
            },
        });
        assert_eq!(
            raw_upkeep(&run(Some(summary))),
            vec![
                "rebuilt   yes (the raw tables were loaded from scratch)".to_owned(),
                "compacted 3 manifests, 1 page, 2.5 MiB of superseded raw pages deleted".to_owned(),
                "          rewrote 1 manifest to the records still kept: 2 new pages, 3.0 KiB"
                    .to_owned(),
                "          stopped part-way (the next run finishes it): injected".to_owned(),
            ]
        );
        let summary = serde_json::json!({
            "transform": {"rebuilt": false, "compaction": {"manifests": 0, "pages": 0, "bytes": 0}},
        });
        assert_eq!(
            raw_upkeep(&run(Some(summary))),
            vec![
                "rebuilt   no".to_owned(),
                "compacted 0 manifests, 0 pages, 0 B of superseded raw pages deleted".to_owned(),
            ]
        );
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
