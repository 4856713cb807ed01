//! Idempotency keys: a client that retries a POST (a phone on a bad connection) with the
//! same `Idempotency-Key` gets the first answer again instead of a second ticket, a second
//! completion, or a "409 already completed" it cannot tell from someone else's.

use crate::db::{Store, millis};
use crate::error::{Result, StoreError};
use crate::runtime::{Applied, Op, Runtime};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::AnyConnection;

/// How a keyed request went.
#[derive(Debug, Clone, PartialEq)]
pub enum Once {
    /// It ran now; this is its answer.
    Ran(Value),
    /// It ran before with this key; this was the answer.
    Repeated(Value),
}

/// The longest Idempotency-Key kept.
const MAX_KEY_BYTES: usize = 200;

/// How a renderer turns an action's result into the answer it sends: stored as the key's
/// answer, so a repeat is sent the very bytes the first request was.
pub type Answer = fn(&Applied) -> Value;

/// A checked key with whose it is and how its answer is made.
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    person: String,
    key: String,
    answer: Answer,
}

impl Keyed {
    /// Store the answer in the action's own transaction: the key is answered exactly when
    /// the action is committed, so a crash leaves neither a key without its effect nor an
    /// effect without its answer. Two requests with one key: the second to commit finds
    /// the key taken, rolls back and is sent the first one's answer.
    pub(crate) async fn remember(&self, conn: &mut AnyConnection, applied: &Applied, now: DateTime<Utc>) -> Result<()> {
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (person_id, key, response, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.person)
        .bind(&self.key)
        .bind((self.answer)(applied).to_string())
        .bind(millis(now))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if stored == 1 {
            Ok(())
        } else {
            Err(StoreError::KeyAnswered)
        }
    }
}

impl Runtime {
    /// Apply `op` at most once per person and key; without a key, just apply it. A refused
    /// request stores nothing, so a corrected retry may use its key.
    pub async fn once(&self, key: Option<&str>, answer: Answer, op: Op) -> Result<Once> {
        let Some(key) = key else {
            return self.submit(op, None).await.map(|applied| Once::Ran(answer(&applied)));
        };
        // Keys are stored: a client's UUID fits many times over, a megabyte header does not.
        if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
            )));
        }
        let person = op.person().to_string();
        if let Some(first) = self.store.answer_of(&person, key).await? {
            return Ok(Once::Repeated(first));
        }
        let keyed = Keyed {
            person: person.clone(),
            key: key.to_string(),
            answer,
        };
        match self.submit(op, Some(keyed)).await {
            Ok(applied) => Ok(Once::Ran(answer(&applied))),
            Err(StoreError::KeyAnswered) => match self.store.answer_of(&person, key).await? {
                Some(first) => Ok(Once::Repeated(first)),
                None => Err(StoreError::Corrupt(format!("Idempotency-Key {key} has no answer"))),
            },
            Err(e) => Err(e),
        }
    }
}

/// How long a key's answer is kept: a phone retries within minutes or, after a night
/// offline, the next day; a key reused after a week starts a new request.
pub const KEPT_FOR: chrono::Duration = chrono::Duration::days(7);

impl Store {
    /// Drop the answers of keys older than [`KEPT_FOR`] (the scheduler's hourly chore);
    /// how many.
    pub async fn forget_old_keys(&self, now: DateTime<Utc>) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM idempotency_keys WHERE at < $1")
            .bind(millis(now - KEPT_FOR))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The answer stored under a person's key, if a request with it was committed.
    async fn answer_of(&self, person: &str, key: &str) -> Result<Option<Value>> {
        let answer: Option<String> =
            sqlx::query_scalar("SELECT response FROM idempotency_keys WHERE person_id = $1 AND key = $2")
                .bind(person)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(answer.map(|a| serde_json::from_str(&a)).transpose()?)
    }

    /// The instance a task belongs to.
    pub async fn task_instance(&self, task_id: &str) -> Result<String> {
        sqlx::query_scalar("SELECT instance_id FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| crate::StoreError::NotFound(format!("task {task_id}")))
    }
}
