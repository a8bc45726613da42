//! The control socket: a Unix domain socket speaking the newline-delimited
//! JSON protocol of `vrouter-control` (`docs/control-protocol.md`), served
//! by the control thread with mio.
//!
//! It owns the connections and what only the control plane needs: sync
//! scopes, the endpoint table, subscriptions. Every change goes through
//! `Router` and is acknowledged after `Router::commit`, that is once every
//! running worker uses it; changes a client pipelined share one commit
//! (each still undone alone if it fails, answered in order after it).
//! Nothing here blocks: sockets are non-blocking, input lines and output
//! buffers are bounded (a client that sends a line over `MAX_LINE` or stops
//! reading is disconnected), connections are limited, and a connecting
//! process must have an allowed uid or gid (`SO_PEERCRED`).

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::{Value, json};
use vrouter_control::proto::{self, ApiError, Op, code, info};
use vrouter_wire::MacAddr;

use crate::config::{RouteAction, parse_mac, parse_prefix};
use crate::control::{ControlError, Notice, Router, Source};
use crate::graph::{Counter, NodeId, WorkerStats};
use crate::obs::{
    CaptureMode, CaptureRecord, DIR_DROP, DIR_RX, DIR_TX, NEXT_HELD, NEXT_NONE, NEXT_TX, PktTrace,
    TRACE_HDR, TRACE_STEPS, reason_name, summarize,
};
use crate::pipeline::{Ctx, Events as WorkerEvents, Pipeline};
use crate::pkt::{Disposition, Pkt, flags};
use crate::port::PortStats;
use crate::report;
use crate::tables::{IfaceMode, NextHop, Tables};
use std::sync::atomic::Ordering;

const LISTENER: Token = Token(0);
/// Output a slow client may leave unread before it is disconnected (checked
/// before each answer is added, so one answer may be larger).
const MAX_OUT: usize = 8 << 20;

/// Where and for whom the socket listens.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub path: PathBuf,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    pub max_connections: usize,
}

/// A port as the control plane describes it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub driver: String,
    pub mac: MacAddr,
    pub stats: Vec<Arc<PortStats>>,
}

/// Counters of the control socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiStats {
    pub accepted: u64,
    pub refused_credentials: u64,
    pub refused_limit: u64,
    pub requests: u64,
    pub errors: u64,
    pub closed_slow: u64,
    pub closed_oversize: u64,
    /// Events not sent to a subscriber that was behind.
    pub events_dropped: u64,
    /// Events sent.
    pub events_published: u64,
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiSetupError {
    #[error("control socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    /// Bytes of `input` already handled (dropped at the end of a read).
    consumed: usize,
    /// `input` holds a newline somewhere.
    input_has_nl: bool,
    output: Vec<u8>,
    hello: bool,
    events: Vec<String>,
    closing: bool,
    /// Events not queued for this subscriber because it was behind.
    events_dropped: u64,
}

/// Output a subscriber may have pending before events for it are dropped
/// (counted, and announced with an `events-dropped` event once it catches
/// up), unless `[control] event-backlog` says otherwise.
pub const EVENT_BACKLOG: usize = 1 << 20;
/// Traces kept for `trace.show`.
const MAX_TRACES: usize = 4096;
/// Most packets one `trace.add` may ask for, per worker.
const MAX_TRACE_ADD: u32 = 10_000;
/// Most packets one capture keeps.
const MAX_CAPTURE: u32 = 100_000;

/// An armed capture, owned by one connection.
struct Capture {
    owner: Token,
    mode: CaptureMode,
    remaining: u32,
    records: Vec<CaptureRecord>,
    lost_at_start: u64,
}

#[derive(Debug, Default)]
struct Scope {
    generation: u64,
    routes: BTreeMap<(Option<String>, String), proto::Route>,
    neighbors: BTreeMap<(String, String), proto::Neighbor>,
    endpoints: BTreeMap<(String, String), proto::Endpoint>,
    services: BTreeMap<(String, String), proto::Service>,
    policies: BTreeMap<(String, String), proto::Policy>,
}

/// See the module doc.
pub struct Api {
    cfg: ApiConfig,
    poll: Poll,
    events: Events,
    /// `None` until [`Api::listen`] (a new vrouterd taking over applies the
    /// old one's state before it may bind the socket).
    listener: Option<UnixListener>,
    conns: HashMap<Token, Conn>,
    next: usize,
    scopes: HashMap<String, Scope>,
    endpoints: BTreeMap<(String, String), proto::Endpoint>,
    /// Services and policies as applied (`crate::service::api`).
    svc_objs: crate::service::api::Objects,
    ports: Vec<PortInfo>,
    pub stats: ApiStats,
    traces: std::collections::VecDeque<(usize, PktTrace)>,
    capture: Option<Capture>,
    /// The workers a capture was armed on.
    links: Option<Vec<Arc<crate::control::WorkerLink>>>,
    /// See `EVENT_BACKLOG`.
    event_backlog: usize,
    /// The state that came over the socket, for a hot restart.
    ledger: Ledger,
    /// Changes are applied without `Router::commit` (a run of pipelined
    /// requests is published once; see `read_some`).
    defer_commit: bool,
    /// Changes applied since the last commit while `defer_commit` was set.
    uncommitted: bool,
}

/// Most pipelined change requests applied before one publish.
const MAX_COALESCE: usize = 256;

/// The objects changed over the control socket, each with the last change
/// applied to it (an add or replace, or a delete of a configured object):
/// replayed in a new vrouterd, it rebuilds what the socket built on top of
/// the configuration (docs/HOT-RESTART.md). Learned state (MACs, ARP/ND
/// neighbours) is not here: it is learned again.
#[derive(Debug, Default)]
struct Ledger {
    /// (replay rank, object key) → last change.
    objs: BTreeMap<(u8, String), Op>,
}

impl Ledger {
    /// The replay rank and key of a change; `None` for ops that leave no
    /// state (mac.flush, shows).
    fn key(op: &Op) -> Option<(u8, String)> {
        let j = |parts: &[&str]| parts.join("|");
        let ip_of = |a: &str| a.split('/').next().unwrap_or(a).to_string();
        Some(match op {
            Op::AddressAdd(a) | Op::AddressDel(a) => (0, j(&[&a.interface, &ip_of(&a.address)])),
            Op::NeighborAdd(n) => (1, j(&[&n.interface, &n.ip])),
            Op::NeighborDel(k) => (1, j(&[&k.interface, &k.ip])),
            Op::StaticMacAdd(m) | Op::StaticMacDel(m) => {
                (2, j(&[&m.bridge, &m.mac.to_ascii_lowercase()]))
            }
            Op::VxlanFloodAdd(f) | Op::VxlanFloodDel(f) => {
                (3, j(&[&f.vtep, &f.vni.to_string(), &f.remote]))
            }
            Op::VxlanMacAdd(m) | Op::VxlanMacDel(m) => (
                4,
                j(&[
                    &m.vtep,
                    &m.vni.to_string(),
                    &m.mac.to_ascii_lowercase(),
                    &m.remote,
                ]),
            ),
            Op::RouteAdd(r) | Op::RouteReplace(r) => {
                (5, j(&[r.vrf.as_deref().unwrap_or(""), &r.prefix]))
            }
            Op::RouteDel(k) => (5, j(&[k.vrf.as_deref().unwrap_or(""), &k.prefix])),
            Op::EndpointAdd(e) => (6, j(&[&e.namespace, &e.name])),
            Op::EndpointDel(k) => (6, j(&[&k.namespace, &k.name])),
            Op::ServiceAdd(v) | Op::ServiceReplace(v) => (7, j(&[&v.namespace, &v.name])),
            Op::ServiceDel(k) => (7, j(&[&k.namespace, &k.name])),
            Op::PolicyAdd(v) | Op::PolicyReplace(v) => (8, j(&[&v.namespace, &v.name])),
            Op::PolicyDel(k) => (8, j(&[&k.namespace, &k.name])),
            _ => return None,
        })
    }

    fn record(&mut self, op: Op) {
        if let Some(k) = Self::key(&op) {
            // An add replays as a replace, so an object a new configuration
            // also defines is not refused as existing.
            let op = match op {
                Op::RouteAdd(r) => Op::RouteReplace(r),
                Op::ServiceAdd(v) => Op::ServiceReplace(v),
                Op::PolicyAdd(v) => Op::PolicyReplace(v),
                o => o,
            };
            self.objs.insert(k, op);
        }
    }

    /// Deletes (dependents first), then adds and replaces (dependencies
    /// first).
    fn replay(&self) -> (Vec<Op>, Vec<Op>) {
        let is_del = |o: &Op| {
            matches!(
                o,
                Op::AddressDel(_)
                    | Op::NeighborDel(_)
                    | Op::StaticMacDel(_)
                    | Op::VxlanFloodDel(_)
                    | Op::VxlanMacDel(_)
                    | Op::RouteDel(_)
                    | Op::EndpointDel(_)
                    | Op::ServiceDel(_)
                    | Op::PolicyDel(_)
            )
        };
        let dels = self
            .objs
            .values()
            .rev()
            .filter(|o| is_del(o))
            .cloned()
            .collect();
        let adds = self.objs.values().filter(|o| !is_del(o)).cloned().collect();
        (dels, adds)
    }
}

/// A sync scope as a snapshot carries it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScopeSnapshot {
    pub scope: String,
    pub generation: u64,
    pub routes: Vec<proto::Route>,
    pub neighbors: Vec<proto::Neighbor>,
    pub endpoints: Vec<proto::Endpoint>,
    pub services: Vec<proto::Service>,
    pub policies: Vec<proto::Policy>,
}

/// The control-socket state of a vrouterd, handed to the one taking over:
/// the changes to replay on top of the configuration, in order, and the
/// sync scopes (so an agent's next `sync` is a diff, not a rebuild).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Deletes of configured objects; replayed first, tolerating absence.
    pub deletes: Vec<Op>,
    /// Adds and replaces.
    pub changes: Vec<Op>,
    pub scopes: Vec<ScopeSnapshot>,
    /// Neighbours learned from ARP/ND, so the new vrouterd forwards at once
    /// instead of holding packets while it resolves them again.
    #[serde(default)]
    pub learned: Vec<proto::Neighbor>,
}

