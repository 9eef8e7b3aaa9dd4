//! Cells and placement, on SQLite and on PostgreSQL (when
//! `LEDGERLAKE_TEST_DATABASE_URL` names a server): 1,000 tenants over ten
//! cells of 100 go to the cell with the most room and never exceed one; a
//! draining cell gets none; full cells stay full; 200 placements at once
//! against two cells of 50 place exactly 100 and refuse the rest with
//! nothing recorded; a deployment that needs cells refuses without one; the
//! operator routes; and `cells …` and `tenants show` through the real binary.

mod support;

use support::backends::Env;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cloud::naming::TenantId;
use control_plane::reconciler::{ReconcileError, Settings};
use control_plane::server::{self, ServeConfig};
use control_plane::store::{CellState, NewCell, Store, StoreError, WithoutCells};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");
const OPERATOR_TOKEN: &str = "operator-token-for-the-cell-tests-0123";

// ----------------------------------------------------------------- backends

impl Env {
    /// Another handle on the same database, as a second process would have.
    async fn second_store(&self) -> Store {
        let url = self.url();
        Store::open(&url).await.expect("open a second store")
    }
}

both_backends!(
    a_thousand_tenants_go_to_the_roomiest_cell_and_never_exceed_one,
    draining_and_full_cells_get_no_tenant,
    concurrent_placements_fill_two_cells_exactly,
    cells_are_registered_once_per_id_and_project,
    without_cells_local_tenants_have_none_and_gcp_refuses,
    the_cell_routes_register_list_show_drain_and_activate,
    a_consent_no_cell_has_room_for_is_refused_before_xero,
    cells_through_the_cli,
    the_app_secret_is_written_once_rotated_and_kept_to_two_versions,
);

// ----------------------------------------------------------------- helpers

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

fn new_cell(id: &str, capacity: i64) -> NewCell {
    NewCell {
        id: id.to_owned(),
        project: format!("ll-{id}"),
        region: "europe-west1".to_owned(),
        capacity,
    }
}

