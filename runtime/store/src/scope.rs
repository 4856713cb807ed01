//! Who may see and act on what, as one value every list and every single-object check
//! applies in SQL. A person's [`Scope`] is their roles and where they hold them, with the
//! workflows each role works on; it becomes conditions on indexed columns (a subtree is a
//! range of materialised paths, never `LIKE`), so a list costs what its answer costs.
//!
//! The rule itself is the engine's [`Actor::may_act_on`] (what the runtime enforces when
//! someone acts) plus "started it, or works on this workflow over this unit" for reading;
//! the SQL here says the same thing, and `tests/it.rs` checks that they agree on a table of
//! people × tasks × instances.

use crate::registry::Registry;
use crate::writes::Arg;
use civicflow_engine::Actor;
use std::collections::BTreeSet;

/// The first path after every path in the subtree of `path`: paths end in '/', and '0' is
/// the character after it, so the subtree is `[path, subtree_end(path))` in byte order.
pub(crate) fn subtree_end(path: &str) -> String {
    format!("{}0", path.trim_end_matches('/'))
}

/// `column` (a unit path) in one of the subtrees of `paths`: a range of paths each, never
/// `LIKE`, so an index on the column answers it; false for no paths.
pub(crate) fn in_subtrees(column: &str, paths: &[String], args: &mut Args) -> String {
    if paths.is_empty() {
        return "1 = 0".into();
    }
    let ranges: Vec<String> = paths
        .iter()
        .map(|p| {
            let (from, to) = (args.text(p), args.text(&subtree_end(p)));
            format!("({column} >= {from} AND {column} < {to})")
        })
        .collect();
    format!("({})", ranges.join(" OR "))
}

/// `/a/b/c/` → `/a/`, `/a/b/`, `/a/b/c/`: the unit and every unit above it.
pub(crate) fn ancestor_paths(path: &str) -> Vec<&str> {
    path.char_indices()
        .filter(|&(i, c)| c == '/' && i > 0)
        .map(|(i, _)| &path[..=i])
        .collect()
}

/// Bound arguments of a query being built, numbered `$1, $2, ...` as they are added.
#[derive(Debug, Default)]
pub(crate) struct Args {
    pub(crate) list: Vec<Arg>,
}

impl Args {
    /// Add one argument; its placeholder.
    pub(crate) fn push(&mut self, a: Arg) -> String {
        self.list.push(a);
        format!("${}", self.list.len())
    }

    pub(crate) fn text(&mut self, s: &str) -> String {
        self.push(Arg::Text(s.to_string()))
    }

    fn texts<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) -> String {
        items.into_iter().map(|s| self.text(s)).collect::<Vec<_>>().join(", ")
    }
}

/// A role held at a unit, with the workflows on which that role works.
#[derive(Debug, Clone)]
struct Grant {
    role: String,
    path: String,
    workflows: std::sync::Arc<[String]>,
}

/// A person's reach (see the module comment).
#[derive(Debug, Clone)]
pub struct Scope {
    actor: Actor,
    grants: Vec<Grant>,
}

impl Scope {
    /// The scope of `actor`, with each role's workflows as the registry knows them: a role
    /// works on a workflow when a step is assigned to it or escalates to it.
    pub fn new(actor: Actor, registry: &Registry) -> Self {
        let mut seen = BTreeSet::new();
        let grants = actor
            .roles
            .iter()
            .filter(|g| seen.insert((g.role.clone(), g.unit_path.clone())))
            .map(|g| Grant {
                role: g.role.clone(),
                path: g.unit_path.clone(),
                workflows: registry.worked_on_by(&g.role),
            })
            .collect();
        Self { actor, grants }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn person(&self) -> &str {
        &self.actor.person
    }

    /// Conditions on the tasks alias `t`, any one of which lets this person act on a task
    /// (`Actor::may_act_on` in SQL). Each is answered by one index when `t.status` is fixed.
    pub(crate) fn task_branches(&self, t: &str, args: &mut Args) -> Vec<String> {
        if self.actor.system {
            return vec!["1 = 1".into()];
        }
        let me = args.text(&self.actor.person);
        let mut out = vec![
            format!("{t}.person_id = {me}"),
            format!("({t}.claimed_by = {me} AND {t}.person_id IS NULL)"),
        ];
        for g in &self.grants {
            let role = args.text(&g.role);
            let (from, to) = (args.text(&g.path), args.text(&subtree_end(&g.path)));
            let unowned = format!("{t}.person_id IS NULL AND {t}.claimed_by IS NULL");
            // The grant's own unit apart from the units below it: an equality reads its
            // index already in due order, so a page of a big unit's list stops at the page.
            out.push(format!("({t}.role = {role} AND {t}.unit_path = {from} AND {unowned})"));
            out.push(format!(
                "({t}.role = {role} AND {t}.unit_path > {from} AND {t}.unit_path < {to} AND {unowned})"
            ));
            // Open to holders below the task's unit: the task sits at or above the grant.
            // One equality per unit above (PostgreSQL does not search a `COLLATE "C"`
            // index with an `IN` list; it filters the role's whole range instead).
            for above in ancestor_paths(&g.path) {
                let above = args.text(above);
                out.push(format!(
                    "({t}.role = {role} AND {t}.unit_path = {above} AND {t}.below = 1 AND {unowned})"
                ));
            }
            // Once overdue, the escalation role over the escalation's unit (always stored).
            out.push(format!(
                "({t}.escalated_to = {role} AND {t}.escalated_path >= {from} AND {t}.escalated_path < {to})"
            ));
        }
        out
    }

    /// A condition on the instances alias `i`: this person may read the instance (they
    /// started it, hold a role that works on its workflow over its unit, or may act on one
    /// of its tasks, open or closed).
    pub(crate) fn instance_condition(&self, i: &str, args: &mut Args) -> String {
        if self.actor.system {
            return "1 = 1".into();
        }
        let mut any = vec![format!("{i}.created_by = {}", args.text(&self.actor.person))];
        for g in self.grants.iter().filter(|g| !g.workflows.is_empty()) {
            let workflows = args.texts(g.workflows.iter().map(String::as_str));
            let (from, to) = (args.text(&g.path), args.text(&subtree_end(&g.path)));
            any.push(format!(
                "({i}.workflow_id IN ({workflows}) AND {i}.unit_path >= {from} AND {i}.unit_path < {to})"
            ));
        }
        let tasks = self.task_branches("st", args).join(" OR ");
        any.push(format!(
            "EXISTS (SELECT 1 FROM tasks st WHERE st.instance_id = {i}.id AND ({tasks}))"
        ));
        format!("({})", any.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_is_a_byte_range() {
        let end = subtree_end("/c/d1/");
        for inside in ["/c/d1/", "/c/d1/s/", "/c/d1/zz~/"] {
            assert!(inside >= "/c/d1/" && inside < end.as_str(), "{inside}");
        }
        for outside in ["/c/d10/", "/c/d1-x/", "/c/d1.x/", "/c/d2/", "/c/"] {
            assert!(!(outside >= "/c/d1/" && outside < end.as_str()), "{outside}");
        }
        assert_eq!(ancestor_paths("/a/b/c/"), ["/a/", "/a/b/", "/a/b/c/"]);
    }
}
