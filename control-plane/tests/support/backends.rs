//! Tests that run once on SQLite and once on PostgreSQL (when
//! `LEDGERLAKE_TEST_DATABASE_URL` names a server): each variant gets a fresh
//! platform on its own store, and a PostgreSQL variant without a server says
//! so loudly and passes. `both_backends!(a, b)` declares `sqlite::a`,
//! `postgres::a`, … for the async test functions `a`, `b` of the file.

use std::future::Future;

use control_plane::platform::{Platform, PlatformConfig};
use control_plane::store::Store;

/// One variant's platform, on a fresh store.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    pub platform: Platform,
}

impl Env {
    pub fn store(&self) -> &Store {
        &self.platform.store
    }

    /// The store's URL (SQLite's file when no server is named).
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => control_plane::store::sqlite_url(&self.dir.path().join("state.db")),
        }
    }
}

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `test` on a fresh store of `backend`, then drops its database.
pub fn on<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let database_url = match backend {
        Backend::Sqlite => None,
        // Before our runtime: the helper runs one of its own.
        Backend::Postgres => match super::postgres_database().expect("postgres") {
            Some(url) => Some(url),
            None => {
                eprintln!(
                    "\n!!! SKIPPED PostgreSQL variant of {name}: \
                     LEDGERLAKE_TEST_DATABASE_URL is not set !!!"
                );
                return;
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tmp");
        let platform = Platform::open(PlatformConfig {
            cloud: Default::default(),
            data_dir: dir.path().to_path_buf(),
            database_url: database_url.clone(),
            bucket_prefix: None,
            master_key: Some(super::TEST_MASTER_KEY.to_owned()),
        })
        .await
        .expect("open platform");
        let store = platform.store.clone();
        test(Env {
            dir,
            database_url: database_url.clone(),
            platform,
        })
        .await;
        store.close().await;
        if let Some(url) = database_url {
            drop_database(&url).await;
        }
    });
}

/// Drops a database `postgres_database` made (best effort: the server
/// removes nothing else).
pub async fn drop_database(url: &str) {
    use sqlx::Connection;
    let (Ok(admin), Some((_, name))) = (
        std::env::var("LEDGERLAKE_TEST_DATABASE_URL"),
        url.rsplit_once('/'),
    ) else {
        return;
    };
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// `both_backends!(a, b, …)`: a `#[test]` per backend for each async
/// `fn a(env: Env)` of the calling file.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    $crate::support::backends::on(
                        $crate::support::backends::Backend::Sqlite,
                        stringify!($name),
                        super::$name,
                    );
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    $crate::support::backends::on(
                        $crate::support::backends::Backend::Postgres,
                        stringify!($name),
                        super::$name,
                    );
                }
            )+
        }
    };
}
