//! Signed callbacks from other systems (a payment provider saying an item was paid). The
//! body is checked against an HMAC-SHA256 signature under a shared secret, the callback's
//! own id is recorded in the same transaction as its effect, so a callback delivered twice
//! (providers retry until acknowledged) changes nothing the second time, and a callback
//! that nothing waits for (a second payment of a paid item) is recorded on the instance as
//! ignored, for refund, and never counted.

use crate::db::millis;
use crate::error::{Result, StoreError};
use crate::queries::load_instance;
use crate::runtime::{Applied, OUTSIDE_ATTEMPTS, Shared, commit};
use civicflow_engine::machine::{Action, NewEvent, Step, step};
use civicflow_engine::{Actor, EngineError, Event};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// What a signal did.
#[derive(Debug, Clone)]
pub enum SignalOutcome {
    /// It moved the instance.
    Applied(Box<Applied>),
    /// Its id was seen before: acknowledged again, nothing changed.
    Duplicate,
    /// Nothing waited for it; recorded on the instance as `signal_ignored`.
    Ignored(String),
}

impl SignalOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            SignalOutcome::Applied(_) => "applied",
            SignalOutcome::Duplicate => "duplicate",
            SignalOutcome::Ignored(_) => "ignored",
        }
    }
}

/// `hex(HMAC-SHA256(secret, body))`, as a sender computes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(tag) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn text_at(body: &Value, pointer: &str, what: &str) -> Result<String> {
    match body.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(StoreError::Invalid(format!("the callback has no {what} at {pointer}"))),
    }
}

impl Shared {
    /// Take signal `name` of `workflow`: `body` exactly as received, `signature` its hex
    /// HMAC-SHA256. A bad signature or body is refused and changes nothing.
    pub async fn signal(&self, workflow: &str, name: &str, body: &[u8], signature: &str) -> Result<SignalOutcome> {
        let wf = self
            .registry
            .latest(workflow)
            .ok_or_else(|| StoreError::NotFound(format!("workflow \"{workflow}\"")))?;
        let def = wf
            .def
            .signals
            .get(name)
            .ok_or_else(|| StoreError::NotFound(format!("signal \"{name}\" of workflow \"{workflow}\"")))?;
        let secret = self.secret(&def.secret).ok_or_else(|| {
            StoreError::Invalid(format!("the secret {} is not configured on this server", def.secret))
        })?;
        if !verify(&secret, body, signature) {
            return Err(EngineError::Forbidden("the signature does not match the body".into()).into());
        }
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| StoreError::Invalid(format!("the callback is not JSON: {e}")))?;
        let instance_id = text_at(&payload, &def.instance, "instance id")?;
        let receipt = text_at(&payload, &def.id, "id")?;

        // The step is computed with no transaction open (it may call plugins) and committed
        // if the instance is still as read; else read and computed again.
        let mut attempts = 1;
        let (mut tx, outcome) = loop {
            let now = self.now();
            let stored = {
                let mut conn = self.store.reader.acquire().await?;
                load_instance(&mut conn, &instance_id).await?
            };
            if stored.instance.workflow != workflow {
                return Err(StoreError::Invalid(format!(
                    "instance {instance_id} is not a \"{workflow}\" instance"
                )));
            }
            let wf = self.registry.for_instance(&stored.instance)?;
            let action = Action::Signal {
                name: name.into(),
                id: receipt.clone(),
                payload: payload.clone(),
            };
            let locality = self.locality(&wf, &stored.instance.unit_path, Some(&stored.instance));
            let instance = stored.instance.clone();
            let computed = self
                .with_rules(locality, now, move |at| {
                    step(&wf, Some(instance), action, &Actor::system(), at)
                })
                .await;
            let mut tx = self.store.pool.begin().await?;
            let taken = sqlx::query("INSERT INTO signal_receipts (workflow_id, signal, receipt_id, instance_id, outcome, at) VALUES ($1, $2, $3, $4, '', $5) ON CONFLICT DO NOTHING")
                .bind(workflow)
                .bind(name)
                .bind(&receipt)
                .bind(&instance_id)
                .bind(millis(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if taken == 0 {
                return Ok(SignalOutcome::Duplicate);
            }
            let outcome = match computed {
                Ok(s) => match commit(&mut tx, s, Some(&stored), now).await {
                    Err(StoreError::Engine(EngineError::Conflict(_))) if attempts < OUTSIDE_ATTEMPTS => {
                        tx.rollback().await?;
                        attempts += 1;
                        continue;
                    }
                    applied => SignalOutcome::Applied(Box::new(applied?)),
                },
                Err(StoreError::Engine(EngineError::Gone(why))) => {
                    let event = NewEvent {
                        actor: "system".into(),
                        event: Event::SignalIgnored {
                            signal: name.to_string(),
                            id: receipt.to_string(),
                            reason: why.clone(),
                            body: payload.clone(),
                        },
                    };
                    commit(&mut tx, Step::note(stored.instance.clone(), event), Some(&stored), now).await?;
                    SignalOutcome::Ignored(why)
                }
                Err(e) => return Err(e),
            };
            break (tx, outcome);
        };
        sqlx::query(
            "UPDATE signal_receipts SET outcome = $4 WHERE workflow_id = $1 AND signal = $2 AND receipt_id = $3",
        )
        .bind(workflow)
        .bind(name)
        .bind(&receipt)
        .bind(outcome.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        crate::runtime::count_transition("signal", outcome.as_str());
        Ok(outcome)
    }
}
