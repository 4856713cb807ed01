//! Store and runtime tests. Each runs on SQLite and, when `CIVICFLOW_TEST_PG` names a
//! PostgreSQL database, on PostgreSQL too (a fresh schema per test).

mod common;

mod accounts;
mod audit;
mod collect;
mod concurrency;
mod dashboard;
mod idempotency;
mod import;
mod overlays;
mod scope;
mod timers;
mod transitions;
