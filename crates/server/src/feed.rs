//! Live updates inside one process: every committed state is handed to whoever watches that
//! request (SSE streams, long polls) and to the participants' caller-wide streams. Watching
//! holds no database connection; an idle stream is a channel receiver and nothing else.
//! Intermediate states can coalesce, but each update is a complete state, so the newest state
//! always arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use signoff_engine::RequestState;
use tokio::sync::{broadcast, watch};

/// Updates a caller-wide stream can fall behind by before it is told to resync.
const USER_BACKLOG: usize = 256;

type Slot = Option<Arc<RequestState>>;

#[derive(Default)]
pub struct Feed {
    requests: Mutex<HashMap<String, watch::Sender<Slot>>>,
    users: Mutex<HashMap<String, broadcast::Sender<Arc<RequestState>>>>,
}

/// A subscription to one request; unregisters itself when the last watcher goes.
pub struct RequestWatch {
    feed: Arc<Feed>,
    id: String,
    rx: Option<watch::Receiver<Slot>>,
}

impl RequestWatch {
    /// Waits for the next published state.
    pub async fn changed(&mut self) -> Option<Arc<RequestState>> {
        let rx = self.rx.as_mut()?;
        rx.changed().await.ok()?;
        rx.borrow_and_update().clone()
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Ok(mut map) = self.feed.requests.lock()
            && map.get(&self.id).is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.id);
        }
    }
}

/// A subscription to everything one user takes part in; unregisters itself when the user's
/// last stream goes.
pub struct UserWatch {
    feed: Arc<Feed>,
    user: String,
    rx: Option<broadcast::Receiver<Arc<RequestState>>>,
}

impl UserWatch {
    pub async fn recv(&mut self) -> Result<Arc<RequestState>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for UserWatch {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Ok(mut map) = self.feed.users.lock()
            && map.get(&self.user).is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.user);
        }
    }
}

impl Feed {
    /// Whether anyone watches `state`'s request or the stream of one of its participants: only
    /// then is the state worth copying for `publish`.
    pub fn is_watched(&self, state: &RequestState) -> bool {
        let requests = self.requests.lock().map(|m| m.contains_key(state.id.as_str())).unwrap_or(false);
        requests
            || self
                .users
                .lock()
                .map(|m| !m.is_empty() && state.participants().iter().any(|u| m.contains_key(*u)))
                .unwrap_or(false)
    }

    /// Hands a committed state to its watchers.
    pub fn publish(&self, state: Arc<RequestState>) {
        if let Some(tx) = self.requests.lock().ok().and_then(|m| m.get(state.id.as_str()).cloned()) {
            tx.send_replace(Some(state.clone()));
        }
        if let Ok(users) = self.users.lock() {
            for user in state.participants() {
                if let Some(tx) = users.get(user) {
                    let _ = tx.send(state.clone());
                }
            }
        }
    }

    /// Starts watching a request. Subscribe before reading the state: a commit in between is
    /// then seen either in the read or as a change.
    pub fn watch_request(self: &Arc<Self>, id: &str) -> RequestWatch {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let rx = match map.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                map.insert(id.to_string(), tx);
                rx
            }
        };
        RequestWatch { feed: self.clone(), id: id.to_string(), rx: Some(rx) }
    }

    /// Starts watching every request `user` takes part in.
    pub fn watch_user(self: &Arc<Self>, user: &str) -> UserWatch {
        let mut map = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let rx = map.entry(user.to_string()).or_insert_with(|| broadcast::channel(USER_BACKLOG).0).subscribe();
        UserWatch { feed: self.clone(), user: user.to_string(), rx: Some(rx) }
    }

    /// Whether anything in this process may care about request `id`: someone watches it, or
    /// someone streams their own requests.
    pub fn may_watch(&self, id: &str) -> bool {
        self.requests.lock().map(|m| m.contains_key(id)).unwrap_or(false) || self.users.lock().map(|m| !m.is_empty()).unwrap_or(false)
    }

    /// The ids of every watched request.
    pub fn watched_ids(&self) -> Vec<String> {
        self.requests.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Follows a shared store's changes (other instances' commits) into this process's feed.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn signoff_store::Store>, mut changes: broadcast::Receiver<signoff_store::Change>) {
        use signoff_store::Change;
        loop {
            let ids = match changes.recv().await {
                Ok(Change::Request(id)) if self.may_watch(&id) => vec![id],
                Ok(Change::Request(_)) => continue,
                // Missed some: re-read everything watched.
                Ok(Change::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => self.watched_ids(),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for id in ids {
                match store.load(&id).await {
                    Ok(Some(state)) => self.publish(Arc::new(state)),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(request = %id, error = %e, "cannot read a changed request"),
                }
            }
        }
    }
}
