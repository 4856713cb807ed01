//! Who administers what. `workflow_admin` (district IT staff; a locality's changes to its
//! workflows) and `plugin_admin` (a locality's rules, calendars) held at a unit administer
//! that unit's subtree. The API checks the one its action needs; the admin pages are open
//! to either over the subtree they show.

use crate::plugin_api::PLUGIN_ADMIN;
use crate::workflow_api::WORKFLOW_ADMIN;
use civicflow_engine::Actor;
use civicflow_engine::org::within;

pub const ADMIN_ROLES: [&str; 2] = [WORKFLOW_ADMIN, PLUGIN_ADMIN];

/// The subtrees `actor` administers: the paths of their admin grants, none inside another.
pub fn administered(actor: &Actor) -> Vec<String> {
    let mut paths: Vec<&str> = actor
        .roles
        .iter()
        .filter(|g| ADMIN_ROLES.contains(&g.role.as_str()))
        .map(|g| g.unit_path.as_str())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let outermost: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !paths.iter().any(|q| q != p && within(p, q)))
        .collect();
    outermost.into_iter().map(str::to_string).collect()
}

/// Whether `actor` administers the unit at `unit_path`.
pub fn administers(actor: &Actor, unit_path: &str) -> bool {
    ADMIN_ROLES.iter().any(|r| actor.has_role_over(r, unit_path))
}

/// Whether `actor` administers anything: the menu offers the admin pages, and they see
/// the admin's detail of a failed rule. Asked on every signed-in page, so nothing is built.
pub fn is_admin(actor: &Actor) -> bool {
    actor.roles.iter().any(|g| ADMIN_ROLES.contains(&g.role.as_str()))
}
