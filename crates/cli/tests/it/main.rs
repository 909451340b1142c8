//! The command-line tests, in one binary: the real `signoff` binary's start-up contract,
//! commands and exit codes, crashes and restarts, and its OpenAPI document against real tools.

mod audit;
mod binary;
mod hardening;
mod metrics;
mod traces;
mod openapi;
mod packaging;
