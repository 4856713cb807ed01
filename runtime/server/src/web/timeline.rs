//! Events in plain words: the one presenter of the event log, for an instance's timeline
//! and for the list of what I did. It matches on [`Event`], so a new kind of event does not
//! compile until this module says how it reads (or that it is not shown).

use super::forms;
use super::pages::{Names, filled, name_of, named, role_title, span_words, state_title};
use super::views::TimelineLine;
use crate::i18n::text;
use chrono::{DateTime, Utc};
use civicflow_engine::definition::{DEFAULT_LANG, localize};
use civicflow_engine::{Event, Workflow};
use civicflow_store::EventRow;
use fluent_bundle::FluentValue;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Recipients named on a timeline line; the rest are counted.
pub(super) const NAMED_RECIPIENTS: usize = 5;

/// The message that says `event` on a timeline; none for the engine's own bookkeeping.
/// `admin` (those who run plugins and workflows) also read which plugin decided a rule and
/// why one failed; everyone else reads what was decided.
pub(super) fn message_id(event: &Event, admin: bool) -> Option<&'static str> {
    Some(match event {
        Event::Entered { .. } | Event::JoinWaiting { .. } => return None,
        Event::Started { .. } => "event-started",
        Event::TaskCreated { due: Some(_), .. } => "event-task_created-due",
        Event::TaskCreated { .. } => "event-task_created",
        Event::TaskClaimed { .. } => "event-task_claimed",
        Event::TaskCompleted { .. } => "event-task_completed",
        Event::EntrySubmitted { .. } => "event-entry_submitted",
        Event::EntryWaitlisted { .. } => "event-entry_waitlisted",
        Event::EntryWithdrawn { .. } => "event-entry_withdrawn",
        Event::EntryPromoted { .. } => "event-entry_promoted",
        Event::SignalReceived { .. } => "event-signal_received",
        Event::SignalIgnored { .. } if admin => "event-signal_ignored-admin",
        Event::SignalIgnored { .. } => "event-signal_ignored",
        Event::TimerFired { .. } => "event-timer_fired",
        Event::Escalated { .. } => "event-escalated",
        Event::RuleEvaluated { .. } if admin => "event-rule_evaluated",
        Event::RuleEvaluated { .. } => "event-rule_decided",
        Event::RuleFailed { .. } if admin => "event-rule_failed-admin",
        Event::RuleFailed { .. } => "event-rule_failed",
        Event::Credited { .. } => "event-credited",
        Event::Notified { .. } => "event-notified",
        Event::Transitioned { .. } => "event-transitioned",
        Event::RegisterUpdated { .. } => "event-register_updated",
        Event::Completed { .. } => "event-completed",
    })
}

/// The message that says `event` in the audit log, where nothing is left out: the
/// timeline's words for an admin, and the engine's bookkeeping too.
pub(super) fn audit_message_id(event: &Event) -> &'static str {
    match event {
        Event::Entered { .. } => "event-entered",
        Event::JoinWaiting { .. } => "event-join_waiting",
        other => message_id(other, true).unwrap_or("event-other"),
    }
}

/// "我办理了「…」": how the list of what I did says my last action on an instance, and the
/// state it was in; none for events that are not a person's action.
pub(super) fn done_message(event: &Event) -> Option<(&'static str, &str)> {
    Some(match event {
        Event::TaskCompleted { state, .. } => ("done-task_completed", state),
        Event::EntrySubmitted { state, .. } => ("done-entry_submitted", state),
        Event::EntryWaitlisted { state, .. } => ("done-entry_waitlisted", state),
        Event::EntryWithdrawn { state, .. } => ("done-entry_withdrawn", state),
        _ => return None,
    })
}

/// Lines that say what a step did rather than what someone did: they fold under the line
/// of the action that caused them.
fn is_consequence(event: &Event) -> bool {
    matches!(
        event,
        Event::Transitioned { .. }
            | Event::TaskCreated { .. }
            | Event::RuleEvaluated { .. }
            | Event::Notified { .. }
            | Event::Credited { .. }
            | Event::RegisterUpdated { .. }
            | Event::Completed { .. }
    )
}

/// Whom and what the events name, to look their names up at once.
#[derive(Default)]
pub(super) struct Mentioned<'a> {
    pub people: Vec<&'a str>,
    pub units: Vec<&'a str>,
    /// Tasks opened for a role at a unit: their acting unit is looked up too.
    pub role_tasks: Vec<(&'a str, &'a str)>,
}

