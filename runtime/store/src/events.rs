//! The per-instance event log, hash-chained: each event's hash covers the previous hash and
//! the event's stored text, so editing, removing or reordering an event breaks the chain.

use crate::error::Result;
use civicflow_engine::machine::NewEvent;
use sha2::{Digest, Sha256};

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn event_hash(
    prev: &str,
    instance_id: &str,
    seq: i64,
    at: i64,
    actor: &str,
    kind: &str,
    payload: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        instance_id,
        &seq.to_string(),
        &at.to_string(),
        actor,
        kind,
        payload,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Events ready to insert, hashed onto the chain after `(seq, hash)`; returns them and
/// the new chain head. Hashing first lets the instance row take the head in its own update.
pub(crate) fn chain(
    instance_id: &str,
    mut seq: i64,
    mut hash: String,
    at: i64,
    events: &[NewEvent],
) -> Result<(Vec<Chained>, i64, String)> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let payload = serde_json::to_string(&e.event.payload())?;
        let next = event_hash(&hash, instance_id, seq, at, &e.actor, e.event.kind(), &payload);
        out.push(Chained {
            seq,
            prev_hash: std::mem::replace(&mut hash, next.clone()),
            hash: next,
            payload,
        });
    }
    Ok((out, seq, hash))
}

pub(crate) struct Chained {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub payload: String,
}
