//! The pure translation: cluster state → the desired state of each vrouterd
//! scope. No I/O; everything here is unit-tested without a server.
//!
//! Scopes (each sent whole with `sync`):
//! - `agent/routes`: routes to the other nodes' pod CIDRs (host-gw: via the
//!   node's InternalIP; overlay: an overlay route to the node's VTEP with its
//!   VXLAN device's MAC);
//! - `agent/endpoints/<i>`: the pods of this node (shard `i` of
//!   [`ENDPOINT_SHARDS`] by `namespace/name`);
//! - `agent/services/<i>`: one object per Service port (shard by the
//!   Service), backends from the EndpointSlices ([`SERVICE_SHARDS`] shards, so one change re-sends a
//!   1/64th and no request line nears the 1 MiB limit at 10k services);
//! - `agent/policies/<i>`: NetworkPolicies that select pods of this node,
//!   with their selectors resolved to addresses.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use vrouter_control::{Endpoint, Route, naming};

use crate::model::{Cluster, Peer, PodInfo, PolicyInfo, PortRef, Rule, Selector, pod_mac};

/// Shards of the endpoint scope.
pub const ENDPOINT_SHARDS: usize = 4;
/// Shards of the service scope.
pub const SERVICE_SHARDS: usize = 64;
/// Shards of the policy scope.
pub const POLICY_SHARDS: usize = 16;
/// The route scope.
pub const ROUTE_SCOPE: &str = "agent/routes";

/// How pods of other nodes are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// VXLAN: each remote pod CIDR goes to the remote node's VTEP.
    Overlay,
    /// Each remote pod CIDR is routed via the node's InternalIP.
    HostGw,
    /// Pods are bridged onto the underlay: no routes.
    L2,
    /// Nothing is installed (every scope is synced empty).
    None,
}

/// What the translation needs besides the cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name.
    pub node: String,
    pub mode: Mode,
    /// The L3 VNI of the overlay.
    pub vni: u32,
    /// The bridge domain pods are bridged into (their endpoints go on its
    /// routed interface, `bvi-<bridge>`; `vrouter_control::naming`).
    pub pod_bridge: String,
}

/// A service object as `service.add` / `sync` take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceObj {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<String>,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external_local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_timeout_s: Option<u32>,
    pub backends: Vec<Backend>,
}

/// A service backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Backend {
    pub ip: String,
    pub port: u16,
    pub local: bool,
}

/// A policy object as `policy.add` / `sync` take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyObj {
    pub namespace: String,
    pub name: String,
    pub pods: Vec<String>,
    pub types: Vec<String>,
    pub ingress: Vec<RuleObj>,
    pub egress: Vec<RuleObj>,
}

/// A resolved rule (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleObj {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerObj>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortObj>>,
}

/// A resolved peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PeerObj {
    Ips {
        ips: Vec<String>,
    },
    Block {
        ip_block: String,
        except: Vec<String>,
    },
}

/// A policy port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortObj {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

/// The desired content of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeState {
    pub routes: Vec<Route>,
    pub endpoints: Vec<Endpoint>,
    pub services: Vec<ServiceObj>,
    pub policies: Vec<PolicyObj>,
}

/// The desired state of every scope the agent owns (always all of them, so
/// an emptied scope is synced empty). Each scope is shared (`Arc`) with
/// what the applier last sent, so remembering a sent scope copies nothing
/// and an unchanged scope compares equal by pointer; a change copies the
/// one scope it touches (`Arc::make_mut`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub scopes: BTreeMap<String, Arc<ScopeState>>,
}

impl Desired {
    /// Number of service backends in all scopes.
    pub fn backends(&self) -> usize {
        self.scopes
            .values()
            .flat_map(|s| &s.services)
            .map(|s| s.backends.len())
            .sum()
    }
}

