//! The shared store conformance suite on a real PostgreSQL, each check in a database of its
//! own. Without a reachable server the test says so and passes: set SIGNOFF_TEST_POSTGRES_URL
//! (default postgres://postgres@127.0.0.1:5432/postgres) to run it.

use std::sync::{Arc, Mutex};

use signoff_store::Store;
use signoff_store_postgres::PostgresStore;

fn admin_url() -> String {
    std::env::var("SIGNOFF_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Connects to the admin database, or explains why the PostgreSQL tests are skipped.
async fn admin() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            // Written to the real stderr (not the test harness's capture) so that a passing run
            // still says plainly what it did not test.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nPostgreSQL tests SKIPPED: cannot connect to {} ({e}).\nStart PostgreSQL (or set SIGNOFF_TEST_POSTGRES_URL=postgres://user@host:port/db) and run `cargo test --workspace` again.\n",
                admin_url()
            );
            None
        }
    }
}

/// The URL of a database like the admin one but named `db`.
fn url_for(db: &str) -> String {
    let base = admin_url();
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => format!("{base}/{db}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let Some(admin) = admin().await else { return };
    let admin = Arc::new(admin);
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let (admin, created) = (admin.clone(), created.clone());
        signoff_store::conformance::run_all(move || {
            let (admin, created) = (admin.clone(), created.clone());
            async move {
                let db = format!("signoff_test_{}", uuid::Uuid::now_v7().simple());
                admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
                created.lock().unwrap().push(db.clone());
                Arc::new(PostgresStore::connect(&url_for(&db)).await.unwrap()) as Arc<dyn Store>
            }
        })
        .await;
    }
    let created: Vec<String> = created.lock().unwrap().drain(..).collect();
    for db in created {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    }
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(admin) = admin().await else { return };
    let db = format!("signoff_test_{}", uuid::Uuid::now_v7().simple());
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let url = url_for(&db);
    let starts: Vec<_> = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PostgresStore::connect(&url).await.map(|_| ()) })
    }).collect();
    for s in starts {
        s.await.unwrap().expect("every instance starts");
    }
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}
