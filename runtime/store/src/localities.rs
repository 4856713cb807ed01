//! Plugin calls by locality. A step that may run a locality's code is computed on a blocking
//! thread, outside every transaction and connection, one at a time per locality (the unit its
//! plugin is bound at): a slow or hostile plugin makes its own unit's work queue, while
//! every other unit's work goes on (it holds neither the SQLite writer nor an async thread).

use crate::error::{Result, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long work waits behind its own locality's plugin calls before it is turned away.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Calls of one locality's code running at once: one core of the machine at most.
const CALLS_AT_ONCE: usize = 1;

#[derive(Default)]
pub(crate) struct Localities {
    queues: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Localities {
    /// Run `work` (which may call `locality`'s plugins) on a blocking thread once the
    /// locality's earlier calls are done. If the caller gives up, the call still holds its
    /// place until it ends, so an abandoned hostile call cannot make room for another.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        locality: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let queue = self
            .queues
            .lock()
            .expect("not poisoned")
            .entry(locality.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(CALLS_AT_ONCE)))
            .clone();
        let permit = tokio::time::timeout(MAX_WAIT, queue.acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("civicflow_locality_busy_total").increment(1);
                StoreError::Busy(format!(
                    "the rules of unit {locality} are busy with earlier work; try again shortly"
                ))
            })?
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _turn = permit;
            yield_to_requests();
            work()
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("a rule's computation failed: {e}")))
    }
}

/// Run this thread below the request threads (nice 10): a plugin spending its whole wall
/// limit then takes the CPU the serving threads leave, not their share of it. A thread once
/// lowered stays so (raising it back needs privileges); tokio's blocking pool may later run
/// other blocking work on it (a password hash, a compile), which only waits a little more.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        LOWERED.with(|lowered| {
            if !lowered.replace(true) {
                // SAFETY: setpriority on this thread's own id; it only reads its arguments.
                #[allow(unsafe_code)]
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, PLUGIN_NICE) };
            }
        });
    }
}

/// The niceness of threads running plugin code (0 is the default, 19 the lowest priority).
const PLUGIN_NICE: libc::c_int = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_localitys_calls_queue_while_anothers_go_ahead() {
        let localities = Arc::new(Localities::default());
        // Unit a's first call blocks until unit c's call has finished: were c queued behind
        // a, it would never be released and the first call would time out.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = {
            let l = localities.clone();
            tokio::spawn(async move {
                l.run("a", move || released.recv_timeout(Duration::from_secs(5)).is_ok())
                    .await
            })
        };
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let more: Vec<_> = (0..3)
            .map(|_| {
                let (l, running, most) = (localities.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    l.run("a", move || {
                        most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        localities.run("c", || ()).await.unwrap();
        release.send(()).unwrap();
        assert!(first.await.unwrap().unwrap(), "unit c waited behind unit a");
        for m in more {
            m.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one unit's calls overlapped");
    }
}
