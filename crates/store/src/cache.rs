//! The states a store keeps in memory, bounded by their size rather than their number: one
//! request with a megabyte of context weighs as much as hundreds of small ones.

use std::sync::Arc;

use signoff_engine::RequestState;

/// What the state cache may hold by default: 64 MiB (see `CachedState::weight`).
pub const DEFAULT_STATE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A state kept in memory, weighed by the length of its JSON text: parsed, a state takes about
/// twice its text (maps, strings and vectors each allocate), so the weight is twice the text,
/// plus a fixed overhead per entry.
#[derive(Debug, Clone)]
pub struct CachedState {
    pub state: Arc<RequestState>,
    weight: u64,
}

impl CachedState {
    /// `state`, whose JSON text is `json_bytes` long.
    pub fn new(state: Arc<RequestState>, json_bytes: usize) -> CachedState {
        CachedState { state, weight: 2 * json_bytes as u64 + 512 }
    }

    /// `state`, when its JSON text is not at hand (it is written once to be measured).
    pub fn measured(state: Arc<RequestState>) -> CachedState {
        let bytes = serde_json::to_vec(&*state).map_or(0, |v| v.len());
        CachedState::new(state, bytes)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ByWeight;

impl quick_cache::Weighter<String, CachedState> for ByWeight {
    fn weight(&self, key: &String, value: &CachedState) -> u64 {
        key.len() as u64 + value.weight
    }
}

/// Request states by id, at most `max_bytes` of them by weight.
pub type StateCache = quick_cache::sync::Cache<String, CachedState, ByWeight>;

/// The least weight each shard of the cache holds. The cache is split into shards of equal
/// weight and refuses an entry heavier than its shard: a shard of at least 16 MiB keeps any
/// state a 1 MiB submission makes (its context twice, as submitted and effective).
const MIN_SHARD_WEIGHT: u64 = 16 * 1024 * 1024;

pub fn state_cache(max_bytes: u64) -> StateCache {
    let shards = (max_bytes / MIN_SHARD_WEIGHT).clamp(1, 16) as usize;
    let options = quick_cache::OptionsBuilder::new()
        // Only sizes the initial tables.
        .estimated_items_capacity((max_bytes / 8192).clamp(64, 1 << 20) as usize)
        .weight_capacity(max_bytes)
        .shards(shards)
        .build()
        .expect("capacities are set");
    StateCache::with_options(options, ByWeight, Default::default(), Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_by_weight_not_count() {
        let cache = state_cache(2 * 1024 * 1024);
        let state = |i: usize| {
            let sub = signoff_engine::Submission {
                id: format!("req_{i}").into(), requester: "alice".into(), title: None, subject: None,
                context: serde_json::json!({"blob": "x".repeat(100_000)}), evidence: vec![], lineage: None, resubmits: None,
            };
            let policy = signoff_engine::Policy::from_yaml("id: p\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n").unwrap();
            let dir = signoff_engine::Directory::from_yaml("users:\n  - {id: alice}\n  - {id: mark}\n").unwrap();
            Arc::new(signoff_engine::machine::submit(&policy, &dir, sub, jiff::Timestamp::UNIX_EPOCH).unwrap().1)
        };
        for i in 0..100 {
            cache.insert(format!("req_{i}"), CachedState::measured(state(i)));
        }
        // 100 states of about 400 KB by weight (100 KB of context, twice, doubled): a few fit
        // in 2 MiB, the most recent among them.
        assert!((1..=5).contains(&cache.len()), "{} states kept", cache.len());
        assert!(cache.weight() <= 2 * 1024 * 1024);
        assert!(cache.get("req_99").is_some(), "the newest state is kept");
        // A state as heavy as a 1 MiB submission makes is kept by the default cache.
        let big = state_cache(crate::DEFAULT_STATE_CACHE_BYTES);
        // (Which of several such states stay depends on how keys hash to shards, which is
        // seeded at random; each one must at least be admitted.)
        for i in 0..5 {
            big.insert(format!("req_{i}"), CachedState::new(state(i), 2 * 1024 * 1024));
            assert!(big.get(&format!("req_{i}")).is_some(), "a 2 MiB state is admitted");
        }
    }
}
