//! Xero token rotation against the sandbox, with token sets in the local
//! cloud's secrets and the refresh lease in each tenant's bucket: concurrent
//! refreshers in separately opened platforms (as separate processes), a lost
//! refresh response, and a dead refresh token.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloud::naming::TenantId;
use cloud::ports::Credential;
use control_plane::platform::Platform;
use control_plane::tokens::{
    read_token_set, refresh_idle_token_sets, refresh_tenant_tokens, write_token_set, RefreshError,
    SecretTokenVault, TokenLeaseSettings,
};
use xero::client::XeroClient;
use xero::oauth::{OAuthClient, OAuthConfig};
use xero::pager::ListRequest;
use xero::refresh::{RefreshingTokenProvider, TokenVault};
use xero::resources::Resource;
use xero::token_set::TokenSet;
use xero_sandbox::{FaultSettings, Sandbox, SandboxConfig};

const CLIENT_ID: &str = "rotation-client";
const CLIENT_SECRET: &str = "rotation-client-secret";

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid id")
}

async fn sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config.invoices(5).seed(3))
        .await
        .expect("sandbox")
}

fn oauth(sandbox: &Sandbox) -> OAuthClient {
    let redirect = "http://127.0.0.1:9/oauth/xero/callback"
        .parse()
        .expect("redirect");
    OAuthClient::new(
        OAuthConfig::new(CLIENT_ID, CLIENT_SECRET, redirect)
            .with_endpoints(sandbox.endpoints().expect("endpoints")),
    )
    .expect("oauth")
}

/// A provisioned tenant whose secret holds a token set the sandbox issued.
async fn connected_tenant(platform: &Platform, sandbox: &Sandbox, id: &TenantId) -> TokenSet {
    let r = support::reconciler(platform);
    let report = r.provision(id, "test").await.expect("provision");
    assert!(report.is_success(), "{report:?}");
    let tokens = sandbox.issue_tokens(None);
    write_token_set(&platform.cloud, &Credential::Platform, id, &tokens)
        .await
        .expect("write tokens");
    tokens
}

fn vault(platform: &Platform, id: &TenantId, holder: &str) -> Arc<SecretTokenVault> {
    Arc::new(SecretTokenVault::new(
        platform.cloud.clone(),
        Credential::Platform,
        id.clone(),
        None,
        holder,
        TokenLeaseSettings {
            ttl: Duration::from_secs(20),
            wait: Duration::from_secs(30),
        },
    ))
}

/// Whether the stored token set still works: it refreshes, and the new
/// access token reads the organisation.
async fn stored_set_is_alive(platform: &Platform, sandbox: &Sandbox, id: &TenantId) -> bool {
    let provider = match RefreshingTokenProvider::from_vault(
        oauth(sandbox),
        vault(platform, id, "checker"),
        Duration::ZERO,
    )
    .await
    {
        Ok(p) => Arc::new(p),
        Err(_) => return false,
    };
    let Ok(tokens) = provider.refresh_now().await else {
        return false;
    };
    let api = XeroClient::builder(tokens.tenant_ids[0].clone(), provider)
        .api_base(sandbox.api_base())
        .build()
        .expect("client");
    api.fetch_all(ListRequest::new(Resource::Contacts))
        .await
        .is_ok_and(|c| !c.is_empty())
}

#[tokio::test]
async fn concurrent_refreshers_in_separate_processes_never_lose_the_connection() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let first = support::platform(dir.path()).await;
    let id = tid("rotor");
    connected_tenant(&first, &sandbox, &id).await;
    // A second process on the same data directory.
    let second = support::platform(dir.path()).await;

    for round in 0..8 {
        // Each side read the stored set before the other refreshed it, and
        // both refresh at once.
        let a = RefreshingTokenProvider::from_vault(
            oauth(&sandbox),
            vault(&first, &id, "a"),
            Duration::ZERO,
        )
        .await
        .expect("a");
        let b = RefreshingTokenProvider::from_vault(
            oauth(&sandbox),
            vault(&second, &id, "b"),
            Duration::ZERO,
        )
        .await
        .expect("b");
        let (ra, rb) = tokio::join!(a.refresh_now(), b.refresh_now());
        let (ta, tb) = (ra.expect("a refreshes"), rb.expect("b refreshes"));
        // The second in line adopted the set the first wrote: one live set.
        assert_eq!(ta.refresh_token, tb.refresh_token, "round {round}");
        let (_, stored) = read_token_set(&first.cloud, &Credential::Platform, &id)
            .await
            .expect("stored");
        assert_eq!(stored.refresh_token, ta.refresh_token, "round {round}");
    }
    let stats = sandbox.identity_stats();
    assert_eq!(stats.invalid_grant, 0, "{stats:?}");
    assert_eq!(stats.refreshes, 8, "one refresh per round: {stats:?}");
    assert!(stored_set_is_alive(&first, &sandbox, &id).await);
}

