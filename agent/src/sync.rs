//! Applying the desired state to vrouterd: one `sync` per scope that
//! changed (all of them on a full resync), pipelined on one connection,
//! each with a generation that grows across restarts (milliseconds since
//! the epoch, or the last one + 1).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use vrouter_control::{Client, ClientError, Endpoint, MAX_LINE, Neighbor, Op, Route};

use crate::translate::{Desired, PolicyObj, ScopeState, ServiceObj};

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The control socket could not be reached or broke.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// vrouterd refused a scope.
    #[error("sync of scope {scope} refused: {code}: {message}")]
    Refused {
        scope: String,
        code: String,
        message: String,
    },
    /// A scope does not fit in one request line.
    #[error(
        "sync of scope {scope}: {bytes} bytes exceed the control socket's {max}-byte request limit"
    )]
    TooLarge {
        scope: String,
        bytes: usize,
        max: usize,
    },
    #[error("sync of scope {scope}: cannot encode: {detail}")]
    Encode { scope: String, detail: String },
    #[error("control socket: bad response: {0}")]
    Protocol(String),
}

impl SyncError {
    /// Whether the connection is gone (reconnect, then resync everything).
    pub fn is_connection(&self) -> bool {
        matches!(self, SyncError::Client(_) | SyncError::Protocol(_))
    }
}

#[derive(Serialize)]
struct SyncRequest<'a> {
    id: u64,
    op: &'static str,
    args: SyncArgs<'a>,
}

#[derive(Serialize)]
struct SyncArgs<'a> {
    scope: &'a str,
    generation: u64,
    routes: &'a [Route],
    neighbors: &'a [Neighbor],
    endpoints: &'a [Endpoint],
    // Left out when empty, so that a vrouterd without services still takes
    // the agent's other scopes.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    services: &'a [ServiceObj],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    policies: &'a [PolicyObj],
}

/// What one `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Scopes sent.
    pub scopes: usize,
    /// Sums of vrouterd's `sync` results.
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub unchanged: u64,
    /// Request bytes sent.
    pub bytes: usize,
}

