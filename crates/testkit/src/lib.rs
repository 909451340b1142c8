//! What signoff's tests share: a real server on loopback with the test policies and users
//! (`app`), the real `signoff` binary (`binary`), protocol peers that stand in for the world
//! (`peers`: a webhook receiver, Slack's Web API, an SMTP server), a headless Chromium over
//! WebDriver (`browser`), certificates made on the spot (`certs`) and polling with a deadline
//! (`poll`). Dev-only: no shipped crate depends on it.

pub mod app;
pub mod binary;
pub mod browser;
pub mod certs;
pub mod peers;
pub mod poll;