fn api_err(e: ControlError) -> ApiError {
    match e {
        ControlError::NotFound { .. } => ApiError::new(code::NOT_FOUND, e.to_string()),
        _ => ApiError::new(code::INVALID, e.to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(code::INVALID, msg)
}

impl Api {
    /// Binds the socket (mode 0600; a stale socket file is replaced).
    pub fn bind(cfg: ApiConfig, ports: Vec<PortInfo>) -> Result<Api, ApiSetupError> {
        let mut a = Self::unbound(cfg, ports)?;
        a.listen()?;
        Ok(a)
    }

    /// The control plane without its socket yet (see [`Api::listen`]).
    pub fn unbound(cfg: ApiConfig, ports: Vec<PortInfo>) -> Result<Api, ApiSetupError> {
        let poll = Poll::new().map_err(|source| ApiSetupError::Io {
            path: cfg.path.display().to_string(),
            source,
        })?;
        Ok(Api {
            cfg,
            poll,
            events: Events::with_capacity(256),
            listener: None,
            conns: HashMap::new(),
            next: 1,
            scopes: HashMap::new(),
            endpoints: BTreeMap::new(),
            svc_objs: Default::default(),
            ports,
            stats: ApiStats::default(),
            traces: std::collections::VecDeque::new(),
            capture: None,
            links: None,
            event_backlog: EVENT_BACKLOG,
            ledger: Ledger::default(),
            defer_commit: false,
            uncommitted: false,
        })
    }

    /// Binds the socket (mode 0600; a stale socket file is replaced).
    pub fn listen(&mut self) -> Result<(), ApiSetupError> {
        let cfg = &self.cfg;
        let path = cfg.path.display().to_string();
        let io = |source| ApiSetupError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = cfg.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        if cfg.path.exists() {
            if std::os::unix::net::UnixStream::connect(&cfg.path).is_ok() {
                return Err(io(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    "another vrouterd is listening",
                )));
            }
            std::fs::remove_file(&cfg.path).map_err(io)?;
        }
        let mut listener = UnixListener::bind(&cfg.path).map_err(io)?;
        std::fs::set_permissions(&cfg.path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io)?;
        self.listener = Some(listener);
        Ok(())
    }

    /// Replaces the ports `show.ports` describes (once they are open).
    pub fn set_ports(&mut self, ports: Vec<PortInfo>) {
        self.ports = ports;
    }

    /// The state that came over the socket, and the learned neighbours (see
    /// [`Snapshot`]).
    pub fn snapshot(&self, router: &Router) -> Snapshot {
        let t = router.tables();
        let learned = router
            .neighbors()
            .into_iter()
            .filter(|(_, _, n)| !n.is_static)
            .filter_map(|(i, ip, n)| {
                Some(proto::Neighbor {
                    interface: t.iface(i)?.name.clone(),
                    ip: ip.to_string(),
                    mac: n.mac.to_string(),
                })
            })
            .collect();
        let (deletes, changes) = self.ledger.replay();
        let scopes = self
            .scopes
            .iter()
            .map(|(name, sc)| ScopeSnapshot {
                scope: name.clone(),
                generation: sc.generation,
                routes: sc.routes.values().cloned().collect(),
                neighbors: sc.neighbors.values().cloned().collect(),
                endpoints: sc.endpoints.values().cloned().collect(),
                services: sc.services.values().cloned().collect(),
                policies: sc.policies.values().cloned().collect(),
            })
            .collect();
        Snapshot {
            deletes,
            changes,
            scopes,
            learned,
        }
    }

    /// Applies another vrouterd's [`Snapshot`] on top of the configuration
    /// (before the workers start). Deletes of what the configuration no
    /// longer has are skipped; any other failure is returned with the op.
    pub fn restore(&mut self, router: &mut Router, snap: &Snapshot) -> Result<usize, ApiError> {
        for n in &snap.learned {
            // A neighbour the new configuration has no subnet for is skipped:
            // it would be learned again if it still mattered.
            if let Ok((iface, ip, Some(mac))) =
                parse_neighbor(router, &n.interface, &n.ip, Some(&n.mac))
                && let Err(e) = router.set_neighbor(iface, ip, mac, false)
            {
                tracing::debug!(%e, "learned neighbour not restored");
            }
        }
        self.apply_all(router, snap.deletes.clone(), true)?;
        // An address the configuration has already is there: not an error.
        let changes: Vec<Op> = snap
            .changes
            .iter()
            .filter(|op| match op {
                Op::AddressAdd(a) => !has_address(router, &a.interface, &a.address),
                _ => true,
            })
            .cloned()
            .collect();
        self.apply_all(router, changes, false)?;
        for s in &snap.scopes {
            let mut sc = Scope {
                generation: s.generation,
                ..Scope::default()
            };
            for r in &s.routes {
                sc.routes
                    .insert((r.vrf.clone(), r.prefix.clone()), r.clone());
            }
            for n in &s.neighbors {
                sc.neighbors
                    .insert((n.interface.clone(), n.ip.clone()), n.clone());
            }
            for e in &s.endpoints {
                sc.endpoints
                    .insert((e.namespace.clone(), e.name.clone()), e.clone());
            }
            for v in &s.services {
                sc.services
                    .insert((v.namespace.clone(), v.name.clone()), v.clone());
            }
            for v in &s.policies {
                sc.policies
                    .insert((v.namespace.clone(), v.name.clone()), v.clone());
            }
            self.scopes.insert(s.scope.clone(), sc);
        }
        Ok(snap.deletes.len() + snap.changes.len())
    }

    /// Sets the output a subscriber may have pending before its events are
    /// dropped (`[control] event-backlog`).
    pub fn set_event_backlog(&mut self, bytes: usize) {
        self.event_backlog = bytes;
    }

    /// The socket path.
    pub fn path(&self) -> &PathBuf {
        &self.cfg.path
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Waits up to `timeout` for socket activity and serves it. Returns the
    /// number of requests handled.
    pub fn poll(&mut self, router: &mut Router, timeout: Duration) -> usize {
        if self.poll.poll(&mut self.events, Some(timeout)).is_err() {
            return 0;
        }
        let tokens: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable(),
                )
            })
            .collect();
        let mut handled = 0;
        for (t, readable, writable) in tokens {
            if t == LISTENER {
                self.accept();
                continue;
            }
            if readable {
                handled += self.read(t, router);
            }
            if writable || readable {
                self.flush(t);
            }
        }
        handled
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            };
            let allowed = match crate::port::sys::peer_cred(stream.as_raw_fd()) {
                Ok((_, uid, gid)) => {
                    self.cfg.allowed_uids.contains(&uid) || self.cfg.allowed_gids.contains(&gid)
                }
                Err(_) => false,
            };
            if !allowed {
                self.stats.refused_credentials += 1;
                let _ = stream.write_all(
                    b"{\"id\":0,\"error\":{\"code\":\"not_allowed\",\"message\":\"connection: uid/gid not allowed\"}}\n",
                );
                continue;
            }
            if self.conns.len() >= self.cfg.max_connections {
                self.stats.refused_limit += 1;
                let _ = stream.write_all(
                    b"{\"id\":0,\"error\":{\"code\":\"too_many_connections\",\"message\":\"connection: limit reached\"}}\n",
                );
                continue;
            }
            let t = Token(self.next);
            self.next += 1;
            if self
                .poll
                .registry()
                .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            self.stats.accepted += 1;
            self.conns.insert(
                t,
                Conn {
                    stream,
                    input: Vec::new(),
                    consumed: 0,
                    input_has_nl: false,
                    output: Vec::new(),
                    hello: false,
                    events: Vec::new(),
                    closing: false,
                    events_dropped: 0,
                },
            );
        }
    }

    fn close(&mut self, t: Token) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        if self.capture.as_ref().is_some_and(|c| c.owner == t) {
            self.capture = None;
            self.arm_capture(CaptureMode::Off, 0);
        }
    }

    /// Reads what the client sent and handles every complete line. Reads
    /// and handling alternate once `INPUT_BOUND` bytes are buffered, so a
    /// client that pipelines a million routes never makes vrouterd buffer
    /// all of them.
    fn read(&mut self, t: Token, router: &mut Router) -> usize {
        let mut handled = 0;
        loop {
            let (n, more) = self.read_some(t, router);
            handled += n;
            if !more {
                return handled;
            }
        }
    }

    fn read_some(&mut self, t: Token, router: &mut Router) -> (usize, bool) {
        const INPUT_BOUND: usize = proto::MAX_LINE + 65536;
        let mut buf = [0u8; 65536];
        let mut eof = false;
        let mut more = false;
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return (0, false);
            };
            if c.input.len() >= INPUT_BOUND && c.input_has_nl {
                more = true;
                break;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    // Only the new bytes are searched: a long pipelined
                    // input is never rescanned per read.
                    if buf[..n].contains(&b'\n') {
                        c.input_has_nl = true;
                    }
                    c.input.extend_from_slice(&buf[..n]);
                    if c.input.len() > proto::MAX_LINE + 1 && !c.input_has_nl {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let mut handled = 0;
        // Pipelined changes are applied one request at a time (each rolls
        // back alone on failure) and published together: their responses
        // wait here until the one commit that covers them.
        let mut deferred: Vec<(u64, Result<Value, ApiError>)> = Vec::new();
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                self.finish_deferred(t, router, &mut deferred);
                return (handled, false);
            };
            let Some(nl) = c.input[c.consumed..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| c.consumed + p)
            else {
                // One compaction per read, not one move of the rest per line.
                c.input.drain(..c.consumed);
                c.consumed = 0;
                c.input_has_nl = false;
                if c.input.len() > proto::MAX_LINE {
                    self.stats.closed_oversize += 1;
                    let e = ApiError::new(
                        code::TOO_LARGE,
                        format!("request: longer than {} bytes", proto::MAX_LINE),
                    );
                    deferred.push((0, Err(e)));
                    c.closing = true;
                    c.input.clear();
                }
                break;
            };
            let start = std::mem::replace(&mut c.consumed, nl + 1);
            if c.closing {
                continue;
            }
            let bytes = &c.input[start..nl];
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if bytes.len() > proto::MAX_LINE {
                self.stats.closed_oversize += 1;
                deferred.push((
                    0,
                    Err(ApiError::new(code::TOO_LARGE, "request: line too long")),
                ));
                c.closing = true;
                continue;
            }
            handled += 1;
            self.stats.requests += 1;
            // Parsed where it lies (a `sync` line is up to 1 MiB: no copy).
            let parsed = match std::str::from_utf8(bytes) {
                Ok(line) => proto::parse_request(line),
                Err(_) => proto::parse_request(&String::from_utf8_lossy(bytes)),
            };
            let (id, result) = match parsed {
                Err((id, e)) => (id, Err(e)),
                Ok(req) => {
                    let hello = self.conns.get(&t).is_some_and(|c| c.hello);
                    let change = hello
                        && (req.op.is_change() || matches!(req.op, Op::Sync(_) | Op::Batch(_)));
                    if !change && !self.finish_deferred(t, router, &mut deferred) {
                        return (handled, false);
                    }
                    self.defer_commit = change;
                    let r = match (req.op, hello) {
                        (Op::Hello(h), _) => self.hello(t, &h),
                        (_, false) => Err(ApiError::new(
                            code::HELLO_FIRST,
                            "connection: send `hello` first",
                        )),
                        (Op::Subscribe(s), true) => self.subscribe(t, &s),
                        (Op::CaptureStart(c), true) => self.capture_start(t, router, &c),
                        (Op::CaptureRead, true) => self.capture_read(t, router),
                        (Op::CaptureStop, true) => self.capture_stop(t, router),
                        (Op::Sync(s), true) => self.sync(router, s),
                        (op, true) => self.handle(router, &op),
                    };
                    self.defer_commit = false;
                    (req.id, r)
                }
            };
            if result.is_err() {
                self.stats.errors += 1;
            }
            deferred.push((id, result));
            if deferred.len() >= MAX_COALESCE && !self.finish_deferred(t, router, &mut deferred) {
                return (handled, false);
            }
        }
        if !self.finish_deferred(t, router, &mut deferred) {
            return (handled, false);
        }
        if eof {
            self.flush(t);
            self.close(t);
            return (handled, false);
        }
        if let Some(c) = self.conns.get_mut(&t)
            && c.input.capacity() > 2 * INPUT_BOUND
        {
            c.input.shrink_to(INPUT_BOUND);
        }
        (handled, more)
    }

    /// Commits the changes applied since the last commit (if any), then
    /// queues the responses held for that commit, in request order. False
    /// if the connection was closed as a slow client (earlier output left
    /// unread; one large answer alone, `show.services` of 10k services, is
    /// not).
    fn finish_deferred(
        &mut self,
        t: Token,
        router: &mut Router,
        deferred: &mut Vec<(u64, Result<Value, ApiError>)>,
    ) -> bool {
        if std::mem::take(&mut self.uncommitted) {
            router.commit();
        }
        if deferred.is_empty() {
            return true;
        }
        let Some(c) = self.conns.get_mut(&t) else {
            deferred.clear();
            return false;
        };
        for (id, result) in deferred.drain(..) {
            let unread = c.output.len();
            push_response(c, id, result);
            if unread > MAX_OUT {
                self.stats.closed_slow += 1;
                self.close(t);
                return false;
            }
        }
        true
    }

    fn flush(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if write_pending(&mut c.stream, &mut c.output).is_err() {
            self.close(t);
            return;
        }
        if c.output.is_empty() && c.closing {
            self.close(t);
        }
    }

    fn hello(&mut self, t: Token, h: &proto::Hello) -> Result<Value, ApiError> {
        if h.version != proto::PROTOCOL_VERSION {
            if let Some(c) = self.conns.get_mut(&t) {
                c.closing = true;
            }
            return Err(ApiError::new(
                code::UNSUPPORTED_VERSION,
                format!(
                    "hello: version {} not supported (this vrouterd speaks {})",
                    h.version,
                    proto::PROTOCOL_VERSION
                ),
            ));
        }
        if let Some(c) = self.conns.get_mut(&t) {
            c.hello = true;
        }
        Ok(
            json!({"version": proto::PROTOCOL_VERSION, "server": format!("vrouterd {}", env!("CARGO_PKG_VERSION"))}),
        )
    }

    fn subscribe(&mut self, t: Token, s: &proto::Subscribe) -> Result<Value, ApiError> {
        const KINDS: &[&str] = &["mac", "neighbor", "port"];
        if let Some(bad) = s.events.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "subscribe: unknown event kind `{bad}` (mac, neighbor, port)"
            )));
        }
        if let Some(c) = self.conns.get_mut(&t) {
            c.events = s.events.clone();
        }
        Ok(json!({"subscribed": s.events}))
    }

    /// Sends an event of `kind` to every subscriber. A subscriber with more
    /// than `event_backlog` bytes unread misses events (counted); once it
    /// has caught up it gets an `events-dropped` event with the number lost.
    pub fn publish(&mut self, kind: &str, event: Value) {
        let line = match serde_json::to_vec(&json!({ "event": event })) {
            Ok(mut l) => {
                l.push(b'\n');
                l
            }
            Err(_) => return,
        };
        let mut touched = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            if !c.events.iter().any(|k| k == kind) {
                continue;
            }
            if c.output.len() > self.event_backlog {
                c.events_dropped += 1;
                self.stats.events_dropped += 1;
                continue;
            }
            if c.events_dropped > 0 {
                let lost = json!({"event": {"type": "events-dropped", "count": c.events_dropped}});
                if let Ok(mut l) = serde_json::to_vec(&lost) {
                    l.push(b'\n');
                    c.output.extend_from_slice(&l);
                }
                c.events_dropped = 0;
            }
            c.output.extend_from_slice(&line);
            self.stats.events_published += 1;
            touched.push(*t);
        }
        for t in touched {
            self.flush(t);
        }
    }

    /// Publishes a control-plane notice to the subscribers of its kind.
    pub fn publish_notice(&mut self, n: &Notice) {
        let (kind, v) = match n {
            Notice::MacLearned {
                bridge,
                mac,
                interface,
            } => (
                "mac",
                json!({"type": "mac-learned", "bridge": bridge, "mac": mac.to_string(), "interface": interface}),
            ),
            Notice::MacMoved {
                bridge,
                mac,
                from,
                to,
            } => (
                "mac",
                json!({"type": "mac-moved", "bridge": bridge, "mac": mac.to_string(), "from": from, "to": to}),
            ),
            Notice::MacAged {
                bridge,
                mac,
                interface,
            } => (
                "mac",
                json!({"type": "mac-aged", "bridge": bridge, "mac": mac.to_string(), "interface": interface}),
            ),
            Notice::NeighborResolved { interface, ip, mac } => (
                "neighbor",
                json!({"type": "neighbor-resolved", "interface": interface, "ip": ip.to_string(), "mac": mac.to_string()}),
            ),
            Notice::NeighborFailed { interface, ip } => (
                "neighbor",
                json!({"type": "neighbor-failed", "interface": interface, "ip": ip.to_string()}),
            ),
        };
        self.publish(kind, v);
    }

    /// Publishes a port's link change (`port-up` / `port-down`).
    pub fn publish_link(&mut self, port: &str, interface: &str, up: bool) {
        self.publish(
            "port",
            json!({"type": if up { "port-up" } else { "port-down" }, "port": port, "interface": interface}),
        );
    }

    /// The ports as the control plane describes them.
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// Serves one operation (after the handshake). Public for tests.
    pub fn handle(&mut self, router: &mut Router, op: &Op) -> Result<Value, ApiError> {
        match op {
            Op::Hello(_) | Op::Subscribe(_) => Err(invalid("request: not allowed here")),
            Op::ShowPorts => Ok(self.show_ports()),
            Op::ShowInterfaces => Ok(show_interfaces(router)),
            Op::ShowVrfs => Ok(json!(
                router
                    .tables()
                    .vrfs
                    .iter()
                    .map(|v| v.name.clone())
                    .collect::<Vec<_>>()
            )),
            Op::ShowBridges => Ok(show_bridges(router)),
            Op::ShowMac(sel) => show_mac(router, sel.bridge.as_deref()),
            Op::ShowRoutes(sel) => show_routes(router, sel),
            Op::ShowNeighbors => Ok(show_neighbors(router)),
            Op::ShowEndpoints => Ok(json!(self.endpoints.values().collect::<Vec<_>>())),
            Op::ShowCounters => Ok(show_counters(router, &self.stats, false)),
            Op::ShowErrors => Ok(show_counters(router, &self.stats, true)),
            Op::ShowRuntime => Ok(show_runtime(router)),
            Op::ShowVteps => Ok(show_vteps(router)),
            Op::ShowOverlayRoutes(sel) => show_overlay_routes(router, sel),
            Op::ShowServices => Ok(crate::service::api::show_services(router)),
            Op::ShowPolicies => Ok(crate::service::api::show_policies(router)),
            Op::ShowConntrack => Ok(crate::service::api::show_conntrack(router)),
            Op::Batch(b) => {
                if let Some(bad) = b.ops.iter().position(|o| !o.op.is_change()) {
                    return Err(invalid(format!("batch: op {bad} is not a change")));
                }
                let ops: Vec<Op> = b.ops.iter().map(|o| o.op.clone()).collect();
                let n = self.apply_all(router, ops, false)?;
                Ok(json!({ "applied": n }))
            }
            Op::Sync(s) => self.sync(router, s.clone()),
            Op::TraceAdd(a) => {
                if a.count == 0 || a.count > MAX_TRACE_ADD {
                    return Err(invalid(format!(
                        "trace.add: count {} is not in 1..={MAX_TRACE_ADD}",
                        a.count
                    )));
                }
                let workers = router.shared().worker_links();
                for w in &workers {
                    w.obs.trace_budget.store(a.count, Ordering::Relaxed);
                }
                Ok(json!({"workers": workers.len(), "count": a.count}))
            }
            Op::TraceShow => Ok(self.trace_show(router)),
            Op::TraceClear => {
                for w in router.shared().worker_links() {
                    w.obs.trace_budget.store(0, Ordering::Relaxed);
                    while w.obs.traces.pop().is_some() {}
                }
                let n = self.traces.len();
                self.traces.clear();
                Ok(json!({"cleared": n}))
            }
            Op::TracePacket(tp) => trace_packet(router, tp),
            Op::CaptureStart(_) | Op::CaptureRead | Op::CaptureStop => Err(invalid(
                "capture: only on a connection (not in tests or batches)",
            )),
            change => {
                self.apply_all(router, vec![change.clone()], false)?;
                Ok(json!({ "ok": true }))
            }
        }
    }

    /// Applies changes in order; on the first failure undoes what was done
    /// and returns the error. Commits (waits for the workers) on success.
    /// With `tolerate_missing`, deleting what is already gone is not an error.
    fn apply_all(
        &mut self,
        router: &mut Router,
        ops: Vec<Op>,
        tolerate_missing: bool,
    ) -> Result<usize, ApiError> {
        let n = ops.len();
        let mut undo: Vec<Op> = Vec::new();
        for (k, op) in ops.into_iter().enumerate() {
            match self.apply(router, op) {
                Ok(mut u) => undo.append(&mut u),
                Err(e) if tolerate_missing && e.code == code::NOT_FOUND => {}
                Err(e) => {
                    for u in undo.into_iter().rev() {
                        if let Err(err) = self.apply(router, u) {
                            tracing::error!(%err, "undoing a failed batch");
                        }
                    }
                    self.commit(router);
                    let message = if n > 1 {
                        format!("op {k}: {}", e.message)
                    } else {
                        e.message
                    };
                    return Err(ApiError {
                        code: e.code,
                        message,
                    });
                }
            }
        }
        self.commit(router);
        Ok(n)
    }

    /// `Router::commit`, or with `defer_commit` a note that the caller
    /// commits (`finish_deferred`).
    fn commit(&mut self, router: &mut Router) {
        if self.defer_commit {
            self.uncommitted = true;
        } else {
            router.commit();
        }
    }

    /// Applies one change and records it in the ledger; returns the ops
    /// that undo it (an undo is applied, and recorded, the same way).
    fn apply(&mut self, router: &mut Router, op: Op) -> Result<Vec<Op>, ApiError> {
        let undo = self.apply_change(router, &op)?;
        self.ledger.record(op);
        Ok(undo)
    }

    fn apply_change(&mut self, router: &mut Router, op: &Op) -> Result<Vec<Op>, ApiError> {
        match op {
            Op::RouteAdd(r) | Op::RouteReplace(r) => {
                let (vrf, prefix, len, via, iface, action) = parse_route(router, r)?;
                let overlay = parse_overlay(r)?;
                let old = router.static_route(vrf, prefix, len);
                if old.is_some() && matches!(op, Op::RouteAdd(_)) {
                    return Err(ApiError::new(
                        code::EXISTS,
                        format!("route {}: exists (use route.replace)", r.prefix),
                    ));
                }
                match overlay {
                    Some((remote, mac)) => {
                        if !via.is_empty() || iface.is_some() || action.is_some() {
                            return Err(invalid(format!(
                                "route {}: an overlay route (`remote`) takes no `via`, `interface` or `action`",
                                r.prefix
                            )));
                        }
                        let to = crate::control::OverlayTarget {
                            vtep: r.vtep.as_deref(),
                            vni: r.vni,
                            remote,
                            mac,
                        };
                        router
                            .add_overlay_route_to(vrf, prefix, len, &to)
                            .map_err(api_err)?;
                    }
                    None => router
                        .add_static_route(vrf, prefix, len, &via, iface, action)
                        .map_err(api_err)?,
                }
                Ok(vec![match old {
                    Some(o) => Op::RouteReplace(route_of(router, r.vrf.clone(), &r.prefix, &o)),
                    None => Op::RouteDel(proto::RouteKey {
                        vrf: r.vrf.clone(),
                        prefix: r.prefix.clone(),
                    }),
                }])
            }
            Op::RouteDel(k) => {
                let (vrf, prefix, len) = parse_key(router, k.vrf.as_deref(), &k.prefix)?;
                let old = router.static_route(vrf, prefix, len);
                router.del_static_route(vrf, prefix, len).map_err(api_err)?;
                Ok(old
                    .map(|o| Op::RouteAdd(route_of(router, k.vrf.clone(), &k.prefix, &o)))
                    .into_iter()
                    .collect())
            }
            Op::NeighborAdd(n) => {
                let (iface, ip, mac) = parse_neighbor(router, &n.interface, &n.ip, Some(&n.mac))?;
                let old = router
                    .neighbors()
                    .into_iter()
                    .find(|(i, a, _)| *i == iface && *a == ip);
                router
                    .set_neighbor(iface, ip, mac.unwrap_or(MacAddr::ZERO), true)
                    .map_err(api_err)?;
                Ok(vec![match old {
                    Some((_, _, o)) => Op::NeighborAdd(proto::Neighbor {
                        mac: o.mac.to_string(),
                        ..n.clone()
                    }),
                    None => Op::NeighborDel(proto::NeighborKey {
                        interface: n.interface.clone(),
                        ip: n.ip.clone(),
                    }),
                }])
            }
            Op::NeighborDel(k) => {
                let (iface, ip, _) = parse_neighbor(router, &k.interface, &k.ip, None)?;
                let old = router.del_neighbor(iface, ip).map_err(api_err)?;
                Ok(vec![Op::NeighborAdd(proto::Neighbor {
                    interface: k.interface.clone(),
                    ip: k.ip.clone(),
                    mac: old.mac.to_string(),
                })])
            }
            Op::AddressAdd(a) => {
                let iface = iface_id(router, &a.interface)?;
                let (addr, len) = parse_prefix(&a.address, true)
                    .map_err(|e| invalid(format!("address {}: {e}", a.address)))?;
                router.add_address(iface, addr, len).map_err(api_err)?;
                Ok(vec![Op::AddressDel(a.clone())])
            }
            Op::AddressDel(a) => {
                let iface = iface_id(router, &a.interface)?;
                let addr: IpAddr = a
                    .address
                    .split('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| invalid(format!("address {}: not an IP address", a.address)))?;
                let len = router.del_address(iface, addr).map_err(api_err)?;
                Ok(vec![Op::AddressAdd(proto::Address {
                    interface: a.interface.clone(),
                    address: format!("{addr}/{len}"),
                })])
            }
            Op::StaticMacAdd(s) => {
                let mac =
                    parse_mac(&s.mac, true).map_err(|e| invalid(format!("static MAC: {e}")))?;
                let iface = iface_id(router, &s.interface)?;
                router.static_mac(&s.bridge, mac, iface).map_err(api_err)?;
                Ok(vec![Op::StaticMacDel(s.clone())])
            }
            Op::StaticMacDel(s) => {
                let mac =
                    parse_mac(&s.mac, true).map_err(|e| invalid(format!("static MAC: {e}")))?;
                router.del_static_mac(&s.bridge, mac).map_err(api_err)?;
                Ok(vec![Op::StaticMacAdd(s.clone())])
            }
            Op::MacFlush(f) => {
                let iface = f
                    .interface
                    .as_deref()
                    .map(|n| iface_id(router, n))
                    .transpose()?;
                router.flush_macs(&f.bridge, iface).map_err(api_err)?;
                // Learned entries come back by learning: nothing to undo.
                Ok(Vec::new())
            }
            Op::VxlanFloodAdd(r) => {
                let remote = parse_ip(&r.remote)?;
                let added = router
                    .vxlan_flood_add(&r.vtep, r.vni, remote)
                    .map_err(api_err)?;
                Ok(if added {
                    vec![Op::VxlanFloodDel(r.clone())]
                } else {
                    Vec::new()
                })
            }
            Op::VxlanFloodDel(r) => {
                let remote = parse_ip(&r.remote)?;
                router
                    .vxlan_flood_del(&r.vtep, r.vni, remote)
                    .map_err(api_err)?;
                Ok(vec![Op::VxlanFloodAdd(r.clone())])
            }
            Op::VxlanMacAdd(m) => {
                let remote = parse_ip(&m.remote)?;
                let mac =
                    parse_mac(&m.mac, true).map_err(|e| invalid(format!("static MAC: {e}")))?;
                let ip = m.ip.as_deref().map(parse_v4).transpose()?;
                router
                    .vxlan_mac_add(&m.vtep, m.vni, mac, remote, ip)
                    .map_err(api_err)?;
                Ok(vec![Op::VxlanMacDel(m.clone())])
            }
            Op::VxlanMacDel(m) => {
                let remote = parse_ip(&m.remote)?;
                let mac =
                    parse_mac(&m.mac, true).map_err(|e| invalid(format!("static MAC: {e}")))?;
                let ip = router
                    .vxlan_mac_del(&m.vtep, m.vni, mac, remote)
                    .map_err(api_err)?;
                Ok(vec![Op::VxlanMacAdd(proto::VxlanMac {
                    ip: ip.map(|a| a.to_string()),
                    ..m.clone()
                })])
            }
            Op::EndpointAdd(e) => self.endpoint_add(router, e),
            Op::EndpointDel(k) => {
                let key = (k.namespace.clone(), k.name.clone());
                let Some(old) = self.endpoints.get(&key).cloned() else {
                    return Err(ApiError::new(
                        code::NOT_FOUND,
                        format!("endpoint {}/{}: no such endpoint", k.namespace, k.name),
                    ));
                };
                let iface = iface_id(router, &old.interface)?;
                for ip in &old.ips {
                    if let Ok(ip) = ip.parse::<IpAddr>() {
                        let _ = router.del_neighbor(iface, ip);
                    }
                }
                self.endpoints.remove(&key);
                router.svc.unbind(&format!("{}/{}", k.namespace, k.name));
                Ok(vec![Op::EndpointAdd(old)])
            }
            other => crate::service::api::apply(router, &mut self.svc_objs, other)
                .unwrap_or_else(|| Err(invalid(format!("{}: not a change", op_name(other))))),
        }
    }

    fn endpoint_add(
        &mut self,
        router: &mut Router,
        e: &proto::Endpoint,
    ) -> Result<Vec<Op>, ApiError> {
        let obj = format!("endpoint {}/{}", e.namespace, e.name);
        let iface = iface_id(router, &e.interface)?;
        let mac = parse_mac(&e.mac, true).map_err(|m| invalid(format!("{obj}: {m}")))?;
        let ips: Vec<IpAddr> = e
            .ips
            .iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{obj}: `{s}` is not an IP address")))
            })
            .collect::<Result<_, _>>()?;
        let key = (e.namespace.clone(), e.name.clone());
        let old = self.endpoints.get(&key).cloned();
        let mut undo = Vec::new();
        if let Some(o) = &old {
            if let Ok(oi) = iface_id(router, &o.interface) {
                for ip in o.ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
                    let _ = router.del_neighbor(oi, ip);
                }
            }
            undo.push(Op::EndpointAdd(o.clone()));
        } else {
            undo.push(Op::EndpointDel(proto::EndpointKey {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
            }));
        }
        for (k, ip) in ips.iter().enumerate() {
            if let Err(err) = router.set_neighbor(iface, *ip, mac, true) {
                for done in &ips[..k] {
                    let _ = router.del_neighbor(iface, *done);
                }
                return Err(invalid(format!("{obj}: {err}")));
            }
        }
        // Anti-spoofing: the pod's port accepts only its own MAC and
        // addresses.
        router.svc.bind(
            &format!("{}/{}", e.namespace, e.name),
            iface,
            mac,
            ips.clone(),
        );
        self.endpoints.insert(key, e.clone());
        Ok(undo)
    }

    fn sync(&mut self, router: &mut Router, s: proto::Sync) -> Result<Value, ApiError> {
        let proto::Sync {
            scope,
            generation,
            routes,
            neighbors,
            endpoints,
            services,
            policies,
        } = s;
        let last = self.scopes.get(&scope).map_or(0, |sc| sc.generation);
        if generation < last {
            return Err(ApiError::new(
                code::STALE,
                format!("sync {scope}: generation {generation} is older than {last}"),
            ));
        }
        // The request's objects move into the scope's new content (no copy
        // of what is unchanged).
        let mut next = Scope {
            generation,
            ..Scope::default()
        };
        for r in routes {
            next.routes.insert((r.vrf.clone(), r.prefix.clone()), r);
        }
        for n in neighbors {
            next.neighbors
                .insert((n.interface.clone(), n.ip.clone()), n);
        }
        for e in endpoints {
            next.endpoints
                .insert((e.namespace.clone(), e.name.clone()), e);
        }
        for v in services {
            next.services
                .insert((v.namespace.clone(), v.name.clone()), v);
        }
        for v in policies {
            next.policies
                .insert((v.namespace.clone(), v.name.clone()), v);
        }
        let empty = Scope::default();
        let prev = self.scopes.get(&scope).unwrap_or(&empty);
        let mut ops = Vec::new();
        let mut res = proto::SyncResult::default();
        // Removals first, so a changed object never collides with its old self.
        for (k, r) in &prev.routes {
            if !next.routes.contains_key(k) {
                ops.push(Op::RouteDel(proto::RouteKey {
                    vrf: r.vrf.clone(),
                    prefix: r.prefix.clone(),
                }));
                res.removed += 1;
            }
        }
        for (k, n) in &prev.neighbors {
            if !next.neighbors.contains_key(k) {
                ops.push(Op::NeighborDel(proto::NeighborKey {
                    interface: n.interface.clone(),
                    ip: n.ip.clone(),
                }));
                res.removed += 1;
            }
        }
        for (k, e) in &prev.endpoints {
            if !next.endpoints.contains_key(k) {
                ops.push(Op::EndpointDel(proto::EndpointKey {
                    namespace: e.namespace.clone(),
                    name: e.name.clone(),
                }));
                res.removed += 1;
            }
        }
        for (k, v) in &prev.services {
            if !next.services.contains_key(k) {
                ops.push(Op::ServiceDel(proto::ObjectKey {
                    namespace: v.namespace.clone(),
                    name: v.name.clone(),
                }));
                res.removed += 1;
            }
        }
        for (k, v) in &prev.policies {
            if !next.policies.contains_key(k) {
                ops.push(Op::PolicyDel(proto::ObjectKey {
                    namespace: v.namespace.clone(),
                    name: v.name.clone(),
                }));
                res.removed += 1;
            }
        }
        for (k, v) in &next.services {
            match prev.services.get(k) {
                Some(o) if o == v => res.unchanged += 1,
                o => {
                    ops.push(Op::ServiceReplace(v.clone()));
                    if o.is_some() {
                        res.changed += 1
                    } else {
                        res.added += 1
                    }
                }
            }
        }
        for (k, v) in &next.policies {
            match prev.policies.get(k) {
                Some(o) if o == v => res.unchanged += 1,
                o => {
                    ops.push(Op::PolicyReplace(v.clone()));
                    if o.is_some() {
                        res.changed += 1
                    } else {
                        res.added += 1
                    }
                }
            }
        }
        for (k, r) in &next.routes {
            match prev.routes.get(k) {
                Some(o) if o == r => res.unchanged += 1,
                Some(_) => {
                    ops.push(Op::RouteReplace(r.clone()));
                    res.changed += 1;
                }
                None => {
                    ops.push(Op::RouteReplace(r.clone()));
                    res.added += 1;
                }
            }
        }
        for (k, n) in &next.neighbors {
            match prev.neighbors.get(k) {
                Some(o) if o == n => res.unchanged += 1,
                o => {
                    ops.push(Op::NeighborAdd(n.clone()));
                    if o.is_some() {
                        res.changed += 1
                    } else {
                        res.added += 1
                    }
                }
            }
        }
        for (k, e) in &next.endpoints {
            match prev.endpoints.get(k) {
                Some(o) if o == e => res.unchanged += 1,
                o => {
                    ops.push(Op::EndpointAdd(e.clone()));
                    if o.is_some() {
                        res.changed += 1
                    } else {
                        res.added += 1
                    }
                }
            }
        }
        self.apply_all(router, ops, true).map_err(|e| ApiError {
            code: e.code,
            message: format!("sync {scope}: {}", e.message),
        })?;
        self.scopes.insert(scope, next);
        serde_json::to_value(res).map_err(|e| ApiError::new(code::INTERNAL, e.to_string()))
    }

    fn trace_show(&mut self, router: &Router) -> Value {
        for w in router.shared().worker_links() {
            while let Some(t) = w.obs.traces.pop() {
                if self.traces.len() >= MAX_TRACES {
                    self.traces.pop_front();
                }
                self.traces.push_back((w.id, t));
            }
        }
        let lost: u64 = router
            .shared()
            .worker_links()
            .iter()
            .map(|w| w.obs.trace_lost.load(Ordering::Relaxed))
            .sum();
        let v: Vec<Value> = self
            .traces
            .iter()
            .map(|(w, t)| trace_json(router, router.tables(), Some(*w), t))
            .collect();
        json!({"traces": v, "lost": lost})
    }

    /// Sets every worker's capture mode.
    fn arm_capture_on(links: &[Arc<crate::control::WorkerLink>], mode: CaptureMode, port: u16) {
        for w in links {
            w.obs.capture_port.store(port, Ordering::Relaxed);
            w.obs.capture_mode.store(mode as u8, Ordering::Relaxed);
            if mode != CaptureMode::Off {
                while w.obs.capture.pop().is_some() {}
            }
        }
    }

    fn arm_capture(&mut self, mode: CaptureMode, port: u16) {
        if let Some(l) = &self.links {
            Self::arm_capture_on(l, mode, port);
        }
    }

    fn capture_start(
        &mut self,
        t: Token,
        router: &Router,
        c: &proto::CaptureStart,
    ) -> Result<Value, ApiError> {
        if self.capture.as_ref().is_some_and(|c| c.owner != t) {
            return Err(invalid("capture: another client is capturing"));
        }
        let count = c.count.unwrap_or(1000);
        if count == 0 || count > MAX_CAPTURE {
            return Err(invalid(format!(
                "capture: count {count} is not in 1..={MAX_CAPTURE}"
            )));
        }
        let (mode, port) = match (c.drops, &c.port) {
            (true, None) => (CaptureMode::Drops, 0),
            (false, Some(p)) => {
                let k = self
                    .ports
                    .iter()
                    .position(|x| x.name == *p)
                    .ok_or_else(|| {
                        ApiError::new(code::NOT_FOUND, format!("port {p}: no such port"))
                    })?;
                (CaptureMode::Port, k as u16)
            }
            _ => return Err(invalid("capture: either `drops` or `port`")),
        };
        let every = c.sample.unwrap_or(1);
        if every == 0 {
            return Err(invalid("capture: sample 0 (1 keeps every packet)"));
        }
        let links = router.shared().worker_links();
        for w in &links {
            w.obs.capture_every.store(every, Ordering::Relaxed);
        }
        let lost: u64 = links
            .iter()
            .map(|w| w.obs.capture_lost.load(Ordering::Relaxed))
            .sum();
        Self::arm_capture_on(&links, mode, port);
        self.links = Some(links);
        self.capture = Some(Capture {
            owner: t,
            mode,
            remaining: count,
            records: Vec::new(),
            lost_at_start: lost,
        });
        Ok(json!({"armed": true, "count": count}))
    }

    /// Moves what workers captured into the session, up to its count;
    /// disarms when the count is reached.
    fn capture_collect(&mut self) {
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        let Some(links) = &self.links else { return };
        for w in links {
            while c.remaining > 0 {
                let Some(r) = w.obs.capture.pop() else { break };
                c.records.push(r);
                c.remaining -= 1;
            }
        }
        if c.remaining == 0 && c.mode != CaptureMode::Off {
            c.mode = CaptureMode::Off;
            Self::arm_capture_on(links, CaptureMode::Off, 0);
        }
    }

    fn capture_read(&mut self, t: Token, router: &Router) -> Result<Value, ApiError> {
        if self.capture.as_ref().is_none_or(|c| c.owner != t) {
            return Err(invalid("capture: no capture started on this connection"));
        }
        self.capture_collect();
        let Some(c) = self.capture.as_mut() else {
            return Err(invalid("capture: no capture started on this connection"));
        };
        // Wall-clock nanoseconds of the data path's time zero.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let base = wall.saturating_sub(router.shared().now());
        let recs: Vec<Value> = c
            .records
            .drain(..)
            .map(|r| {
                let data = &r.data[..usize::from(r.caplen).min(r.data.len())];
                json!({
                    "time_ns": base + r.now,
                    "port": self.ports.get(usize::from(r.port)).map_or_else(|| r.port.to_string(), |p| p.name.clone()),
                    "direction": match r.dir { DIR_RX => "rx", DIR_TX => "tx", _ => "drop" },
                    "reason": (r.dir == DIR_DROP).then(|| reason_name(r.reason)),
                    "len": r.len,
                    "data": hex(data),
                })
            })
            .collect();
        let lost: u64 = self
            .links
            .iter()
            .flatten()
            .map(|w| w.obs.capture_lost.load(Ordering::Relaxed))
            .sum::<u64>()
            .saturating_sub(c.lost_at_start);
        Ok(
            json!({"packets": recs, "armed": c.mode != CaptureMode::Off, "remaining": c.remaining, "lost": lost}),
        )
    }

    fn capture_stop(&mut self, t: Token, router: &Router) -> Result<Value, ApiError> {
        let mut r = self.capture_read(t, router)?;
        self.capture = None;
        self.arm_capture(CaptureMode::Off, 0);
        r["armed"] = json!(false);
        Ok(r)
    }

    fn show_ports(&self) -> Value {
        let ports: Vec<info::Port> = self
            .ports
            .iter()
            .map(|p| {
                let mut c = crate::port::PortCounters::default();
                for s in &p.stats {
                    let x = s.snapshot();
                    c.rx_packets += x.rx_packets;
                    c.rx_bytes += x.rx_bytes;
                    c.rx_dropped += x.rx_dropped;
                    c.rx_fill_empty += x.rx_fill_empty;
                    c.tx_packets += x.tx_packets;
                    c.tx_bytes += x.tx_bytes;
                    c.tx_dropped += x.tx_dropped;
                }
                info::Port {
                    name: p.name.clone(),
                    driver: p.driver.clone(),
                    mac: p.mac.to_string(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    rx_dropped: c.rx_dropped,
                    rx_fill_empty: c.rx_fill_empty,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    tx_dropped: c.tx_dropped,
                }
            })
            .collect();
        json!(ports)
    }
}