/// Registers cells in order, a few milliseconds apart so that "the oldest"
/// is well defined.
async fn add_cells(store: &Store, cells: &[(&str, i64)]) {
    for (id, capacity) in cells {
        let (_, created) = store
            .add_cell(&new_cell(id, *capacity))
            .await
            .expect("add cell");
        assert!(created, "{id}");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// (tenants, state) of every cell, by id.
async fn occupancy(store: &Store) -> BTreeMap<String, (i64, CellState)> {
    store
        .list_cells()
        .await
        .expect("cells")
        .into_iter()
        .map(|c| (c.id, (c.tenants, c.state)))
        .collect()
}

// ----------------------------------------------------------------- the tests

async fn a_thousand_tenants_go_to_the_roomiest_cell_and_never_exceed_one(env: Env) {
    let store = env.store();
    let ids: Vec<String> = (0..10).map(|n| format!("cell-eu1-{n:03}")).collect();
    // The first cell takes 30 tenants while it is the only one, so it has
    // less room than the nine registered after: it gets no tenant until
    // they have come down to its room.
    add_cells(store, &[(ids[0].as_str(), 100)]).await;
    for n in 0..30 {
        let (t, created) = store
            .want_tenant(&tid(&format!("early-{n:03}")))
            .await
            .expect("place");
        assert!(created);
        assert_eq!(t.cell.as_deref(), Some(ids[0].as_str()));
    }
    let later: Vec<(&str, i64)> = ids[1..].iter().map(|id| (id.as_str(), 100)).collect();
    add_cells(store, &later).await;
    let mut expected: BTreeMap<String, i64> = ids.iter().map(|id| (id.clone(), 0)).collect();
    expected.insert(ids[0].clone(), 30);

    for n in 0..970 {
        // The cell with the most room, the oldest of equals (ids are in age order).
        let want = expected
            .iter()
            .filter(|(_, used)| **used < 100)
            .min_by_key(|(id, used)| (**used, (*id).clone()))
            .map(|(id, _)| id.clone())
            .expect("room left");
        let (t, created) = store
            .want_tenant(&tid(&format!("tenant-{n:04}")))
            .await
            .expect("place");
        assert!(created);
        assert_eq!(t.cell.as_deref(), Some(want.as_str()), "tenant {n}");
        *expected.get_mut(&want).expect("known") += 1;
        if n < 270 {
            assert_ne!(want, ids[0], "the fuller cell waits its turn");
        } else {
            let spread = expected.values().max().copied().unwrap_or(0)
                - expected.values().min().copied().unwrap_or(0);
            assert!(spread <= 1, "the roomiest cell fills first: {expected:?}");
        }
    }

    let cells = occupancy(store).await;
    assert_eq!(cells.len(), 10);
    for (id, (tenants, state)) in &cells {
        assert_eq!(*tenants, 100, "{id}");
        assert_eq!(*state, CellState::Full, "{id}");
    }
    assert_eq!(store.list_tenants().await.expect("tenants").len(), 1_000);

    // The 1,001st is refused, and nothing of it is recorded.
    let late = tid("one-too-many");
    match store.want_tenant(&late).await {
        Err(e @ StoreError::NoCellRoom(_)) => {
            assert!(e.to_string().contains("no cell has room"), "{e}")
        }
        other => panic!("expected NoCellRoom, got {other:?}"),
    }
    assert!(store.get_tenant(&late).await.expect("get").is_none());

    // A placed tenant wanted again keeps its cell.
    let (again, created) = store.want_tenant(&tid("tenant-0000")).await.expect("want");
    assert!(!created);
    assert!(again.cell.is_some());
}

async fn draining_and_full_cells_get_no_tenant(env: Env) {
    let store = env.store();
    add_cells(store, &[("cell-a", 3), ("cell-b", 3)]).await;
    let drained = store.drain_cell("cell-a").await.expect("drain");
    assert_eq!(drained.map(|c| c.state), Some(CellState::Draining));
    assert!(store
        .drain_cell("no-such-cell")
        .await
        .expect("drain")
        .is_none());

    for n in 0..3 {
        let (t, _) = store
            .want_tenant(&tid(&format!("bee-{n}")))
            .await
            .expect("place");
        assert_eq!(
            t.cell.as_deref(),
            Some("cell-b"),
            "a draining cell gets none"
        );
    }
    let cells = occupancy(store).await;
    assert_eq!(cells["cell-a"], (0, CellState::Draining));
    assert_eq!(cells["cell-b"], (3, CellState::Full));
    assert!(matches!(
        store.want_tenant(&tid("nowhere")).await,
        Err(StoreError::NoCellRoom(_))
    ));
    assert!(store
        .get_tenant(&tid("nowhere"))
        .await
        .expect("get")
        .is_none());

    // Reopened, the drained cell takes tenants again.
    let reopened = store.activate_cell("cell-a").await.expect("activate");
    assert_eq!(reopened.map(|c| c.state), Some(CellState::Active));
    let (t, _) = store.want_tenant(&tid("ay-0")).await.expect("place");
    assert_eq!(t.cell.as_deref(), Some("cell-a"));

    // Draining keeps a cell's tenants where they are, wanted again or not.
    store.drain_cell("cell-a").await.expect("drain");
    let (t, created) = store.want_tenant(&tid("ay-0")).await.expect("want again");
    assert!(!created);
    assert_eq!(t.cell.as_deref(), Some("cell-a"));

    // A full cell activated without room stays full; a teardown frees room,
    // which placement uses once an operator opens the cell again.
    let still = store.activate_cell("cell-b").await.expect("activate");
    assert_eq!(still.map(|c| c.state), Some(CellState::Full));
    assert!(store.delete_tenant(&tid("bee-0")).await.expect("delete"));
    assert_eq!(occupancy(store).await["cell-b"], (2, CellState::Full));
    store.drain_cell("cell-a").await.expect("drain");
    assert!(matches!(
        store.want_tenant(&tid("bee-3")).await,
        Err(StoreError::NoCellRoom(_))
    ));
    let opened = store.activate_cell("cell-b").await.expect("activate");
    assert_eq!(opened.map(|c| c.state), Some(CellState::Active));
    let (t, _) = store.want_tenant(&tid("bee-3")).await.expect("place");
    assert_eq!(t.cell.as_deref(), Some("cell-b"));
    assert_eq!(occupancy(store).await["cell-b"], (3, CellState::Full));
    assert_eq!(
        store.tenants_in_cell("cell-b").await.expect("tenants"),
        [tid("bee-1"), tid("bee-2"), tid("bee-3")]
    );
}

async fn concurrent_placements_fill_two_cells_exactly(env: Env) {
    add_cells(env.store(), &[("cell-x", 50), ("cell-y", 50)]).await;
    // Two pools stand for two processes placing at once.
    let stores = [env.store().clone(), env.second_store().await];
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = stores[n % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let id = tid(&format!("rush-{n:03}"));
                barrier.wait().await;
                (id.clone(), store.want_tenant(&id).await)
            })
        })
        .collect();
    let mut placed = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (id, Ok((t, created))) => {
                assert!(created, "{id}");
                placed.push((id, t.cell.expect("a cell")));
            }
            (id, Err(e @ StoreError::NoCellRoom(_))) => {
                assert!(e.to_string().contains("no cell has room"), "{e}");
                refused.push(id);
            }
            (id, Err(e)) => panic!("{id}: unexpected error {e}"),
        }
    }
    assert_eq!(placed.len(), 100, "exactly the capacity is placed");
    assert_eq!(refused.len(), 100, "every other placement is refused");

    let store = env.store();
    let cells = occupancy(store).await;
    assert_eq!(cells["cell-x"], (50, CellState::Full));
    assert_eq!(cells["cell-y"], (50, CellState::Full));
    // What was placed is recorded where it said; what was refused is not at all.
    let tenants = store.list_tenants().await.expect("tenants");
    assert_eq!(tenants.len(), 100);
    for (id, cell) in &placed {
        let t = store.get_tenant(id).await.expect("get").expect("placed");
        assert_eq!(t.cell.as_ref(), Some(cell));
    }
    for id in &refused {
        assert!(store.get_tenant(id).await.expect("get").is_none(), "{id}");
    }
    stores[1].close().await;
}

