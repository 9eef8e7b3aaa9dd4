//! Who a call runs as. Administrative calls run as the platform (Application
//! Default Credentials, or a static token for emulators); a data-plane call
//! for a tenant runs with a token minted by IAM Credentials'
//! `generateAccessToken` for that tenant's service account, so Google's IAM,
//! not the control plane, decides what it may touch.
//!
//! One credentials object serves every client: it reads the principal of the
//! current call from a task-local set by [`Auth::acting_as`], so the official
//! clients are built once per process instead of once per tenant.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud::error::{CloudError, CloudResult};
use cloud::ports::Credential;
use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_gax::error::CredentialsError;
use http::{Extensions, HeaderMap, HeaderValue};
use tokio::sync::Mutex;

use crate::config::{Api, GcpConfig, StaticToken};
use crate::limiter::{Limiter, QuotaClass};

const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long a minted token is asked to live, and how early it is replaced.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The principal a call runs as.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    Platform,
    ServiceAccount(String),
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Platform => f.write_str("platform"),
            Principal::ServiceAccount(email) => write!(f, "serviceAccount:{email}"),
        }
    }
}

impl From<&Credential> for Principal {
    fn from(c: &Credential) -> Self {
        match c {
            Credential::Platform => Principal::Platform,
            Credential::ServiceAccount { email, .. } => Principal::ServiceAccount(email.clone()),
        }
    }
}

tokio::task_local! {
    static ACTING_AS: Principal;
}

/// A bearer token; never printed.
#[derive(Clone)]
struct Bearer(HeaderValue);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl Bearer {
    fn new(token: &str) -> Result<Self, CredentialsError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            CredentialsError::from_msg(false, "the access token is not a valid header value")
        })?;
        value.set_sensitive(true);
        Ok(Bearer(value))
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, self.0.clone());
        h
    }
}

/// The static token of the emulators, as Google credentials.
#[derive(Debug)]
struct StaticCredentials {
    bearer: Bearer,
    tag: EntityTag,
}

impl CredentialsProvider for StaticCredentials {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: self.bearer.headers(),
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Tokens minted for tenants' service accounts, cached until near expiry.
struct Impersonation {
    client: google_cloud_iam_credentials_v1::client::IAMCredentials,
    limiter: Limiter,
    platform_project: String,
    cache: Mutex<HashMap<String, (Bearer, Instant)>>,
}

impl fmt::Debug for Impersonation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impersonation").finish_non_exhaustive()
    }
}

impl Impersonation {
    async fn bearer(&self, email: &str) -> Result<Bearer, CloudError> {
        if let Some((bearer, until)) = self.cache.lock().await.get(email) {
            if Instant::now() + TOKEN_MARGIN < *until {
                return Ok(bearer.clone());
            }
        }
        let resource = format!("access token for {email}");
        let minted = self
            .limiter
            .paced(&self.platform_project, QuotaClass::TokenMint, || async {
                self.client
                    .generate_access_token()
                    .set_name(format!("projects/-/serviceAccounts/{email}"))
                    .set_scope([CLOUD_PLATFORM_SCOPE])
                    .set_lifetime(google_cloud_wkt::Duration::clamp(
                        TOKEN_LIFETIME.as_secs() as i64,
                        0,
                    ))
                    .send()
                    .await
                    .map_err(|e| crate::errors::from_gax(&resource, &e))
            })
            .await?;
        let bearer = Bearer::new(&minted.access_token)
            .map_err(|e| CloudError::permanent(&resource, e.to_string()))?;
        self.cache.lock().await.insert(
            email.to_owned(),
            (bearer.clone(), Instant::now() + TOKEN_LIFETIME),
        );
        Ok(bearer)
    }
}

/// The one credentials object of every client: the platform's, or the
/// impersonated tenant's when the call runs inside [`Auth::acting_as`].
#[derive(Debug)]
struct Dispatching {
    platform: Credentials,
    impersonation: Arc<Impersonation>,
    ambient: Option<String>,
}

