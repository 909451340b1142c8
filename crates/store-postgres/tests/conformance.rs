//! The shared store conformance suite on a real PostgreSQL, each check in a database of its
//! own. Without a reachable server the test says so and passes: set SIGNOFF_TEST_POSTGRES_URL
//! (default postgres://postgres@127.0.0.1:5432/postgres) to run it.

use std::sync::{Arc, Mutex};

use signoff_store::Store;
use signoff_store_postgres::PostgresStore;
use signoff_store_postgres::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let Some(first) = TestDatabase::create("the store conformance suite") else { return };
    // Each check gets a database of its own; all are dropped at the end.
    let databases = Arc::new(Mutex::new(vec![first]));
    signoff_store::conformance::run_all(|| {
        let databases = databases.clone();
        async move {
            let db = TestDatabase::create("the store conformance suite").expect("PostgreSQL went away mid-suite");
            let url = db.url.clone();
            databases.lock().unwrap().push(db);
            Arc::new(PostgresStore::connect(&url).await.unwrap()) as Arc<dyn Store>
        }
    })
    .await;
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create("concurrent migrations") else { return };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().expect("every instance starts");
    }
}
