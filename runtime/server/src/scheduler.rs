//! The loop that fires due timers and schedules. Every server runs one; on PostgreSQL row
//! locks share the work between them, so each timer fires once however many servers run.

use civicflow_plugin_host::PluginRules;
use civicflow_store::Runtime;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const TICK: Duration = Duration::from_millis(500);
const TIMERS_PER_TICK: usize = 500;

/// How often the old answers of Idempotency-Keys are dropped.
const KEYS_CHORE: Duration = Duration::from_secs(3600);

pub async fn run(runtime: Arc<Runtime>, rules: Arc<PluginRules>, mut stamp: String, mut stop: watch::Receiver<bool>) {
    let mut keys_forgotten_at: Option<std::time::Instant> = None;
    loop {
        if keys_forgotten_at.is_none_or(|at| at.elapsed() >= KEYS_CHORE) {
            keys_forgotten_at = Some(std::time::Instant::now());
            match runtime.store.forget_old_keys(runtime.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "old idempotency keys forgotten"),
                Err(e) => tracing::error!(error = %e, "forgetting old idempotency keys failed"),
            }
        }
        // Plugins or bindings published through another server or the CLI.
        match crate::plugins::sync(&runtime.store, &rules, &stamp).await {
            Ok(s) => stamp = s,
            Err(e) => tracing::error!(error = %e, "reloading plugins failed"),
        }
        // Workflows and overlays published, rolled back or held through another server or
        // the CLI: each tick (half a second) picks them up.
        if let Err(e) = runtime.sync_registry().await {
            tracing::error!(error = %e, "reloading workflows and overlays failed");
        }
        // Units or calendars changed by an import or an upload elsewhere.
        if let Err(e) = runtime.sync_places().await {
            tracing::error!(error = %e, "reloading units and calendars failed");
        }
        // Timers due while the server was down are simply due now: the first tick fires them.
        match runtime.fire_due_timers(TIMERS_PER_TICK).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(fired = n, "timers fired"),
            Err(e) => tracing::error!(error = %e, "firing timers failed"),
        }
        match runtime.run_due_schedules().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(started = n, "scheduled instances started"),
            Err(e) => tracing::error!(error = %e, "running schedules failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
    }
}
