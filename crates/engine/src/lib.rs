//! signoff's engine: the pure core of the product. Policies are parsed and checked here, a
//! request's context is planned into a routing plan, commands are decided into events, and a
//! request's state is the fold of its events. Nothing in this crate performs I/O, spawns tasks
//! or reads a clock: the caller passes `now` in, which is what makes every decision replayable.

pub mod canonical;
pub mod code;
pub mod condition;
pub mod directory;
pub mod duration;
pub mod event;
pub mod id;
pub mod machine;
pub mod nesting;
pub mod policy;
pub mod state;
pub mod status;
pub mod suggest;

pub mod planner;

pub use code::Code;
pub use directory::{Directory, User};
pub use event::{Event, EventKind};
pub use id::{LineageId, RequestId};
pub use machine::{Action, Command, Decision, Outcome, Refusal, Submission, SubmitError};
pub use policy::{Policy, PolicyProblem};
pub use state::{RequestState, RequestStatus, StepState, StepStatus, Timer, TimerKind};

/// The actor recorded for decisions nobody made by hand (auto-approval, timeouts).
pub const SYSTEM_ACTOR: &str = "system";