pub(super) fn mentioned<'a>(events: impl IntoIterator<Item = &'a EventRow>) -> Mentioned<'a> {
    let mut m = Mentioned::default();
    for e in events {
        m.people.push(e.actor.as_str());
        match &e.event {
            Some(Event::Credited { person, .. } | Event::RegisterUpdated { person, .. }) => m.people.push(person),
            Some(Event::Notified {
                recipients: Some(to), ..
            }) => m.people.extend(to.iter().take(NAMED_RECIPIENTS).map(String::as_str)),
            Some(Event::Escalated { unit: Some(u), .. }) => m.units.push(u),
            Some(Event::TaskCreated {
                role: Some(role),
                person: None,
                unit,
                ..
            }) => m.role_tasks.push((role, unit)),
            _ => {}
        }
        // What people typed or picked that may be a unit or a person (a department, a
        // resident), so the timeline shows their names.
        let entered = match &e.event {
            Some(Event::Started { data, .. }) => Some(data),
            Some(Event::TaskCompleted { form, .. }) => Some(form),
            Some(Event::RuleEvaluated { value, .. }) => Some(value),
            _ => None,
        };
        if let Some(v) = entered {
            let mut texts = Vec::new();
            short_texts(v, &mut texts);
            m.units.extend(&texts);
            m.people.extend(texts);
        }
    }
    m
}

/// The short strings in a value (ids are short), to look up as names.
pub(super) fn short_texts<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if s.len() <= 64 => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| short_texts(i, out)),
        Value::Object(map) => map.values().for_each(|i| short_texts(i, out)),
        _ => {}
    }
}

/// What one instance's events are read against: its workflow, the names of whom they
/// mention, and who reads them.
pub(super) struct Presenter<'a> {
    pub wf: &'a Workflow,
    pub names: &'a Names,
    /// A role's task at a unit is done by the role's holders at this unit (the nearest at
    /// or above it that has them).
    pub acting: &'a HashMap<(String, String), String>,
    pub lang: &'static str,
    pub admin: bool,
    pub now: DateTime<Utc>,
}

