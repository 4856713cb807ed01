//! The benchmarks' HTTP: the real civicflow router served on a loopback port (or a peer
//! engine's server), and a hyper client with callers' tokens and session cookies.

use anyhow::{Result, bail};
use civicflow_plugin_host::PluginRules;
use civicflow_server::AppState;
use civicflow_store::Runtime;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::Arc;

type Http = Client<HttpConnector, Full<Bytes>>;

/// One caller: a bearer token for the API and a session cookie for the pages.
#[derive(Clone)]
pub struct Caller {
    token: String,
    cookie: String,
}

impl Caller {
    /// A fresh token and session for `person`.
    pub async fn of(runtime: &Runtime, person: &str) -> Result<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("system randomness");
        let store = &runtime.store;
        let token = store.create_token(person, "bench", secret).await?;
        let (cookie, _) = store
            .create_session(person, runtime.now(), chrono::Duration::hours(1))
            .await?;
        Ok(Self { token, cookie })
    }
}

pub struct Loopback {
    http: Http,
    base: String,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Loopback {
    /// The civicflow server (router, sessions, tokens, store) on a free loopback port.
    pub async fn serve(runtime: Arc<Runtime>, rules: Arc<PluginRules>) -> Result<Self> {
        let state = AppState {
            runtime,
            rules,
            log_sign_in_codes: false,
            secure_cookies: false,
            metrics_token: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = civicflow_server::router(state);
        let timeout = civicflow_server::listen::HEADER_READ_TIMEOUT;
        let server = tokio::spawn(civicflow_server::listen::serve(
            listener,
            app,
            timeout,
            std::future::pending(),
        ));
        let mut this = Self::to(base);
        this.server = Some(server);
        Ok(this)
    }

    /// A server someone else runs at `base` (`http://127.0.0.1:PORT`).
    pub fn to(base: String) -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            base,
            server: None,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        who: Option<&Caller>,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes)> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(who) = who {
            req = req
                .header("authorization", format!("Bearer {}", who.token))
                .header("cookie", format!("cf_session={}", who.cookie));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let res = self.http.request(req.body(Full::new(Bytes::from(body)))?).await?;
        let status = res.status().as_u16();
        Ok((status, res.into_body().collect().await?.to_bytes()))
    }

    /// A POST with an Idempotency-Key: its status and JSON answer (null if none).
    pub async fn keyed(&self, method: &str, path: &str, who: &Caller, key: &str, body: &Value) -> Result<(u16, Value)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", who.token))
            .header("idempotency-key", key);
        let res = self
            .http
            .request(req.body(Full::new(Bytes::from(body.to_string())))?)
            .await?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A call that must answer 2xx with JSON.
    pub async fn json(&self, method: &str, path: &str, who: Option<&Caller>, body: Option<&Value>) -> Result<Value> {
        let (status, bytes) = self.call(method, path, who, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}
