//! The job's environment: every variable a run of `tenant-job` receives, as
//! one typed struct. The control plane writes it ([`JobEnvironment::to_env`]:
//! the plain part into each tenant's job definitions, the run's own part into
//! each execution), the jobs runner adds what only it knows, and the job reads
//! it back ([`JobEnvironment::from_env`]).
//!
//! It is also the job's allow-list: [`NAMES`] are the only variables a job
//! needs or may be given. A runner passes exactly these and nothing inherited
//! from the process that starts it.
//!
//! | variable | field | set by |
//! |---|---|---|
//! | `LEDGERLAKE_TENANT` | `tenant` | the job definition (the plan) |
//! | `LEDGERLAKE_BUCKET_PREFIX` | `bucket_prefix` | the job definition |
//! | `LEDGERLAKE_XERO_ENDPOINT` | `xero_endpoint` | the job definition (the sandbox only) |
//! | `LEDGERLAKE_XERO_PER_MINUTE` | `xero_per_minute` | the job definition (the sandbox only) |
//! | `LEDGERLAKE_RUN_ID` | `run_id` | the execution (the control plane's run id) |
//! | `LEDGERLAKE_XERO_CLIENT_ID` | `xero_client_id` | the execution |
//! | `LEDGERLAKE_XERO_CLIENT_SECRET` | `xero_client_secret` | the execution (secret) |
//! | `LEDGERLAKE_DATA_DIR` | `data_dir` | the local jobs runner |
//! | `LEDGERLAKE_MASTER_KEY` | `master_key` | the local jobs runner (secret) |
//! | `LEDGERLAKE_SERVICE_ACCOUNT` | `service_account` | the jobs runner |
//! | `LEDGERLAKE_JOB_NAME` | `job_name` | the jobs runner |
//! | `LEDGERLAKE_EXECUTION_ID` | `execution_id` | the jobs runner |
//! | `RUST_LOG` | `log_filter` | whoever starts the run (optional) |
//! | `MALLOC_ARENA_MAX` | `malloc_arenas` | the job definition ([`JOB_MALLOC_ARENAS`]); read by the C library, not the job |
//! | `MALLOC_MMAP_THRESHOLD_` | `malloc_mmap_threshold` | the job definition ([`JOB_MALLOC_MMAP_THRESHOLD`]); read by the C library, not the job |
//!
//! Secrets never reach a job definition (the plan writes only the plain
//! part), and `Debug` prints neither the client secret nor the master key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cloud::naming::{DeploymentPrefix, TenantId};
use xero::secret::SecretString;

/// The tenant the run is for.
pub const TENANT: &str = "LEDGERLAKE_TENANT";
/// The run id (the control plane's; the execution id otherwise).
pub const RUN_ID: &str = "LEDGERLAKE_RUN_ID";
/// The execution carrying the run, named by the jobs runner.
pub const EXECUTION_ID: &str = "LEDGERLAKE_EXECUTION_ID";
/// The job definition the execution belongs to, named by the jobs runner.
pub const JOB_NAME: &str = "LEDGERLAKE_JOB_NAME";
/// The local cloud's data directory.
pub const DATA_DIR: &str = "LEDGERLAKE_DATA_DIR";
/// The local cloud's master key (secret).
pub const MASTER_KEY: &str = "LEDGERLAKE_MASTER_KEY";
/// The deployment's prefix of bucket names.
pub const BUCKET_PREFIX: &str = "LEDGERLAKE_BUCKET_PREFIX";
/// The identity the job runs as; must be the tenant's own account.
pub const SERVICE_ACCOUNT: &str = "LEDGERLAKE_SERVICE_ACCOUNT";
/// One base URL for every Xero host (the sandbox); Xero's own when unset.
pub const XERO_ENDPOINT: &str = "LEDGERLAKE_XERO_ENDPOINT";
/// The Xero app's client id.
pub const XERO_CLIENT_ID: &str = "LEDGERLAKE_XERO_CLIENT_ID";
/// The Xero app's client secret (secret).
pub const XERO_CLIENT_SECRET: &str = "LEDGERLAKE_XERO_CLIENT_SECRET";
/// Calls per minute per organisation the job allows itself (Xero: 60).
pub const XERO_PER_MINUTE: &str = "LEDGERLAKE_XERO_PER_MINUTE";
/// The job's log filter (`tracing_subscriber`'s `EnvFilter` syntax).
pub const LOG_FILTER: &str = "RUST_LOG";
/// glibc's limit on its malloc arenas, read by the C library as the job
/// starts (the job itself never reads it).
pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";

