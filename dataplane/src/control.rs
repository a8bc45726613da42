//! The control thread's authoritative state and how it reaches the workers.
//!
//! [`Router`] owns everything the workers read: it keeps the interfaces,
//! bridge domains, VRFs (with their FIB writers), routes, next hops and
//! neighbours, and publishes [`Tables`] snapshots through [`Shared`]. Workers
//! report the generation they run with (`WorkerLink::seen`); the router waits
//! for every running worker to pass a generation (`synchronize`) before a FIB
//! entry may point at a next hop that generation introduced, and before FIB
//! groups retired by a change are reused. Workers report learned neighbours
//! and MACs as [`Event`]s, which `Router::process_events` applies.
//!
//! Route sources, by priority for the same prefix: local (our addresses),
//! connected (our subnets), static, neighbour host routes (a /32 or /128 per
//! resolved neighbour in a connected subnet, so resolved traffic never takes
//! the glean path).
//!
//! Must never: be called from a worker; hold a lock a worker takes (workers
//! take none).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use vrouter_wire::MacAddr;

mod vxlan;
pub use vxlan::{OverlayRouteInfo, OverlayTarget};

use crate::config::{self, Config, ConfigError, Driver, RouteAction};
use crate::graph::WorkerStats;
use crate::ip::fib::{Fib4, Fib4Config, Fib6, Fib6Config, FibError};
use crate::l2::mactable::{MAX_DST, MacTable};
use crate::pipeline::{Event, Events};
use crate::pkt::NO_IFACE;
use crate::port::default_mac;
use crate::tables::{
    BridgeDomain, Iface, IfaceMode, Ip4Net, Ip6Net, NH_NO_ROUTE, NextHop, Params, PortMap, Tables,
    Vrf,
};

/// Capacity of the worker → control event queue.
pub const EVENT_QUEUE: usize = 65536;

/// What a worker shares with the control thread.
#[derive(Debug)]
pub struct WorkerLink {
    pub id: usize,
    /// Generation of the tables the worker's current loop uses.
    pub seen: AtomicU64,
    /// False once the worker has stopped (it no longer holds tables).
    pub running: AtomicBool,
    pub stats: WorkerStats,
    /// Trace and capture state.
    pub obs: crate::obs::WorkerObs,
}

impl WorkerLink {
    /// A link for worker `id`.
    pub fn new(id: usize) -> Self {
        WorkerLink {
            id,
            seen: AtomicU64::new(0),
            running: AtomicBool::new(true),
            stats: WorkerStats::new(),
            obs: crate::obs::WorkerObs::default(),
        }
    }
}

/// State shared by the control thread and the workers.
pub struct Shared {
    pub tables: ArcSwap<Tables>,
    pub events: Events,
    pub workers: std::sync::Mutex<Vec<Arc<WorkerLink>>>,
    /// Time zero of the data path's clock (`now` in nodes).
    pub epoch: Instant,
    pub stop: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.tables.load().generation)
            .finish()
    }
}

impl Shared {
    /// Shared state holding `tables`.
    pub fn new(tables: Tables) -> Arc<Self> {
        Arc::new(Shared {
            tables: ArcSwap::from_pointee(tables),
            events: Events::new(EVENT_QUEUE),
            workers: std::sync::Mutex::new(Vec::new()),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        })
    }

    /// Registers a worker and returns its link.
    pub fn add_worker(&self) -> Arc<WorkerLink> {
        let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let link = Arc::new(WorkerLink::new(w.len()));
        link.seen
            .store(self.tables.load().generation, Ordering::SeqCst);
        w.push(link.clone());
        link
    }

    /// All worker links.
    pub fn worker_links(&self) -> Vec<Arc<WorkerLink>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Nanoseconds since the epoch.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Errors of control operations: the object and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{object}: {reason}")]
    Invalid { object: String, reason: String },
    #[error("{object}: {reason}")]
    NotFound { object: String, reason: String },
    #[error("route {prefix}/{len}: {source}")]
    Fib {
        prefix: IpAddr,
        len: u8,
        source: FibError,
    },
}

fn invalid(object: impl Into<String>, reason: impl Into<String>) -> ControlError {
    ControlError::Invalid {
        object: object.into(),
        reason: reason.into(),
    }
}

/// Where a route came from; a lower value wins for the same prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Local,
    Connected,
    Static,
    Neighbor,
}

/// A route as the control plane keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub vrf: u16,
    pub prefix: IpAddr,
    pub len: u8,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    source: Source,
    nh: u32,
}

/// A neighbour entry.
#[derive(Debug, Clone, Copy)]
pub struct Neighbor {
    pub mac: MacAddr,
    pub is_static: bool,
    nh: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NhKey {
    Drop,
    Unreachable,
    Local(u16),
    Glean(u16),
    Neighbor(u16, IpAddr),
    /// A VXLAN tunnel interface and the inner destination MAC.
    Overlay(u16, MacAddr),
    Ecmp(Vec<u32>),
}

struct VrfState {
    fib4: Fib4,
    fib6: Fib6,
}

/// Counters of the control plane.
#[derive(Debug, Default, Clone, Copy)]
pub struct ControlStats {
    pub neighbors_learned: u64,
    pub neighbors_refused: u64,
    pub neighbors_aged: u64,
    pub macs_aged: u64,
    pub publishes: u64,
    /// Notices lost because nobody drained them in time.
    pub notices_dropped: u64,
}

/// Notices kept until the control loop publishes them.
pub const MAX_NOTICES: usize = 65536;

/// Something that happened, for subscribers of the control socket
/// (`subscribe`). Names are resolved when the notice is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    MacLearned {
        bridge: String,
        mac: MacAddr,
        interface: String,
    },
    MacMoved {
        bridge: String,
        mac: MacAddr,
        from: String,
        to: String,
    },
    MacAged {
        bridge: String,
        mac: MacAddr,
        interface: String,
    },
    NeighborResolved {
        interface: String,
        ip: IpAddr,
        mac: MacAddr,
    },
    NeighborFailed {
        interface: String,
        ip: IpAddr,
    },
}

