//! Protocol peers on loopback: the other end of each integration, speaking its real protocol.

pub mod oidc;
pub mod otlp;
pub mod slack;
pub mod smtp;
pub mod webhook;