async fn cells_are_registered_once_per_id_and_project(env: Env) {
    let store = env.store();
    let (first, created) = store
        .add_cell(&new_cell("cell-eu1-001", 100))
        .await
        .expect("add");
    assert!(created);
    assert_eq!(
        (first.state, first.tenants, first.room()),
        (CellState::Active, 0, 100)
    );
    // The same again: no change.
    let (again, created) = store
        .add_cell(&new_cell("cell-eu1-001", 100))
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(again, first);
    // Another capacity under the id, or the project for another cell: refused.
    for clash in [
        new_cell("cell-eu1-001", 50),
        NewCell {
            id: "cell-eu1-002".to_owned(),
            ..new_cell("cell-eu1-001", 100)
        },
    ] {
        match store.add_cell(&clash).await {
            Err(StoreError::CellConflict(message)) => {
                assert!(message.contains("cell-eu1-001"), "{message}")
            }
            other => panic!("expected CellConflict, got {other:?}"),
        }
    }
    assert_eq!(store.list_cells().await.expect("list").len(), 1);
}

async fn without_cells_local_tenants_have_none_and_gcp_refuses(env: Env) {
    let store = env.store();
    // The local adapter without cells: no cell, shown as `local`.
    let (t, _) = store.want_tenant(&tid("plain")).await.expect("want");
    assert_eq!(t.cell, None);
    let view = control_plane::service::tenants::view(store, &tid("plain"))
        .await
        .expect("view");
    assert_eq!(view.cell, "local");

    // A deployment that needs cells (gcp) refuses, naming `cells add`, and
    // records nothing; through the reconciler too.
    let gone = tid("cloudy");
    match store.want_tenant_placed(&gone, WithoutCells::Refuse).await {
        Err(e @ StoreError::NoCells(_)) => {
            assert!(e.to_string().contains("cells add"), "{e}")
        }
        other => panic!("expected NoCells, got {other:?}"),
    }
    let reconciler = env.platform.reconciler(Settings {
        without_cells: WithoutCells::Refuse,
        ..support::fast_settings()
    });
    // `Platform::reconciler` sets the policy from the adapter: local here.
    assert_eq!(reconciler.without_cells(), WithoutCells::Unplaced);
    let gcp_like = control_plane::reconciler::Reconciler::new(
        env.platform.cloud.clone(),
        store.clone(),
        Settings {
            without_cells: WithoutCells::Refuse,
            ..support::fast_settings()
        },
    );
    match gcp_like.provision(&gone, "test").await {
        Err(ReconcileError::Store(StoreError::NoCells(_))) => {}
        other => panic!("expected NoCells, got {other:?}"),
    }
    assert!(store.get_tenant(&gone).await.expect("get").is_none());

    // Once a cell exists, a tenant recorded before is placed when wanted
    // again, and new ones are placed too, whatever the policy.
    add_cells(store, &[("cell-one", 10)]).await;
    let (t, created) = store.want_tenant(&tid("plain")).await.expect("want");
    assert!(!created);
    assert_eq!(t.cell.as_deref(), Some("cell-one"));
    let report = gcp_like.provision(&gone, "test").await.expect("provision");
    assert!(report.is_success(), "{report:?}");
    let t = store.get_tenant(&gone).await.expect("get").expect("there");
    assert_eq!(t.cell.as_deref(), Some("cell-one"));
    let audit = store.list_audit(Some(&gone), 50).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "tenant.provision" && a.detail["cell"] == "cell-one"),
        "{audit:?}"
    );
}

