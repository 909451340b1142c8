//! Test support (feature `testing`): a PostgreSQL database of its own for each test, on the
//! server named by `SIGNOFF_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the test is done. Without a
//! reachable server, tests say plainly on the real stderr that they were skipped, and pass;
//! with `CI` set in the environment they fail instead, so CI never goes green by skipping.

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
    admin: String,
}

impl TestDatabase {
    /// A fresh, empty database, or `None` after saying on stderr that `what` was skipped and
    /// how to run it. Under CI (`CI` set and not empty) an unreachable server panics instead.
    pub fn create(what: &str) -> Option<TestDatabase> {
        Self::create_on(&admin_url(), required(), what)
    }

    /// `create` on the server of `admin` (its maintenance database's URL); `required` panics
    /// where `create` would skip.
    pub fn create_on(admin: &str, required: bool, what: &str) -> Option<TestDatabase> {
        let name = format!("signoff_test_{}", uuid::Uuid::now_v7().simple());
        if let Err(e) = on_admin(admin, format!("CREATE DATABASE {name}")) {
            if required {
                panic!(
                    "PostgreSQL test FAILED ({what}): cannot use {admin} ({e}). CI is set, so PostgreSQL tests may not be skipped: \
                     .ci/run installs and starts PostgreSQL on 127.0.0.1:5432"
                );
            }
            // Written to the real stderr (not the test harness's capture) so that a passing run
            // still says plainly what it did not test.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nPostgreSQL test SKIPPED ({what}): cannot use {admin} ({e}).\nStart PostgreSQL (or set SIGNOFF_TEST_POSTGRES_URL=postgres://user@host:port/db) and run `cargo test --workspace` again.\n"
            );
            return None;
        }
        let server = admin.rsplit_once('/').map_or(admin, |(server, _)| server);
        Some(TestDatabase { url: format!("{server}/{name}"), name, admin: admin.to_string() })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = on_admin(&self.admin, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Whether PostgreSQL tests must run: `CI` is set (to anything but an empty string).
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Runs `sql` on the admin database, on a thread and runtime of its own, so that sync tests and
/// async tests (inside their runtime) can both call it.
fn on_admin(admin: &str, sql: String) -> Result<(), String> {
    let admin = admin.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, NoTls).await.map_err(explain)?;
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

#[cfg(test)]
mod tests {
    use super::TestDatabase;

    /// Nothing listens on port 1.
    const CLOSED: &str = "postgres://postgres@127.0.0.1:1/postgres";

    #[test]
    fn an_unreachable_server_skips_on_a_laptop() {
        assert!(TestDatabase::create_on(CLOSED, false, "the skip test").is_none());
    }

    #[test]
    #[should_panic(expected = "may not be skipped")]
    fn an_unreachable_server_fails_under_ci() {
        TestDatabase::create_on(CLOSED, true, "the CI test");
    }
}
