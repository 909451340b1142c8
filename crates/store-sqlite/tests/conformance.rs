//! The shared store conformance suite, on a real SQLite file.

use std::sync::Arc;

use signoff_store::Store;
use signoff_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    signoff_store::conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("db{n}.sqlite"));
        async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn one_process_per_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.db");
    let first = SqliteStore::open(&path).unwrap();
    let err = SqliteStore::open(&path).err().expect("a second store on the same file is refused");
    assert!(err.to_string().contains("in use by another signoff process"), "{err}");
    drop(first);
    SqliteStore::open(&path).expect("the file is free again once the first store is gone");
}