/// FNV-1a, stable across runs and platforms (shard placement must not move).
pub fn shard(key: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// The names of every scope the agent owns.
pub fn all_scopes() -> Vec<String> {
    let mut v = vec![ROUTE_SCOPE.to_string()];
    v.extend((0..ENDPOINT_SHARDS).map(|i| format!("agent/endpoints/{i}")));
    v.extend((0..SERVICE_SHARDS).map(|i| format!("agent/services/{i}")));
    v.extend((0..POLICY_SHARDS).map(|i| format!("agent/policies/{i}")));
    v
}

fn valid_prefix(p: &str) -> bool {
    let Some((a, l)) = p.split_once('/') else {
        return false;
    };
    match (a.parse::<IpAddr>(), l.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}

fn same_family(prefix: &str, ip: &IpAddr) -> bool {
    prefix.contains(':') == ip.is_ipv6()
}

/// Translates the whole cluster.
pub fn translate(c: &Cluster, cfg: &Config) -> Desired {
    let mut d = Desired {
        scopes: all_scopes()
            .into_iter()
            .map(|s| (s, Arc::default()))
            .collect(),
    };
    if cfg.mode == Mode::None {
        return d;
    }
    let routes = routes(c, cfg);
    if let Some(s) = d.scopes.get_mut(ROUTE_SCOPE) {
        Arc::make_mut(s).routes = routes;
    }
    for (k, ep) in endpoints(c, cfg) {
        if let Some(s) = d
            .scopes
            .get_mut(&format!("agent/endpoints/{}", shard(&k, ENDPOINT_SHARDS)))
        {
            Arc::make_mut(s).endpoints.push(ep);
        }
    }
    for svc in services(c, cfg) {
        if let Some(s) = d.scopes.get_mut(&service_scope(&svc)) {
            Arc::make_mut(s).services.push(svc);
        }
    }
    set_policies(&mut d, policies(c, cfg));
    for s in d.scopes.values_mut() {
        let s = Arc::make_mut(s);
        s.endpoints
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        s.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }
    d
}

/// The scope of a pod's endpoint (`ns/name`).
pub fn endpoint_scope(key: &str) -> String {
    format!("agent/endpoints/{}", shard(key, ENDPOINT_SHARDS))
}

/// The scope of a Service's objects: by the Service (`ns/name`), so that
/// all its ports share one scope.
pub fn service_scope_of(namespace: &str, service: &str) -> String {
    format!(
        "agent/services/{}",
        shard(&format!("{namespace}/{service}"), SERVICE_SHARDS)
    )
}

fn service_scope(o: &ServiceObj) -> String {
    let service = o.name.rsplit_once('/').map_or(o.name.as_str(), |(s, _)| s);
    service_scope_of(&o.namespace, service)
}

/// Replaces every policy scope's content.
fn set_policies(d: &mut Desired, pols: Vec<PolicyObj>) {
    for i in 0..POLICY_SHARDS {
        if let Some(s) = d.scopes.get_mut(&format!("agent/policies/{i}"))
            && !s.policies.is_empty()
        {
            Arc::make_mut(s).policies.clear();
        }
    }
    for p in pols {
        let k = format!("{}/{}", p.namespace, p.name);
        if let Some(s) = d
            .scopes
            .get_mut(&format!("agent/policies/{}", shard(&k, POLICY_SHARDS)))
        {
            Arc::make_mut(s).policies.push(p);
        }
    }
}

/// Incremental translation: keeps the desired state and redoes only what
/// the cluster's [`crate::model::Dirty`] names — one Service's objects,
/// one pod's endpoint, the routes, the policies — so that one changed
/// EndpointSlice costs one Service, not the cluster.
pub struct Translator {
    cfg: Config,
    desired: Desired,
    fresh: bool,
}

impl Translator {
    pub fn new(cfg: Config) -> Translator {
        Translator {
            cfg,
            desired: Desired::default(),
            fresh: true,
        }
    }

    /// The desired state as of the last [`Translator::update`].
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Brings the desired state up to date with `c` and clears its dirty
    /// marks. Returns the scopes whose content changed.
    pub fn update(&mut self, c: &mut Cluster) -> std::collections::BTreeSet<String> {
        let dirty = std::mem::take(&mut c.dirty);
        let mut changed = std::collections::BTreeSet::new();
        if self.fresh || dirty.all || self.cfg.mode == Mode::None {
            c.reindex();
            let next = translate(c, &self.cfg);
            for (k, v) in &next.scopes {
                if self.fresh || self.desired.scopes.get(k) != Some(v) {
                    changed.insert(k.clone());
                }
            }
            self.desired = next;
            self.fresh = false;
            return changed;
        }
        if dirty.nodes {
            let routes = routes(c, &self.cfg);
            if let Some(s) = self.desired.scopes.get_mut(ROUTE_SCOPE)
                && s.routes != routes
            {
                Arc::make_mut(s).routes = routes;
                changed.insert(ROUTE_SCOPE.to_string());
            }
        }
        for key in &dirty.pods {
            let scope = endpoint_scope(key);
            let Some(s) = self.desired.scopes.get_mut(&scope) else {
                continue;
            };
            let s = Arc::make_mut(s);
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let before = s.endpoints.len();
            let old = s
                .endpoints
                .iter()
                .position(|e| e.namespace == ns && e.name == name)
                .map(|i| s.endpoints.remove(i));
            let new = c
                .pods
                .get(key)
                .filter(|p| p.node == self.cfg.node)
                .and_then(|p| pod_endpoint(p, &self.cfg));
            if old != new || s.endpoints.len() != before {
                changed.insert(scope);
            }
            if let Some(e) = new {
                let at = s
                    .endpoints
                    .partition_point(|x| (&x.namespace, &x.name) < (&e.namespace, &e.name));
                s.endpoints.insert(at, e);
            }
        }
        if !dirty.services.is_empty() {
            for key in &dirty.services {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                let scope = service_scope_of(ns, name);
                let my: Vec<&crate::model::SliceInfo> = c
                    .slices_of(ns, name)
                    .filter_map(|k| c.slices.get(k))
                    .collect();
                let objs = c
                    .services
                    .get(key)
                    .map(|svc| service_objs(svc, &my, &self.cfg))
                    .unwrap_or_default();
                let Some(s) = self.desired.scopes.get_mut(&scope) else {
                    continue;
                };
                let prefix = format!("{name}/");
                let mine = |o: &ServiceObj| o.namespace == ns && o.name.starts_with(&prefix);
                if s.services.iter().filter(|o| mine(o)).eq(objs.iter()) {
                    continue;
                }
                let s = Arc::make_mut(s);
                s.services.retain(|o| !mine(o));
                for o in objs {
                    let at = s
                        .services
                        .partition_point(|x| (&x.namespace, &x.name) < (&o.namespace, &o.name));
                    s.services.insert(at, o);
                }
                changed.insert(scope);
            }
        }
        if dirty.policies {
            let before: Vec<(String, Vec<PolicyObj>)> = (0..POLICY_SHARDS)
                .map(|i| format!("agent/policies/{i}"))
                .map(|k| {
                    let v = self
                        .desired
                        .scopes
                        .get(&k)
                        .map(|s| s.policies.clone())
                        .unwrap_or_default();
                    (k, v)
                })
                .collect();
            set_policies(&mut self.desired, policies(c, &self.cfg));
            for (k, v) in before {
                if self.desired.scopes.get(&k).map(|s| &s.policies) != Some(&v) {
                    changed.insert(k);
                }
            }
        }
        changed
    }
}

/// Routes to the other nodes' pod CIDRs: host-gw via the node's
/// InternalIP; overlay to the node's VTEP (from its annotations) with its
/// VXLAN device's MAC as inner destination, on the L3 VNI.
pub fn routes(c: &Cluster, cfg: &Config) -> Vec<Route> {
    let mut out = Vec::new();
    for n in c.nodes.values().filter(|n| n.name != cfg.node) {
        for cidr in n.pod_cidrs.iter().filter(|p| valid_prefix(p)) {
            match cfg.mode {
                Mode::HostGw => {
                    let Some(ip) = n.internal_ips.iter().find(|ip| same_family(cidr, ip)) else {
                        tracing::debug!(node = %n.name, %cidr, "no InternalIP of the pod CIDR's family: no route");
                        continue;
                    };
                    out.push(Route {
                        vrf: None,
                        prefix: cidr.clone(),
                        via: vec![ip.to_string()],
                        ..Default::default()
                    });
                }
                Mode::Overlay => {
                    let (Some(ip), Some(mac)) = (n.vtep_ip, n.vtep_mac.as_ref()) else {
                        tracing::debug!(node = %n.name, "no vtep annotations yet: no route");
                        continue;
                    };
                    out.push(Route {
                        prefix: cidr.clone(),
                        remote: Some(ip.to_string()),
                        mac: Some(mac.clone()),
                        vni: Some(cfg.vni),
                        ..Default::default()
                    });
                }
                Mode::L2 | Mode::None => {}
            }
        }
    }
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    out
}

/// A pod's endpoint: its addresses, its MAC (`vrouter.io/mac`, else the
/// shared convention `vrouter_control::naming::pod_mac`) and the pod
/// bridge's routed interface (`vrouter.io/interface` overrides it), as the
/// CNI plugin registers it.
pub fn pod_endpoint(p: &PodInfo, cfg: &Config) -> Option<Endpoint> {
    if p.host_network || p.ips.is_empty() {
        return None;
    }
    let mac = p.mac.clone().unwrap_or_else(|| pod_mac(&p.ips));
    Some(Endpoint {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        node: p.node.clone(),
        ips: p.ips.iter().map(ToString::to_string).collect(),
        mac,
        interface: p
            .interface
            .clone()
            .unwrap_or_else(|| naming::bridge_interface(&cfg.pod_bridge)),
    })
}

/// Endpoints of the pods on this node, with their `ns/name` key.
pub fn endpoints(c: &Cluster, cfg: &Config) -> Vec<(String, Endpoint)> {
    c.pods
        .iter()
        .filter(|(_, p)| p.node == cfg.node)
        .filter_map(|(k, p)| Some((k.clone(), pod_endpoint(p, cfg)?)))
        .collect()
}

fn protocol(p: &str) -> Option<String> {
    match p.to_ascii_uppercase().as_str() {
        "TCP" => Some("tcp".into()),
        "UDP" => Some("udp".into()),
        _ => None,
    }
}

/// Service objects: one per Service port, backends from its slices.
pub fn services(c: &Cluster, cfg: &Config) -> Vec<ServiceObj> {
    let mut slices: HashMap<(&str, &str), Vec<&crate::model::SliceInfo>> = HashMap::new();
    for s in c.slices.values() {
        slices
            .entry((s.namespace.as_str(), s.service.as_str()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for svc in c.services.values() {
        let my = slices
            .get(&(svc.namespace.as_str(), svc.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        out.extend(service_objs(svc, my, cfg));
    }
    out
}

/// The objects of one Service (one per port), from its slices.
pub fn service_objs(
    svc: &crate::model::ServiceInfo,
    my: &[&crate::model::SliceInfo],
    cfg: &Config,
) -> Vec<ServiceObj> {
    let mut out = Vec::new();
    if svc.ips.is_empty() {
        return out;
    }
    let ips: Vec<String> = svc.ips.iter().map(ToString::to_string).collect();
    for sp in &svc.ports {
        let Some(proto) = protocol(&sp.protocol) else {
            tracing::debug!(service = %svc.name, protocol = %sp.protocol, "protocol not supported: port skipped");
            continue;
        };
        let mut backends = Vec::new();
        for sl in my {
            let Some((_, port, _)) = sl
                .ports
                .iter()
                .find(|(n, _, pr)| *n == sp.name && pr.eq_ignore_ascii_case(&sp.protocol))
            else {
                continue;
            };
            for e in sl.endpoints.iter().filter(|e| e.ready) {
                let local = e.node.as_deref() == Some(cfg.node.as_str());
                for ip in &e.ips {
                    backends.push(Backend {
                        ip: ip.to_string(),
                        port: *port,
                        local,
                    });
                }
            }
        }
        backends.sort();
        backends.dedup();
        let port_name = if sp.name.is_empty() {
            sp.port.to_string()
        } else {
            sp.name.clone()
        };
        out.push(ServiceObj {
            namespace: svc.namespace.clone(),
            name: format!("{}/{}", svc.name, port_name),
            ips: ips.clone(),
            port: sp.port,
            protocol: proto,
            node_port: sp.node_port,
            external_local: svc.external_local,
            affinity_timeout_s: svc.affinity_timeout_s,
            backends,
        });
    }
    out
}

fn pod_ips<'a>(pods: impl Iterator<Item = &'a PodInfo>) -> Vec<String> {
    let mut v: Vec<String> = pods
        .filter(|p| !p.host_network)
        .flat_map(|p| p.ips.iter().map(ToString::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn resolve_peer(c: &Cluster, ns: &str, p: &Peer) -> PeerObj {
    match p {
        Peer::IpBlock { cidr, except } => PeerObj::Block {
            ip_block: cidr.clone(),
            except: except.clone(),
        },
        Peer::Pods { pods, namespaces } => {
            let ns_ok = |pod_ns: &str| match namespaces {
                None => pod_ns == ns,
                Some(sel) => c
                    .namespaces
                    .get(pod_ns)
                    .is_some_and(|labels| sel.matches(labels)),
            };
            let empty = Selector::default();
            let psel = pods.as_ref().unwrap_or(&empty);
            PeerObj::Ips {
                ips: pod_ips(
                    c.pods
                        .values()
                        .filter(|p| ns_ok(&p.namespace) && psel.matches(&p.labels)),
                ),
            }
        }
    }
}

fn resolve_rule(c: &Cluster, pol: &PolicyInfo, r: &Rule) -> Option<RuleObj> {
    let peers = match &r.peers {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => Some(
            v.iter()
                .map(|p| resolve_peer(c, &pol.namespace, p))
                .collect(),
        ),
    };
    let ports = match &r.ports {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => {
            let mut out = Vec::new();
            for p in v {
                let port = match &p.port {
                    None => None,
                    Some(PortRef::Number(n)) => Some(*n),
                    Some(PortRef::Name(name)) => {
                        // Named ports resolve per destination pod; the
                        // control ops take numbers only. Leaving the port
                        // out narrows the rule (never widens it).
                        tracing::warn!(policy = %pol.name, port = %name, "named port in a NetworkPolicy is not supported: port skipped");
                        continue;
                    }
                };
                out.push(PortObj {
                    protocol: p.protocol.as_deref().and_then(protocol),
                    port,
                    end_port: p.end_port,
                });
            }
            if out.is_empty() {
                // Every port was named: the rule allows nothing we can say.
                return None;
            }
            Some(out)
        }
    };
    Some(RuleObj { peers, ports })
}

/// Policies selecting pods of this node, with peers resolved to addresses.
pub fn policies(c: &Cluster, cfg: &Config) -> Vec<PolicyObj> {
    let mut out = Vec::new();
    for pol in c.policies.values() {
        let pods = pod_ips(c.pods.values().filter(|p| {
            p.namespace == pol.namespace
                && p.node == cfg.node
                && pol.pod_selector.matches(&p.labels)
        }));
        if pods.is_empty() {
            continue;
        }
        out.push(PolicyObj {
            namespace: pol.namespace.clone(),
            name: pol.name.clone(),
            pods,
            types: pol.types.clone(),
            ingress: pol
                .ingress
                .iter()
                .filter_map(|r| resolve_rule(c, pol, r))
                .collect(),
            egress: pol
                .egress
                .iter()
                .filter_map(|r| resolve_rule(c, pol, r))
                .collect(),
        });
    }
    out
}