#[tokio::test]
async fn without_the_lease_the_same_race_loses_the_connection() {
    // The control for the test above: two holders that each refresh the set
    // they read and write it back, with no lease, leave a dead token stored
    // when the earlier refresh is written last.
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let platform = support::platform(dir.path()).await;
    let id = tid("racer");
    let tokens = connected_tenant(&platform, &sandbox, &id).await;
    let client = oauth(&sandbox);
    let from_a = client.refresh(&tokens).await.expect("a");
    // B read the same set before A wrote: it refreshes with the old token
    // inside the grace period, which kills A's new refresh token.
    let from_b = client.refresh(&tokens).await.expect("b");
    write_token_set(&platform.cloud, &Credential::Platform, &id, &from_b)
        .await
        .expect("b writes");
    write_token_set(&platform.cloud, &Credential::Platform, &id, &from_a)
        .await
        .expect("a writes last");
    assert!(!stored_set_is_alive(&platform, &sandbox, &id).await);
}

#[tokio::test]
async fn a_lost_refresh_response_recovers_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let platform = support::platform(dir.path()).await;
    let id = tid("lossy");
    let before = connected_tenant(&platform, &sandbox, &id).await;
    sandbox.set_faults(FaultSettings {
        lose_token_responses_next: 1,
        ..FaultSettings::default()
    });
    let provider = RefreshingTokenProvider::from_vault(
        oauth(&sandbox),
        vault(&platform, &id, "lossy"),
        Duration::ZERO,
    )
    .await
    .expect("provider")
    .retry_delay(Duration::from_millis(10));
    let after = provider.refresh_now().await.expect("recovered");
    assert_ne!(after.refresh_token, before.refresh_token);
    let stats = sandbox.identity_stats();
    assert_eq!(stats.refreshes, 2, "the lost one and its retry: {stats:?}");
    assert_eq!(stats.grace_refreshes, 1, "{stats:?}");
    let (_, stored) = read_token_set(&platform.cloud, &Credential::Platform, &id)
        .await
        .expect("stored");
    assert_eq!(stored.refresh_token, after.refresh_token);
    assert!(stored_set_is_alive(&platform, &sandbox, &id).await);
}

#[tokio::test]
async fn a_dead_refresh_token_marks_the_tenant_as_needing_consent() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = SandboxConfig::new(CLIENT_ID, CLIENT_SECRET);
    config.refresh_token_ttl = Duration::from_millis(300);
    let sandbox = sandbox(config).await;
    let platform = support::platform(dir.path()).await;
    let id = tid("lapsed");
    let before = connected_tenant(&platform, &sandbox, &id).await;
    assert!(!platform.store.needs_consent(&id).await.expect("read"));
    tokio::time::sleep(Duration::from_millis(400)).await;

    let err = refresh_tenant_tokens(
        &platform.cloud,
        &platform.store,
        &oauth(&sandbox),
        &id,
        None,
        TokenLeaseSettings::default(),
    )
    .await
    .expect_err("expired");
    assert!(matches!(err, RefreshError::NeedsConsent(_)), "{err:?}");
    assert!(err.to_string().contains("lapsed"), "{err}");
    assert!(platform.store.needs_consent(&id).await.expect("read"));
    // Nothing was overwritten, and the lease was given back.
    let (_, stored) = read_token_set(&platform.cloud, &Credential::Platform, &id)
        .await
        .expect("stored");
    assert_eq!(stored.refresh_token, before.refresh_token);
    let v = vault(&platform, &id, "next");
    assert!(v.lock().await.expect("lease is free"));
    v.unlock().await;
}

#[tokio::test]
async fn a_refresh_through_the_control_plane_writes_the_new_set_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let platform = support::platform(dir.path()).await;
    let id = tid("keeper");
    let before = connected_tenant(&platform, &sandbox, &id).await;
    let after = refresh_tenant_tokens(
        &platform.cloud,
        &platform.store,
        &oauth(&sandbox),
        &id,
        None,
        TokenLeaseSettings::default(),
    )
    .await
    .expect("refresh");
    assert_ne!(after.refresh_token, before.refresh_token);
    let (version, stored) = read_token_set(&platform.cloud, &Credential::Platform, &id)
        .await
        .expect("stored");
    assert_eq!(version, 2);
    assert_eq!(stored, after);
    // The secrets of the test never reach the error or debug output.
    assert!(!format!("{stored:?}").contains(after.refresh_token.expose_secret()));
}