fn push_response(c: &mut Conn, id: u64, r: Result<Value, ApiError>) {
    let resp = match r {
        Ok(v) => proto::Response {
            id,
            result: Some(v),
            error: None,
        },
        Err(e) => proto::Response {
            id,
            result: None,
            error: Some(e),
        },
    };
    if let Ok(mut l) = serde_json::to_vec(&resp) {
        l.push(b'\n');
        c.output.extend_from_slice(&l);
    }
}

fn op_name(op: &Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get("op").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn iface_id(router: &Router, name: &str) -> Result<u16, ApiError> {
    router.iface_id(name).ok_or_else(|| {
        ApiError::new(
            code::NOT_FOUND,
            format!("interface {name}: no such interface"),
        )
    })
}

fn vrf_of(router: &Router, vrf: Option<&str>) -> Result<u16, ApiError> {
    let name = vrf.unwrap_or("default");
    router
        .vrf_id(name)
        .ok_or_else(|| ApiError::new(code::NOT_FOUND, format!("vrf {name}: no such VRF")))
}

fn parse_key(
    router: &Router,
    vrf: Option<&str>,
    prefix: &str,
) -> Result<(u16, IpAddr, u8), ApiError> {
    let vrf = vrf_of(router, vrf)?;
    let (p, l) =
        parse_prefix(prefix, false).map_err(|e| invalid(format!("route {prefix}: {e}")))?;
    Ok((vrf, p, l))
}

type ParsedRoute = (
    u16,
    IpAddr,
    u8,
    Vec<IpAddr>,
    Option<u16>,
    Option<RouteAction>,
);

fn parse_route(router: &Router, r: &proto::Route) -> Result<ParsedRoute, ApiError> {
    let (vrf, prefix, len) = parse_key(router, r.vrf.as_deref(), &r.prefix)?;
    let via = r
        .via
        .iter()
        .map(|v| match v.parse::<IpAddr>() {
            Ok(a) if a.is_ipv4() == prefix.is_ipv4() => Ok(a),
            Ok(_) => Err(invalid(format!(
                "route {}: gateway {v} is not of the prefix's family",
                r.prefix
            ))),
            Err(_) => Err(invalid(format!(
                "route {}: `{v}` is not an IP address",
                r.prefix
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let iface = r
        .interface
        .as_deref()
        .map(|n| iface_id(router, n))
        .transpose()?;
    let action = match r.action.as_deref() {
        None => None,
        Some("drop") => Some(RouteAction::Drop),
        Some("unreachable") => Some(RouteAction::Unreachable),
        Some(a) => {
            return Err(invalid(format!(
                "route {}: action `{a}` is not drop or unreachable",
                r.prefix
            )));
        }
    };
    if action.is_some() && !via.is_empty() {
        return Err(invalid(format!(
            "route {}: either `via` or `action`, not both",
            r.prefix
        )));
    }
    Ok((vrf, prefix, len, via, iface, action))
}

/// The remote VTEP and inner MAC of an overlay route (`remote` given).
fn parse_overlay(r: &proto::Route) -> Result<Option<(IpAddr, MacAddr)>, ApiError> {
    let Some(remote) = &r.remote else {
        if r.mac.is_some() || r.vni.is_some() || r.vtep.is_some() {
            return Err(invalid(format!(
                "route {}: `mac`, `vni` and `vtep` are for overlay routes (with `remote`)",
                r.prefix
            )));
        }
        return Ok(None);
    };
    let remote: IpAddr = remote.parse().map_err(|_| {
        invalid(format!(
            "route {}: remote `{remote}` is not an IP address",
            r.prefix
        ))
    })?;
    let Some(mac) = &r.mac else {
        return Err(invalid(format!(
            "route {}: an overlay route needs `mac` (the remote VXLAN device's)",
            r.prefix
        )));
    };
    let mac = parse_mac(mac, true).map_err(|e| invalid(format!("route {}: {e}", r.prefix)))?;
    Ok(Some((remote, mac)))
}

fn route_of(
    router: &Router,
    vrf: Option<String>,
    prefix: &str,
    s: &crate::control::StaticSpec,
) -> proto::Route {
    if let Some(mac) = s.overlay {
        let t = router.tables();
        let tunnel = s
            .iface
            .and_then(|i| t.iface(i))
            .and_then(|f| f.tunnel)
            .and_then(|k| t.vxlan.tunnels.get(k as usize));
        if let Some(tn) = tunnel {
            return proto::Route {
                vrf,
                prefix: prefix.to_string(),
                remote: Some(tn.remote.to_string()),
                mac: Some(mac.to_string()),
                vni: Some(tn.vni),
                vtep: t.vxlan.vteps.get(tn.vtep as usize).map(|v| v.name.clone()),
                ..proto::Route::default()
            };
        }
    }
    proto::Route {
        vrf,
        prefix: prefix.to_string(),
        via: s.via.iter().map(IpAddr::to_string).collect(),
        interface: s
            .iface
            .and_then(|i| router.tables().iface(i))
            .map(|f| f.name.clone()),
        action: s.action.map(|a| match a {
            RouteAction::Drop => "drop".to_string(),
            RouteAction::Unreachable => "unreachable".to_string(),
        }),
        ..proto::Route::default()
    }
}

fn show_overlay_routes(router: &Router, sel: &proto::OverlaySel) -> Result<Value, ApiError> {
    let vrf = sel
        .vrf
        .as_deref()
        .map(|v| vrf_of(router, Some(v)))
        .transpose()?;
    let t = router.tables();
    let v: Vec<info::OverlayRoute> = router
        .overlay_routes(vrf)
        .into_iter()
        .map(|o| info::OverlayRoute {
            vrf: t
                .vrfs
                .get(o.vrf as usize)
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            prefix: format!("{}/{}", o.prefix, o.len),
            vtep: t
                .vxlan
                .vteps
                .get(o.vtep as usize)
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            vni: o.vni,
            remote: o.remote.to_string(),
            mac: o.mac.to_string(),
            interface: t.iface(o.iface).map(|f| f.name.clone()).unwrap_or_default(),
        })
        .collect();
    Ok(json!(v))
}

fn parse_neighbor(
    router: &Router,
    iface: &str,
    ip: &str,
    mac: Option<&str>,
) -> Result<(u16, IpAddr, Option<MacAddr>), ApiError> {
    let i = iface_id(router, iface)?;
    let a: IpAddr = ip
        .parse()
        .map_err(|_| invalid(format!("neighbor {ip}: not an IP address")))?;
    let m = mac
        .map(|m| parse_mac(m, true).map_err(|e| invalid(format!("neighbor {ip}: {e}"))))
        .transpose()?;
    Ok((i, a, m))
}

fn show_interfaces(router: &Router) -> Value {
    let t = router.tables();
    let workers = router.shared().worker_links();
    let v: Vec<info::Interface> = t
        .ifaces
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let c = report::iface(&workers, k as u16);
            let (mode, bridge, vrf) = match f.mode {
                IfaceMode::Bridged { bd } => (
                    "bridged",
                    t.bds.get(bd as usize).map(|b| b.name.clone()),
                    None,
                ),
                IfaceMode::Routed { vrf } => (
                    "routed",
                    None,
                    t.vrfs.get(vrf as usize).map(|v| v.name.clone()),
                ),
                IfaceMode::Bvi { bd, vrf } => (
                    "bvi",
                    t.bds.get(bd as usize).map(|b| b.name.clone()),
                    t.vrfs.get(vrf as usize).map(|v| v.name.clone()),
                ),
            };
            info::Interface {
                name: f.name.clone(),
                port: t.ports.get(f.port as usize).map(|p| p.name.clone()),
                vlan: f.vlan,
                mode: mode.to_string(),
                bridge,
                vrf,
                mac: f.mac.to_string(),
                mtu: f.mtu,
                addresses: f
                    .ip4
                    .iter()
                    .map(|n| format!("{}/{}", n.addr, n.len))
                    .chain(f.ip6.iter().map(|n| format!("{}/{}", n.addr, n.len)))
                    .collect(),
                rx_packets: c.rx_packets,
                tx_packets: c.tx_packets,
                drops: c.drops,
            }
        })
        .collect();
    json!(v)
}

/// True if interface `name` has address `addr` (`a.b.c.d` or with a length).
fn has_address(router: &Router, name: &str, addr: &str) -> bool {
    let Ok(id) = iface_id(router, name) else {
        return false;
    };
    let Some(ip) = addr
        .split('/')
        .next()
        .and_then(|s| s.parse::<IpAddr>().ok())
    else {
        return false;
    };
    router.tables().iface(id).is_some_and(|f| match ip {
        IpAddr::V4(a) => f.ip4.iter().any(|n| n.addr == a),
        IpAddr::V6(a) => f.ip6.iter().any(|n| n.addr == a),
    })
}

fn parse_v4(s: &str) -> Result<std::net::Ipv4Addr, ApiError> {
    s.parse()
        .map_err(|_| invalid(format!("{s}: not an IPv4 address")))
}

fn parse_ip(s: &str) -> Result<IpAddr, ApiError> {
    s.parse()
        .map_err(|_| invalid(format!("remote {s}: not an IP address")))
}

fn show_vteps(router: &Router) -> Value {
    let t = router.tables();
    let workers = router.shared().worker_links();
    let name = |i: u16| t.iface(i).map_or_else(String::new, |f| f.name.clone());
    let tunnels = router.vxlan_tunnels();
    let v: Vec<info::Vtep> = t
        .vxlan
        .vteps
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let tunnels: Vec<info::VxlanTunnel> = tunnels
                .iter()
                .filter(|x| usize::from(x.vtep) == k)
                .map(|x| {
                    let c = report::iface(&workers, x.iface);
                    info::VxlanTunnel {
                        vtep: v.name.clone(),
                        vni: x.vni,
                        bound: match x.kind {
                            crate::vxlan::VniKind::Bridge { bd } => format!(
                                "bridge {}",
                                t.bds.get(bd as usize).map_or("?", |b| b.name.as_str())
                            ),
                            crate::vxlan::VniKind::Routed { vrf } => format!(
                                "vrf {}",
                                t.vrfs.get(vrf as usize).map_or("?", |b| b.name.as_str())
                            ),
                        },
                        remote: x.remote.to_string(),
                        interface: name(x.iface),
                        flood: x.flood,
                        accepted: x.accepted,
                        rx_packets: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_packets: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                    }
                })
                .collect();
            info::Vtep {
                name: v.name.clone(),
                local: v.local.to_string(),
                udp_port: v.udp_port,
                vrf: t
                    .vrfs
                    .get(v.vrf as usize)
                    .map_or_else(String::new, |x| x.name.clone()),
                interface: name(v.iface),
                inner_mtu: v.inner_mtu,
                ttl: v.ttl,
                dscp: match v.dscp {
                    crate::vxlan::Dscp::Copy => "copy".into(),
                    crate::vxlan::Dscp::Fixed(d) => d.to_string(),
                },
                source_ports: format!(
                    "{}-{}",
                    v.sport_min,
                    u32::from(v.sport_min) + v.sport_span - 1
                ),
                rx_packets: tunnels.iter().map(|x| x.rx_packets).sum(),
                rx_bytes: tunnels.iter().map(|x| x.rx_bytes).sum(),
                tx_packets: tunnels.iter().map(|x| x.tx_packets).sum(),
                tx_bytes: tunnels.iter().map(|x| x.tx_bytes).sum(),
                tunnels,
            }
        })
        .collect();
    json!(v)
}

fn show_bridges(router: &Router) -> Value {
    let t = router.tables();
    let v: Vec<info::Bridge> = t
        .bds
        .iter()
        .map(|b| info::Bridge {
            name: b.name.clone(),
            members: b
                .members
                .iter()
                .filter_map(|&m| t.iface(m).map(|f| f.name.clone()))
                .collect(),
            gateway: b.bvi.and_then(|m| t.iface(m).map(|f| f.name.clone())),
            macs: b.macs.len(),
            mac_limit: b.macs.limit(),
            mac_age: b.mac_age,
            learning: b.learning,
        })
        .collect();
    json!(v)
}

fn show_mac(router: &Router, bridge: Option<&str>) -> Result<Value, ApiError> {
    let t = router.tables();
    if let Some(b) = bridge
        && router.bd_id(b).is_none()
    {
        return Err(ApiError::new(
            code::NOT_FOUND,
            format!("bridge {b}: no such bridge"),
        ));
    }
    let now = (router.shared().now() / 1_000_000_000) as u32;
    let mut v = Vec::new();
    for b in t.bds.iter().filter(|b| bridge.is_none_or(|n| n == b.name)) {
        let mut es = b.macs.entries(now);
        es.sort_by_key(|e| e.mac);
        for e in es {
            v.push(info::Mac {
                bridge: b.name.clone(),
                mac: MacAddr::from_u64(e.mac).to_string(),
                interface: t
                    .iface(e.dst)
                    .map_or_else(|| e.dst.to_string(), |f| f.name.clone()),
                is_static: e.is_static,
                age: if e.is_static { 0 } else { e.age },
            });
        }
    }
    Ok(json!(v))
}

fn nh_text(router: &Router, nh: &NextHop) -> String {
    let t = router.tables();
    let name = |i: u16| t.iface(i).map_or_else(|| i.to_string(), |f| f.name.clone());
    match nh {
        NextHop::Drop => "drop".into(),
        NextHop::Unreachable => "unreachable".into(),
        NextHop::Local { iface } => format!("local ({})", name(*iface)),
        NextHop::Glean { iface } => format!("connected ({})", name(*iface)),
        NextHop::Resolve { iface, addr } => format!("via {addr} ({}, unresolved)", name(*iface)),
        NextHop::Rewrite { iface, mac } => format!("{mac} ({})", name(*iface)),
        NextHop::Ecmp { base, len } => {
            let members: Vec<String> = (*base..*base + u32::from(*len))
                .filter_map(|k| t.ecmp.get(k as usize))
                .filter_map(|&m| t.nexthop(m))
                .map(|m| nh_text(router, m))
                .collect();
            format!("ecmp [{}]", members.join(", "))
        }
    }
}

fn show_routes(router: &Router, sel: &proto::RouteSel) -> Result<Value, ApiError> {
    let vrf = vrf_of(router, sel.vrf.as_deref())?;
    let fam = match sel.family.as_deref() {
        None => None,
        Some("ipv4") => Some(true),
        Some("ipv6") => Some(false),
        Some(f) => {
            return Err(invalid(format!(
                "show.routes: family `{f}` is not ipv4 or ipv6"
            )));
        }
    };
    let vname = router
        .tables()
        .vrfs
        .get(vrf as usize)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let v: Vec<info::Route> = router
        .routes(vrf)
        .into_iter()
        .filter(|(p, ..)| fam.is_none_or(|v4| p.is_ipv4() == v4))
        .map(|(p, l, src, nh)| info::Route {
            vrf: vname.clone(),
            prefix: format!("{p}/{l}"),
            source: match src {
                Source::Local => "local",
                Source::Connected => "connected",
                Source::Static => "static",
                Source::Neighbor => "neighbor",
            }
            .to_string(),
            next_hop: nh_text(router, &nh),
        })
        .collect();
    Ok(json!(v))
}

fn show_neighbors(router: &Router) -> Value {
    let t = router.tables();
    let v: Vec<info::Neighbor> = router
        .neighbors()
        .into_iter()
        .map(|(i, ip, n)| info::Neighbor {
            interface: t.iface(i).map_or_else(|| i.to_string(), |f| f.name.clone()),
            ip: ip.to_string(),
            mac: n.mac.to_string(),
            is_static: n.is_static,
        })
        .collect();
    json!(v)
}

/// The control plane's refusals at its limits, after the pipeline's
/// counters in `show counters` and `show errors`: (name, value, help).
pub fn control_refusals(router: &Router, api: &ApiStats) -> [(&'static str, u64, &'static str); 6] {
    let c = &router.stats;
    [
        (
            "neighbor-limit",
            c.neighbors_refused,
            "neighbour not learned: the interface is at max-neighbors",
        ),
        (
            "notice-queue-full",
            c.notices_dropped,
            "control-plane notice (event) lost: notice queue full",
        ),
        (
            "control-refused-credentials",
            api.refused_credentials,
            "control connection refused: peer uid/gid not allowed (SO_PEERCRED)",
        ),
        (
            "control-refused-limit",
            api.refused_limit,
            "control connection refused: max-connections reached",
        ),
        (
            "control-closed-slow-or-oversize",
            api.closed_slow + api.closed_oversize,
            "control connection closed: request too long, or output not read",
        ),
        (
            "control-events-dropped",
            api.events_dropped,
            "event not sent to a subscriber that was behind (event-backlog)",
        ),
    ]
}

fn show_counters(router: &Router, api: &ApiStats, drops_only: bool) -> Value {
    let workers = router.shared().worker_links();
    let v: Vec<info::Counter> = Counter::ALL
        .iter()
        .filter(|c| !drops_only || c.is_drop())
        .map(|&c| info::Counter {
            name: c.name().to_string(),
            value: report::counter(&workers, c),
            drop: c.is_drop(),
            help: c.help().to_string(),
        })
        .chain(
            control_refusals(router, api)
                .into_iter()
                .map(|(name, value, help)| info::Counter {
                    name: name.to_string(),
                    value,
                    drop: true,
                    help: help.to_string(),
                }),
        )
        .filter(|c| c.value > 0)
        .collect();
    json!(v)
}

fn show_runtime(router: &Router) -> Value {
    let workers = router.shared().worker_links();
    let v: Vec<info::Node> = NodeId::ALL
        .iter()
        .map(|&n| {
            let c = report::node(&workers, n);
            info::Node {
                name: n.name().to_string(),
                calls: c.calls,
                packets: c.packets,
                clocks_per_packet: if c.packets > 0 {
                    c.cycles as f64 / c.packets as f64
                } else {
                    0.0
                },
            }
        })
        .filter(|n| n.calls > 0)
        .collect();
    json!(v)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn node_name(n: u8) -> &'static str {
    NodeId::ALL.get(usize::from(n)).map_or("?", |n| n.name())
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Local => "local",
        Source::Connected => "connected",
        Source::Static => "static",
        Source::Neighbor => "neighbor",
    }
}

/// The (source, destination) addresses of a frame's start, if it is IPv4
/// or IPv6.
fn addrs_of(f: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let (et, off) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x8100 => (u16::from_be_bytes([*f.get(16)?, *f.get(17)?]), 18),
        e => (e, 14),
    };
    match et {
        0x0800 => {
            let a: [u8; 4] = f.get(off + 12..off + 16)?.try_into().ok()?;
            let b: [u8; 4] = f.get(off + 16..off + 20)?.try_into().ok()?;
            Some((IpAddr::from(a), IpAddr::from(b)))
        }
        0x86dd => {
            let a: [u8; 16] = f.get(off + 8..off + 24)?.try_into().ok()?;
            let b: [u8; 16] = f.get(off + 24..off + 40)?.try_into().ok()?;
            Some((IpAddr::from(a), IpAddr::from(b)))
        }
        _ => None,
    }
}

