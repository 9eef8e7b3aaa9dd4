//! What the CLI prints: tables for people, JSON for scripts.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::reconciler::TenantReport;
use cloud::naming::TenantId;

use crate::store::{ResourceRecord, ResourceStatus, RunRecord, Store, StoreError, TenantRecord};

/// `tenants show --output json`: `{"id", "phase", "resources": [{"kind", "name",
/// "status", "message"}], "xero": {"organisations", "needs_consent"}}`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub id: String,
    pub phase: String,
    pub resources: Vec<ResourceView>,
    pub xero: XeroView,
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
            xero,
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

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
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
        println!("tenant {}  phase {}", v.id, v.phase);
        if let Some(m) = &v.message {
            println!("  {m}");
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
        resources_ready: usize,
        resources_total: usize,
    }
    let rows: Vec<Row> = views
        .iter()
        .map(|v| Row {
            id: &v.id,
            phase: &v.phase,
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
    table.set_header(["TENANT", "PHASE", "RESOURCES READY"]);
    for r in &rows {
        table.add_row([
            r.id.to_owned(),
            r.phase.to_owned(),
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
    Ok(())
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