/// See the module doc.
pub struct Router {
    shared: Arc<Shared>,
    t: Tables,
    vrfs: Vec<VrfState>,
    nh_list: Vec<NextHop>,
    nh_keys: Vec<Option<NhKey>>,
    nh_refs: Vec<u32>,
    nh_free: Vec<u32>,
    nh_index: HashMap<NhKey, u32>,
    nh_dirty: bool,
    ecmp: Vec<u32>,
    /// Local, connected and neighbour routes (static ones are only in the FIBs).
    routes: HashMap<RouteKey, Route>,
    neighbors: HashMap<(u16, IpAddr), Neighbor>,
    /// Learned (not static) entries of `neighbors` per interface: the limit
    /// is checked in O(1) however many a storm offers.
    neighbors_per_iface: HashMap<u16, usize>,
    max_neighbors: usize,
    /// When each learned neighbour was last heard from (seconds), and how
    /// long one may stay silent before it is removed (0: never).
    neighbor_seen: HashMap<(u16, IpAddr), u32>,
    neighbor_age: u32,
    /// Second of the last neighbour aging pass.
    neighbor_swept: u32,
    pub stats: ControlStats,
    notices: std::collections::VecDeque<Notice>,
    /// Last `neighbor-failed` notice per target (seconds), so a burst of
    /// timed-out packets makes one notice.
    failed: HashMap<(u16, IpAddr), u32>,
    /// Services, policies and pod bindings (`crate::service`).
    pub svc: crate::service::ServiceState,
    /// Tunnel interfaces whose remote VTEP is accepted only because an
    /// overlay route added at run time points at it (`control::vxlan`).
    overlay_remotes: std::collections::HashSet<u16>,
}

/// A static route as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSpec {
    pub via: Vec<IpAddr>,
    pub iface: Option<u16>,
    pub action: Option<RouteAction>,
    /// An overlay route: `iface` is the tunnel, this the inner MAC.
    pub overlay: Option<MacAddr>,
}

