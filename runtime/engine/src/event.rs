//! What happened to an instance, one variant per kind with its fields: the only place a
//! kind's name and payload are written down. An event is stored as its kind and its
//! payload (JSON) and read back into this type; whoever shows or counts events (the
//! timeline, audit search, dashboards, scenario checks) matches on it, so a new kind does
//! not compile until each of them says what it means.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::EnumIter, strum::IntoStaticStr)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Event {
    /// The instance began with its start form's data.
    Started {
        workflow: String,
        version: u32,
        unit: String,
        data: Value,
    },
    /// A state's task opened, for a person or for a role at a unit.
    TaskCreated {
        task: String,
        state: String,
        /// The state's title in zh-CN when it opened.
        title: String,
        role: Option<String>,
        person: Option<String>,
        unit: String,
        due: Option<DateTime<Utc>>,
    },
    TaskClaimed {
        task: String,
        state: String,
    },
    TaskCompleted {
        task: String,
        state: String,
        form: Value,
    },
    /// An entry into a collect state's list (a sign-up, a ballot).
    EntrySubmitted {
        state: String,
        key: String,
        list: String,
    },
    /// An entry put on the waiting list, the list being full.
    EntryWaitlisted {
        state: String,
        key: String,
        list: String,
    },
    EntryWithdrawn {
        state: String,
        key: String,
        list: String,
    },
    /// The first waiting entry moved into the list a withdrawal freed.
    EntryPromoted {
        state: String,
        key: String,
    },
    /// A signed notice from outside (a payment) moved the instance; `state` is the token it
    /// moved, none for a workflow-wide handler.
    SignalReceived {
        signal: String,
        id: String,
        state: Option<String>,
    },
    /// A signed notice arrived for an instance that could no longer take it.
    SignalIgnored {
        signal: String,
        id: String,
        reason: String,
        body: Value,
    },
    TimerFired {
        state: String,
        timer: usize,
        due: DateTime<Utc>,
    },
    /// A time limit passed and the task was reported to a role (at a unit when the
    /// escalation named a level of the tree).
    Escalated {
        state: String,
        to: String,
        unit: Option<String>,
    },
    /// A rule answered; `by` is the plugin, or `expression` for the workflow's own.
    RuleEvaluated {
        rule: String,
        by: String,
        value: Value,
    },
    /// A rule failed, so the action it was part of was refused; kept so the failure is in
    /// the instance's history.
    RuleFailed {
        rule: String,
        plugin: Option<String>,
        error: String,
    },
    Credited {
        account: String,
        person: String,
        amount: f64,
    },
    /// A notice went out; `recipients` are the people it reached, resolved when the step
    /// was committed.
    Notified {
        template: String,
        to: Value,
        /// The text in each language, as the template rendered it.
        text: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipients: Option<Vec<String>>,
    },
    Transitioned {
        from: String,
        to: Vec<String>,
    },
    /// Attributes written to a person's register entry (a member's stage, dues paid up to).
    RegisterUpdated {
        person: String,
        set: Map<String, Value>,
    },
    /// Every token reached an end state.
    Completed {
        end: Vec<String>,
    },
    /// A join state waits for the branches still to arrive.
    JoinWaiting {
        state: String,
        arrived: Vec<String>,
    },
    Entered {
        state: String,
    },
}

impl Event {
    /// The kind as stored (`task_created`).
    pub fn kind(&self) -> &'static str {
        self.into()
    }

    /// The payload as stored: the event's fields as a JSON object.
    pub fn payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("payload").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Read a stored event back; `None` for a kind or shape this version does not know.
    pub fn read(kind: &str, payload: &Value) -> Option<Self> {
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": payload})).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Event;
    use serde_json::json;
    use strum::IntoEnumIterator;

    #[test]
    fn every_kind_reads_back_what_it_stored() {
        for event in Event::iter() {
            let (kind, payload) = (event.kind(), event.payload());
            assert!(payload.is_object(), "{kind}: {payload}");
            assert_eq!(Event::read(kind, &payload), Some(event), "{kind}");
        }
        let stored = json!({"task": "t1", "state": "dispatch", "title": "派单", "role": "dispatcher",
            "person": null, "unit": "guoyuan", "due": "2026-03-02T01:00:00Z"});
        assert!(matches!(
            Event::read("task_created", &stored),
            Some(Event::TaskCreated { .. })
        ));
        assert_eq!(Event::read("no_such_kind", &json!({})), None);
    }
}
