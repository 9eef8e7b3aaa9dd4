//! The gcp adapter's settings, read from `LEDGERLAKE_GCP_*`. Every endpoint can
//! be pointed elsewhere (the emulators and contract servers of
//! `infra/local/gcp-emulators`); unset, Google's own hosts are used.

use std::fmt;

use crate::limiter::Quotas;

/// One API the adapter calls, with its default host and its endpoint variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Storage,
    BigQuery,
    Iam,
    IamCredentials,
    SecretManager,
    Run,
    ResourceManager,
    Scheduler,
    ServiceUsage,
}

impl Api {
    pub const ALL: [Api; 9] = [
        Api::Storage,
        Api::BigQuery,
        Api::Iam,
        Api::IamCredentials,
        Api::SecretManager,
        Api::Run,
        Api::ResourceManager,
        Api::Scheduler,
        Api::ServiceUsage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Storage => "storage",
            Api::BigQuery => "bigquery",
            Api::Iam => "iam",
            Api::IamCredentials => "iamcredentials",
            Api::SecretManager => "secretmanager",
            Api::Run => "run",
            Api::ResourceManager => "cloudresourcemanager",
            Api::Scheduler => "cloudscheduler",
            Api::ServiceUsage => "serviceusage",
        }
    }

    /// Google's host for the API.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Api::Storage => "https://storage.googleapis.com",
            Api::BigQuery => "https://bigquery.googleapis.com",
            Api::Iam => "https://iam.googleapis.com",
            Api::IamCredentials => "https://iamcredentials.googleapis.com",
            Api::SecretManager => "https://secretmanager.googleapis.com",
            Api::Run => "https://run.googleapis.com",
            Api::ResourceManager => "https://cloudresourcemanager.googleapis.com",
            Api::Scheduler => "https://cloudscheduler.googleapis.com",
            Api::ServiceUsage => "https://serviceusage.googleapis.com",
        }
    }

    /// The variable that points the API elsewhere.
    pub fn endpoint_variable(self) -> &'static str {
        match self {
            Api::Storage => "LEDGERLAKE_GCP_STORAGE_ENDPOINT",
            Api::BigQuery => "LEDGERLAKE_GCP_BIGQUERY_ENDPOINT",
            Api::Iam => "LEDGERLAKE_GCP_IAM_ENDPOINT",
            Api::IamCredentials => "LEDGERLAKE_GCP_IAMCREDENTIALS_ENDPOINT",
            Api::SecretManager => "LEDGERLAKE_GCP_SECRETMANAGER_ENDPOINT",
            Api::Run => "LEDGERLAKE_GCP_RUN_ENDPOINT",
            Api::ResourceManager => "LEDGERLAKE_GCP_RESOURCEMANAGER_ENDPOINT",
            Api::Scheduler => "LEDGERLAKE_GCP_SCHEDULER_ENDPOINT",
            Api::ServiceUsage => "LEDGERLAKE_GCP_SERVICEUSAGE_ENDPOINT",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each API is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    overrides: std::collections::BTreeMap<Api, String>,
}

impl Endpoints {
    pub fn set(&mut self, api: Api, url: impl Into<String>) {
        let url: String = url.into();
        self.overrides
            .insert(api, url.trim_end_matches('/').to_owned());
    }

    pub fn get(&self, api: Api) -> &str {
        self.overrides
            .get(&api)
            .map_or_else(|| api.default_endpoint(), String::as_str)
    }

    /// Whether any API is pointed away from Google (tests, the emulators).
    pub fn is_overridden(&self) -> bool {
        !self.overrides.is_empty()
    }
}

/// A bearer token used as the platform's identity instead of Application
/// Default Credentials; meant for emulators and contract servers only.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken(pub String);

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

/// The gcp adapter's settings.
#[derive(Debug, Clone)]
pub struct GcpConfig {
    /// The project holding the control plane, its registry and its scheduler.
    pub platform_project: String,
    /// Cloud Run's region for jobs of cells that name none.
    pub region: String,
    /// Where buckets and datasets live (e.g. `EU`, `europe-west1`).
    pub location: String,
    /// The tenant-job image the Cloud Run jobs run.
    pub tenant_job_image: String,
    /// The control plane's public URL (the scheduler's audience).
    pub control_plane_url: Option<String>,
    pub endpoints: Endpoints,
    /// `LEDGERLAKE_GCP_ACCESS_TOKEN`: the platform's token when no Application
    /// Default Credentials are wanted (emulators); also how a tenant job on the
    /// contract servers receives its service account's token.
    pub access_token: Option<StaticToken>,
    /// The service account this process runs as, when it is a tenant's (a
    /// tenant job): calls for that account use the ambient credentials instead
    /// of impersonating it.
    pub ambient_service_account: Option<String>,
    pub quotas: Quotas,
    /// The longest wait for one long-running operation (a Cloud Run job's
    /// create, update or delete, an execution's cancel); [`LRO_TIME_LIMIT`]
    /// unless a test shortens it.
    pub lro_time_limit: std::time::Duration,
}

/// How long a long-running operation is polled before the call gives up with
/// a transient error. Cloud Run finishes these in seconds to a couple of
/// minutes; ten minutes is well past that, yet bounds a remote that never
/// reports the operation done (the client libraries would poll for ever).
pub const LRO_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be set for --cloud gcp ({what})")]
    Missing {
        name: &'static str,
        what: &'static str,
    },
    #[error("{name} is not a valid {what}: {reason}")]
    Invalid {
        name: &'static str,
        what: &'static str,
        reason: String,
    },
}

