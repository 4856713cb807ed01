//! The outbound channel for notifications: each one in the outbox is POSTed as JSON to a
//! webhook, where an SMS or WeChat gateway (or anything else) takes it on. Signed with
//! HMAC-SHA256 so the gateway knows it came from here; retried with backoff; at least once
//! (a receiver drops repeats by `X-Civicflow-Delivery`).
//!
//! `CIVICFLOW_NOTIFY_WEBHOOK` (an `http://` URL: a gateway on the local network, or a
//! TLS-terminating proxy in front of a remote one) switches it on; `CIVICFLOW_NOTIFY_SECRET`
//! is the signing key.

use chrono::{DateTime, Utc};
use civicflow_store::Store;
use civicflow_store::notices::Outgoing;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use std::time::Duration;
use tokio::sync::watch;

const TICK: Duration = Duration::from_secs(1);
const PER_TICK: i64 = 50;
/// One delivery's time, after which it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// After this many failures a notice leaves the outbox (it stays in people's inboxes).
const MAX_ATTEMPTS: i64 = 8;
/// How long a claimed notice is this server's before another may try it.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

pub struct Webhook {
    url: hyper::Uri,
    secret: Vec<u8>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Webhook {
    /// The webhook of `CIVICFLOW_NOTIFY_WEBHOOK` / `CIVICFLOW_NOTIFY_SECRET`, if set.
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(url) = std::env::var("CIVICFLOW_NOTIFY_WEBHOOK").ok().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let secret = std::env::var("CIVICFLOW_NOTIFY_SECRET").unwrap_or_default();
        Self::new(&url, &secret).map(Some)
    }

    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("notification webhook \"{url}\": {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "notification webhook \"{url}\": give an http:// address (put a TLS proxy in front of a remote gateway)"
            ));
        }
        if secret.len() < 16 {
            return Err("CIVICFLOW_NOTIFY_SECRET: give a signing key of at least 16 characters".into());
        }
        Ok(Self {
            url: uri,
            secret: secret.as_bytes().to_vec(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `sha256=HEX` of HMAC-SHA256 over `TIMESTAMP.BODY`: the timestamp is signed too, so a
    /// captured request cannot be replayed later as new.
    pub fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn send(&self, n: &Outgoing, now: DateTime<Utc>) -> Result<(), String> {
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let timestamp = now.timestamp();
        let request = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("X-Civicflow-Delivery", &n.notice.id)
            .header("X-Civicflow-Timestamp", timestamp.to_string())
            .header("X-Civicflow-Signature", self.signature(timestamp, &body))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(TIMEOUT, self.client.request(request)).await {
            Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(answer)) if answer.status().is_success() => Ok(()),
            Ok(Ok(answer)) => Err(format!("answered {}", answer.status())),
        }
    }
}

/// Deliver what is due now; returns how many the gateway took.
pub async fn deliver_due(
    store: &Store,
    hook: &Webhook,
    now: DateTime<Utc>,
) -> Result<usize, civicflow_store::StoreError> {
    let mut delivered = 0;
    for n in store.outbox_due(now, PER_TICK).await? {
        if !store.claim_delivery(&n.notice.id, now, now + LEASE).await? {
            continue;
        }
        match hook.send(&n, now).await {
            Ok(()) => {
                store.delivered(&n.notice.id, Utc::now()).await?;
                delivered += 1;
            }
            Err(why) => {
                let attempts = n.attempts + 1;
                let retry = (attempts < MAX_ATTEMPTS).then(|| now + backoff(attempts));
                tracing::warn!(notice = %n.notice.id, attempts, error = %why, gave_up = retry.is_none(), "notification not delivered");
                store.delivery_failed(&n.notice.id, retry).await?;
            }
        }
    }
    Ok(delivered)
}

/// 30 s, 1 min, 2 min, … doubling: about two hours over all attempts.
fn backoff(attempts: i64) -> chrono::Duration {
    chrono::Duration::seconds(30 << (attempts - 1).clamp(0, 10))
}

/// The delivery loop, beside the scheduler so a slow gateway never delays a timer.
pub async fn run(store: Store, hook: Webhook, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = deliver_due(&store, &hook, Utc::now()).await {
            tracing::error!(error = %e, "delivering notifications failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
    }
}