/// Owns the connection and what vrouterd last acknowledged per scope.
pub struct Applier {
    socket: PathBuf,
    client: Option<Client>,
    /// Shared with the desired state they were sent from (no copy).
    applied: HashMap<String, Arc<ScopeState>>,
    generation: u64,
    next_id: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Applier {
    /// No connection is made until the first `apply`.
    pub fn new(socket: &Path) -> Applier {
        Applier {
            socket: socket.to_path_buf(),
            client: None,
            applied: HashMap::new(),
            generation: 0,
            next_id: 1 << 32,
        }
    }

    /// Whether a connection is open.
    pub fn connected(&self) -> bool {
        self.client.is_some()
    }

    /// Sends every scope of `d` that differs from what vrouterd acknowledged
    /// (every scope when `full`, or when the connection is new: vrouterd may
    /// have restarted). On error, the scopes not acknowledged stay pending
    /// and the next call sends them; a broken connection is dropped.
    pub fn apply(&mut self, d: &Desired, full: bool) -> Result<ApplyStats, SyncError> {
        self.apply_scopes(d, full, None)
    }

    /// As [`Applier::apply`], comparing only the scopes in `only` (those
    /// the translation changed) when given and not `full`: with 100k
    /// backends, comparing every scope would cost more than the change.
    pub fn apply_scopes(
        &mut self,
        d: &Desired,
        full: bool,
        only: Option<&BTreeSet<String>>,
    ) -> Result<ApplyStats, SyncError> {
        let mut full = full;
        if self.client.is_none() {
            let c = Client::connect(&self.socket, "vrouter-agent")?;
            tracing::info!(socket = %self.socket.display(), server = %c.server, "connected to vrouterd");
            self.client = Some(c);
            full = true;
        }
        let only = if full { None } else { only };
        let r = self
            .interfaces()
            .and_then(|ifs| self.send(d, full, only, &ifs));
        if let Err(e) = &r
            && e.is_connection()
        {
            self.client = None;
            self.applied.clear();
        }
        r
    }

    /// vrouterd's interface names (also proves the connection is alive).
    fn interfaces(&mut self) -> Result<HashSet<String>, SyncError> {
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| SyncError::Protocol("not connected".into()))?;
        let v = client.call(Op::ShowInterfaces)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn send(
        &mut self,
        d: &Desired,
        full: bool,
        only: Option<&BTreeSet<String>>,
        ifs: &HashSet<String>,
    ) -> Result<ApplyStats, SyncError> {
        let mut stats = ApplyStats::default();
        let mut pending: Vec<(u64, &str, Arc<ScopeState>)> = Vec::new();
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| SyncError::Protocol("not connected".into()))?;
        let unacked: Vec<&String> = d
            .scopes
            .keys()
            .filter(|k| !self.applied.contains_key(*k))
            .collect();
        let candidates: Box<dyn Iterator<Item = (&String, &Arc<ScopeState>)>> = match only {
            None => Box::new(d.scopes.iter()),
            Some(set) => Box::new(
                set.iter()
                    .chain(unacked.iter().copied())
                    .collect::<BTreeSet<&String>>()
                    .into_iter()
                    .filter_map(|k| d.scopes.get_key_value(k)),
            ),
        };
        for (scope, state) in candidates {
            let filtered = filter_scope(scope, state, ifs).map(Arc::new);
            let orig = state;
            let state = filtered.as_ref().unwrap_or(orig);
            if !full && self.applied.get(scope) == Some(state) {
                continue;
            }
            self.generation = (self.generation + 1).max(now_ms());
            let id = self.next_id;
            self.next_id += 1;
            let req = SyncRequest {
                id,
                op: "sync",
                args: SyncArgs {
                    scope,
                    generation: self.generation,
                    routes: &state.routes,
                    neighbors: &[],
                    endpoints: &state.endpoints,
                    services: &state.services,
                    policies: &state.policies,
                },
            };
            let line = serde_json::to_string(&req).map_err(|e| SyncError::Encode {
                scope: scope.clone(),
                detail: e.to_string(),
            })?;
            if line.len() > MAX_LINE {
                return Err(SyncError::TooLarge {
                    scope: scope.clone(),
                    bytes: line.len(),
                    max: MAX_LINE,
                });
            }
            stats.bytes += line.len() + 1;
            client.send_raw(&line)?;
            pending.push((id, scope, filtered.unwrap_or_else(|| Arc::clone(orig))));
        }
        // Responses come in request order.
        let mut first_err = None;
        for (id, scope, sent) in pending {
            let v = loop {
                let v = client.read_line()?;
                if v.get("event").is_none() {
                    break v;
                }
            };
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(SyncError::Protocol(format!(
                    "expected the response to request {id}, got {v}"
                )));
            }
            if let Some(e) = v.get("error") {
                let err = SyncError::Refused {
                    scope: scope.to_string(),
                    code: e.get("code").and_then(Value::as_str).unwrap_or("").into(),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                };
                tracing::warn!("{err}");
                self.applied.remove(scope);
                first_err.get_or_insert(err);
                continue;
            }
            let res = v.get("result");
            let n = |k: &str| {
                res.and_then(|r| r.get(k))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            stats.added += n("added");
            stats.changed += n("changed");
            stats.removed += n("removed");
            stats.unchanged += n("unchanged");
            stats.scopes += 1;
            self.applied.insert(scope.to_string(), sent);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

/// Leaves out endpoints whose interface vrouterd does not have (yet: the
/// CNI plugin makes it), so that one pod being set up does not make
/// vrouterd refuse the whole scope. `None`: nothing left out.
pub fn filter_scope(scope: &str, s: &ScopeState, ifs: &HashSet<String>) -> Option<ScopeState> {
    if s.endpoints.iter().all(|e| ifs.contains(&e.interface)) {
        return None;
    }
    let mut out = s.clone();
    out.endpoints.retain(|e| {
        let ok = ifs.contains(&e.interface);
        if !ok {
            tracing::debug!(scope, pod = %format!("{}/{}", e.namespace, e.name), interface = %e.interface, "interface not in vrouterd yet: endpoint left out");
        }
        ok
    });
    Some(out)
}