/// The malloc arenas every job definition allows: with glibc's default
/// (eight per core, one taken by each thread that allocates: the runtime's
/// and DuckDB's) memory freed in one arena is not reused by another, and
/// `tenant-job sync` peaked at 317–319 MiB on 100,000 invoices; with two,
/// at 281–291 MiB on 100,000 and 290–295 MiB on 400,000 (BENCHMARKS.md).
pub const JOB_MALLOC_ARENAS: u32 = 2;

/// glibc's size in bytes from which an allocation is its own mapping,
/// returned to the system when freed (the trailing underscore is glibc's).
pub const MALLOC_MMAP_THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_";

/// The threshold every job definition sets: glibc's own default (128 KiB),
/// but fixed. Left to glibc it rises to the largest block freed so far (up
/// to 32 MiB), after which DuckDB's blocks and the pages' buffers come from
/// the arenas and stay there. With `sync` loading while ingest fetches, the
/// job peaked at 309–336 MiB on 400,000 invoices without it and 281 MiB
/// with it (271 MiB on 100,000; BENCHMARKS.md).
pub const JOB_MALLOC_MMAP_THRESHOLD: u32 = 128 * 1024;

/// Every variable a job receives: the allow-list. Nothing else is passed to
/// a run.
pub const NAMES: [&str; 15] = [
    TENANT,
    RUN_ID,
    EXECUTION_ID,
    JOB_NAME,
    DATA_DIR,
    MASTER_KEY,
    BUCKET_PREFIX,
    SERVICE_ACCOUNT,
    XERO_ENDPOINT,
    XERO_CLIENT_ID,
    XERO_CLIENT_SECRET,
    XERO_PER_MINUTE,
    LOG_FILTER,
    MALLOC_ARENA_MAX,
    MALLOC_MMAP_THRESHOLD,
];

/// The variables holding secrets: never written into a job definition.
pub const SECRET_NAMES: [&str; 2] = [MASTER_KEY, XERO_CLIENT_SECRET];

/// The job's environment. Only `tenant` is required; each writer sets its
/// part (see the module's table) and [`to_env`](Self::to_env) leaves out
/// what is unset.
///
/// `Debug` is derived but safe: the secrets are [`SecretString`]s, which
/// print as `[REDACTED]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnvironment {
    pub tenant: TenantId,
    pub run_id: Option<String>,
    pub execution_id: Option<String>,
    pub job_name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub master_key: Option<SecretString>,
    pub bucket_prefix: Option<DeploymentPrefix>,
    pub service_account: Option<String>,
    pub xero_endpoint: Option<String>,
    pub xero_client_id: Option<String>,
    pub xero_client_secret: Option<SecretString>,
    pub xero_per_minute: Option<u32>,
    pub log_filter: Option<String>,
    /// `MALLOC_ARENA_MAX`.
    pub malloc_arenas: Option<u32>,
    /// `MALLOC_MMAP_THRESHOLD_`, in bytes.
    pub malloc_mmap_threshold: Option<u32>,
}

