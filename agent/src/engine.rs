//! The sync engine: sources (Kubernetes watchers, etcd) update the shared
//! [`Cluster`] (which records what changed) and signal; the engine
//! translates what changed ([`Translator`]) and applies the changed scopes.
//! A change after a quiet spell is applied at once; changes that follow
//! within `debounce` of an apply are collected and applied together. On a
//! control-socket failure it keeps the last desired state and retries with
//! exponential back-off; a new connection is always followed by a full
//! resync.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::Cluster;
use crate::sync::{Applier, ApplyStats};
use crate::translate::{Config, Translator};

/// What a source tells the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The cluster changed.
    Changed,
    /// A source (re)listed: send every scope.
    Resync,
    /// Stop the engine.
    Stop,
}

/// Engine tuning.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The least time between two applies (changes within it are batched).
    pub debounce: Duration,
    /// First retry delay after a failure (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Do not apply before every source has listed once (a partial first
    /// view would remove what other sources own).
    pub wait_for_sources: usize,
    /// Re-apply this often even without changes: endpoints whose interface
    /// appeared are added, and a restarted vrouterd is noticed (and resynced).
    pub recheck: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            debounce: Duration::from_millis(10),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            wait_for_sources: 0,
            recheck: Duration::from_secs(5),
        }
    }
}

/// Counters readable while the engine runs (tests, logs).
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub applies: u64,
    pub full_resyncs: u64,
    pub failures: u64,
    pub last: ApplyStats,
    pub last_error: Option<String>,
    /// When the last successful apply was acknowledged by vrouterd.
    pub last_done: Option<Instant>,
}

/// The shared cluster and the signal channel, handed to sources.
#[derive(Clone)]
pub struct Shared {
    pub cluster: Arc<Mutex<Cluster>>,
    pub tx: Sender<Signal>,
    pub status: Arc<Mutex<EngineStatus>>,
}

impl Shared {
    /// Changes the cluster and signals.
    pub fn update(&self, f: impl FnOnce(&mut Cluster), signal: Signal) {
        match self.cluster.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
        // The engine is gone only when the agent stops.
        let _ = self.tx.send(signal);
    }
}

/// The running engine.
pub struct Engine {
    pub shared: Shared,
    handle: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread.
    pub fn start(
        socket: &std::path::Path,
        cfg: Config,
        ecfg: EngineConfig,
    ) -> std::io::Result<Engine> {
        let (tx, rx) = channel();
        let shared = Shared {
            cluster: Arc::new(Mutex::new(Cluster::default())),
            tx,
            status: Arc::new(Mutex::new(EngineStatus::default())),
        };
        let s2 = shared.clone();
        let applier = Applier::new(socket);
        let handle = std::thread::Builder::new()
            .name("agent-sync".into())
            .spawn(move || run(rx, s2, applier, cfg, ecfg))?;
        Ok(Engine {
            shared,
            handle: Some(handle),
        })
    }

    /// A copy of the status.
    pub fn status(&self) -> EngineStatus {
        match self.shared.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        let _ = self.shared.tx.send(Signal::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    rx: Receiver<Signal>,
    shared: Shared,
    mut applier: Applier,
    cfg: Config,
    ecfg: EngineConfig,
) {
    let mut translator = Translator::new(cfg);
    let mut dirty = false;
    let mut full = true;
    // Compare every scope with what vrouterd acknowledged (the periodic
    // re-check: endpoints whose interface appeared meanwhile).
    let mut compare_all = true;
    // Scopes changed by the translation and not yet acknowledged.
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut resyncs_seen = 0usize;
    let mut backoff = ecfg.min_backoff;
    let mut retry_at: Option<Instant> = None;
    let mut last_apply: Option<Instant> = None;
    loop {
        // Wait for a signal, or for the retry time.
        let timeout = retry_at
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(ecfg.recheck);
        let first = match rx.recv_timeout(timeout) {
            Ok(s) => Some(s),
            Err(RecvTimeoutError::Timeout) => {
                if retry_at.is_none() {
                    dirty = true;
                    compare_all = true;
                }
                None
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut signals: Vec<Signal> = first.into_iter().collect();
        signals.extend(rx.try_iter());
        if !signals.is_empty()
            && let Some(wait) = last_apply.and_then(|t| ecfg.debounce.checked_sub(t.elapsed()))
        {
            // Applied a moment ago: collect what arrives until `debounce`.
            std::thread::sleep(wait);
            signals.extend(rx.try_iter());
        }
        for s in &signals {
            match s {
                Signal::Stop => return,
                Signal::Resync => {
                    resyncs_seen += 1;
                    full = true;
                    dirty = true;
                }
                Signal::Changed => dirty = true,
            }
        }
        if retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        if !dirty || resyncs_seen < ecfg.wait_for_sources {
            continue;
        }
        {
            let mut c = match shared.cluster.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            pending.extend(translator.update(&mut c));
        }
        let t0 = Instant::now();
        let only = (!compare_all).then_some(&pending);
        match applier.apply_scopes(translator.desired(), full, only) {
            Ok(stats) if stats.scopes == 0 => {
                tracing::debug!(full, "re-checked: nothing to send");
                dirty = false;
                full = false;
                compare_all = false;
                pending.clear();
                backoff = ecfg.min_backoff;
                retry_at = None;
            }
            Ok(stats) => {
                let done = Instant::now();
                last_apply = Some(done);
                tracing::info!(
                    full,
                    scopes = stats.scopes,
                    added = stats.added,
                    changed = stats.changed,
                    removed = stats.removed,
                    bytes = stats.bytes,
                    ms = t0.elapsed().as_millis() as u64,
                    "applied"
                );
                if let Ok(mut st) = shared.status.lock() {
                    st.applies += 1;
                    if full {
                        st.full_resyncs += 1;
                    }
                    st.last = stats;
                    st.last_error = None;
                    st.last_done = Some(done);
                }
                dirty = false;
                full = false;
                compare_all = false;
                pending.clear();
                backoff = ecfg.min_backoff;
                retry_at = None;
            }
            Err(e) => {
                last_apply = Some(Instant::now());
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "apply failed; keeping the last desired state");
                if e.is_connection() {
                    full = true;
                }
                if let Ok(mut st) = shared.status.lock() {
                    st.failures += 1;
                    st.last_error = Some(e.to_string());
                }
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(ecfg.max_backoff);
            }
        }
    }
}
