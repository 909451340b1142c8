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

/// The inbox and the approver's and a participant's lists read an index in the order they
/// answer in (no Sort of all of a person's rows), with enough rows that PostgreSQL's plan is
/// the one a large installation gets.
#[tokio::test]
async fn inbox_and_lists_are_served_in_index_order() {
    let Some(db) = TestDatabase::create("inbox query plans") else { return };
    drop(PostgresStore::connect(&db.url).await.unwrap());
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // Statistics as a bulk load leaves them (the tables were analyzed while empty), then fresh.
    client
        .batch_execute(
            "ANALYZE;
             INSERT INTO requests (id, status, policy_id, requester, created_at, updated_at, version, state)
                 SELECT 'req_' || i, 'pending', 'p', 'alice', '', '', 1, repeat('x', 1000) FROM generate_series(1, 50000) AS i;
             INSERT INTO tasks (approver, request_n, step_id, due_at, body)
                 SELECT CASE WHEN n % 1000 = 0 THEN 'u1' ELSE 'mark' END, n, 'review', CASE WHEN n % 10 = 0 THEN NULL ELSE n * 7 % 1000 END, '{}' FROM requests;
             INSERT INTO participants (user_id, request_n) SELECT approver, request_n FROM tasks;",
        )
        .await
        .unwrap();
    for fresh in [false, true] {
        if fresh {
            client.batch_execute("ANALYZE").await.unwrap();
        }
        check_plans(&client).await;
    }
}

/// The plans of the inbox and of lists, with the settings the store reads them with.
async fn check_plans(client: &tokio_postgres::Client) {
    let plan = |sql: String, args: Vec<signoff_store::sql::SqlArg>, settings: &'static str| {
        async move {
            let args = signoff_store_postgres::sql_params(args);
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
            client.batch_execute(&format!("BEGIN; {settings}")).await.unwrap();
            let rows = client.query(&format!("EXPLAIN {sql}"), &params).await.unwrap();
            client.batch_execute("ROLLBACK").await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
        }
    };
    use signoff_store::sql::SqlArg;
    let page = signoff_store::TaskQuery { approver: Some("mark".into()), limit: 100, offset: 200, ..Default::default() };
    let (select, _, args) = signoff_store_postgres::tasks_sql(&page);
    assert_eq!(args, vec![SqlArg::Text("mark".into()), SqlArg::Int(100), SqlArg::Int(200)]);
    let inbox = plan(select, args, signoff_store_postgres::ORDERED_READ).await;
    assert!(inbox.contains("tasks_inbox") && !inbox.contains("Sort"), "{inbox}");
    let (select, _, args) = signoff_store_postgres::tasks_sql(&signoff_store::TaskQuery { approver: None, ..page });
    let everyone = plan(select, args, signoff_store_postgres::ORDERED_READ).await;
    assert!(everyone.contains("tasks_due") && !everyone.contains("Sort"), "{everyone}");
    for q in [
        signoff_store::ListQuery { approver: Some("mark".into()), visible_to: Some("mark".into()), limit: 50, ..Default::default() },
        signoff_store::ListQuery { visible_to: Some("mark".into()), limit: 50, ..Default::default() },
        signoff_store::ListQuery { limit: 50, ..Default::default() },
    ] {
        let (sql, args) = signoff_store::sql::list_query(&q, |k| format!("${k}")).unwrap();
        let p = plan(sql, args, signoff_store_postgres::ORDERED_READ).await;
        assert!(!p.contains("Sort") && !p.contains("Seq Scan") && !p.contains("Hash"), "{q:?}:\n{p}");
    }
}

/// A row the store cannot read back is reported, not passed off with defaults.
#[tokio::test]
async fn a_damaged_outbox_row_reads_as_corrupt() {
    let Some(db) = TestDatabase::create("a damaged outbox row") else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO outbox (id, request_id, channel, destination, kind, payload, status, next_attempt_at, created_at)
             VALUES ('ntf_1', 'req_1', 'webhook', 'erp', 'event', '{}', 'pending', 0, 'yesterday')",
        )
        .await
        .unwrap();
    let corrupt = |r: Result<(), signoff_store::StoreError>| {
        matches!(r, Err(signoff_store::StoreError::Corrupt(e)) if e.contains("ntf_1") && e.contains("created_at"))
    };
    assert!(corrupt(store.notification("ntf_1").await.map(|_| ())));
    assert!(corrupt(store.deliveries("req_1").await.map(|_| ())));
    let now = jiff::Timestamp::from_millisecond(1_000).unwrap();
    assert!(corrupt(store.claim_notifications(now, 10, now).await.map(|_| ())));
}
