//! Onboarding: starting a consent (PKCE and a single-use state) and completing
//! it (code exchange, the token set written first, the tenant recorded as
//! wanted with its organisations). Provisioning itself is left to whoever
//! called: the service's controller, or the CLI inline.

use std::time::Duration;

use cloud::naming::TenantId;
use cloud::ports::Credential;
use cloud::Clouds;
use xero::oauth::OAuthClient;
use xero::secret::SecretString;

use super::ServiceError;
use crate::store::{Desired, Store, StoreError, WithoutCells};

/// How long a consent may take between its start and Xero's callback.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a connect link lives unless the operator says otherwise.
pub const LINK_TTL_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest a connect link may live.
pub const LINK_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// Consents started from one link and not yet finished: a link opened again
/// and again cannot fill the store.
pub const MAX_PENDING_PER_LINK: i64 = 5;
/// Consents started and not yet finished, in all.
pub const MAX_PENDING_TOTAL: i64 = 10_000;
/// How long after its use a link still shows its tenant's onboarding status.
pub const STATUS_AFTER_USE: Duration = Duration::from_secs(24 * 3600);

/// A connect link, shown once: only its hash is stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MintedLink {
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
}

/// Parses a link lifetime such as `90m`, `12h`, `7d` or `3600` (seconds).
pub fn parse_expiry(text: &str) -> Result<Duration, ServiceError> {
    let invalid = || {
        ServiceError::invalid(
            "invalid_expiry",
            format!(
                "invalid expiry {:?}: use a number of seconds or a number with s, m, h or d (e.g. 7d)",
                text.chars().take(32).collect::<String>()
            ),
        )
    };
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(invalid)?;
    Ok(Duration::from_secs(secs))
}

/// The stored form of a link token.
fn link_hash(token: &str) -> String {
    crate::store::secret_hash(token)
}

fn invalid_link() -> ServiceError {
    ServiceError::invalid(
        "invalid_connect_link",
        "this connect link is unknown, expired or already used; ask for a new one",
    )
}

/// Mints a single-use link that starts a consent for `tenant` (which need not
/// exist yet: the consent creates it). Audited as `actor`.
pub async fn mint_connect_link(
    store: &Store,
    public_url: &str,
    tenant: &TenantId,
    ttl: Duration,
    actor: &str,
) -> Result<MintedLink, ServiceError> {
    if ttl.is_zero() || ttl > LINK_TTL_MAX {
        return Err(ServiceError::invalid(
            "invalid_expiry",
            format!(
                "a connect link lives between 1 second and {} days",
                LINK_TTL_MAX.as_secs() / 86_400
            ),
        ));
    }
    if let Some(t) = store.get_tenant(tenant).await? {
        if t.desired == Desired::Absent {
            return Err(deleting(tenant));
        }
    }
    let token = {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let expires_at = store
        .create_connect_link(&link_hash(&token), tenant, actor, ttl)
        .await?;
    store
        .audit(
            actor,
            "tenant.connect_link",
            Some(tenant),
            &serde_json::json!({ "expires_at": expires_at.unix_timestamp() }),
        )
        .await?;
    Ok(MintedLink {
        url: format!(
            "{}/connect/xero?link={token}",
            public_url.trim_end_matches('/')
        ),
        expires_at,
    })
}

/// Forgets the tenant's Xero organisations so that a consent for another
/// organisation is accepted (the token set stays until the next consent).
pub async fn disconnect(store: &Store, tenant: &TenantId, actor: &str) -> Result<(), ServiceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(ServiceError::tenant_not_found(tenant));
    }
    let removed = store.clear_connections(tenant).await?;
    store
        .audit(
            actor,
            "tenant.disconnect",
            Some(tenant),
            &serde_json::json!({ "organisations_forgotten": removed }),
        )
        .await?;
    Ok(())
}

fn xero_not_configured() -> ServiceError {
    ServiceError::Unavailable {
        code: "xero_not_configured",
        message: "no Xero app is configured on this control plane".to_owned(),
    }
}

/// Whether the tenant can be placed in a cell (`no_cell_room`, `no_cells`:
/// 503 otherwise), before anything is used up.
async fn check_placement(
    store: &Store,
    id: &TenantId,
    without_cells: WithoutCells,
) -> Result<(), ServiceError> {
    match store.check_placement(id, without_cells).await {
        Err(StoreError::TenantDeleting(_)) => Err(deleting(id)),
        other => Ok(other?),
    }
}

