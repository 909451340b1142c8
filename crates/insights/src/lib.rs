//! Insights: what analytics knows of each request (`facts`, folded from the event log) and
//! what it computes from many: statistics and per-person summaries (`stats`), bottleneck
//! heatmaps (`heatmap`), predicted time to decision (`predict`) and what-if replays of a
//! candidate policy (`simulate`). Pure: no I/O, and the present is always passed in.

pub mod facts;
pub mod heatmap;
pub mod predict;
pub mod simulate;
pub mod stats;

pub use facts::{Millis, RequestFacts};