/// A variable of the job's environment that is missing or invalid. Never
/// repeats a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl JobEnvironment {
    /// The environment of `tenant` with nothing else set.
    pub fn new(tenant: TenantId) -> Self {
        JobEnvironment {
            tenant,
            run_id: None,
            execution_id: None,
            job_name: None,
            data_dir: None,
            master_key: None,
            bucket_prefix: None,
            service_account: None,
            xero_endpoint: None,
            xero_client_id: None,
            xero_client_secret: None,
            xero_per_minute: None,
            log_filter: None,
            malloc_arenas: None,
            malloc_mmap_threshold: None,
        }
    }

    /// Reads the environment through `lookup` (a variable's value, `None`
    /// when unset; an empty value counts as unset). Only the names in
    /// [`NAMES`] are looked up.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
        let tenant = get(TENANT).ok_or(EnvError::Missing(TENANT))?;
        let tenant = TenantId::parse(&tenant).map_err(|e| invalid(TENANT, e))?;
        let bucket_prefix = get(BUCKET_PREFIX)
            .map(|p| DeploymentPrefix::parse(&p))
            .transpose()
            .map_err(|e| invalid(BUCKET_PREFIX, e))?;
        let xero_per_minute = get(XERO_PER_MINUTE)
            .map(|n| n.trim().parse::<u32>())
            .transpose()
            .map_err(|e| invalid(XERO_PER_MINUTE, format!("not a number of calls: {e}")))?;
        let malloc_arenas = get(MALLOC_ARENA_MAX)
            .map(|n| n.trim().parse::<u32>())
            .transpose()
            .map_err(|e| invalid(MALLOC_ARENA_MAX, format!("not a number of arenas: {e}")))?;
        let malloc_mmap_threshold = get(MALLOC_MMAP_THRESHOLD)
            .map(|n| n.trim().parse::<u32>())
            .transpose()
            .map_err(|e| invalid(MALLOC_MMAP_THRESHOLD, format!("not a number of bytes: {e}")))?;
        Ok(JobEnvironment {
            tenant,
            run_id: get(RUN_ID),
            execution_id: get(EXECUTION_ID),
            job_name: get(JOB_NAME),
            data_dir: get(DATA_DIR).map(PathBuf::from),
            master_key: get(MASTER_KEY).map(SecretString::new),
            bucket_prefix,
            service_account: get(SERVICE_ACCOUNT),
            xero_endpoint: get(XERO_ENDPOINT),
            xero_client_id: get(XERO_CLIENT_ID),
            xero_client_secret: get(XERO_CLIENT_SECRET).map(SecretString::new),
            xero_per_minute,
            log_filter: get(LOG_FILTER),
            malloc_arenas,
            malloc_mmap_threshold,
        })
    }

    /// The variables to set for a run, in [`NAMES`] order, leaving out what
    /// is unset. Includes the secrets that are set: the caller decides where
    /// they may go (an execution's environment, never a job definition; see
    /// [`without_secrets`](Self::without_secrets)).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        let values: [(&'static str, Option<String>); 15] = [
            (TENANT, Some(self.tenant.to_string())),
            (RUN_ID, self.run_id.clone()),
            (EXECUTION_ID, self.execution_id.clone()),
            (JOB_NAME, self.job_name.clone()),
            (
                DATA_DIR,
                self.data_dir.as_ref().map(|d| d.display().to_string()),
            ),
            (MASTER_KEY, secret(&self.master_key)),
            (
                BUCKET_PREFIX,
                self.bucket_prefix.as_ref().map(|p| p.as_str().to_owned()),
            ),
            (SERVICE_ACCOUNT, self.service_account.clone()),
            (XERO_ENDPOINT, self.xero_endpoint.clone()),
            (XERO_CLIENT_ID, self.xero_client_id.clone()),
            (XERO_CLIENT_SECRET, secret(&self.xero_client_secret)),
            (XERO_PER_MINUTE, self.xero_per_minute.map(|n| n.to_string())),
            (LOG_FILTER, self.log_filter.clone()),
            (MALLOC_ARENA_MAX, self.malloc_arenas.map(|n| n.to_string())),
            (
                MALLOC_MMAP_THRESHOLD,
                self.malloc_mmap_threshold.map(|n| n.to_string()),
            ),
        ];
        values
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect()
    }

    /// [`to_env`](Self::to_env) as the jobs port takes it.
    pub fn to_env_map(&self) -> BTreeMap<String, String> {
        self.to_env()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    /// The same environment with the secrets left out: what may be written
    /// into a job definition.
    pub fn without_secrets(&self) -> Self {
        JobEnvironment {
            master_key: None,
            xero_client_secret: None,
            ..self.clone()
        }
    }
}