async fn the_cell_routes_register_list_show_drain_and_activate(env: Env) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let config = ServeConfig {
        operator_token: Some(xero::secret::SecretString::new(OPERATOR_TOKEN)),
        ..ServeConfig::closed(addr, base.clone())
    };
    let (state, workers) = server::start(
        env.platform.cloud.clone(),
        env.store().clone(),
        env.platform.reconciler(support::fast_settings()),
        config,
    );
    let app = server::router(state);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(OPERATOR_TOKEN)
    };
    use reqwest::Method;

    // Without the operator token: 401.
    let r = http
        .get(format!("{base}/v1/cells"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 401);

    let body = json!({"id": "cell-eu1-001", "project": "ll-eu1-001", "region": "europe-west1", "capacity": 2});
    let r = call(Method::POST, "/v1/cells")
        .json(&body)
        .send()
        .await
        .expect("add");
    assert_eq!(r.status(), 201);
    let added: Value = r.json().await.expect("json");
    assert_eq!(added["created"], true);
    assert_eq!(added["state"], "active");
    assert_eq!(added["room"], 2);
    let r = call(Method::POST, "/v1/cells")
        .json(&body)
        .send()
        .await
        .expect("again");
    assert_eq!(r.status(), 200, "the same cell again changes nothing");
    assert!(
        added.get("app_secret").is_none(),
        "locally runs carry the app's secret: no cell copy"
    );
    let r = call(Method::POST, "/v1/cells/sync-secret")
        .send()
        .await
        .expect("sync");
    assert_eq!(r.status(), 409);
    let refused: Value = r.json().await.expect("json");
    assert_eq!(refused["code"], "no_cells", "{refused}");
    for (bad, status, code) in [
        (
            json!({"id": "cell-eu1-002", "project": "ll-eu1-001", "region": "europe-west1"}),
            409,
            "cell_conflict",
        ),
        (
            json!({"id": "Bad Id", "project": "ll-eu1-009", "region": "europe-west1"}),
            400,
            "invalid_cell",
        ),
        (
            json!({"id": "cell-eu1-009", "region": "europe-west1"}),
            400,
            "invalid_body",
        ),
    ] {
        let r = call(Method::POST, "/v1/cells")
            .json(&bad)
            .send()
            .await
            .expect("bad");
        assert_eq!(r.status(), status, "{bad}");
        let answer: Value = r.json().await.expect("json");
        assert_eq!(answer["code"], code, "{answer}");
    }

    // Placed tenants show their cell, in the cell and in the tenant.
    for id in ["one-co", "two-co"] {
        env.store().want_tenant(&tid(id)).await.expect("place");
    }
    let shown: Value = call(Method::GET, "/v1/cells/cell-eu1-001")
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["tenants"], 2);
    assert_eq!(shown["room"], 0);
    assert_eq!(shown["state"], "full");
    assert_eq!(shown["tenant_ids"], json!(["one-co", "two-co"]));
    let tenant: Value = call(Method::GET, "/v1/tenants/one-co")
        .send()
        .await
        .expect("tenant")
        .json()
        .await
        .expect("json");
    assert_eq!(tenant["cell"], "cell-eu1-001");

    let listed: Value = call(Method::GET, "/v1/cells")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(listed[0].get("tenant_ids").is_none());

    let r = call(Method::POST, "/v1/cells/cell-eu1-001/drain")
        .send()
        .await
        .expect("drain");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["state"], "draining");
    let r = call(Method::POST, "/v1/cells/cell-eu1-001/activate")
        .send()
        .await
        .expect("activate");
    assert_eq!(
        r.json::<Value>().await.expect("json")["state"],
        "full",
        "no room: it stays full"
    );
    for (method, path) in [
        (Method::GET, "/v1/cells/cell-none"),
        (Method::POST, "/v1/cells/cell-none/drain"),
        (Method::POST, "/v1/cells/cell-none/activate"),
    ] {
        let r = call(method, path).send().await.expect("unknown");
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.expect("json")["code"],
            "cell_not_found"
        );
    }

    // No room left: a new tenant's consent or provisioning is refused with
    // a clear code (here through the store, as every path goes).
    match env.store().want_tenant(&tid("three-co")).await {
        Err(StoreError::NoCellRoom(_)) => {}
        other => panic!("expected NoCellRoom, got {other:?}"),
    }
    workers.abort();
    serving.abort();
}

