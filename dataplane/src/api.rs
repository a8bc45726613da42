//! The control socket: a Unix domain socket speaking the newline-delimited
//! JSON protocol of `vrouter-control` (`docs/control-protocol.md`), served
//! by the control thread with mio.
//!
//! It owns the connections and what only the control plane needs: sync
//! scopes, the endpoint table, subscriptions. Every change goes through
//! `Router` and is acknowledged after `Router::commit`, that is once every
//! running worker uses it. Nothing here blocks: sockets are non-blocking,
//! input lines and output buffers are bounded (a client that sends a line
//! over `MAX_LINE` or stops reading is disconnected), connections are
//! limited, and a connecting process must have an allowed uid or gid
//! (`SO_PEERCRED`).

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
use crate::control::{ControlError, Router, Source};
use crate::graph::{Counter, NodeId};
use crate::port::PortStats;
use crate::report;
use crate::tables::{IfaceMode, NextHop};

const LISTENER: Token = Token(0);
/// Output a slow client may leave unread before it is disconnected.
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
    output: Vec<u8>,
    hello: bool,
    events: Vec<String>,
    closing: bool,
}

#[derive(Debug, Default)]
struct Scope {
    generation: u64,
    routes: BTreeMap<(Option<String>, String), proto::Route>,
    neighbors: BTreeMap<(String, String), proto::Neighbor>,
    endpoints: BTreeMap<(String, String), proto::Endpoint>,
}

