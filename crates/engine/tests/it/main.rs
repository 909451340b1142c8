//! The engine's integration tests, in one binary: the state machine, its properties, time, and
//! the policy reference kept in step with the code.

mod common;
mod machine;
mod properties;
mod reference;
mod time;
