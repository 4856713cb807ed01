//! The civicflow engine: workflow definitions, their validation, expressions and the
//! state machine. Pure: no IO, no wall clock. Time comes in as an argument, storage is
//! somebody else's job (see `civicflow-store`).

pub mod calendar;
pub mod clock;
pub mod definition;
pub mod diagnostic;
pub mod duration;
pub mod event;
pub mod expr;
pub mod files;
pub mod machine;
pub mod org;
pub mod overlay;
pub mod places;
pub mod scenario_file;
pub mod time;
pub mod validate;
pub mod yaml;

pub use clock::{Clock, ManualClock, SystemClock};
pub use definition::{Definition, FormProblem, Workflow};
pub use diagnostic::{Diagnostic, Severity};
pub use event::Event;
pub use machine::{Action, Actor, Audience, EngineError, Instance, Notice, Step, TaskStatus};