pub const PLATFORM_PROJECT: &str = "LEDGERLAKE_GCP_PLATFORM_PROJECT";
pub const REGION: &str = "LEDGERLAKE_GCP_REGION";
pub const LOCATION: &str = "LEDGERLAKE_GCP_LOCATION";
pub const TENANT_JOB_IMAGE: &str = "LEDGERLAKE_GCP_TENANT_JOB_IMAGE";
pub const CONTROL_PLANE_URL: &str = "LEDGERLAKE_GCP_CONTROL_PLANE_URL";
pub const ACCESS_TOKEN: &str = "LEDGERLAKE_GCP_ACCESS_TOKEN";
pub const SERVICE_ACCOUNT: &str = "LEDGERLAKE_GCP_SERVICE_ACCOUNT";
pub const QUOTA_SCALE: &str = "LEDGERLAKE_GCP_QUOTA_SCALE";
/// A tenant job's cell project (written into its job definition).
pub const CELL_PROJECT: &str = "LEDGERLAKE_GCP_CELL_PROJECT";

impl GcpConfig {
    /// Reads the settings through `lookup` (the process environment in the
    /// binaries, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str, what: &'static str| {
            get(name).ok_or(ConfigError::Missing { name, what })
        };
        let platform_project = required(PLATFORM_PROJECT, "the platform's project id")?;
        check_project_id(PLATFORM_PROJECT, &platform_project)?;
        let region = get(REGION).unwrap_or_else(|| "europe-west1".to_owned());
        let location = get(LOCATION).unwrap_or_else(|| "EU".to_owned());
        let tenant_job_image = required(TENANT_JOB_IMAGE, "the tenant-job container image")?;
        let mut endpoints = Endpoints::default();
        for api in Api::ALL {
            if let Some(url) = get(api.endpoint_variable()) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        name: api.endpoint_variable(),
                        what: "URL",
                        reason: "it must start with http:// or https://".into(),
                    });
                }
                endpoints.set(api, url);
            }
        }
        let mut quotas = Quotas::google_defaults();
        if let Some(scale) = get(QUOTA_SCALE) {
            let factor: f64 = scale.parse().map_err(|_| ConfigError::Invalid {
                name: QUOTA_SCALE,
                what: "number",
                reason: "expected a positive number such as 1 or 10".into(),
            })?;
            if !(factor.is_finite() && factor > 0.0) {
                return Err(ConfigError::Invalid {
                    name: QUOTA_SCALE,
                    what: "number",
                    reason: "it must be greater than 0".into(),
                });
            }
            quotas = quotas.scaled(factor);
        }
        Ok(GcpConfig {
            platform_project,
            region,
            location,
            tenant_job_image,
            control_plane_url: get(CONTROL_PLANE_URL),
            endpoints,
            access_token: get(ACCESS_TOKEN).map(StaticToken),
            ambient_service_account: get(SERVICE_ACCOUNT),
            quotas,
            lro_time_limit: LRO_TIME_LIMIT,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Google's rule for project ids: 6–30 characters, lowercase letters, digits
/// and hyphens, starting with a letter and not ending with a hyphen.
pub fn check_project_id(name: &'static str, id: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        what: "project id",
        reason: reason.to_owned(),
    };
    if !(6..=30).contains(&id.len()) {
        return Err(invalid("it must be 6 to 30 characters long"));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("it must start with a lowercase letter"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid("it may hold only a-z, 0-9 and -"));
    }
    if id.ends_with('-') {
        return Err(invalid("it may not end with a hyphen"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<GcpConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GcpConfig::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (PLATFORM_PROJECT, "ledgerlake-platform"),
        (TENANT_JOB_IMAGE, "europe-docker.pkg.dev/p/r/tenant-job:1"),
    ];

    #[test]
    fn defaults_point_at_google_and_overrides_at_the_emulators() {
        let c = config(&BASE).expect("config");
        assert_eq!(c.endpoints.get(Api::Run), "https://run.googleapis.com");
        assert!(!c.endpoints.is_overridden());
        assert_eq!(c.region, "europe-west1");
        let mut vars = BASE.to_vec();
        vars.push((Api::Run.endpoint_variable(), "http://127.0.0.1:9000/"));
        let c = config(&vars).expect("config");
        assert_eq!(c.endpoints.get(Api::Run), "http://127.0.0.1:9000");
        assert!(c.endpoints.is_overridden());
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        let err = config(&[]).expect_err("missing");
        assert!(err.to_string().contains(PLATFORM_PROJECT), "{err}");
        let err = config(&[(PLATFORM_PROJECT, "Bad_Project")]).expect_err("invalid");
        assert!(err.to_string().contains("lowercase"), "{err}");
        let mut vars = BASE.to_vec();
        vars.push((Api::Iam.endpoint_variable(), "ftp://x"));
        let err = config(&vars).expect_err("scheme");
        assert!(err.to_string().contains("http://"), "{err}");
        let mut vars = BASE.to_vec();
        vars.push((QUOTA_SCALE, "-1"));
        assert!(config(&vars).is_err());
    }

    #[test]
    fn the_static_token_never_prints() {
        let mut vars = BASE.to_vec();
        vars.push((ACCESS_TOKEN, "ya29.very-secret"));
        let c = config(&vars).expect("config");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
