//! The per-instance event log, hash-chained: each event's hash covers the previous hash and
//! the event's stored text, so editing, removing or reordering an event breaks the chain.

use crate::error::Result;
use civicflow_engine::machine::NewEvent;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn event_hash(prev: &str, instance_id: &str, seq: i64, at: i64, actor: &str, kind: &str, payload: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, instance_id, &seq.to_string(), &at.to_string(), actor, kind, payload] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Append events after `(last_seq, last_hash)`; returns the new chain head.
pub(crate) async fn append(conn: &mut AnyConnection, instance_id: &str, mut seq: i64, mut hash: String, at: i64, events: &[NewEvent]) -> Result<(i64, String)> {
    for e in events {
        seq += 1;
        let payload = serde_json::to_string(&e.payload)?;
        let next = event_hash(&hash, instance_id, seq, at, &e.actor, &e.kind, &payload);
        sqlx::query("INSERT INTO events (instance_id, seq, at, actor, kind, payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(instance_id)
            .bind(seq)
            .bind(at)
            .bind(&e.actor)
            .bind(&e.kind)
            .bind(&payload)
            .bind(&hash)
            .bind(&next)
            .execute(&mut *conn)
            .await?;
        hash = next;
    }
    Ok((seq, hash))
}