fn deleting(id: &TenantId) -> ServiceError {
    ServiceError::conflict(
        "tenant_deleting",
        format!("tenant {id} is being deleted; connect again once the teardown has finished"),
    )
}

/// Starts a consent from a connect link: records a single-use state with its
/// PKCE verifier (and the link it came from) and returns the URL of Xero's
/// consent page. The link is used up only when a consent completes.
pub async fn start_consent(
    store: &Store,
    oauth: Option<&OAuthClient>,
    without_cells: WithoutCells,
    link: &str,
) -> Result<String, ServiceError> {
    let hash = link_hash(link);
    let record = store
        .get_connect_link(&hash)
        .await?
        .filter(|l| l.is_usable(time::OffsetDateTime::now_utc()))
        .ok_or_else(invalid_link)?;
    let id = record.tenant;
    if let Some(t) = store.get_tenant(&id).await? {
        if t.desired == Desired::Absent {
            return Err(deleting(&id));
        }
    }
    // A new tenant no cell has room for is refused before the client
    // consents at Xero for nothing.
    check_placement(store, &id, without_cells).await?;
    let oauth = oauth.ok_or_else(xero_not_configured)?;
    if store.count_pending_consents(Some(&hash)).await? >= MAX_PENDING_PER_LINK {
        return Err(ServiceError::conflict(
            "too_many_pending_consents",
            "this link has started too many consents that have not finished; finish one or wait ten minutes",
        ));
    }
    if store.count_pending_consents(None).await? >= MAX_PENDING_TOTAL {
        return Err(ServiceError::Unavailable {
            code: "too_many_pending_consents",
            message: "too many consents are in progress; try again in a few minutes".to_owned(),
        });
    }
    let request = oauth.authorize_url();
    store
        .put_oauth_state(
            &request.state,
            &id,
            request.pkce_verifier.expose_secret(),
            STATE_TTL,
            Some(&hash),
        )
        .await?;
    tracing::info!(tenant = %id, "consent started");
    Ok(request.url.to_string())
}

/// What Xero's redirect carried.
#[derive(Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// A completed consent.
#[derive(Debug, Clone)]
pub struct Connected {
    pub tenant: TenantId,
    /// The organisation (Xero tenant) ids the consent granted.
    pub organisations: Vec<String>,
}