#[tokio::test]
async fn the_keepalive_refreshes_idle_connected_tenants_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let platform = support::platform(dir.path()).await;
    let (idle, fresh, unconnected) = (tid("idle"), tid("fresh"), tid("unlinked"));
    for id in [&idle, &fresh] {
        let tokens = connected_tenant(&platform, &sandbox, id).await;
        let orgs: Vec<(String, Option<String>)> = tokens
            .tenant_ids
            .iter()
            .map(|t| (t.clone(), None))
            .collect();
        platform
            .store
            .record_connections(id, &orgs)
            .await
            .expect("connections");
    }
    support::reconciler(&platform)
        .provision(&unconnected, "test")
        .await
        .expect("provision");
    // The idle tenant's set was last refreshed long ago.
    let (_, mut old) = read_token_set(&platform.cloud, &Credential::Platform, &idle)
        .await
        .expect("read");
    old.expires_at -= time::Duration::days(10);
    write_token_set(&platform.cloud, &Credential::Platform, &idle, &old)
        .await
        .expect("age it");

    // An idle time past any date refreshes nothing (and once panicked
    // adding it to the token set's expiry).
    let report = refresh_idle_token_sets(
        &platform.clouds,
        &platform.store,
        &oauth(&sandbox),
        None,
        Duration::MAX,
        TokenLeaseSettings::default(),
    )
    .await
    .expect("pass");
    assert_eq!((report.checked, report.refreshed), (2, 0), "{report:?}");

    let report = refresh_idle_token_sets(
        &platform.clouds,
        &platform.store,
        &oauth(&sandbox),
        None,
        Duration::from_secs(7 * 24 * 3600),
        TokenLeaseSettings::default(),
    )
    .await
    .expect("pass");
    assert_eq!(report.checked, 2, "{report:?}");
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(report.failed + report.needs_consent, 0, "{report:?}");
    let (_, now) = read_token_set(&platform.cloud, &Credential::Platform, &idle)
        .await
        .expect("read");
    assert_ne!(now.refresh_token, old.refresh_token);
    assert!(stored_set_is_alive(&platform, &sandbox, &idle).await);

    // The JSON view tells an operator about the connection.
    let view = control_plane::output::TenantView::load(&platform.store, &idle)
        .await
        .expect("view")
        .expect("exists");
    let json = serde_json::to_value(&view).expect("json");
    assert_eq!(json["xero"]["needs_consent"], false);
    assert_eq!(
        json["xero"]["organisations"],
        serde_json::json!(now.tenant_ids)
    );
}

/// Rotated-out token sets are dead credentials: the service destroys the old
/// versions of every tenant's secret after their retention, keeping the
/// newest two, and the current set still reads.
#[tokio::test]
async fn old_token_set_versions_are_destroyed_and_the_current_one_stays() {
    let dir = tempfile::tempdir().expect("tmp");
    let platform = support::platform(dir.path()).await;
    let sandbox = sandbox(SandboxConfig::new(CLIENT_ID, CLIENT_SECRET)).await;
    let id = TenantId::parse("rotated").expect("id");
    connected_tenant(&platform, &sandbox, &id).await;
    let mut last = None;
    for _ in 0..4 {
        let tokens = sandbox.issue_tokens(None);
        write_token_set(&platform.cloud, &Credential::Platform, &id, &tokens)
            .await
            .expect("write");
        last = Some(tokens);
    }
    // Retained for a week: nothing is that old yet.
    let kept = control_plane::tokens::prune_token_versions(
        &platform.clouds,
        &platform.store,
        Duration::from_secs(7 * 24 * 3600),
    )
    .await
    .expect("prune");
    assert_eq!(kept, 0);
    // Past the retention: five versions, the newest two stay.
    let destroyed = control_plane::tokens::prune_token_versions(
        &platform.clouds,
        &platform.store,
        Duration::ZERO,
    )
    .await
    .expect("prune");
    assert_eq!(destroyed, 3);
    let (version, current) = read_token_set(&platform.cloud, &Credential::Platform, &id)
        .await
        .expect("current set");
    assert_eq!(version, 5);
    let last = last.expect("written");
    assert_eq!(
        current.refresh_token.expose_secret(),
        last.refresh_token.expose_secret()
    );
}