/// What a node decided, in words, from the metadata it left. `dst` is the
/// packet's destination address (for the route a lookup matched).
fn step_detail(router: &Router, t: &Tables, st: &crate::obs::Step, dst: Option<IpAddr>) -> String {
    let name = |i: u16| t.iface(i).map_or_else(|| i.to_string(), |f| f.name.clone());
    let next = NodeId::ALL.get(usize::from(st.next)).copied();
    if next == Some(NodeId::Drop) {
        return reason_name(st.drop).to_string();
    }
    let node = NodeId::ALL.get(usize::from(st.node)).copied();
    match node {
        Some(NodeId::EthernetInput) => match t.iface(st.rx_if) {
            Some(f) => match f.mode {
                IfaceMode::Bridged { bd } => format!(
                    "interface {} (bridge {})",
                    f.name,
                    t.bds.get(usize::from(bd)).map_or("?", |b| b.name.as_str())
                ),
                _ => format!(
                    "interface {} (vrf {})",
                    f.name,
                    t.vrfs
                        .get(usize::from(st.domain))
                        .map_or("?", |v| v.name.as_str())
                ),
            },
            None => String::new(),
        },
        Some(NodeId::L2Input) => match next {
            Some(NodeId::InterfaceOutput) => format!("MAC entry → {}", name(st.tx_if)),
            None if st.next == NEXT_TX => format!("MAC entry → {}, sent", name(st.tx_if)),
            Some(NodeId::L2Flood) => "unknown, broadcast or multicast: flood".to_string(),
            Some(_) => "to the bridge's gateway (BVI)".to_string(),
            None => String::new(),
        },
        Some(NodeId::L2Flood) => format!("copy to {}", name(st.tx_if)),
        Some(NodeId::Ip4Lookup | NodeId::Ip6Lookup) => {
            let route = dst
                .and_then(|a| router.route_for(st.domain, a))
                .map_or(String::new(), |(p, l, src)| {
                    format!("route {p}/{l} ({}) → ", source_name(src))
                });
            match next {
                Some(NodeId::Icmp4Error | NodeId::Icmp6Error) => format!(
                    "{route}{}: ICMP error type {} code {}",
                    reason_name(st.drop),
                    st.nh >> 8,
                    st.nh & 0xff
                ),
                Some(NodeId::Glean) => format!("{route}neighbour unresolved on {}", name(st.tx_if)),
                Some(NodeId::Ip4Local | NodeId::Ip6Local) => format!("{route}for the router"),
                _ => match t.nexthop(st.nh) {
                    Some(nh) => format!("{route}next hop {}: {}", st.nh, nh_text(router, nh)),
                    None => format!("{route}next hop {}", st.nh),
                },
            }
        }
        Some(NodeId::Icmp4Error | NodeId::Icmp6Error) => {
            "packet replaced by an ICMP error to its source".to_string()
        }
        Some(NodeId::Glean) => format!("ARP/ND request on {}; packet held", name(st.tx_if)),
        Some(NodeId::Ip4Rewrite | NodeId::Ip6Rewrite) => format!("out {}", name(st.tx_if)),
        Some(NodeId::InterfaceOutput) => format!(
            "port {}",
            t.ports
                .get(usize::from(st.tx_port))
                .map_or_else(|| st.tx_port.to_string(), |p| p.name.clone())
        ),
        _ => String::new(),
    }
}