/// The first characters of an untrusted value, for messages and logs.
fn bounded(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Completes a consent: takes the single-use state, exchanges the code, writes
/// the token set into the tenant's secret before anything else, records the
/// tenant as wanted with its organisations, and audits it.
pub async fn complete_consent(
    clouds: &Clouds,
    store: &Store,
    oauth: Option<&OAuthClient>,
    without_cells: WithoutCells,
    callback: Callback,
) -> Result<Connected, ServiceError> {
    let invalid_state = || {
        ServiceError::invalid(
            "invalid_state",
            "this consent link is unknown, expired or already used; start the connection again",
        )
    };
    let raw_state = callback.state.ok_or_else(invalid_state)?;
    let consent = store
        .take_oauth_state(&raw_state)
        .await?
        .ok_or_else(invalid_state)?;
    let id = consent.tenant.clone();
    if let Some(error) = callback.error {
        let error = bounded(&error);
        tracing::info!(tenant = %id, error = %error, "consent was not given");
        return Err(ServiceError::invalid(
            "consent_denied",
            format!("Xero did not grant access ({error}); start the connection again"),
        ));
    }
    let code = callback.code.ok_or_else(|| {
        ServiceError::invalid("missing_code", "the callback carries no authorization code")
    })?;
    let oauth = oauth.ok_or_else(xero_not_configured)?;
    // The link must still be unused: a second consent from one link fails
    // here, before Xero issues anything.
    let link = consent.link_hash.clone().ok_or_else(invalid_link)?;
    let usable = store
        .get_connect_link(&link)
        .await?
        .is_some_and(|l| l.is_usable(time::OffsetDateTime::now_utc()));
    if !usable {
        return Err(invalid_link());
    }
    let (tokens, connections) = oauth
        .complete_consent(&code, &SecretString::new(consent.pkce_verifier))
        .await
        .map_err(|e| {
            tracing::warn!(tenant = %id, error = %e, "code exchange failed");
            ServiceError::Upstream {
                code: "xero_exchange_failed",
                message: format!("Xero refused the consent: {e}"),
            }
        })?;
    if connections.is_empty() {
        return Err(ServiceError::invalid(
            "no_organisation",
            "the consent granted no Xero organisation; choose an organisation when consenting",
        ));
    }
    // A connected tenant takes a consent only for its own organisation(s):
    // checked before any token set is written, so a consent for another
    // organisation cannot replace its books.
    let connected = store.connections_of(&id).await?;
    if !connected.is_empty() {
        let foreign: Vec<&str> = connections
            .iter()
            .map(|c| c.tenant_id.as_str())
            .filter(|org| !connected.iter().any(|known| known == org))
            .collect();
        if !foreign.is_empty() {
            tracing::warn!(tenant = %id, "consent for another organisation refused");
            // Undo what Xero just created for the other organisation(s), best effort.
            for c in connections
                .iter()
                .filter(|c| foreign.contains(&c.tenant_id.as_str()))
            {
                if let Err(e) = oauth.disconnect(&tokens.access_token, &c.id).await {
                    tracing::warn!(tenant = %id, error = %e, "could not remove the refused connection");
                }
            }
            return Err(ServiceError::conflict(
                "organisation_mismatch",
                format!(
                    "tenant {id} is connected to another Xero organisation; an operator must \
                     disconnect it before it can connect a different one"
                ),
            ));
        }
    }
    // Checked again before the link is used up, so that a client refused
    // for want of room may use the same link once there is some.
    check_placement(store, &id, without_cells).await?;
    if !store.use_connect_link(&link).await? {
        return Err(invalid_link());
    }

    let write_tokens = |cloud: cloud::Cloud| {
        let (id, tokens) = (id.clone(), tokens.clone());
        async move {
            crate::tokens::write_token_set(&cloud, &Credential::Platform, &id, &tokens)
                .await
                .map_err(|e| ServiceError::internal("storing the Xero token set failed", e))
        }
    };
    if let Clouds::Shared(cloud) = clouds {
        // The token set is written before anything else: once Xero has issued
        // it, losing it would cost the client another consent. A new tenant is
        // placed in a cell after; when none has room, the token set stays in
        // the tenant's secret for its provisioning.
        write_tokens(cloud.clone()).await?;
    }
    let placed = match store.want_tenant_placed(&id, without_cells).await {
        Ok((tenant, _)) => tenant,
        Err(StoreError::TenantDeleting(_)) => return Err(deleting(&id)),
        Err(e) => return Err(e.into()),
    };
    if clouds.needs_cells() {
        // Per cell, the secret lives in the tenant's cell: placed first (the
        // room was checked above), then written.
        let cloud = crate::clouds::of_tenant(clouds, store, &placed)
            .await
            .map_err(|e| ServiceError::internal("finding the tenant's cell", e))?;
        write_tokens(cloud).await?;
    }
    let organisations: Vec<(String, Option<String>)> = connections
        .iter()
        .map(|c| (c.tenant_id.clone(), c.tenant_name.clone()))
        .collect();
    store.record_connections(&id, &organisations).await?;
    let org_ids: Vec<String> = organisations.into_iter().map(|(o, _)| o).collect();
    store
        .audit(
            "xero-consent",
            "tenant.consent",
            Some(&id),
            &serde_json::json!({ "organisations": org_ids }),
        )
        .await?;
    tracing::info!(tenant = %id, organisations = org_ids.len(), "consent completed");
    Ok(Connected {
        tenant: id,
        organisations: org_ids,
    })
}

/// The tenant's phase and whether Xero must be connected again, for the holder
/// of a connect link of that tenant (unused, or used within the last day):
/// nobody else learns whether a tenant exists.
pub async fn status(
    store: &Store,
    id: &TenantId,
    link: Option<&str>,
) -> Result<serde_json::Value, ServiceError> {
    let not_found = || ServiceError::tenant_not_found(id);
    let link = link.ok_or_else(not_found)?;
    let now = time::OffsetDateTime::now_utc();
    let allowed = store
        .get_connect_link(&link_hash(link))
        .await?
        .is_some_and(|l| {
            l.tenant == *id
                && match l.used_at {
                    None => l.expires_at > now,
                    Some(used) => used + STATUS_AFTER_USE > now,
                }
        });
    if !allowed {
        return Err(not_found());
    }
    let tenant = store.get_tenant(id).await?.ok_or_else(not_found)?;
    let needs_consent = store.needs_consent(id).await?;
    Ok(serde_json::json!({
        "id": id.as_str(),
        "phase": tenant.phase.to_string(),
        "needs_consent": needs_consent,
    }))
}