fn ll6_of(mac: MacAddr) -> Ipv6Addr {
    let m = mac.octets();
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

fn net_key(vrf: u16, a: IpAddr, len: u8) -> RouteKey {
    let prefix = match a {
        IpAddr::V4(v) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    };
    RouteKey { vrf, prefix, len }
}

impl Router {
    /// Builds the router from a validated configuration. `port_macs` gives
    /// each port's MAC (from the port itself, e.g. a NIC); `None` entries use
    /// the configured or derived MAC.
    pub fn from_config(
        cfg: &Config,
        port_macs: &[Option<MacAddr>],
        file: &str,
    ) -> Result<Router, ConfigError> {
        let cerr = |key: String, reason: String| ConfigError {
            file: file.to_string(),
            key,
            reason,
        };
        let d = &cfg.dataplane;
        let mut t = Tables::empty();
        t.params = Params {
            icmp_rate: d.icmp_rate,
            icmp_burst: d.icmp_burst,
            glean_hold: d.glean_hold,
            glean_timeout_ns: d.glean_timeout_ms * 1_000_000,
            glean_retry_ns: d.glean_retry_ms * 1_000_000,
        };
        let mut r = Router {
            shared: Shared::new(Tables::empty()),
            t,
            vrfs: Vec::new(),
            nh_list: vec![NextHop::Unreachable],
            nh_keys: vec![None],
            nh_refs: vec![u32::MAX],
            nh_free: Vec::new(),
            nh_index: HashMap::new(),
            nh_dirty: true,
            ecmp: Vec::new(),
            routes: HashMap::new(),
            neighbors: HashMap::new(),
            neighbors_per_iface: HashMap::new(),
            max_neighbors: d.max_neighbors,
            neighbor_seen: HashMap::new(),
            neighbor_age: d.neighbor_age,
            neighbor_swept: 0,
            stats: ControlStats::default(),
            notices: std::collections::VecDeque::new(),
            failed: HashMap::new(),
            overlay_remotes: std::collections::HashSet::new(),
            svc: crate::service::ServiceState::new(cfg.service_settings()),
        };
        let vrf_names: Vec<String> = std::iter::once("default".to_string())
            .chain(cfg.vrfs.iter().map(|v| v.name.clone()))
            .collect();
        for name in &vrf_names {
            r.add_vrf(name)
                .map_err(|e| cerr("vrf".into(), e.to_string()))?;
        }
        let vrf_id = |v: &Option<String>| {
            let n = v.as_deref().unwrap_or("default");
            vrf_names.iter().position(|x| x == n).unwrap_or(0) as u16
        };

        let port_mac: Vec<MacAddr> = cfg
            .ports
            .iter()
            .enumerate()
            .map(|(k, p)| {
                port_macs
                    .get(k)
                    .copied()
                    .flatten()
                    .or_else(|| {
                        p.mac
                            .as_deref()
                            .and_then(|m| config::parse_mac(m, true).ok())
                    })
                    .unwrap_or_else(|| default_mac(k as u16))
            })
            .collect();
        r.t.ports = cfg
            .ports
            .iter()
            .map(|p| PortMap {
                name: p.name.clone(),
                untagged: NO_IFACE,
                vlans: Vec::new(),
            })
            .collect();

        // Bridge domains.
        for b in &cfg.bridges {
            r.t.bds.push(BridgeDomain {
                name: b.name.clone(),
                members: Vec::new(),
                bvi: None,
                macs: Arc::new(MacTable::new(b.mac_limit, b.mac_age)),
                learning: b.learning,
                flood_unknown: b.flood_unknown,
                mac_age: b.mac_age,
            });
        }
        let bd_id = |n: &str| {
            cfg.bridges
                .iter()
                .position(|b| b.name == n)
                .map(|x| x as u16)
        };

        // Interfaces: configured ones first (their index is their order), then BVIs.
        for (k, ic) in cfg.interfaces.iter().enumerate() {
            let key = format!("interface[{k}]");
            let port_name = Config::iface_port(ic);
            let port = cfg
                .ports
                .iter()
                .position(|p| p.name == port_name)
                .unwrap_or(0);
            let pc = &cfg.ports[port];
            let mac = ic
                .mac
                .as_deref()
                .and_then(|m| config::parse_mac(m, true).ok())
                .unwrap_or(port_mac[port]);
            let mode = match ic.bridge.as_deref().and_then(bd_id) {
                Some(bd) => IfaceMode::Bridged { bd },
                None => IfaceMode::Routed {
                    vrf: vrf_id(&ic.vrf),
                },
            };
            let idx = r.t.ifaces.len() as u16;
            if idx > MAX_DST {
                return Err(cerr(key, format!("more than {MAX_DST} interfaces")));
            }
            let mut f = Iface {
                name: ic.name.clone(),
                port: port as u16,
                vlan: ic.vlan.unwrap_or(0),
                mode,
                mac,
                mtu: ic.mtu.unwrap_or(pc.mtu),
                shg: ic.split_horizon_group,
                ip4: Vec::new(),
                ip6: Vec::new(),
                ll6: None,
                tunnel: None,
            };
            if matches!(mode, IfaceMode::Routed { .. }) {
                f.ll6 = Some(ll6_of(mac));
            }
            let pm = &mut r.t.ports[port];
            if f.vlan == 0 {
                pm.untagged = idx;
            } else {
                pm.vlans.push((f.vlan, idx));
            }
            if let IfaceMode::Bridged { bd } = mode {
                r.t.bds[bd as usize].members.push(idx);
            }
            r.t.ifaces.push(f);
            for (j, a) in ic.addresses.iter().enumerate() {
                let (addr, len) = config::parse_prefix(a, true)
                    .map_err(|e| cerr(format!("{key}.addresses[{j}]"), e))?;
                r.add_address(idx, addr, len)
                    .map_err(|e| cerr(format!("{key}.addresses[{j}]"), e.to_string()))?;
            }
        }
        for (k, b) in cfg.bridges.iter().enumerate() {
            let Some(g) = &b.gateway else { continue };
            let key = format!("bridge[{k}].gateway");
            let idx = r.t.ifaces.len() as u16;
            let mac = g
                .mac
                .as_deref()
                .and_then(|m| config::parse_mac(m, true).ok())
                .unwrap_or(MacAddr([0x02, 0x76, 0x72, 0x01, (k >> 8) as u8, k as u8]));
            r.t.ifaces.push(Iface {
                name: format!("bvi-{}", b.name),
                port: u16::MAX,
                vlan: 0,
                mode: IfaceMode::Bvi {
                    bd: k as u16,
                    vrf: vrf_id(&g.vrf),
                },
                mac,
                mtu: g.mtu,
                shg: 0,
                ip4: Vec::new(),
                ip6: Vec::new(),
                ll6: Some(ll6_of(mac)),
                tunnel: None,
            });
            let bd = &mut r.t.bds[k];
            bd.bvi = Some(idx);
            bd.members.push(idx);
            bd.macs.set_static(mac.to_u64(), idx).map_err(|e| {
                cerr(
                    key.clone(),
                    format!("cannot install the gateway MAC: {e:?}"),
                )
            })?;
            for (j, a) in g.addresses.iter().enumerate() {
                let (addr, len) = config::parse_prefix(a, true)
                    .map_err(|e| cerr(format!("{key}.addresses[{j}]"), e))?;
                r.add_address(idx, addr, len)
                    .map_err(|e| cerr(format!("{key}.addresses[{j}]"), e.to_string()))?;
            }
        }
        for (k, s) in cfg.static_macs.iter().enumerate() {
            let key = format!("static-mac[{k}]");
            let mac = config::parse_mac(&s.mac, true).map_err(|e| cerr(format!("{key}.mac"), e))?;
            let iface = r
                .iface_id(&s.interface)
                .ok_or_else(|| cerr(format!("{key}.interface"), "unknown".into()))?;
            r.static_mac(&s.bridge, mac, iface)
                .map_err(|e| cerr(key, e.to_string()))?;
        }
        r.setup_vxlan(cfg, file)?;
        for (k, n) in cfg.neighbors.iter().enumerate() {
            let key = format!("neighbor[{k}]");
            let ip: IpAddr =
                n.ip.parse()
                    .map_err(|_| cerr(format!("{key}.ip"), "not an IP address".into()))?;
            let mac = config::parse_mac(&n.mac, true).map_err(|e| cerr(format!("{key}.mac"), e))?;
            let iface = r
                .iface_id(&n.interface)
                .ok_or_else(|| cerr(format!("{key}.interface"), "unknown".into()))?;
            r.set_neighbor(iface, ip, mac, true)
                .map_err(|e| cerr(key, e.to_string()))?;
        }
        for (k, rc) in cfg.routes.iter().enumerate() {
            let key = format!("route[{k}]");
            let (prefix, len) = config::parse_prefix(&rc.prefix, false)
                .map_err(|e| cerr(format!("{key}.prefix"), e))?;
            let vrf = vrf_id(&rc.vrf);
            let via: Vec<IpAddr> = rc.via.iter().filter_map(|v| v.parse().ok()).collect();
            let iface = match &rc.interface {
                Some(n) => Some(
                    r.iface_id(n)
                        .ok_or_else(|| cerr(format!("{key}.interface"), "unknown".into()))?,
                ),
                None => None,
            };
            r.add_static_route(vrf, prefix, len, &via, iface, rc.action)
                .map_err(|e| cerr(key, e.to_string()))?;
        }
        for (k, s) in cfg.static_services.iter().enumerate() {
            let spec = crate::service::api::service_spec(s)
                .map_err(|e| cerr(format!("service[{k}]"), e.message))?;
            r.svc
                .set_service(&format!("{}/{}", s.namespace, s.name), spec);
        }
        for (k, p) in cfg.static_policies.iter().enumerate() {
            let spec = crate::service::api::policy_spec(p)
                .map_err(|e| cerr(format!("policy[{k}]"), e.message))?;
            r.svc
                .set_policy(&format!("{}/{}", p.namespace, p.name), spec);
        }
        let _ = Driver::Memory;
        r.publish();
        Ok(r)
    }

    /// The shared state workers attach to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The tables as last built (not necessarily published yet).
    pub fn tables(&self) -> &Tables {
        &self.t
    }

    /// An interface index by name.
    pub fn iface_id(&self, name: &str) -> Option<u16> {
        self.t
            .ifaces
            .iter()
            .position(|f| f.name == name)
            .map(|x| x as u16)
    }

    fn add_vrf(&mut self, name: &str) -> Result<(), FibError> {
        let fib4 = Fib4::new(Fib4Config::default())?;
        let fib6 = Fib6::new(Fib6Config::default())?;
        self.t.vrfs.push(Vrf {
            name: name.to_string(),
            fib4: fib4.table().clone(),
            fib6: fib6.table().clone(),
        });
        self.vrfs.push(VrfState { fib4, fib6 });
        Ok(())
    }

    // ---- next hops ----

    fn nh_get(&mut self, key: NhKey, make: impl FnOnce(&mut Self) -> NextHop) -> u32 {
        if let Some(&id) = self.nh_index.get(&key) {
            self.nh_refs[id as usize] += 1;
            return id;
        }
        let nh = make(self);
        let id = match self.nh_free.pop() {
            Some(id) => {
                self.nh_list[id as usize] = nh;
                self.nh_keys[id as usize] = Some(key.clone());
                self.nh_refs[id as usize] = 1;
                id
            }
            None => {
                self.nh_list.push(nh);
                self.nh_keys.push(Some(key.clone()));
                self.nh_refs.push(1);
                (self.nh_list.len() - 1) as u32
            }
        };
        self.nh_index.insert(key, id);
        self.nh_dirty = true;
        id
    }

    fn nh_put(&mut self, id: u32) {
        let Some(refs) = self.nh_refs.get_mut(id as usize) else {
            return;
        };
        if *refs == u32::MAX || *refs == 0 {
            return;
        }
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        if let Some(key) = self.nh_keys[id as usize].take() {
            self.nh_index.remove(&key);
            if let NhKey::Ecmp(members) = key {
                for m in members {
                    self.nh_put(m);
                }
            }
        }
        // No FIB entry points here any more (callers remove or replace the
        // FIB entry first), so the id may be reused by the next publish.
        self.nh_free.push(id);
    }

    fn neighbor_nh(&mut self, iface: u16, ip: IpAddr) -> u32 {
        let known = self.neighbors.get(&(iface, ip)).map(|n| n.mac);
        self.nh_get(NhKey::Neighbor(iface, ip), |_| match known {
            Some(mac) => NextHop::Rewrite { iface, mac },
            None => NextHop::Resolve { iface, addr: ip },
        })
    }

    // ---- publishing ----

    /// Publishes the current tables as a new generation and returns it.
    pub fn publish(&mut self) -> u64 {
        self.t.generation += 1;
        if self.svc.dirty() {
            let t = &self.t;
            let port_of = |iface: u16, mac: MacAddr| -> Option<u16> {
                let Some(IfaceMode::Bvi { bd, .. }) = t.iface(iface).map(|f| f.mode) else {
                    return None;
                };
                let e = t.bds.get(usize::from(bd))?.macs.get(mac.to_u64(), 0)?;
                e.is_static.then_some(e.dst)
            };
            self.t.services = self.svc.compile(self.t.ifaces.len(), &port_of);
        }
        if self.nh_dirty {
            self.t.nexthops = Arc::new(self.nh_list.clone());
            self.t.ecmp = Arc::new(self.ecmp.clone());
            self.nh_dirty = false;
        }
        self.shared.tables.store(Arc::new(self.t.clone()));
        self.stats.publishes += 1;
        self.t.generation
    }

    /// Waits until every running worker uses generation `gen` or later.
    pub fn synchronize(&self, generation: u64) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for w in self.shared.worker_links() {
            while w.running.load(Ordering::SeqCst) && w.seen.load(Ordering::SeqCst) < generation {
                if Instant::now() > deadline {
                    tracing::warn!(
                        worker = w.id,
                        generation,
                        "worker did not pick up a table change within 1 s"
                    );
                    break;
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }

    /// Makes next hops created since the last publish visible to every worker.
    fn ensure_published(&mut self) {
        if self.nh_dirty {
            let g = self.publish();
            self.synchronize(g);
        }
    }

    /// Ends a batch of changes: publishes, waits for the workers, and lets
    /// the FIBs reuse the groups the batch retired.
    pub fn commit(&mut self) {
        let tokens: Vec<_> = self
            .vrfs
            .iter_mut()
            .map(|v| (v.fib4.retire_barrier(), v.fib6.retire_barrier()))
            .collect();
        let g = self.publish();
        self.synchronize(g);
        for (v, (t4, t6)) in self.vrfs.iter_mut().zip(tokens) {
            v.fib4.reclaim(t4);
            v.fib6.reclaim(t6);
        }
    }

    // ---- routes ----

    fn fib_write(&mut self, key: RouteKey, nh: Option<u32>) -> Result<(), ControlError> {
        let v = &mut self.vrfs[key.vrf as usize];
        let res = match (key.prefix, nh) {
            (IpAddr::V4(a), Some(nh)) => v.fib4.insert(a, key.len, nh).map(|_| ()),
            (IpAddr::V4(a), None) => v.fib4.remove(a, key.len).map(|_| ()),
            (IpAddr::V6(a), Some(nh)) => v.fib6.insert(a, key.len, nh).map(|_| ()),
            (IpAddr::V6(a), None) => v.fib6.remove(a, key.len).map(|_| ()),
        };
        res.map_err(|source| ControlError::Fib {
            prefix: key.prefix,
            len: key.len,
            source,
        })
    }

    /// The next hop a VRF's FIB holds for exactly this prefix.
    fn fib_get(&self, key: RouteKey) -> Option<u32> {
        let v = self.vrfs.get(key.vrf as usize)?;
        match key.prefix {
            IpAddr::V4(a) => v.fib4.get(a, key.len),
            IpAddr::V6(a) => v.fib6.get(a, key.len),
        }
    }

    /// Source and next hop of the route for exactly `key`. Static routes
    /// are kept only in the FIB's own RIB (a route there that is not in
    /// `routes` is static), so a million of them cost one copy.
    fn route_of(&self, key: RouteKey) -> Option<Route> {
        if let Some(r) = self.routes.get(&key) {
            return Some(*r);
        }
        self.fib_get(key).map(|nh| Route {
            source: Source::Static,
            nh,
        })
    }

    /// Installs `nh` (a reference the caller already took) for `key`.
    fn route_set(&mut self, key: RouteKey, source: Source, nh: u32) -> Result<(), ControlError> {
        let old = self.route_of(key);
        if let Some(o) = old
            && o.source < source
        {
            self.nh_put(nh);
            return Err(invalid(
                format!("route {}/{}", key.prefix, key.len),
                format!("a {:?} route for this prefix exists", o.source),
            ));
        }
        self.ensure_published();
        if let Err(e) = self.fib_write(key, Some(nh)) {
            self.nh_put(nh);
            return Err(e);
        }
        if source == Source::Static {
            self.routes.remove(&key);
        } else {
            self.routes.insert(key, Route { source, nh });
        }
        if let Some(o) = old {
            self.nh_put(o.nh);
        }
        Ok(())
    }

    fn route_unset(&mut self, key: RouteKey) -> Result<(), ControlError> {
        let Some(old) = self.route_of(key) else {
            return Err(ControlError::NotFound {
                object: format!("route {}/{}", key.prefix, key.len),
                reason: "no such route".into(),
            });
        };
        self.fib_write(key, None)?;
        self.routes.remove(&key);
        self.nh_put(old.nh);
        Ok(())
    }

    /// Adds an address to a routed interface or BVI: its connected and local routes.
    pub fn add_address(&mut self, iface: u16, addr: IpAddr, len: u8) -> Result<(), ControlError> {
        let f = self
            .t
            .iface(iface)
            .ok_or_else(|| invalid("interface", "no such interface"))?;
        let Some(vrf) = f.vrf() else {
            return Err(invalid(
                f.name.clone(),
                "a bridged interface has no addresses",
            ));
        };
        let name = f.name.clone();
        let (host_len, exists) = match addr {
            IpAddr::V4(a) => (32, f.ip4.iter().any(|n| n.addr == a)),
            IpAddr::V6(a) => (128, f.ip6.iter().any(|n| n.addr == a)),
        };
        if exists {
            return Err(invalid(name, format!("already has {addr}")));
        }
        if len < host_len {
            let nh = self.nh_get(NhKey::Glean(iface), |_| NextHop::Glean { iface });
            self.route_set(net_key(vrf, addr, len), Source::Connected, nh)?;
        }
        let nh = self.nh_get(NhKey::Local(iface), |_| NextHop::Local { iface });
        self.route_set(
            RouteKey {
                vrf,
                prefix: addr,
                len: host_len,
            },
            Source::Local,
            nh,
        )?;
        let f = &mut self.t.ifaces[iface as usize];
        match addr {
            IpAddr::V4(a) => f.ip4.push(Ip4Net { addr: a, len }),
            IpAddr::V6(a) => f.ip6.push(Ip6Net { addr: a, len }),
        }
        Ok(())
    }

    /// The interface whose connected subnet holds `gw` in `vrf`.
    fn iface_for_gateway(&self, vrf: u16, gw: IpAddr) -> Option<u16> {
        self.t
            .ifaces
            .iter()
            .position(|f| {
                f.vrf() == Some(vrf)
                    && match gw {
                        IpAddr::V4(a) => f.ip4.iter().any(|n| n.contains(a) && n.len < 32),
                        IpAddr::V6(a) => f.ip6.iter().any(|n| n.contains(a) && n.len < 128),
                    }
            })
            .map(|x| x as u16)
    }

    /// Adds or replaces a static route.
    pub fn add_static_route(
        &mut self,
        vrf: u16,
        prefix: IpAddr,
        len: u8,
        via: &[IpAddr],
        iface: Option<u16>,
        action: Option<RouteAction>,
    ) -> Result<(), ControlError> {
        let key = net_key(vrf, prefix, len);
        let object = || format!("route {prefix}/{len}");
        if vrf as usize >= self.vrfs.len() {
            return Err(invalid(object(), "no such VRF"));
        }
        if iface.is_some_and(|i| self.t.iface(i).is_some_and(|f| f.tunnel.is_some())) {
            return Err(invalid(
                object(),
                "a VXLAN tunnel interface is reached by an overlay route (remote VTEP and MAC)",
            ));
        }
        let old_tunnel = self.overlay_tunnel_at(key);
        let mut via: Vec<IpAddr> = via.to_vec();
        via.sort_unstable();
        via.dedup();
        let via = via.as_slice();
        let nh = match (action, via, iface) {
            (Some(RouteAction::Drop), _, _) => self.nh_get(NhKey::Drop, |_| NextHop::Drop),
            (Some(RouteAction::Unreachable), _, _) => {
                self.nh_get(NhKey::Unreachable, |_| NextHop::Unreachable)
            }
            (None, [], Some(i)) => self.nh_get(NhKey::Glean(i), |_| NextHop::Glean { iface: i }),
            (None, [], None) => {
                return Err(invalid(
                    object(),
                    "needs a gateway, an interface or an action",
                ));
            }
            (None, gws, _) => {
                let mut members = Vec::with_capacity(gws.len());
                for &gw in gws {
                    let i = match iface.or_else(|| self.iface_for_gateway(vrf, gw)) {
                        Some(i) => i,
                        None => {
                            for m in members {
                                self.nh_put(m);
                            }
                            return Err(invalid(
                                object(),
                                format!("gateway {gw} is not in a connected subnet"),
                            ));
                        }
                    };
                    members.push(self.neighbor_nh(i, gw));
                }
                if members.len() == 1 {
                    members[0]
                } else {
                    members.sort_unstable();
                    members.dedup();
                    let key = NhKey::Ecmp(members.clone());
                    let nh = self.nh_get(key, |r| {
                        let base = r.ecmp.len() as u32;
                        r.ecmp.extend_from_slice(&members);
                        NextHop::Ecmp {
                            base,
                            len: members.len() as u16,
                        }
                    });
                    // The group holds one reference per member; an existing
                    // group already held them, so drop the ones taken above.
                    if self.nh_refs[nh as usize] > 1 {
                        for m in members {
                            self.nh_put(m);
                        }
                    }
                    nh
                }
            }
        };
        self.route_set(key, Source::Static, nh)?;
        if let Some(i) = old_tunnel {
            self.overlay_release(i);
        }
        Ok(())
    }

    /// Removes a static route.
    pub fn del_static_route(
        &mut self,
        vrf: u16,
        prefix: IpAddr,
        len: u8,
    ) -> Result<(), ControlError> {
        let key = net_key(vrf, prefix, len);
        match self.route_of(key) {
            Some(r) if r.source == Source::Static => {
                let old_tunnel = self.overlay_tunnel_at(key);
                self.route_unset(key)?;
                if let Some(i) = old_tunnel {
                    self.overlay_release(i);
                }
                Ok(())
            }
            _ => Err(ControlError::NotFound {
                object: format!("route {prefix}/{len}"),
                reason: "no such static route".into(),
            }),
        }
    }

    /// The configuration of a static route, read back from its next hop.
    pub fn static_route(&self, vrf: u16, prefix: IpAddr, len: u8) -> Option<StaticSpec> {
        let r = self
            .route_of(net_key(vrf, prefix, len))
            .filter(|r| r.source == Source::Static)?;
        let gw_spec = |i: u16, ip: IpAddr| -> Option<u16> {
            // An explicit interface only where the gateway is not in a connected subnet of it.
            (self.iface_for_gateway(vrf, ip) != Some(i)).then_some(i)
        };
        Some(match self.nh_keys.get(r.nh as usize)?.as_ref()? {
            NhKey::Drop => StaticSpec {
                via: Vec::new(),
                iface: None,
                action: Some(RouteAction::Drop),
                overlay: None,
            },
            NhKey::Unreachable => StaticSpec {
                via: Vec::new(),
                iface: None,
                action: Some(RouteAction::Unreachable),
                overlay: None,
            },
            NhKey::Glean(i) | NhKey::Local(i) => StaticSpec {
                via: Vec::new(),
                iface: Some(*i),
                action: None,
                overlay: None,
            },
            NhKey::Overlay(i, mac) => StaticSpec {
                via: Vec::new(),
                iface: Some(*i),
                action: None,
                overlay: Some(*mac),
            },
            NhKey::Neighbor(i, ip) => StaticSpec {
                via: vec![*ip],
                iface: gw_spec(*i, *ip),
                action: None,
                overlay: None,
            },
            NhKey::Ecmp(members) => {
                let mut via = Vec::new();
                let mut iface = None;
                for m in members {
                    if let Some(Some(NhKey::Neighbor(i, ip))) = self.nh_keys.get(*m as usize) {
                        via.push(*ip);
                        iface = iface.or(gw_spec(*i, *ip));
                    }
                }
                StaticSpec {
                    via,
                    iface,
                    action: None,
                    overlay: None,
                }
            }
        })
    }

    // ---- neighbours ----

    /// Creates or updates a neighbour (from configuration or learning).
    pub fn set_neighbor(
        &mut self,
        iface: u16,
        ip: IpAddr,
        mac: MacAddr,
        is_static: bool,
    ) -> Result<bool, ControlError> {
        let f = self
            .t
            .iface(iface)
            .ok_or_else(|| invalid("neighbor", "no such interface"))?;
        let object = format!("neighbor {ip} on {}", f.name);
        let Some(vrf) = f.vrf() else {
            return Err(invalid(object, "interface is not routed"));
        };
        let in_subnet = match ip {
            IpAddr::V4(a) => f.ip4.iter().any(|n| n.contains(a)),
            IpAddr::V6(a) => a.is_unicast_link_local() || f.ip6.iter().any(|n| n.contains(a)),
        };
        if !in_subnet && !is_static {
            return Err(invalid(
                object,
                "not in a connected subnet of the interface",
            ));
        }
        if f.has_ip6(match ip {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        }) || matches!(ip, IpAddr::V4(a) if f.has_ip4(a))
        {
            return Err(invalid(object, "is one of our own addresses"));
        }
        if let Some(n) = self.neighbors.get_mut(&(iface, ip)) {
            if n.is_static && !is_static {
                return Ok(false);
            }
            if is_static && !n.is_static {
                self.neighbor_seen.remove(&(iface, ip));
                if let Some(c) = self.neighbors_per_iface.get_mut(&iface) {
                    *c = c.saturating_sub(1);
                }
            }
            n.is_static |= is_static;
            if n.mac == mac {
                return Ok(false);
            }
            n.mac = mac;
            let nh = n.nh;
            self.nh_list[nh as usize] = NextHop::Rewrite { iface, mac };
            self.nh_dirty = true;
            return Ok(true);
        }
        if !is_static
            && self.neighbors_per_iface.get(&iface).copied().unwrap_or(0) >= self.max_neighbors
        {
            self.stats.neighbors_refused += 1;
            return Err(invalid(object, "interface at its neighbour limit"));
        }
        // The entry exists before the next hop is taken, so the next hop is
        // made (or turned) resolved.
        if !is_static {
            *self.neighbors_per_iface.entry(iface).or_insert(0) += 1;
        }
        self.neighbors.insert(
            (iface, ip),
            Neighbor {
                mac,
                is_static,
                nh: NH_NO_ROUTE,
            },
        );
        let nh = self.neighbor_nh(iface, ip);
        self.nh_list[nh as usize] = NextHop::Rewrite { iface, mac };
        self.nh_dirty = true;
        if let Some(n) = self.neighbors.get_mut(&(iface, ip)) {
            n.nh = nh;
        }
        let link_local = matches!(ip, IpAddr::V6(a) if a.is_unicast_link_local());
        if !link_local {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            let key = RouteKey {
                vrf,
                prefix: ip,
                len,
            };
            if self.route_of(key).is_none() {
                self.nh_refs[nh as usize] += 1;
                // A refused host route (e.g. an existing static /32) is fine.
                let _ = self.route_set(key, Source::Neighbor, nh);
            }
        }
        self.stats.neighbors_learned += 1;
        Ok(true)
    }

    /// All neighbours.
    pub fn neighbors(&self) -> Vec<(u16, IpAddr, Neighbor)> {
        let mut v: Vec<_> = self
            .neighbors
            .iter()
            .map(|(&(i, ip), n)| (i, ip, *n))
            .collect();
        v.sort_by_key(|(i, ip, _)| (*i, *ip));
        v
    }

    /// All routes of a VRF as (prefix, len, source, next hop).
    pub fn routes(&self, vrf: u16) -> Vec<(IpAddr, u8, Source, NextHop)> {
        let Some(v) = self.vrfs.get(vrf as usize) else {
            return Vec::new();
        };
        let nh = |id: u32| {
            self.nh_list
                .get(id as usize)
                .copied()
                .unwrap_or(NextHop::Unreachable)
        };
        let source = |prefix: IpAddr, len: u8| {
            self.routes
                .get(&RouteKey { vrf, prefix, len })
                .map_or(Source::Static, |r| r.source)
        };
        let mut v: Vec<_> = v
            .fib4
            .iter()
            .map(|(p, l, id)| (IpAddr::V4(p), l, id))
            .chain(v.fib6.iter().map(|(p, l, id)| (IpAddr::V6(p), l, id)))
            .map(|(p, l, id)| (p, l, source(p, l), nh(id)))
            .collect();
        v.sort_by_key(|(p, l, ..)| (*p, *l));
        v
    }

    // ---- L2 ----

    /// Installs a static MAC in a bridge domain.
    pub fn static_mac(
        &mut self,
        bridge: &str,
        mac: MacAddr,
        iface: u16,
    ) -> Result<(), ControlError> {
        let bd = self
            .t
            .bds
            .iter()
            .find(|b| b.name == bridge)
            .ok_or_else(|| invalid(format!("bridge {bridge}"), "no such bridge"))?;
        if !bd.members.contains(&iface) {
            return Err(invalid(
                format!("static MAC {mac}"),
                "interface is not a member of the bridge",
            ));
        }
        bd.macs
            .set_static(mac.to_u64(), iface)
            .map_err(|e| invalid(format!("static MAC {mac}"), format!("{e:?}")))?;
        self.svc.static_macs_changed();
        Ok(())
    }

    // ---- running ----

    /// Applies the events workers reported; returns how many.
    pub fn process_events(&mut self) -> usize {
        let mut n = 0;
        let mut changed = false;
        while let Some(e) = self.shared.events.pop() {
            n += 1;
            match e {
                Event::Neighbor { iface, ip, mac } => {
                    match self.set_neighbor(iface, ip, mac, false) {
                        Ok(c) => {
                            if self
                                .neighbors
                                .get(&(iface, ip))
                                .is_some_and(|n| !n.is_static)
                            {
                                let now = (self.shared.now() / 1_000_000_000) as u32;
                                self.neighbor_seen.insert((iface, ip), now);
                            }
                            changed |= c;
                            if c {
                                self.failed.remove(&(iface, ip));
                                let n = Notice::NeighborResolved {
                                    interface: self.iface_name(iface),
                                    ip,
                                    mac,
                                };
                                self.notice(n);
                            }
                        }
                        Err(err) => tracing::debug!(%err, "neighbour not learned"),
                    }
                }
                Event::MacLearned { bd, mac, iface } => {
                    tracing::trace!(bd, %mac, iface, "mac learned");
                    let n = Notice::MacLearned {
                        bridge: self.bd_name(bd),
                        mac,
                        interface: self.iface_name(iface),
                    };
                    self.notice(n);
                }
                Event::MacMoved { bd, mac, from, to } => {
                    tracing::debug!(bd, %mac, from, to, "mac moved");
                    let n = Notice::MacMoved {
                        bridge: self.bd_name(bd),
                        mac,
                        from: self.iface_name(from),
                        to: self.iface_name(to),
                    };
                    self.notice(n);
                }
                Event::NeighborFailed { iface, ip } => {
                    let now = (self.shared.now() / 1_000_000_000) as u32;
                    if self.failed.len() > 4096 {
                        self.failed.clear();
                    }
                    let last = self.failed.insert((iface, ip), now);
                    if last.is_none_or(|l| now.saturating_sub(l) >= 1) {
                        tracing::debug!(iface, %ip, "neighbour did not resolve");
                        let n = Notice::NeighborFailed {
                            interface: self.iface_name(iface),
                            ip,
                        };
                        self.notice(n);
                    }
                }
            }
        }
        if changed {
            self.commit();
        }
        n
    }

    /// Periodic work: MAC and neighbour aging. `now_s` is the data path's
    /// clock in seconds.
    pub fn tick(&mut self, now_s: u32) {
        self.age_neighbors(now_s);
        let mut aged = Vec::new();
        for bd in &self.t.bds {
            if bd.mac_age == 0 {
                continue;
            }
            bd.macs.age(now_s, bd.mac_age, |e| {
                aged.push(Notice::MacAged {
                    bridge: bd.name.clone(),
                    mac: MacAddr::from_u64(e.mac),
                    interface: self
                        .t
                        .iface(e.dst)
                        .map_or_else(|| e.dst.to_string(), |f| f.name.clone()),
                })
            });
        }
        self.stats.macs_aged += aged.len() as u64;
        for n in aged {
            self.notice(n);
        }
    }

    /// Removes learned neighbours not heard from (ARP/ND reply, or a
    /// request for one of our addresses) for `neighbor-age` seconds, once a
    /// second at most: a storm's entries leave the table once it stops. A
    /// neighbour still in use is resolved again by the next packet to it.
    fn age_neighbors(&mut self, now_s: u32) {
        if self.neighbor_age == 0 || now_s == self.neighbor_swept {
            return;
        }
        self.neighbor_swept = now_s;
        let age = self.neighbor_age;
        let old: Vec<(u16, IpAddr)> = self
            .neighbor_seen
            .iter()
            .filter(|(_, seen)| now_s.saturating_sub(**seen) >= age)
            .map(|(k, _)| *k)
            .collect();
        let mut aged = 0;
        for (iface, ip) in old {
            self.neighbor_seen.remove(&(iface, ip));
            if self
                .neighbors
                .get(&(iface, ip))
                .is_some_and(|n| !n.is_static)
                && self.del_neighbor(iface, ip).is_ok()
            {
                aged += 1;
            }
        }
        if aged > 0 {
            self.stats.neighbors_aged += aged;
            self.commit();
        }
    }

    /// Queues a notice for subscribers (bounded; the oldest is dropped).
    pub fn notice(&mut self, n: Notice) {
        if self.notices.len() >= MAX_NOTICES {
            self.notices.pop_front();
            self.stats.notices_dropped += 1;
        }
        self.notices.push_back(n);
    }

    /// Takes the notices made since the last call.
    pub fn take_notices(&mut self) -> std::collections::vec_deque::Drain<'_, Notice> {
        self.notices.drain(..)
    }

    fn iface_name(&self, i: u16) -> String {
        self.t
            .iface(i)
            .map_or_else(|| i.to_string(), |f| f.name.clone())
    }

    fn bd_name(&self, bd: u16) -> String {
        self.t
            .bds
            .get(usize::from(bd))
            .map_or_else(|| bd.to_string(), |b| b.name.clone())
    }

    /// Number of IPv4 and IPv6 routes of a VRF (every source).
    pub fn route_counts(&self, vrf: u16) -> (usize, usize) {
        self.vrfs
            .get(usize::from(vrf))
            .map_or((0, 0), |v| (v.fib4.len(), v.fib6.len()))
    }

    /// The route a lookup of `addr` in `vrf` matches (longest prefix):
    /// prefix, length, source. Exact-match probes of the RIB, at most one
    /// per prefix length, for `trace`.
    pub fn route_for(&self, vrf: u16, addr: IpAddr) -> Option<(IpAddr, u8, Source)> {
        let v = self.vrfs.get(usize::from(vrf))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (0..=max).rev().find_map(|len| {
            let k = net_key(vrf, addr, len);
            let hit = match k.prefix {
                IpAddr::V4(p) => v.fib4.get(p, len).is_some(),
                IpAddr::V6(p) => v.fib6.get(p, len).is_some(),
            };
            hit.then(|| {
                let src = self.routes.get(&k).map_or(Source::Static, |r| r.source);
                (k.prefix, len, src)
            })
        })
    }

    /// Number of neighbours.
    pub fn neighbor_count(&self) -> usize {
        self.neighbors.len()
    }
}

impl Router {
    /// A VRF's index by name.
    pub fn vrf_id(&self, name: &str) -> Option<u16> {
        self.t
            .vrfs
            .iter()
            .position(|v| v.name == name)
            .map(|x| x as u16)
    }

    /// A bridge domain's index by name.
    pub fn bd_id(&self, name: &str) -> Option<u16> {
        self.t
            .bds
            .iter()
            .position(|b| b.name == name)
            .map(|x| x as u16)
    }

    /// Removes a neighbour (static or learned): its host route goes, and a
    /// route through it goes back to resolving the address.
    pub fn del_neighbor(&mut self, iface: u16, ip: IpAddr) -> Result<Neighbor, ControlError> {
        let object = || {
            format!(
                "neighbor {ip} on {}",
                self.t.iface(iface).map_or("?", |f| f.name.as_str())
            )
        };
        let Some(n) = self.neighbors.get(&(iface, ip)).copied() else {
            return Err(ControlError::NotFound {
                object: object(),
                reason: "no such neighbour".into(),
            });
        };
        if let Some(vrf) = self.t.iface(iface).and_then(|f| f.vrf()) {
            let key = RouteKey {
                vrf,
                prefix: ip,
                len: if ip.is_ipv4() { 32 } else { 128 },
            };
            if self
                .routes
                .get(&key)
                .is_some_and(|r| r.source == Source::Neighbor)
            {
                self.route_unset(key)?;
            }
        }
        self.neighbor_seen.remove(&(iface, ip));
        if self
            .neighbors
            .remove(&(iface, ip))
            .is_some_and(|n| !n.is_static)
            && let Some(c) = self.neighbors_per_iface.get_mut(&iface)
        {
            *c = c.saturating_sub(1);
        }
        if self.nh_refs.get(n.nh as usize).is_some_and(|&r| r > 1) {
            // Still used by routes: resolve again from now on.
            self.nh_list[n.nh as usize] = NextHop::Resolve { iface, addr: ip };
            self.nh_dirty = true;
        }
        self.nh_put(n.nh);
        Ok(n)
    }

    /// Removes an address from an interface with its local and connected routes.
    pub fn del_address(&mut self, iface: u16, addr: IpAddr) -> Result<u8, ControlError> {
        let f = self
            .t
            .iface(iface)
            .ok_or_else(|| invalid("interface", "no such interface"))?;
        let name = f.name.clone();
        let vrf = f
            .vrf()
            .ok_or_else(|| invalid(name.clone(), "a bridged interface has no addresses"))?;
        let len = match addr {
            IpAddr::V4(a) => f.ip4.iter().find(|n| n.addr == a).map(|n| n.len),
            IpAddr::V6(a) => f.ip6.iter().find(|n| n.addr == a).map(|n| n.len),
        }
        .ok_or_else(|| ControlError::NotFound {
            object: format!("{name}: address {addr}"),
            reason: "not configured".into(),
        })?;
        let host = if addr.is_ipv4() { 32 } else { 128 };
        let _ = self.route_unset(RouteKey {
            vrf,
            prefix: addr,
            len: host,
        });
        if len < host {
            let key = net_key(vrf, addr, len);
            if self
                .routes
                .get(&key)
                .is_some_and(|r| r.source == Source::Connected)
            {
                let _ = self.route_unset(key);
            }
        }
        let f = &mut self.t.ifaces[iface as usize];
        f.ip4.retain(|n| IpAddr::V4(n.addr) != addr);
        f.ip6.retain(|n| IpAddr::V6(n.addr) != addr);
        Ok(len)
    }

    /// Removes a static MAC entry of a bridge domain.
    pub fn del_static_mac(&mut self, bridge: &str, mac: MacAddr) -> Result<(), ControlError> {
        let bd = self
            .t
            .bds
            .iter()
            .find(|b| b.name == bridge)
            .ok_or_else(|| ControlError::NotFound {
                object: format!("bridge {bridge}"),
                reason: "no such bridge".into(),
            })?;
        match bd.macs.get(mac.to_u64(), 0) {
            Some(e) if e.is_static && bd.bvi != Some(e.dst) => {
                bd.macs.remove(mac.to_u64());
                self.svc.static_macs_changed();
                Ok(())
            }
            _ => Err(ControlError::NotFound {
                object: format!("static MAC {mac} in {bridge}"),
                reason: "no such static entry".into(),
            }),
        }
    }

    /// Flushes learned MACs of a bridge domain (of one interface if given);
    /// returns how many.
    pub fn flush_macs(&mut self, bridge: &str, iface: Option<u16>) -> Result<usize, ControlError> {
        let bd = self
            .t
            .bds
            .iter()
            .find(|b| b.name == bridge)
            .ok_or_else(|| ControlError::NotFound {
                object: format!("bridge {bridge}"),
                reason: "no such bridge".into(),
            })?;
        let mut n = 0;
        bd.macs
            .retain_learned(0, |e| iface.is_some_and(|i| e.dst != i), |_| n += 1);
        Ok(n)
    }
}