/// See the module doc.
pub struct Api {
    cfg: ApiConfig,
    poll: Poll,
    events: Events,
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    scopes: HashMap<String, Scope>,
    endpoints: BTreeMap<(String, String), proto::Endpoint>,
    ports: Vec<PortInfo>,
    pub stats: ApiStats,
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
        let poll = Poll::new().map_err(io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io)?;
        Ok(Api {
            cfg,
            poll,
            events: Events::with_capacity(256),
            listener,
            conns: HashMap::new(),
            next: 1,
            scopes: HashMap::new(),
            endpoints: BTreeMap::new(),
            ports,
            stats: ApiStats::default(),
        })
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
            let (mut stream, _) = match self.listener.accept() {
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
                    output: Vec::new(),
                    hello: false,
                    events: Vec::new(),
                    closing: false,
                },
            );
        }
    }

    fn close(&mut self, t: Token) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn read(&mut self, t: Token, router: &mut Router) -> usize {
        let mut buf = [0u8; 65536];
        let mut eof = false;
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return 0;
            };
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    if c.input.len() > proto::MAX_LINE + 1 && !c.input.contains(&b'\n') {
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
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return handled;
            };
            let Some(nl) = c.input.iter().position(|&b| b == b'\n') else {
                if c.input.len() > proto::MAX_LINE {
                    self.stats.closed_oversize += 1;
                    let e = ApiError::new(
                        code::TOO_LARGE,
                        format!("request: longer than {} bytes", proto::MAX_LINE),
                    );
                    push_response(c, 0, Err(e));
                    c.closing = true;
                    c.input.clear();
                }
                break;
            };
            let line: Vec<u8> = c.input.drain(..=nl).collect();
            if c.closing {
                continue;
            }
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > proto::MAX_LINE {
                self.stats.closed_oversize += 1;
                push_response(
                    c,
                    0,
                    Err(ApiError::new(code::TOO_LARGE, "request: line too long")),
                );
                c.closing = true;
                continue;
            }
            handled += 1;
            self.stats.requests += 1;
            let (id, result) = match proto::parse_request(&line) {
                Err((id, e)) => (id, Err(e)),
                Ok(req) => {
                    let hello = self.conns.get(&t).is_some_and(|c| c.hello);
                    let r = match (&req.op, hello) {
                        (Op::Hello(h), _) => self.hello(t, h),
                        (_, false) => Err(ApiError::new(
                            code::HELLO_FIRST,
                            "connection: send `hello` first",
                        )),
                        (Op::Subscribe(s), true) => self.subscribe(t, s),
                        (op, true) => self.handle(router, op),
                    };
                    (req.id, r)
                }
            };
            if result.is_err() {
                self.stats.errors += 1;
            }
            let Some(c) = self.conns.get_mut(&t) else {
                return handled;
            };
            push_response(c, id, result);
            if c.output.len() > MAX_OUT {
                self.stats.closed_slow += 1;
                self.close(t);
                return handled;
            }
        }
        if eof {
            self.flush(t);
            self.close(t);
        }
        handled
    }

    fn flush(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(0) => break,
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(t);
                    return;
                }
            }
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

    /// Sends an event of `kind` to every subscriber (dropping slow ones).
    pub fn publish(&mut self, kind: &str, event: Value) {
        let line = match serde_json::to_vec(&json!({ "event": event })) {
            Ok(mut l) => {
                l.push(b'\n');
                l
            }
            Err(_) => return,
        };
        let mut slow = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            if c.events.iter().any(|k| k == kind) {
                c.output.extend_from_slice(&line);
                if c.output.len() > MAX_OUT {
                    slow.push(*t);
                }
            }
        }
        for t in slow {
            self.stats.closed_slow += 1;
            self.close(t);
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.flush(t);
        }
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
            Op::ShowCounters => Ok(show_counters(router, false)),
            Op::ShowErrors => Ok(show_counters(router, true)),
            Op::ShowRuntime => Ok(show_runtime(router)),
            Op::ShowVteps => Ok(show_vteps(router)),
            Op::Batch(b) => {
                if let Some(bad) = b.ops.iter().position(|o| !o.op.is_change()) {
                    return Err(invalid(format!("batch: op {bad} is not a change")));
                }
                let ops: Vec<Op> = b.ops.iter().map(|o| o.op.clone()).collect();
                let n = self.apply_all(router, &ops, false)?;
                Ok(json!({ "applied": n }))
            }
            Op::Sync(s) => self.sync(router, s),
            change => {
                self.apply_all(router, std::slice::from_ref(change), false)?;
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
        ops: &[Op],
        tolerate_missing: bool,
    ) -> Result<usize, ApiError> {
        let mut undo: Vec<Op> = Vec::new();
        for (k, op) in ops.iter().enumerate() {
            match self.apply(router, op) {
                Ok(mut u) => undo.append(&mut u),
                Err(e) if tolerate_missing && e.code == code::NOT_FOUND => {}
                Err(e) => {
                    for u in undo.iter().rev() {
                        if let Err(err) = self.apply(router, u) {
                            tracing::error!(%err, "undoing a failed batch");
                        }
                    }
                    router.commit();
                    let message = if ops.len() > 1 {
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
        router.commit();
        Ok(ops.len())
    }

    /// Applies one change; returns the ops that undo it.
    fn apply(&mut self, router: &mut Router, op: &Op) -> Result<Vec<Op>, ApiError> {
        match op {
            Op::RouteAdd(r) | Op::RouteReplace(r) => {
                let (vrf, prefix, len, via, iface, action) = parse_route(router, r)?;
                let old = router.static_route(vrf, prefix, len);
                if old.is_some() && matches!(op, Op::RouteAdd(_)) {
                    return Err(ApiError::new(
                        code::EXISTS,
                        format!("route {}: exists (use route.replace)", r.prefix),
                    ));
                }
                router
                    .add_static_route(vrf, prefix, len, &via, iface, action)
                    .map_err(api_err)?;
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
                Ok(vec![Op::EndpointAdd(old)])
            }
            other => Err(invalid(format!("{}: not a change", op_name(other)))),
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
        self.endpoints.insert(key, e.clone());
        Ok(undo)
    }

    fn sync(&mut self, router: &mut Router, s: &proto::Sync) -> Result<Value, ApiError> {
        let last = self.scopes.get(&s.scope).map_or(0, |sc| sc.generation);
        if s.generation < last {
            return Err(ApiError::new(
                code::STALE,
                format!(
                    "sync {}: generation {} is older than {last}",
                    s.scope, s.generation
                ),
            ));
        }
        let mut next = Scope {
            generation: s.generation,
            ..Scope::default()
        };
        for r in &s.routes {
            next.routes
                .insert((r.vrf.clone(), r.prefix.clone()), r.clone());
        }
        for n in &s.neighbors {
            next.neighbors
                .insert((n.interface.clone(), n.ip.clone()), n.clone());
        }
        for e in &s.endpoints {
            next.endpoints
                .insert((e.namespace.clone(), e.name.clone()), e.clone());
        }
        let empty = Scope::default();
        let prev = self.scopes.get(&s.scope).unwrap_or(&empty);
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
        self.apply_all(router, &ops, true).map_err(|e| ApiError {
            code: e.code,
            message: format!("sync {}: {}", s.scope, e.message),
        })?;
        self.scopes.insert(s.scope.clone(), next);
        serde_json::to_value(res).map_err(|e| ApiError::new(code::INTERNAL, e.to_string()))
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

fn route_of(
    router: &Router,
    vrf: Option<String>,
    prefix: &str,
    s: &crate::control::StaticSpec,
) -> proto::Route {
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
    }
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

fn show_counters(router: &Router, drops_only: bool) -> Value {
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