impl Presenter<'_> {
    /// "郭园社区 网格员 王网格": a task's or an escalation's addressee.
    pub fn who(&self, person: Option<&str>, role: Option<&str>, unit: Option<&str>) -> String {
        let lang = self.lang;
        let unit = match (person, role, unit) {
            (None, Some(r), Some(u)) => self
                .acting
                .get(&(r.to_string(), u.to_string()))
                .map(String::as_str)
                .or(Some(u)),
            _ => unit,
        };
        let mut out = Vec::new();
        if let Some(u) = unit {
            out.push(name_of(self.names, u, lang));
        }
        if let Some(r) = role {
            out.push(role_title(self.wf, r, lang));
        }
        if let Some(p) = person {
            out.push(name_of(self.names, p, lang));
        }
        out.join(" ")
    }

    /// The timeline: one entry per thing a person (or the clock, or another system) did,
    /// with what it caused beneath it.
    pub fn timeline(&self, events: &[EventRow]) -> Vec<TimelineLine> {
        let lines: Vec<(&EventRow, TimelineLine)> = events.iter().filter_map(|e| Some((e, self.line(e)?))).collect();
        fold(lines)
    }

    /// What one event says in the audit log (which lists events of many instances).
    pub fn said(&self, e: &EventRow) -> String {
        match &e.event {
            Some(event) => text(self.lang, audit_message_id(event), &self.args(e, event)),
            None => text(self.lang, "event-other", &[("kind", e.kind.clone().into())]),
        }
    }

    /// One event as a line: details are the fields of a form it carried.
    fn line(&self, e: &EventRow) -> Option<TimelineLine> {
        let lang = self.lang;
        let line = |text, details| TimelineLine {
            at: e.at,
            text,
            details,
            then: Vec::new(),
        };
        let Some(event) = &e.event else {
            // A kind a newer server wrote: listed by its kind rather than hidden.
            return Some(line(
                text(lang, "event-other", &[("kind", e.kind.clone().into())]),
                Vec::new(),
            ));
        };
        let id = message_id(event, self.admin)?;
        let said = text(lang, id, &self.args(e, event));
        let wf = self.wf;
        let details = match event {
            Event::Started { data, .. } => {
                filled(wf, wf.def.start.form.as_deref(), &named(data, self.names, lang), lang)
            }
            Event::TaskCompleted { state, form, .. } => {
                let form_of = wf.def.states.get(state).and_then(|st| st.form.as_deref());
                filled(wf, form_of, &named(form, self.names, lang), lang)
            }
            _ => Vec::new(),
        };
        Some(line(said, details))
    }

    /// The arguments of `event`'s message: names, titles and times in the reader's words.
    fn args(&self, e: &EventRow, event: &Event) -> Vec<(&'static str, FluentValue<'static>)> {
        let (lang, wf, names) = (self.lang, self.wf, self.names);
        let title = |st: &str| FluentValue::from(state_title(wf, st, lang));
        let actor = || -> FluentValue<'static> {
            if e.actor == "system" {
                text(lang, "actor-system", &[]).into()
            } else {
                name_of(names, &e.actor, lang).into()
            }
        };
        match event {
            Event::Entered { state } | Event::JoinWaiting { state, .. } => vec![("state", title(state))],
            Event::Started { .. } => vec![
                ("actor", actor()),
                ("workflow", localize(&wf.def.title, lang).to_string().into()),
            ],
            Event::TaskCreated {
                state,
                role,
                person,
                unit,
                due,
                ..
            } => vec![
                ("state", title(state)),
                ("who", self.who(person.as_deref(), role.as_deref(), Some(unit)).into()),
                (
                    "due",
                    due.map(|d| super::people_time(&d.to_rfc3339(), lang, self.now))
                        .unwrap_or_default()
                        .into(),
                ),
            ],
            Event::TaskClaimed { state, .. }
            | Event::TaskCompleted { state, .. }
            | Event::EntrySubmitted { state, .. }
            | Event::EntryWaitlisted { state, .. }
            | Event::EntryWithdrawn { state, .. } => vec![("actor", actor()), ("state", title(state))],
            Event::EntryPromoted { state, .. } | Event::TimerFired { state, .. } => vec![("state", title(state))],
            // A role, at a unit when the escalation named a level of the tree.
            Event::Escalated { state, to, unit } => vec![
                ("state", title(state)),
                ("who", self.who(None, Some(to), unit.as_deref()).into()),
            ],
            Event::SignalReceived { signal, .. } => vec![("signal", signal.clone().into())],
            Event::SignalIgnored { signal, reason, .. } => {
                vec![("signal", signal.clone().into()), ("reason", reason.clone().into())]
            }
            Event::RuleEvaluated { rule, by, value } => {
                let by = match by.as_str() {
                    "expression" => text(lang, "event-rule-by-default", &[]),
                    plugin => plugin.to_string(),
                };
                // The answer in words: a limit as a span, a unit by its name, none said so.
                let value = match value {
                    Value::Null => text(lang, "event-rule-no-value", &[]),
                    Value::String(v) => span_words(v, lang).unwrap_or_else(|| name_of(names, v, lang)),
                    other => forms::scalar_text(other),
                };
                vec![
                    ("rule", self.rule_title(rule).into()),
                    ("by", by.into()),
                    ("value", value.into()),
                ]
            }
            Event::RuleFailed { rule, plugin, error } => vec![
                ("rule", self.rule_title(rule).into()),
                (
                    "by",
                    plugin
                        .clone()
                        .unwrap_or_else(|| text(lang, "event-rule-by-default", &[]))
                        .into(),
                ),
                ("error", error.clone().into()),
            ],
            Event::Credited {
                account,
                person,
                amount,
            } => vec![
                ("who", name_of(names, person, lang).into()),
                ("account", account.clone().into()),
                ("amount", forms::scalar_text(&json!(amount)).into()),
            ],
            Event::Notified {
                text: by_lang,
                recipients,
                ..
            } => vec![
                ("who", self.recipients(recipients.as_deref().unwrap_or_default()).into()),
                // The text in each language, as the template rendered it.
                (
                    "text",
                    by_lang
                        .get(lang)
                        .or_else(|| by_lang.get(DEFAULT_LANG))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                        .into(),
                ),
            ],
            Event::Transitioned { to, .. } => {
                let to: Vec<String> = to.iter().map(|st| state_title(wf, st, lang)).collect();
                vec![("state", to.join(&text(lang, "list-separator", &[])).into())]
            }
            Event::RegisterUpdated { person, set } => vec![
                ("who", name_of(names, person, lang).into()),
                ("count", set.len().into()),
            ],
            Event::Completed { .. } => Vec::new(),
        }
    }

    /// A rule by what it decides (its description), else by its hook's name.
    fn rule_title(&self, hook: &str) -> String {
        self.wf
            .def
            .rules
            .get(hook)
            .and_then(|r| r.description.as_ref())
            .map_or_else(|| hook.to_string(), |d| localize(d, self.lang).to_string())
    }

    /// "王网格、李调度 等 12 人", or "nobody" when a notification reached no one.
    fn recipients(&self, all: &[String]) -> String {
        let lang = self.lang;
        if all.is_empty() {
            return text(lang, "notified-nobody", &[]);
        }
        let shown: Vec<String> = all
            .iter()
            .take(NAMED_RECIPIENTS)
            .map(|p| name_of(self.names, p, lang))
            .collect();
        let list = shown.join(&text(lang, "list-separator", &[]));
        if all.len() > NAMED_RECIPIENTS {
            text(
                lang,
                "notified-many",
                &[("names", list.into()), ("count", all.len().into())],
            )
        } else {
            list
        }
    }
}