/// A trace as JSON: the packet, each node with its decision, the result.
fn trace_json(router: &Router, t: &Tables, worker: Option<usize>, tr: &PktTrace) -> Value {
    let port = |i: u16| {
        t.ports
            .get(usize::from(i))
            .map_or_else(|| i.to_string(), |p| p.name.clone())
    };
    let hin = &tr.hdr_in[..usize::from(tr.len_in).min(TRACE_HDR)];
    let hout = &tr.hdr_out[..usize::from(tr.len_out).min(TRACE_HDR)];
    let addrs = addrs_of(hin);
    // The destination a lookup sees: the packet's, until the router turns
    // it into a reply (ICMP error, echo reply) to its source.
    let mut dst = addrs.map(|a| a.1);
    let path: Vec<Value> = tr.step[..usize::from(tr.steps).min(TRACE_STEPS)]
        .iter()
        .map(|st| {
            let detail = step_detail(router, t, st, dst);
            if [
                NodeId::Icmp4Error,
                NodeId::Icmp6Error,
                NodeId::Ip4Local,
                NodeId::Ip6Local,
            ]
            .iter()
            .any(|&n| n as u8 == st.node)
            {
                dst = addrs.map(|a| a.0);
            }
            let next = match st.next {
                NEXT_TX => "transmit",
                NEXT_HELD => "held",
                NEXT_NONE if st.node == NodeId::Drop as u8 => "freed",
                NEXT_NONE => "consumed",
                n => node_name(n),
            };
            json!({"node": node_name(st.node), "next": next, "detail": detail})
        })
        .collect();
    let (result, output) = match tr.disposition {
        d if d == Disposition::Tx as u8 => (
            format!("transmitted on port {}", port(tr.tx_port)),
            Some(summarize(hout, usize::from(tr.len_out))),
        ),
        d if d == Disposition::Drop as u8 => (format!("dropped: {}", reason_name(tr.drop)), None),
        d if d == Disposition::Held as u8 => {
            ("held: waiting for neighbour resolution".to_string(), None)
        }
        _ => ("lost (no decision)".to_string(), None),
    };
    let mut v = json!({
        "rx_port": port(tr.rx_port),
        "packet": summarize(hin, usize::from(tr.len_in)),
        "path": path,
        "result": result,
    });
    if let Some(w) = worker {
        v["worker"] = json!(w);
    }
    if tr.steps as usize > TRACE_STEPS {
        v["steps_not_kept"] = json!(tr.steps as usize - TRACE_STEPS);
    }
    if let Some(o) = output {
        v["output"] = json!(o);
        if hin.len() >= 14 && hout.len() >= 14 {
            let mac = |b: &[u8]| MacAddr::new(b[0], b[1], b[2], b[3], b[4], b[5]).to_string();
            v["rewrite"] = json!({
                "dst_mac": format!("{} → {}", mac(&hin[0..6]), mac(&hout[0..6])),
                "src_mac": format!("{} → {}", mac(&hin[6..12]), mac(&hout[6..12])),
            });
            if let (Some(a), Some(b)) = (ttl_of(hin), ttl_of(hout)) {
                v["rewrite"]["ttl"] = json!(format!("{a} → {b}"));
            }
        }
    }
    v
}

