//! Durable storage through sqlx: SQLite (a file, WAL) by default, PostgreSQL by URL. The
//! only crate that knows SQL. Queries are written once in the common subset of both
//! dialects (`$1` placeholders, `RETURNING`, `ON CONFLICT`) and run through sqlx's `Any`
//! driver; the few differences (row locks, pragmas) branch on [`Backend`].

pub mod accounts;
pub mod admin_log;
pub mod attachments;
mod audit;
pub mod backup;
pub mod codes;
pub mod dashboard;
mod db;
mod error;
mod events;
pub mod idempotency;
mod lists;
mod localities;
mod migrations;
pub mod notices;
pub mod org;
pub mod org_files;
pub mod places;
pub mod plugins;
mod publishing;
mod queries;
pub mod references;
pub mod refused_starts;
pub mod registry;
pub mod runtime;
mod scope;
pub mod signals;
mod tokens;
mod writes;

pub use audit::{BrokenChain, EventCursor, EventSearch, FoundEvent};
pub use db::{Backend, Store};
pub use error::StoreError;
pub use lists::{Cursor, InstanceWindow, List, MAX_PAGE, TaskPage, TaskQuery};
pub use queries::{EventRow, TaskView};
pub use registry::Registry;
pub use runtime::{Applied, Op, Runtime, Shared};
pub use scope::Scope;
