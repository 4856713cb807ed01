//! The organisation tree as the engine sees it: a unit is known by its materialised path
//! (`/city/district/street/`), so "inside my subtree" is a prefix test that needs no IO.

use serde::{Deserialize, Serialize};

/// A role held by a person at a unit; it covers that unit's whole subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: String,
    pub unit_id: String,
    pub unit_path: String,
}

/// The path of a child unit, given its parent's path (or none for the root).
pub fn child_path(parent_path: Option<&str>, id: &str) -> String {
    format!("{}{id}/", parent_path.unwrap_or("/"))
}

/// Whether `path` lies in the subtree rooted at `root`.
pub fn within(path: &str, root: &str) -> bool {
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_is_a_segment_prefix() {
        let a = child_path(Some("/city/"), "c1");
        let a10 = child_path(Some("/city/"), "c10");
        assert!(within(&child_path(Some(&a), "g1"), &a));
        assert!(!within(&a10, &a), "c10 is not inside c1");
    }
}
