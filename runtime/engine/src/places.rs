//! What the engine asks about the organisation tree while it steps: the working-day
//! calendar in force at a unit, and the ancestor of a unit at a level (the street of a grid).
//! The store answers from memory, so a step still does no IO.

use crate::calendar::Calendar;
use std::sync::Arc;

/// A unit as the engine refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRef {
    pub id: String,
    pub path: String,
}

pub trait Places: Send + Sync {
    /// The calendar in force at the unit with this path (its own tables and its ancestors').
    fn calendar(&self, unit_path: &str) -> Arc<Calendar>;

    /// The unit itself or its nearest ancestor whose level (kind) is `level`.
    fn ancestor_at(&self, unit_path: &str, level: &str) -> Option<UnitRef>;
}

/// No calendars and no levels: for engine tests and tools without an organisation.
pub struct NoPlaces;

impl Places for NoPlaces {
    fn calendar(&self, unit_path: &str) -> Arc<Calendar> {
        Arc::new(Calendar::empty(unit_path))
    }

    fn ancestor_at(&self, _: &str, _: &str) -> Option<UnitRef> {
        None
    }
}