/// The lines of one step (same moment, same actor) fold under the first that is not a
/// consequence, so "王网格 发起了…" carries "「派单」环节开始…" and the rule that routed it
/// beneath it.
fn fold(lines: Vec<(&EventRow, TimelineLine)>) -> Vec<TimelineLine> {
    // A move into a state whose task starts at the same moment is said by that task's line,
    // and the move to the end by "事项已办结".
    let tasks_begun: HashSet<(DateTime<Utc>, &str)> = lines
        .iter()
        .filter_map(|(e, _)| match &e.event {
            Some(Event::TaskCreated { state, .. }) => Some((e.at, state.as_str())),
            _ => None,
        })
        .collect();
    let finished: HashSet<DateTime<Utc>> = lines
        .iter()
        .filter(|(e, _)| matches!(e.event, Some(Event::Completed { .. })))
        .map(|(e, _)| e.at)
        .collect();
    let mut out: Vec<TimelineLine> = Vec::new();
    let mut head: Option<(DateTime<Utc>, &str)> = None;
    for (e, line) in lines {
        if let Some(Event::Transitioned { to, .. }) = &e.event
            && (finished.contains(&e.at) || to.iter().all(|s| tasks_begun.contains(&(e.at, s.as_str()))))
        {
            continue;
        }
        let same_step = head.is_some_and(|(at, actor)| at == e.at && actor == e.actor);
        match out.last_mut() {
            Some(last) if same_step && e.event.as_ref().is_some_and(is_consequence) => last.then.push(line.text),
            _ => {
                head = Some((e.at, e.actor.as_str()));
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{audit_message_id, done_message, message_id};
    use crate::i18n::{LOCALES, has_message};
    use civicflow_engine::Event;
    use strum::IntoEnumIterator;

    /// Every kind of event reads in every language, to an admin and to everyone else; a
    /// kind without its text would show its raw name on the timeline.
    #[test]
    fn every_kind_of_event_has_its_words_in_every_language() {
        let mut kinds = Event::iter().collect::<Vec<_>>();
        // The variant with a time limit, which iter()'s defaults do not make.
        kinds.push(Event::TaskCreated {
            task: String::new(),
            state: String::new(),
            title: String::new(),
            role: None,
            person: None,
            unit: String::new(),
            due: Some(chrono::Utc::now()),
        });
        let mut shown = 0;
        for event in &kinds {
            let ids = [
                message_id(event, true),
                message_id(event, false),
                Some(audit_message_id(event)),
            ];
            let done = done_message(event).map(|(id, _)| id);
            for id in ids.into_iter().chain([done]).flatten() {
                shown += 1;
                for lang in LOCALES {
                    assert!(has_message(lang, id), "{} has no {id} in {lang}", event.kind());
                }
            }
        }
        assert!(shown > Event::iter().count(), "{shown}");
        let hidden: Vec<&str> = kinds
            .iter()
            .filter(|e| message_id(e, true).is_none())
            .map(Event::kind)
            .collect();
        assert_eq!(
            hidden,
            ["join_waiting", "entered"],
            "on a timeline; the audit log has them"
        );
        assert!(kinds.iter().all(|e| audit_message_id(e) != "event-other"));
    }
}
