//! Test support (feature `testing`): a PostgreSQL database of its own for each test, on the
//! server named by `SIGNOFF_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the test is done. Without a
//! reachable server, tests say plainly on the real stderr that they were skipped, and pass.

use tokio_postgres::NoTls;

/// The server (and maintenance database) tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("SIGNOFF_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    /// `postgres://…/<name>`, for `--database-url` or `PostgresStore::connect`.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh, empty database, or `None` after saying on stderr that `what` was skipped and
    /// how to run it.
    pub fn create(what: &str) -> Option<TestDatabase> {
        let name = format!("signoff_test_{}", uuid::Uuid::now_v7().simple());
        if let Err(e) = on_admin(format!("CREATE DATABASE {name}")) {
            // Written to the real stderr (not the test harness's capture) so that a passing run
            // still says plainly what it did not test.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nPostgreSQL test SKIPPED ({what}): cannot use {} ({e}).\nStart PostgreSQL (or set SIGNOFF_TEST_POSTGRES_URL=postgres://user@host:port/db) and run `cargo test --workspace` again.\n",
                admin_url()
            );
            return None;
        }
        let admin = admin_url();
        let server = admin.rsplit_once('/').map_or(admin.as_str(), |(server, _)| server);
        Some(TestDatabase { url: format!("{server}/{name}"), name })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = on_admin(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs `sql` on the admin database, on a thread and runtime of its own, so that sync tests and
/// async tests (inside their runtime) can both call it.
fn on_admin(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin_url(), NoTls).await.map_err(explain)?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(explain)
        })
    })
    .join()
    .map_err(|_| "the admin connection panicked".to_string())?
}

/// The error with its cause ("error connecting to server: Connection refused").
fn explain(e: tokio_postgres::Error) -> String {
    match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