async fn a_consent_no_cell_has_room_for_is_refused_before_xero(env: Env) {
    use control_plane::service::onboarding;
    use control_plane::service::ServiceError;
    use xero::oauth::{OAuthClient, OAuthConfig};

    let store = env.store();
    add_cells(store, &[("cell-small", 1)]).await;
    store.want_tenant(&tid("first-co")).await.expect("place");
    let redirect = "http://127.0.0.1:8080/oauth/xero/callback"
        .parse()
        .expect("redirect uri");
    let oauth = OAuthClient::new(OAuthConfig::new("ll-client", "ll-secret", redirect))
        .expect("oauth client");
    let link_of = |url: &str| url.split("link=").nth(1).unwrap_or_default().to_owned();
    let minted = onboarding::mint_connect_link(
        store,
        "http://127.0.0.1:8080",
        &tid("second-co"),
        Duration::from_secs(3600),
        "test",
    )
    .await
    .expect("mint");
    let link = link_of(&minted.url);

    // No room: refused before the client is sent to Xero, the link unused.
    match onboarding::start_consent(store, Some(&oauth), WithoutCells::Unplaced, &link).await {
        Err(ServiceError::Store(StoreError::NoCellRoom(_))) => {}
        other => panic!("expected NoCellRoom, got {other:?}"),
    }
    let answer: control_plane::server::ApiError =
        ServiceError::Store(StoreError::NoCellRoom(tid("second-co"))).into();
    assert_eq!((answer.status.as_u16(), answer.code), (503, "no_cell_room"));
    // A placed tenant consents again whatever the room.
    let again = onboarding::mint_connect_link(
        store,
        "http://127.0.0.1:8080",
        &tid("first-co"),
        Duration::from_secs(3600),
        "test",
    )
    .await
    .expect("mint");
    onboarding::start_consent(
        store,
        Some(&oauth),
        WithoutCells::Unplaced,
        &link_of(&again.url),
    )
    .await
    .expect("a placed tenant's consent");

    // Room again: the same link now starts the consent.
    add_cells(store, &[("cell-more", 1)]).await;
    let url = onboarding::start_consent(store, Some(&oauth), WithoutCells::Unplaced, &link)
        .await
        .expect("consent");
    assert!(url.contains("state="), "{url}");
}

// ----------------------------------------------------------------- the CLI

