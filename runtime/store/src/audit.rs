//! `civicflow audit verify`: recompute every instance's hash chain.

use crate::db::Store;
use crate::error::Result;
use crate::events::{GENESIS, event_hash};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenChain {
    pub instance_id: String,
    pub seq: i64,
    pub reason: String,
}

impl Store {
    /// Every instance whose event chain does not verify, with the first bad event.
    pub async fn verify_chains(&self) -> Result<(usize, Vec<BrokenChain>)> {
        let heads = sqlx::query("SELECT id, last_seq, last_hash FROM instances ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut broken = Vec::new();
        for head in &heads {
            let id: String = head.try_get("id")?;
            let last_seq: i64 = head.try_get("last_seq")?;
            let last_hash: String = head.try_get("last_hash")?;
            if let Some(b) = self.verify_chain(&id, last_seq, &last_hash).await? {
                broken.push(b);
            }
        }
        Ok((heads.len(), broken))
    }

    async fn verify_chain(&self, id: &str, last_seq: i64, last_hash: &str) -> Result<Option<BrokenChain>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, payload, prev_hash, hash FROM events WHERE instance_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let fail = |seq: i64, reason: String| {
            Ok(Some(BrokenChain {
                instance_id: id.to_string(),
                seq,
                reason,
            }))
        };
        let mut prev = GENESIS.to_string();
        let mut expected_seq = 1;
        for r in &rows {
            let seq: i64 = r.try_get("seq")?;
            if seq != expected_seq {
                return fail(expected_seq, format!("event {expected_seq} is missing"));
            }
            let stored_prev: String = r.try_get("prev_hash")?;
            if stored_prev != prev {
                return fail(seq, "previous-hash link does not match the event before it".into());
            }
            let hash = event_hash(
                &prev,
                id,
                seq,
                r.try_get("at")?,
                &r.try_get::<String, _>("actor")?,
                &r.try_get::<String, _>("kind")?,
                &r.try_get::<String, _>("payload")?,
            );
            if hash != r.try_get::<String, _>("hash")? {
                return fail(seq, "content does not match its hash (edited)".into());
            }
            prev = hash;
            expected_seq += 1;
        }
        if expected_seq - 1 != last_seq || prev != last_hash {
            return fail(
                expected_seq,
                format!(
                    "chain ends at event {} but the instance records {last_seq} (events removed or added)",
                    expected_seq - 1
                ),
            );
        }
        Ok(None)
    }
}
