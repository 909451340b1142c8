//! The analytics projection as the server holds it: every request's facts in memory, loaded
//! from the store's projection tables on first use and kept current by following the audit log
//! (in the background, and before each read, so a caller sees its own writes). Statistics,
//! summaries and the rest read it; the write path never does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use signoff_engine::Event;
use signoff_insights::RequestFacts;
use signoff_insights::predict::Model;
use signoff_store::{FactsRow, Store, StoreError};

/// How many log entries the follower folds per transaction.
const BATCH: u32 = 10_000;
/// How many projection rows a start-up load reads at a time.
const LOAD_PAGE: u32 = 5_000;
/// How often the follower takes in what the log gained.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a fitted prediction model is used before it is fitted again.
const REFIT_EVERY: i64 = 60_000;

/// The facts of every request, by id, and how far the log has been read.
#[derive(Default)]
pub struct Projection {
    facts: RwLock<HashMap<String, Arc<RequestFacts>>>,
    /// Held while following; `None` until loaded from the store.
    follow: tokio::sync::Mutex<Option<u64>>,
    /// The prediction model and when it was fitted (held while fitting, so one call fits).
    model: tokio::sync::Mutex<Option<(i64, Arc<Model>)>>,
}

impl Projection {
    /// Brings the projection up to the end of the audit log (sequencing what commits queued
    /// first); answers the log size it reached.
    pub async fn refresh(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let mut cursor = self.follow.lock().await;
        let mut at = match *cursor {
            Some(at) => at,
            None => self.load(store).await?,
        };
        *cursor = Some(at);
        let size = crate::audit::catch_up(store).await?;
        while at < size {
            at = self.fold(store, at, size).await?;
            *cursor = Some(at);
        }
        Ok(at)
    }

    /// Loads the stored projection if nothing has yet (without folding what the log gained
    /// since): for readers that may be a moment behind, such as predictions.
    pub async fn loaded(&self, store: &dyn Store) -> Result<(), StoreError> {
        if self.follow.lock().await.is_some() {
            return Ok(());
        }
        self.refresh(store).await.map(|_| ())
    }

    /// Reads the stored projection; answers its cursor.
    async fn load(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let cursor = store.facts_cursor().await?;
        let mut after = (0u64, String::new());
        let mut facts = HashMap::new();
        loop {
            let page = store.facts_page((after.0, &after.1), LOAD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = (last.cursor, last.request_id.clone());
            for row in page {
                let f: RequestFacts = signoff_store::decode(&row.body)?;
                facts.insert(row.request_id, Arc::new(f));
            }
        }
        *self.facts.write().unwrap_or_else(|e| e.into_inner()) = facts;
        Ok(cursor)
    }

    /// Folds the log from `from` (at most `BATCH` entries), stores the changed facts with the
    /// new cursor, and only then shows them; answers the new cursor.
    async fn fold(&self, store: &dyn Store, from: u64, size: u64) -> Result<u64, StoreError> {
        let rows = store.audit_rows(from, BATCH).await?;
        // Leaves of purged requests are left out of `rows`; when the page was not full it
        // reached the log's end as of `size` at least.
        let next = match rows.last() {
            Some(last) if rows.len() == BATCH as usize => last.leaf.index + 1,
            Some(last) => size.max(last.leaf.index + 1),
            None => size,
        };
        let mut changed: HashMap<String, RequestFacts> = HashMap::new();
        {
            let known = self.facts.read().unwrap_or_else(|e| e.into_inner());
            // (The directory's changes are in the log too; they are no request's facts.)
            for row in rows.into_iter().filter(|r| r.leaf.request_id != signoff_store::log::DIRECTORY) {
                let event: Event = signoff_store::decode(&row.body)?;
                let id = row.leaf.request_id;
                if let Some(f) = changed.get_mut(&id) {
                    f.apply(&event);
                } else if let Some(f) = RequestFacts::start(&event) {
                    changed.insert(id, f);
                } else if let Some(f) = known.get(&id) {
                    let mut f = RequestFacts::clone(f);
                    f.apply(&event);
                    changed.insert(id, f);
                }
                // (A later event of a request whose start was never seen: purged meanwhile.)
            }
        }
        let rows = changed
            .iter()
            .map(|(id, f)| {
                let body = serde_json::to_string(f).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(FactsRow { request_id: id.clone(), cursor: next, body })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        store.put_facts(rows, next).await?;
        let mut facts = self.facts.write().unwrap_or_else(|e| e.into_inner());
        for (id, f) in changed {
            facts.insert(id, Arc::new(f));
        }
        Ok(next)
    }

    /// Forgets purged requests.
    pub fn forget(&self, ids: &[String]) {
        let mut facts = self.facts.write().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            facts.remove(id);
        }
    }

    /// Runs `f` over every request's facts (as they were at the last refresh).
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &RequestFacts>) -> T) -> T {
        let facts = self.facts.read().unwrap_or_else(|e| e.into_inner());
        f(&mut facts.values().map(|f| &**f))
    }

    /// Every request's facts as they stand (a copy of the references: reading it takes no lock).
    pub fn snapshot(&self) -> Vec<Arc<RequestFacts>> {
        self.facts.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The prediction model as of `now`, fitted at most `REFIT_EVERY` ago (off the runtime's
    /// threads: a large history takes a while).
    pub async fn model(&self, now: i64) -> Arc<Model> {
        let mut fitted = self.model.lock().await;
        if let Some((at, m)) = &*fitted
            && (now - at).abs() < REFIT_EVERY
        {
            return m.clone();
        }
        let facts = self.snapshot();
        let fit = move || Arc::new(Model::fit(facts.iter().map(|f| &**f), now));
        let model = tokio::task::spawn_blocking(fit).await.unwrap_or_default();
        *fitted = Some((now, model.clone()));
        model
    }

    /// One request's facts.
    pub fn get(&self, id: &str) -> Option<Arc<RequestFacts>> {
        self.facts.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

/// Runs until dropped: keeps `projection` current every `FOLLOW_EVERY`, on a thread of its own
/// at the lowest CPU priority, so that under load the threads serving calls and committing go
/// first and the projection catches up when they rest (every insights call still folds what is
/// left before it answers).
pub async fn follower(store: Arc<dyn Store>, projection: Arc<Projection>) {
    struct Stop(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop = Stop(stop.clone());
    let (s, p) = (store.clone(), projection.clone());
    let spawned = std::thread::Builder::new().name("signoff-insights".into()).spawn(move || {
        lowest_priority();
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "insights: no runtime for the follower; the projection catches up when read"),
        };
        runtime.block_on(follow(&*s, &p, || !stop.load(std::sync::atomic::Ordering::Relaxed)));
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "insights: no thread for the follower; following on the runtime");
        follow(&*store, &projection, || true).await;
    }
    std::future::pending::<()>().await
}

/// Refreshes `projection` every `FOLLOW_EVERY` while `running` holds.
async fn follow(store: &dyn Store, projection: &Projection, running: impl Fn() -> bool) {
    while running() {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if let Err(e) = projection.refresh(store).await {
            tracing::warn!(error = %e, "insights: cannot follow the audit log; retrying");
        }
    }
}

/// Gives the calling thread (and the threads it starts) the lowest CPU priority (nice 19).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; on Linux the nice value of PRIO_PROCESS
    // with a thread id is that thread's alone.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::debug!("insights: could not lower the follower's priority");
        }
    }
}