/// TTL (IPv4) or hop limit (IPv6) of a frame's start.
fn ttl_of(f: &[u8]) -> Option<u8> {
    let (et, off) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x8100 => (u16::from_be_bytes([*f.get(16)?, *f.get(17)?]), 18),
        e => (e, 14),
    };
    match et {
        0x0800 => f.get(off + 8).copied(),
        0x86dd => f.get(off + 7).copied(),
        _ => None,
    }
}

/// `trace.packet`: runs a synthetic frame through a private pipeline over
/// the live tables. Nothing is transmitted; the pipeline's events go to a
/// throwaway queue and the packet is flagged `NO_LEARN`, so the MAC tables
/// (shared with the workers) are neither learned into nor refreshed.
fn trace_packet(router: &Router, a: &proto::TracePacket) -> Result<Value, ApiError> {
    let t = router.shared().tables.load_full();
    let port = t
        .ports
        .iter()
        .position(|p| p.name == a.in_port)
        .ok_or_else(|| {
            ApiError::new(code::NOT_FOUND, format!("port {}: no such port", a.in_port))
        })?;
    let obj = "trace.packet";
    let ip = |s: &str| {
        s.parse::<IpAddr>()
            .map_err(|_| invalid(format!("{obj}: `{s}` is not an IP address")))
    };
    let (src, dst) = (ip(&a.src)?, ip(&a.dst)?);
    let proto_n = match a.proto.as_deref().unwrap_or("icmp") {
        "icmp" | "icmp6" | "icmpv6" => 1,
        "tcp" => 6,
        "udp" => 17,
        p => {
            return Err(invalid(format!(
                "{obj}: protocol `{p}` is not icmp, tcp or udp"
            )));
        }
    };
    if let Some(v) = a.vlan
        && !(1..=4094).contains(&v)
    {
        return Err(invalid(format!("{obj}: vlan {v} is not in 1..=4094")));
    }
    let mac = |m: &Option<String>, dflt: MacAddr| -> Result<[u8; 6], ApiError> {
        match m {
            Some(m) => parse_mac(m, false)
                .map(|m| m.octets())
                .map_err(|e| invalid(format!("{obj}: {e}"))),
            None => Ok(dflt.octets()),
        }
    };
    let ingress = t
        .ports
        .get(port)
        .map(|p| p.iface(a.vlan.unwrap_or(0)))
        .and_then(|i| t.iface(i));
    let dst_default = ingress.map_or(MacAddr::new(2, 0, 0, 0, 0, 1), |f| f.mac);
    let spec = crate::obs::Synthetic {
        src_mac: mac(&a.src_mac, MacAddr::new(0x02, 0xfe, 0, 0, 0, 0x01))?,
        dst_mac: mac(&a.dst_mac, dst_default)?,
        vlan: a.vlan,
        src,
        dst,
        proto: proto_n,
        sport: a.sport.unwrap_or(40000),
        dport: a.dport.unwrap_or(if proto_n == 1 { 0 } else { 80 }),
        ttl: a.ttl.unwrap_or(64),
        payload: 16,
    };
    let frame = crate::obs::build_frame(&spec).map_err(|e| invalid(format!("{obj}: {e}")))?;
    let internal = |e: String| ApiError::new(code::INTERNAL, format!("{obj}: {e}"));
    let mut pool = vrouter_buf::FramePool::new(256).map_err(|e| internal(e.to_string()))?;
    let mut buf = pool
        .alloc()
        .ok_or_else(|| internal("no buffer".to_string()))?;
    buf.write(&frame).map_err(|e| internal(e.to_string()))?;
    let stats = WorkerStats::new();
    let events = WorkerEvents::new(64);
    let mut pl = Pipeline::new();
    let mut p = Pkt::new(buf, port as u16);
    p.meta.flags |= flags::NO_LEARN;
    pl.pkts.push(p);
    pl.mark_traced(0, 1);
    let now = router.shared().now();
    let mut cx = Ctx {
        t: &t,
        pool: &mut pool,
        stats: &stats,
        now,
        now_s: (now / 1_000_000_000) as u32,
        events: &events,
    };
    pl.run(&mut cx);
    let mut traces = Vec::new();
    pl.finish_trace(now, |tr| traces.push(*tr));
    pl.drain(&mut pool, &stats, &[], &mut []);
    pl.release_held(&mut pool, &stats);
    let v: Vec<Value> = traces
        .iter()
        .map(|tr| trace_json(router, &t, None, tr))
        .collect();
    Ok(json!({
        "generation": t.generation,
        "traces": v,
        "events_suppressed": events.len(),
    }))
}

/// Writes as much of `out` as the non-blocking `stream` takes now (until it
/// would block), removing what was written. An error other than
/// WouldBlock/Interrupted means the peer is gone. Shared by the control
/// socket and the metrics endpoint.
pub(crate) fn write_pending(stream: &mut impl Write, out: &mut Vec<u8>) -> std::io::Result<()> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => break,
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
