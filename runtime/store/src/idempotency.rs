//! Idempotency keys: a client that retries a POST (a phone on a bad connection) with the
//! same `Idempotency-Key` gets the first answer again instead of a second ticket.

use crate::db::{Store, millis};
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};

/// What a key says about a request.
#[derive(Debug, Clone, PartialEq)]
enum Reservation {
    /// First use: go ahead, then finish the key (or release it on failure).
    Fresh,
    /// Done before: this was the answer.
    Done(String),
    /// The first request with this key is still running.
    InProgress,
}

/// How a keyed request went.
#[derive(Debug, Clone, PartialEq)]
pub enum Once {
    /// It ran now; this is its answer.
    Ran(serde_json::Value),
    /// It ran before with this key; this was the answer.
    Repeated(serde_json::Value),
    /// The first request with this key is still running.
    InProgress,
}

/// The longest Idempotency-Key kept.
const MAX_KEY_BYTES: usize = 200;

impl Store {
    /// Run `request` at most once per person and key; without a key, just run it. A failed
    /// request frees its key, so a corrected retry can use it.
    pub async fn once<F>(&self, person: &str, key: Option<&str>, now: DateTime<Utc>, request: F) -> Result<Once>
    where
        F: std::future::Future<Output = Result<serde_json::Value>>,
    {
        let Some(key) = key else {
            return request.await.map(Once::Ran);
        };
        // Keys are stored: a client's UUID fits many times over, a megabyte header does not.
        if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
            )));
        }
        match self.reserve_key(person, key, now).await? {
            Reservation::Fresh => {}
            Reservation::Done(answer) => return Ok(Once::Repeated(serde_json::from_str(&answer)?)),
            Reservation::InProgress => return Ok(Once::InProgress),
        }
        match request.await {
            Ok(answer) => {
                self.finish_key(person, key, &answer.to_string()).await?;
                Ok(Once::Ran(answer))
            }
            Err(e) => {
                self.release_key(person, key).await?;
                Err(e)
            }
        }
    }

    async fn reserve_key(&self, person: &str, key: &str, now: DateTime<Utc>) -> Result<Reservation> {
        let fresh = sqlx::query(
            "INSERT INTO idempotency_keys (person_id, key, response, at) VALUES ($1, $2, '', $3) ON CONFLICT DO NOTHING",
        )
        .bind(person)
        .bind(key)
        .bind(millis(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if fresh == 1 {
            return Ok(Reservation::Fresh);
        }
        let response: String =
            sqlx::query_scalar("SELECT response FROM idempotency_keys WHERE person_id = $1 AND key = $2")
                .bind(person)
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
        Ok(if response.is_empty() {
            Reservation::InProgress
        } else {
            Reservation::Done(response)
        })
    }

    async fn finish_key(&self, person: &str, key: &str, response: &str) -> Result<()> {
        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE person_id = $1 AND key = $2")
            .bind(person)
            .bind(key)
            .bind(response)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The request failed: the key may be used again.
    async fn release_key(&self, person: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE person_id = $1 AND key = $2 AND response = ''")
            .bind(person)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
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
