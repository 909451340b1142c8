//! The server's integration tests, in one binary (one link on two cores): the HTTP contract,
//! live views, time, transport limits, each notification channel and PostgreSQL.

mod api;
mod audit;
mod browser;
mod contract;
mod email;
mod insights;
mod live;
mod people;
mod postgres;
mod service;
mod slack;
mod sso;
mod throttle;
mod time;
mod tls;
mod transport;
mod web;
mod webhooks;