impl CredentialsProvider for Dispatching {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        match ACTING_AS.try_with(Principal::clone) {
            Ok(Principal::ServiceAccount(email))
                if self.ambient.as_deref() != Some(email.as_str()) =>
            {
                let bearer = self
                    .impersonation
                    .bearer(&email)
                    .await
                    .map_err(|e| CredentialsError::from_msg(e.is_retryable(), e.to_string()))?;
                Ok(CacheableResource::New {
                    entity_tag: EntityTag::new(),
                    data: bearer.headers(),
                })
            }
            _ => self.platform.headers(extensions).await,
        }
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// The credentials of every call the adapter makes.
#[derive(Clone, Debug)]
pub struct Auth {
    credentials: Credentials,
}

impl Auth {
    /// The platform's credentials (static token or ADC) and the impersonation
    /// of tenants through the configured IAM Credentials endpoint.
    pub async fn new(config: &GcpConfig, limiter: Limiter) -> CloudResult<Self> {
        let platform = platform_credentials(config.access_token.as_ref())?;
        let client = google_cloud_iam_credentials_v1::client::IAMCredentials::builder()
            .with_endpoint(config.endpoints.get(Api::IamCredentials))
            .with_credentials(platform.clone())
            .build()
            .await
            .map_err(|e| CloudError::permanent("IAM Credentials client", e.to_string()))?;
        let impersonation = Arc::new(Impersonation {
            client,
            limiter,
            platform_project: config.platform_project.clone(),
            cache: Mutex::new(HashMap::new()),
        });
        Ok(Auth {
            credentials: Credentials::from(Dispatching {
                platform,
                impersonation,
                ambient: config.ambient_service_account.clone(),
            }),
        })
    }

    /// What the official clients are built with.
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    /// Runs `call` as `principal`: every client request inside it carries
    /// that principal's token.
    pub async fn acting_as<F: Future>(&self, principal: Principal, call: F) -> F::Output {
        ACTING_AS.scope(principal, call).await
    }

    /// The authorization headers of the current principal, for the JSON API
    /// calls made without an official client.
    pub async fn headers(&self, resource: &str) -> CloudResult<HeaderMap> {
        match self.credentials.headers(Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Err(CloudError::transient(
                resource,
                "credentials answered not-modified without a tag",
            )),
            Err(e) if e.is_transient() => Err(CloudError::transient(resource, e.to_string())),
            Err(e) => Err(CloudError::permanent(
                resource,
                format!("cannot obtain credentials: {e}"),
            )),
        }
    }
}

fn platform_credentials(token: Option<&StaticToken>) -> CloudResult<Credentials> {
    if let Some(StaticToken(token)) = token {
        let bearer = Bearer::new(token)
            .map_err(|e| CloudError::permanent("LEDGERLAKE_GCP_ACCESS_TOKEN", e.to_string()))?;
        return Ok(Credentials::from(StaticCredentials {
            bearer,
            tag: EntityTag::new(),
        }));
    }
    google_cloud_auth::credentials::Builder::default()
        .with_scopes([CLOUD_PLATFORM_SCOPE])
        .build()
        .map_err(|e| {
            CloudError::permanent(
                "Application Default Credentials",
                format!("{e} (run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let b = Bearer::new("ya29.secret-token").expect("header");
        assert!(!format!("{b:?}").contains("secret"));
        let p = Principal::ServiceAccount("client-a-sa@p.iam.gserviceaccount.com".into());
        assert_eq!(
            format!("{p:?}"),
            "serviceAccount:client-a-sa@p.iam.gserviceaccount.com"
        );
    }

    #[tokio::test]
    async fn the_static_token_is_sent_as_a_bearer() {
        let creds = platform_credentials(Some(&StaticToken("t0k".into()))).expect("creds");
        match creds.headers(Extensions::new()).await.expect("headers") {
            CacheableResource::New { data, .. } => {
                assert_eq!(
                    data.get("authorization").and_then(|v| v.to_str().ok()),
                    Some("Bearer t0k")
                );
            }
            CacheableResource::NotModified => panic!("first call has no tag"),
        }
    }
}
