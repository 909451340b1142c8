//! What signoff's tests share: a real server on loopback with the test policies and users
//! (`app`), the real `signoff` binary (`binary`), protocol peers that stand in for the world
//! (`peers`: a webhook receiver, Slack's Web API, an SMTP server) and polling with a deadline
//! (`poll`). Dev-only: no shipped crate depends on it.

pub mod app;
pub mod binary;
pub mod peers;
pub mod poll;