fn invalid(name: &'static str, reason: impl ToString) -> EnvError {
    EnvError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> JobEnvironment {
        JobEnvironment {
            run_id: Some("run-1".into()),
            execution_id: Some("exec-1".into()),
            job_name: Some("ingest-acme".into()),
            data_dir: Some(PathBuf::from("/var/lib/ledgerlake")),
            master_key: Some(SecretString::new("master-key-value")),
            bucket_prefix: Some(DeploymentPrefix::parse("dev").expect("prefix")),
            service_account: Some("client-acme-sa@local.iam.local".into()),
            xero_endpoint: Some("http://127.0.0.1:9/".into()),
            xero_client_id: Some("client-id".into()),
            xero_client_secret: Some(SecretString::new("client-secret-value")),
            xero_per_minute: Some(100_000),
            log_filter: Some("debug".into()),
            malloc_arenas: Some(JOB_MALLOC_ARENAS),
            malloc_mmap_threshold: Some(JOB_MALLOC_MMAP_THRESHOLD),
            ..JobEnvironment::new(TenantId::parse("acme").expect("id"))
        }
    }

    fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn what_the_control_plane_writes_the_job_reads_back() {
        let env = full();
        let vars = env.to_env();
        assert_eq!(vars.len(), NAMES.len(), "every field is set: {vars:?}");
        let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES);
        assert_eq!(JobEnvironment::from_env(lookup(vars)), Ok(env));

        let bare = JobEnvironment::new(TenantId::parse("acme").expect("id"));
        assert_eq!(bare.to_env(), [(TENANT, "acme".to_owned())]);
        assert_eq!(JobEnvironment::from_env(lookup(bare.to_env())), Ok(bare));
    }

    #[test]
    fn reads_only_the_allow_list() {
        let seen = std::cell::RefCell::new(Vec::new());
        let _ = JobEnvironment::from_env(|name| {
            seen.borrow_mut().push(name.to_owned());
            (name == TENANT).then(|| "acme".to_owned())
        });
        let mut seen = seen.into_inner();
        seen.sort();
        let mut names = NAMES.map(str::to_owned).to_vec();
        names.sort();
        assert_eq!(seen, names);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_job_definitions() {
        let env = full();
        let shown = format!("{env:?}");
        assert!(!shown.contains("master-key-value"), "{shown}");
        assert!(!shown.contains("client-secret-value"), "{shown}");
        assert!(shown.contains("client-id"), "{shown}");
        let plain = env.without_secrets().to_env();
        assert!(plain.iter().all(|(n, _)| !SECRET_NAMES.contains(n)));
        assert_eq!(plain.len(), NAMES.len() - SECRET_NAMES.len());
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let missing = JobEnvironment::from_env(|_| None);
        assert_eq!(missing, Err(EnvError::Missing(TENANT)));
        let empty = JobEnvironment::from_env(|_| Some(String::new()));
        assert_eq!(empty, Err(EnvError::Missing(TENANT)));
        let bad = |name: &'static str, value: &'static str| {
            JobEnvironment::from_env(move |n| match n {
                TENANT if name != TENANT => Some("acme".to_owned()),
                n if n == name => Some(value.to_owned()),
                _ => None,
            })
        };
        for (name, value) in [
            (TENANT, "Not A Tenant"),
            (BUCKET_PREFIX, "UPPER CASE"),
            (XERO_PER_MINUTE, "many"),
            (MALLOC_MMAP_THRESHOLD, "128K"),
        ] {
            match bad(name, value) {
                Err(EnvError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