fn cli(dir: &Path, database_url: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", dir)
        .env("LEDGERLAKE_MASTER_KEY", support::TEST_MASTER_KEY)
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("LEDGERLAKE_DATABASE_URL", url);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

async fn cells_through_the_cli(env: Env) {
    let dir = env.dir.path().to_path_buf();
    let url = env.database_url.clone();
    // The binary runs beside this runtime; blocking here is what a user does.
    let run = move |args: &[&str]| -> Output {
        cli(&dir, url.as_deref())
            .args(args)
            .output()
            .expect("run control-plane")
    };
    let run = Arc::new(run);
    let go = |args: &'static [&'static str]| {
        let run = run.clone();
        async move {
            tokio::task::spawn_blocking(move || run(args))
                .await
                .expect("join")
        }
    };

    // Before any cell: tenants have none, shown as `local`.
    let out = go(&["tenants", "provision", "first"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = go(&["tenants", "show", "first", "--output", "json"]).await;
    assert_eq!(json_of(&out)["cell"], "local");
    let out = go(&["cells", "list"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("no cells"),
        "{}",
        text(&out.stdout)
    );

    let out = go(&[
        "cells",
        "add",
        "cell-eu1-001",
        "--project",
        "ll-eu1-001",
        "--region",
        "europe-west1",
        "--capacity",
        "2",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let added = json_of(&out);
    assert_eq!(added["id"], "cell-eu1-001");
    assert_eq!(added["capacity"], 2);
    assert_eq!(added["created"], true);
    // The default capacity is 100.
    let out = go(&[
        "cells",
        "add",
        "cell-eu1-002",
        "--project",
        "ll-eu1-002",
        "--region",
        "europe-west1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tenants 0/100"),
        "{}",
        text(&out.stdout)
    );

    // Bad input exits 2; a clash or an unknown cell exits 1.
    let out = go(&[
        "cells",
        "add",
        "Bad",
        "--project",
        "ll-eu1-003",
        "--region",
        "x1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = go(&[
        "cells",
        "add",
        "cell-eu1-003",
        "--project",
        "ll-eu1-001",
        "--region",
        "europe-west1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already holds cell cell-eu1-001"),
        "{}",
        text(&out.stderr)
    );
    let out = go(&["cells", "show", "cell-none"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cell cell-none does not exist"));

    // The roomiest cell (the one of 100) takes the new tenant.
    let out = go(&["tenants", "provision", "second", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json_of(&out)["cell"], "cell-eu1-002");
    let out = go(&["tenants", "show", "second"]).await;
    assert!(
        text(&out.stdout).contains("cell cell-eu1-002"),
        "{}",
        text(&out.stdout)
    );
    let out = go(&["cells", "show", "cell-eu1-002", "--output", "json"]).await;
    let shown = json_of(&out);
    assert_eq!(shown["tenants"], 1);
    assert_eq!(shown["room"], 99);
    assert_eq!(shown["tenant_ids"], json!(["second"]));

    // Drained, it gets no more: the next tenant goes to the other cell.
    let out = go(&["cells", "drain", "cell-eu1-002", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)["state"], "draining");
    let out = go(&["tenants", "provision", "third", "--output", "json"]).await;
    assert_eq!(json_of(&out)["cell"], "cell-eu1-001");
    let out = go(&["tenants", "list", "--output", "json"]).await;
    let cells_of: Vec<(String, String)> = json_of(&out)
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| (t["id"].to_string(), t["cell"].to_string()))
        .collect();
    assert_eq!(
        cells_of,
        [
            ("\"first\"".to_owned(), "\"local\"".to_owned()),
            ("\"second\"".to_owned(), "\"cell-eu1-002\"".to_owned()),
            ("\"third\"".to_owned(), "\"cell-eu1-001\"".to_owned()),
        ]
    );
    let out = go(&["cells", "list", "--output", "json"]).await;
    let listed = json_of(&out);
    assert_eq!(listed[0]["id"], "cell-eu1-001");
    assert_eq!(listed[0]["tenants"], 1);
    assert_eq!(listed[1]["state"], "draining");
    let out = go(&["cells", "list"]).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("draining") && table.contains("1/2"),
        "{table}"
    );
    let out = go(&["cells", "activate", "cell-eu1-002"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("state active"),
        "{}",
        text(&out.stdout)
    );
    // A tenant in a cell as Terraform: its module call and imports.
    let out = go(&[
        "tenants",
        "export-terraform",
        "second",
        "--platform-account",
        "ledgerlake-control@ll-platform.iam.gserviceaccount.com",
        "--location",
        "EU",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hcl = text(&out.stdout);
    assert!(
        hcl.contains("module \"tenant_second\"") && hcl.contains("\"ll-eu1-002\""),
        "{hcl}"
    );
    assert_eq!(hcl.matches("import {").count(), 15, "{hcl}");
    // One without a cell has nothing Terraform could manage; the location
    // is needed where no gcp adapter gives it.
    let out = go(&[
        "tenants",
        "export-terraform",
        "first",
        "--platform-account",
        "ledgerlake-control@ll-platform.iam.gserviceaccount.com",
        "--location",
        "EU",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has no cell"),
        "{}",
        text(&out.stderr)
    );
    let out = go(&[
        "tenants",
        "export-terraform",
        "second",
        "--platform-account",
        "ledgerlake-control@ll-platform.iam.gserviceaccount.com",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Locally each run carries the Xero app's secret: no cell copy to sync.
    let out = go(&["cells", "sync-secret"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("keeps no tenants in cells"),
        "{}",
        text(&out.stderr)
    );
}

// ----------------------------------------------------------------- the app's secret

/// The cells' copy of the Xero app's client secret (`cells add`, `cells
/// sync-secret`), on the local cloud: the first write makes it, the same
/// value again changes nothing, a rotation adds a version and destroys all
/// but the newest two, and it carries no tenant's label.
async fn the_app_secret_is_written_once_rotated_and_kept_to_two_versions(env: Env) {
    use cloud::ports::Credential;
    use control_plane::service::cells::{sync_app_secret, write_app_secret, AppSecretChange};
    use job_contract::plan::XERO_APP_SECRET;
    use xero::secret::SecretString;

    let cloud = &env.platform.cloud;
    let value = |s: &str| SecretString::new(s);
    let newest = || async {
        let (version, payload) = cloud
            .secrets
            .access_latest(&Credential::Platform, XERO_APP_SECRET)
            .await
            .expect("access");
        (
            version,
            String::from_utf8(payload.expose().to_vec()).expect("utf-8"),
        )
    };
    assert_eq!(
        write_app_secret(cloud, &value("one")).await.expect("write"),
        AppSecretChange::Created
    );
    let info = cloud
        .secrets
        .get_secret(XERO_APP_SECRET)
        .await
        .expect("get");
    assert!(
        !info.labels.contains_key(cloud::naming::TENANT_LABEL),
        "{info:?}"
    );
    assert_eq!(newest().await, (1, "one".to_owned()));
    assert_eq!(
        write_app_secret(cloud, &value("one")).await.expect("again"),
        AppSecretChange::Unchanged
    );
    assert_eq!(newest().await.0, 1, "no version for the same value");
    for (n, v) in [(2, "two"), (3, "three")] {
        assert_eq!(
            write_app_secret(cloud, &value(v)).await.expect("rotate"),
            AppSecretChange::Rotated
        );
        assert_eq!(newest().await, (n, v.to_owned()));
    }
    // Version 1 went with the second rotation: nothing older than the newest
    // two is left to destroy.
    let left = cloud
        .secrets
        .destroy_old_versions(XERO_APP_SECRET, 2, time::OffsetDateTime::now_utc())
        .await
        .expect("destroy");
    assert_eq!(left, 0);

    // Through the cells: one cell, audited when it changed; an unknown one refused.
    let store = env.store();
    add_cells(store, &[("cell-eu1-001", 10)]).await;
    let clouds = cloud::Clouds::Shared(cloud.clone());
    let synced = sync_app_secret(store, &clouds, Some("cell-eu1-001"), &value("four"), "test")
        .await
        .expect("sync");
    assert_eq!(synced.len(), 1);
    assert_eq!(
        (synced[0].cell.as_str(), synced[0].change),
        ("cell-eu1-001", AppSecretChange::Rotated)
    );
    let audited = store.list_audit(None, 10).await.expect("audit");
    assert!(
        audited.iter().any(|a| a.action == "cell.app_secret"),
        "{audited:?}"
    );
    assert!(
        !format!("{audited:?}").contains("four"),
        "the secret's value is never audited"
    );
    let unknown = sync_app_secret(store, &clouds, Some("cell-none"), &value("four"), "test").await;
    assert!(
        matches!(
            unknown,
            Err(control_plane::service::ServiceError::NotFound { .. })
        ),
        "{unknown:?}"
    );
}
