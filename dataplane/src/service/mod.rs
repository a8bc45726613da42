//! Kubernetes services: the snapshot workers read (VIPs, NodePorts, Maglev
//! tables, the compiled policies, anti-spoofing bindings) and the control
//! thread's authoritative state that builds it.
//!
//! A service is one VIP set + port + protocol → backends (address, port,
//! weight, local or not). Its VIPs are the ClusterIP, external IPs and
//! LoadBalancer IPs alike; a NodePort makes it reachable on every address
//! of the node at that port. A Kubernetes Service with several ports is one
//! object per port. Compiled services are shared (`Arc`) between snapshots:
//! a change rebuilds only the Maglev table of the service that changed, and
//! patches only that service's keys in the VIP and NodePort maps (kept
//! between snapshots, cloned into each); the policy table is recompiled only
//! when a policy changed. So a publish after one change costs a clone of
//! the maps, not a rebuild of every service.
//!
//! The data path is `node` (`ip4-conntrack`, `ip6-conntrack`) and `guard`
//! (`pod-guard`, anti-spoofing); NAT and REJECT packet
//! surgery is in `nat`.
//!
//! Must never: be mutated by a worker (snapshots are immutable).

pub mod api;
pub mod guard;
pub mod maglev;
pub mod nat;
pub mod node;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vrouter_wire::MacAddr;

use crate::conntrack::{Addr, Timeouts};
use crate::policy::{IpSet, PodRules, PolicyInfo, PolicyTable, Rule, RuleSet, prefix_range};

/// A multiply-rotate hasher for integer keys (VIP lookups, pod IPs): the
/// keys are not attacker-chosen hash-flooding material in a useful way
/// (they are configured addresses), and SipHash would cost more than the
/// rest of the lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `HashMap` hasher for configured integer keys.
pub type Fast = BuildHasherDefault<FastHasher>;

/// What a pod port may send from (anti-spoofing, `pod-guard`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodBinding {
    /// The pods' MACs.
    pub macs: Box<[MacAddr]>,
    /// (MAC, IPv4) pairs.
    pub v4: Box<[(MacAddr, u32)]>,
    /// (MAC, IPv6) pairs.
    pub v6: Box<[(MacAddr, u128)]>,
}

/// A backend as the data path uses it; the address is in the low bits for
/// IPv4 (a compiled service holds backends of one family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub ip: u128,
    pub port: u16,
    /// On this node (NodePort with `externalTrafficPolicy: Local` uses only
    /// these; a remote backend behind a NodePort gets SNAT).
    pub local: bool,
}

/// A compiled service, one address family (a dual-stack service compiles
/// into one per family, with the same id).
#[derive(Debug)]
pub struct Service {
    /// Stable across replaces (affinity entries refer to it).
    pub id: u32,
    pub name: String,
    pub proto: u8,
    pub port: u16,
    pub node_port: u16,
    /// `externalTrafficPolicy: Local` (NodePort): local backends only, no SNAT.
    pub local_only: bool,
    /// ClientIP affinity timeout in seconds; 0 = none.
    pub affinity_s: u32,
    pub backends: Box<[Backend]>,
    /// Maglev table over all backends (`None`: no backend).
    pub table: Option<Box<[u16]>>,
    /// Maglev table over local backends only.
    pub local_table: Option<Box<[u16]>>,
}

impl Service {
    /// The backend for flow hash `h`; `local` selects the local-only table.
    #[inline]
    pub fn pick(&self, h: u32, local: bool) -> Option<&Backend> {
        let t = if local {
            self.local_table.as_ref()
        } else {
            self.table.as_ref()
        }?;
        let slot = t.get(h as usize % t.len().max(1))?;
        self.backends.get(usize::from(*slot))
    }
}

/// An IPv6 VIP lookup key.
#[inline(always)]
pub fn vip_key6(ip: u128, port: u16, proto: u8) -> (u128, u32) {
    (ip, u32::from(port) << 8 | u32::from(proto))
}

/// Packs a VIP lookup key.
#[inline(always)]
pub fn vip_key(ip: u32, port: u16, proto: u8) -> u64 {
    u64::from(ip) << 24 | u64::from(port) << 8 | u64::from(proto)
}

/// `[conntrack]` and `[services]` settings the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_flows: usize,
    pub max_flows_ip6: usize,
    pub pod_quota: u32,
    pub timeouts: Timeouts,
    pub maglev_size: u32,
    pub snat_ports: (u16, u16),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_flows: 1 << 20,
            max_flows_ip6: 1 << 18,
            pod_quota: 65536,
            timeouts: Timeouts::default(),
            maglev_size: maglev::DEFAULT_SIZE,
            snat_ports: (32768, 60999),
        }
    }
}

/// The snapshot workers read (`Tables::services`).
#[derive(Debug, Default)]
pub struct ServiceTables {
    /// False while no service, policy or anti-spoofing binding exists:
    /// `ipN-input` then skip `ipN-conntrack` and `ethernet-input` skips
    /// `pod-guard` entirely.
    pub enabled: bool,
    pub vips: HashMap<u64, Arc<Service>, Fast>,
    /// IPv6 VIPs by `vip_key6`.
    pub vips6: HashMap<(u128, u32), Arc<Service>, Fast>,
    /// NodePort services by `vip_key(0, node_port, proto)` (IPv4 backends).
    pub node_ports: HashMap<u64, Arc<Service>, Fast>,
    /// NodePort services with IPv6 backends, same key.
    pub node_ports6: HashMap<u64, Arc<Service>, Fast>,
    /// Every VIP address (fragments to these are dropped).
    pub vip_addrs: HashSet<u32, Fast>,
    pub vip_addrs6: HashSet<u128, Fast>,
    pub policy: Arc<PolicyTable>,
    /// Per interface: the addresses its pods may send from; `None` = not a
    /// pod port (no check).
    pub spoof: Vec<Option<PodBinding>>,
    pub settings: Settings,
}

// ---- control side ----

/// A backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub ip: IpAddr,
    pub port: u16,
    pub weight: u16,
    pub local: bool,
}

/// A service as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// VIPs of either family; each family's VIPs balance over that
    /// family's backends.
    pub ips: Vec<IpAddr>,
    pub port: u16,
    pub proto: u8,
    pub node_port: u16,
    pub local_only: bool,
    pub affinity_s: u32,
    pub backends: Vec<BackendSpec>,
}

/// A policy peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSpec {
    /// Pods (and namespaces) resolved to addresses.
    Ips(Vec<IpAddr>),
    /// An ipBlock: a prefix minus its exceptions (of the same family).
    Block {
        cidr: (IpAddr, u8),
        except: Vec<(IpAddr, u8)>,
    },
}

/// A policy rule as configured; `peers: None` = any peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub peers: Option<Vec<PeerSpec>>,
    /// (protocol, first, last).
    pub ports: Vec<(u8, u16, u16)>,
}

/// A policy as configured; `None` = the policy does not name that direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub pods: Vec<IpAddr>,
    pub ingress: Option<Vec<RuleSpec>>,
    pub egress: Option<Vec<RuleSpec>>,
}

/// Authoritative services, policies and pod bindings (control thread).
#[derive(Debug, Default)]
pub struct ServiceState {
    pub settings: Settings,
    /// Per service: the spec and its compiled IPv4 and IPv6 forms.
    services: BTreeMap<String, (ServiceSpec, [Arc<Service>; 2])>,
    next_id: u32,
    policies: BTreeMap<String, PolicySpec>,
    /// Pod bindings for anti-spoofing: (interface, MAC, addresses) per
    /// endpoint.
    bindings: BTreeMap<String, (u16, MacAddr, Vec<IpAddr>)>,
    dirty: bool,
    /// A policy changed since the last compile (otherwise the last policy
    /// table is reused as it is, counters included).
    policies_dirty: bool,
    /// Counters of the last compiled policy table, by policy name.
    last_policy: Arc<PolicyTable>,
    /// The VIP and NodePort maps as of the last change.
    index: VipIndex,
}

/// A lookup key of the snapshot's VIP and NodePort maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum VipSlot {
    V4(u64),
    V6((u128, u32)),
    /// `vip_key(0, node_port, proto)`, in `node_ports` and `node_ports6`.
    NodePort(u64),
}

/// The snapshot's lookup maps, kept up to date service by service: a change
/// costs the keys of the service that changed, and a publish clones the
/// maps (no hashing) instead of rebuilding them from every service.
///
/// A key two services claim goes to the greatest name (as when the maps
/// were rebuilt in name order and the last write won); a VIP address stays
/// while any service has it.
#[derive(Debug, Default)]
struct VipIndex {
    vips: HashMap<u64, Arc<Service>, Fast>,
    vips6: HashMap<(u128, u32), Arc<Service>, Fast>,
    node_ports: HashMap<u64, Arc<Service>, Fast>,
    node_ports6: HashMap<u64, Arc<Service>, Fast>,
    vip_addrs: HashSet<u32, Fast>,
    vip_addrs6: HashSet<u128, Fast>,
    /// The services claiming each key.
    claims: HashMap<VipSlot, BTreeSet<String>, Fast>,
    /// How many services have each VIP address.
    addr_refs: HashMap<IpAddr, u32, Fast>,
}

/// The keys a service claims (each once).
fn slots_of(s: &ServiceSpec) -> Vec<VipSlot> {
    let mut v: Vec<VipSlot> = s
        .ips
        .iter()
        .map(|ip| match *ip {
            IpAddr::V4(a) => VipSlot::V4(vip_key(ip_u32(a), s.port, s.proto)),
            IpAddr::V6(a) => VipSlot::V6(vip_key6(u128::from(a), s.port, s.proto)),
        })
        .collect();
    if s.node_port != 0 {
        v.push(VipSlot::NodePort(vip_key(0, s.node_port, s.proto)));
    }
    let mut once = Vec::with_capacity(v.len());
    for k in v {
        if !once.contains(&k) {
            once.push(k);
        }
    }
    once
}

/// A service's VIP addresses (each once).
fn addrs_of(s: &ServiceSpec) -> Vec<IpAddr> {
    let mut v = s.ips.clone();
    v.sort_unstable();
    v.dedup();
    v
}

type Compiled = BTreeMap<String, (ServiceSpec, [Arc<Service>; 2])>;

impl VipIndex {
    /// Service `name` went from `old` to `new` (`None`: absent); `services`
    /// is already updated.
    fn update(
        &mut self,
        services: &Compiled,
        name: &str,
        old: Option<&ServiceSpec>,
        new: Option<&ServiceSpec>,
    ) {
        let old_slots = old.map(slots_of).unwrap_or_default();
        let new_slots = new.map(slots_of).unwrap_or_default();
        for k in &old_slots {
            if let Some(c) = self.claims.get_mut(k) {
                c.remove(name);
            }
        }
        for k in &new_slots {
            self.claims.entry(*k).or_default().insert(name.to_string());
        }
        for k in old_slots.iter().chain(&new_slots) {
            self.settle(services, *k);
        }
        for a in old.map(addrs_of).unwrap_or_default() {
            if let Some(n) = self.addr_refs.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    self.addr_refs.remove(&a);
                    match a {
                        IpAddr::V4(v) => self.vip_addrs.remove(&ip_u32(v)),
                        IpAddr::V6(v) => self.vip_addrs6.remove(&u128::from(v)),
                    };
                }
            }
        }
        for a in new.map(addrs_of).unwrap_or_default() {
            *self.addr_refs.entry(a).or_default() += 1;
            match a {
                IpAddr::V4(v) => self.vip_addrs.insert(ip_u32(v)),
                IpAddr::V6(v) => self.vip_addrs6.insert(u128::from(v)),
            };
        }
    }

    /// Sets key `k` from the services claiming it.
    fn settle(&mut self, services: &Compiled, k: VipSlot) {
        let claims = self.claims.get(&k);
        let mut owners = claims
            .into_iter()
            .flatten()
            .rev()
            .filter_map(|n| services.get(n).map(|(_, c)| c));
        match k {
            VipSlot::V4(key) => match owners.next() {
                Some([s4, _]) => self.vips.insert(key, s4.clone()),
                None => self.vips.remove(&key),
            },
            VipSlot::V6(key) => match owners.next() {
                Some([_, s6]) => self.vips6.insert(key, s6.clone()),
                None => self.vips6.remove(&key),
            },
            VipSlot::NodePort(key) => {
                let owners: Vec<&[Arc<Service>; 2]> = owners.collect();
                // A NodePort serves each family the node has backends of; a
                // service with none at all still answers IPv4 (REJECT).
                match owners
                    .iter()
                    .find(|[s4, s6]| !s4.backends.is_empty() || s6.backends.is_empty())
                {
                    Some([s4, _]) => self.node_ports.insert(key, s4.clone()),
                    None => self.node_ports.remove(&key),
                };
                match owners.iter().find(|[_, s6]| !s6.backends.is_empty()) {
                    Some([_, s6]) => self.node_ports6.insert(key, s6.clone()),
                    None => self.node_ports6.remove(&key),
                }
            }
        };
        if claims.is_some_and(BTreeSet::is_empty) {
            self.claims.remove(&k);
        }
    }
}

fn ip_u32(a: Ipv4Addr) -> u32 {
    u32::from(a)
}

/// An address as a 128-bit integer (IPv4 in the low bits) and whether it is
/// IPv6.
fn ip_u128(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), false),
        IpAddr::V6(v) => (u128::from(v), true),
    }
}

impl ServiceState {
    /// Empty state with these settings.
    pub fn new(settings: Settings) -> ServiceState {
        ServiceState {
            settings,
            ..ServiceState::default()
        }
    }

    /// True if something changed since the last `compile`.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.get(name).map(|(s, _)| s)
    }

    /// All services, with their compiled IPv4 and IPv6 forms.
    pub fn services(&self) -> impl Iterator<Item = (&String, &ServiceSpec, &[Arc<Service>; 2])> {
        self.services.iter().map(|(n, (s, c))| (n, s, c))
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&PolicySpec> {
        self.policies.get(name)
    }

    /// All policies.
    pub fn policies(&self) -> impl Iterator<Item = (&String, &PolicySpec)> {
        self.policies.iter()
    }

    /// The counters of the policies as last compiled.
    pub fn policy_table(&self) -> &Arc<PolicyTable> {
        &self.last_policy
    }

    /// Adds or replaces a service; returns the previous one.
    pub fn set_service(&mut self, name: &str, spec: ServiceSpec) -> Option<ServiceSpec> {
        let id = match self.services.get(name) {
            Some((_, c)) => c[0].id,
            None => {
                self.next_id += 1;
                self.next_id
            }
        };
        let compiled = [
            Arc::new(self.compile_service(id, name, &spec, false)),
            Arc::new(self.compile_service(id, name, &spec, true)),
        ];
        self.dirty = true;
        let old = self
            .services
            .insert(name.to_string(), (spec, compiled))
            .map(|(s, _)| s);
        let new = self.services.get(name).map(|(s, _)| s);
        self.index.update(&self.services, name, old.as_ref(), new);
        old
    }

    /// Removes a service; returns it.
    pub fn del_service(&mut self, name: &str) -> Option<ServiceSpec> {
        let old = self.services.remove(name).map(|(s, _)| s);
        if let Some(o) = &old {
            self.index.update(&self.services, name, Some(o), None);
            self.dirty = true;
        }
        old
    }

    /// Adds or replaces a policy; returns the previous one.
    pub fn set_policy(&mut self, name: &str, spec: PolicySpec) -> Option<PolicySpec> {
        self.dirty = true;
        self.policies_dirty = true;
        self.policies.insert(name.to_string(), spec)
    }

    /// Removes a policy; returns it.
    pub fn del_policy(&mut self, name: &str) -> Option<PolicySpec> {
        let old = self.policies.remove(name);
        self.dirty |= old.is_some();
        self.policies_dirty |= old.is_some();
        old
    }

    /// Binds endpoint `name` (a pod) to an interface, for anti-spoofing.
    pub fn bind(&mut self, name: &str, iface: u16, mac: MacAddr, ips: Vec<IpAddr>) {
        self.bindings.insert(name.to_string(), (iface, mac, ips));
        self.dirty = true;
    }

    /// Removes an endpoint's binding.
    pub fn unbind(&mut self, name: &str) {
        self.dirty |= self.bindings.remove(name).is_some();
    }

    /// Marks the snapshot for a rebuild when a static MAC changed (a
    /// binding on a BVI follows its MAC's static port).
    pub fn static_macs_changed(&mut self) {
        self.dirty |= !self.bindings.is_empty();
    }

    /// Builds one service's data-path form for one family (its backends of
    /// that family and their Maglev tables).
    pub fn compile_service(&self, id: u32, name: &str, s: &ServiceSpec, v6: bool) -> Service {
        let specs: Vec<&BackendSpec> = s.backends.iter().filter(|b| b.ip.is_ipv6() == v6).collect();
        let backends: Box<[Backend]> = specs
            .iter()
            .map(|b| Backend {
                ip: ip_u128(b.ip).0,
                port: b.port,
                local: b.local,
            })
            .collect();
        let ids: Vec<u64> = backends
            .iter()
            .map(|b| maglev::backend_id(b.ip, b.port))
            .collect();
        let weights: Vec<u16> = specs.iter().map(|b| b.weight).collect();
        let local_w: Vec<u16> = specs
            .iter()
            .map(|b| if b.local { b.weight } else { 0 })
            .collect();
        let m = self.settings.maglev_size;
        Service {
            id,
            name: name.to_string(),
            proto: s.proto,
            port: s.port,
            node_port: s.node_port,
            local_only: s.local_only,
            affinity_s: s.affinity_s,
            table: maglev::build(&ids, &weights, m),
            local_table: if s.node_port != 0 && s.local_only {
                maglev::build(&ids, &local_w, m)
            } else {
                None
            },
            backends,
        }
    }

    fn compile_policies(&self) -> PolicyTable {
        let mut t = PolicyTable::default();
        let mut counters: Vec<u64> = Vec::new();
        let old = &self.last_policy;
        // Per pod, the policies isolating it in each direction.
        let mut pods: HashMap<u32, (Vec<u32>, Vec<u32>)> = HashMap::new();
        let mut pods6: HashMap<u128, (Vec<u32>, Vec<u32>)> = HashMap::new();
        type DirRules = Option<(Vec<Rule>, Vec<Rule<u128>>)>;
        let mut compiled: Vec<(DirRules, DirRules)> = Vec::new();
        for (pi, (name, p)) in self.policies.iter().enumerate() {
            let first = counters.len() as u32;
            let prev = old.policies.iter().find(|o| &o.name == name);
            let mut rule_names = Vec::new();
            let mut compile_dir = |rules: &Option<Vec<RuleSpec>>, dir: &str| {
                rules.as_ref().map(|rules| {
                    rules
                        .iter()
                        .enumerate()
                        .map(|(k, r)| {
                            let label = format!("{dir} {k}");
                            let carried = prev
                                .and_then(|o| {
                                    o.rule_names.iter().position(|n| *n == label).and_then(|x| {
                                        old.counters.get(o.first_counter as usize + x)
                                    })
                                })
                                .map_or(0, |c| c.load(Relaxed));
                            rule_names.push(label);
                            counters.push(carried);
                            let sets = r.peers.as_ref().map(|peers| peer_sets(peers));
                            let counter = counters.len() as u32 - 1;
                            (
                                Rule {
                                    policy: pi as u32,
                                    counter,
                                    peers: sets.as_ref().map(|s| s.0.clone()),
                                    ports: r.ports.clone(),
                                },
                                Rule {
                                    policy: pi as u32,
                                    counter,
                                    peers: sets.map(|s| s.1),
                                    ports: r.ports.clone(),
                                },
                            )
                        })
                        .unzip::<_, _, Vec<_>, Vec<_>>()
                })
            };
            let ing = compile_dir(&p.ingress, "ingress");
            let eg = compile_dir(&p.egress, "egress");
            for pod in &p.pods {
                let e = match ip_u128(*pod) {
                    (a, true) => pods6.entry(a).or_default(),
                    (a, false) => pods.entry(a as u32).or_default(),
                };
                if ing.is_some() {
                    e.0.push(pi as u32);
                }
                if eg.is_some() {
                    e.1.push(pi as u32);
                }
            }
            compiled.push((ing, eg));
            t.policies.push(PolicyInfo {
                name: name.clone(),
                rule_names,
                first_counter: first,
                denied: AtomicU64::new(prev.map_or(0, |o| o.denied.load(Relaxed))),
            });
        }
        // Pods selected by the same policies share one compiled rule set.
        let mut memo: HashMap<(bool, Vec<u32>), Arc<RuleSet>> = HashMap::new();
        let mut memo6: HashMap<(bool, Vec<u32>), Arc<RuleSet<u128>>> = HashMap::new();
        let rules_of = |egress: bool, pols: &[u32]| {
            pols.iter()
                .filter_map(|&pi| {
                    let (i, e) = compiled.get(pi as usize)?;
                    if egress { e.as_ref() } else { i.as_ref() }
                })
                .collect::<Vec<_>>()
        };
        let mut set_of = |egress: bool, pols: &[u32]| -> Option<Arc<RuleSet>> {
            if pols.is_empty() {
                return None;
            }
            let set = memo.entry((egress, pols.to_vec())).or_insert_with(|| {
                let rules: Vec<Rule> = rules_of(egress, pols)
                    .into_iter()
                    .flat_map(|r| r.0.iter().cloned())
                    .collect();
                Arc::new(RuleSet::new(&rules))
            });
            Some(set.clone())
        };
        let mut set6_of = |egress: bool, pols: &[u32]| -> Option<Arc<RuleSet<u128>>> {
            if pols.is_empty() {
                return None;
            }
            let set = memo6.entry((egress, pols.to_vec())).or_insert_with(|| {
                let rules: Vec<Rule<u128>> = rules_of(egress, pols)
                    .into_iter()
                    .flat_map(|r| r.1.iter().cloned())
                    .collect();
                Arc::new(RuleSet::new(&rules))
            });
            Some(set.clone())
        };
        for (ip, (ing, eg)) in pods6 {
            if ing.is_empty() && eg.is_empty() {
                continue;
            }
            t.pods6.insert(
                ip,
                PodRules {
                    ingress: set6_of(false, &ing),
                    egress: set6_of(true, &eg),
                    ingress_policy: ing.first().copied().unwrap_or(0),
                    egress_policy: eg.first().copied().unwrap_or(0),
                },
            );
        }
        for (ip, (ing, eg)) in pods {
            if ing.is_empty() && eg.is_empty() {
                continue;
            }
            t.pods.insert(
                ip,
                PodRules {
                    ingress: set_of(false, &ing),
                    egress: set_of(true, &eg),
                    ingress_policy: ing.first().copied().unwrap_or(0),
                    egress_policy: eg.first().copied().unwrap_or(0),
                },
            );
        }
        t.counters = counters.into_iter().map(AtomicU64::new).collect();
        t
    }

    /// Builds the snapshot for `n_ifaces` interfaces and clears `dirty`.
    /// `port_of(iface, mac)` names the bridge member a binding on a BVI
    /// also applies to (the port its MAC is statically pinned to): that is
    /// where a bridged pod's frames enter.
    pub fn compile(
        &mut self,
        n_ifaces: usize,
        port_of: &dyn Fn(u16, MacAddr) -> Option<u16>,
    ) -> Arc<ServiceTables> {
        let ix = &self.index;
        let mut st = ServiceTables {
            settings: self.settings,
            vips: ix.vips.clone(),
            vips6: ix.vips6.clone(),
            node_ports: ix.node_ports.clone(),
            node_ports6: ix.node_ports6.clone(),
            vip_addrs: ix.vip_addrs.clone(),
            vip_addrs6: ix.vip_addrs6.clone(),
            ..ServiceTables::default()
        };
        if self.policies_dirty {
            self.last_policy = Arc::new(self.compile_policies());
            self.policies_dirty = false;
        }
        st.policy = self.last_policy.clone();
        type Acc = (Vec<MacAddr>, Vec<(MacAddr, u32)>, Vec<(MacAddr, u128)>);
        let mut spoof: Vec<Option<Acc>> = vec![None; n_ifaces];
        for (iface, mac, ips) in self.bindings.values() {
            let member = port_of(*iface, *mac).filter(|m| m != iface);
            for at in std::iter::once(*iface).chain(member) {
                let Some(v) = spoof.get_mut(usize::from(at)) else {
                    continue;
                };
                let v = v.get_or_insert_with(Default::default);
                if !v.0.contains(mac) {
                    v.0.push(*mac);
                }
                for ip in ips {
                    match ip_u128(*ip) {
                        (a, true) => v.2.push((*mac, a)),
                        (a, false) => v.1.push((*mac, a as u32)),
                    }
                }
            }
        }
        st.spoof = spoof
            .into_iter()
            .map(|v| {
                v.map(|(macs, v4, v6)| PodBinding {
                    macs: macs.into(),
                    v4: v4.into(),
                    v6: v6.into(),
                })
            })
            .collect();
        st.enabled = !st.vips.is_empty()
            || !st.vips6.is_empty()
            || !st.node_ports.is_empty()
            || !st.node_ports6.is_empty()
            || !st.policy.is_empty()
            || st.spoof.iter().any(Option::is_some);
        self.dirty = false;
        Arc::new(st)
    }
}

/// A rule's peers as an IPv4 and an IPv6 set (a peer of the other family
/// adds nothing to a set).
fn peer_sets(peers: &[PeerSpec]) -> (IpSet, IpSet<u128>) {
    fn block<T: Addr>(cidr: (IpAddr, u8), except: &[(IpAddr, u8)], v6: bool) -> IpSet<T> {
        let conv = |(a, l): (IpAddr, u8)| {
            let (x, is6) = ip_u128(a);
            (is6 == v6).then(|| prefix_range(T::from_u128(x), l))
        };
        IpSet::new(
            conv(cidr).into_iter().collect(),
            except.iter().filter_map(|e| conv(*e)).collect(),
        )
    }
    let (mut all4, mut all6) = (Vec::new(), Vec::new());
    for p in peers {
        match p {
            PeerSpec::Ips(ips) => {
                for a in ips {
                    match ip_u128(*a) {
                        (x, true) => all6.push((x, x)),
                        (x, false) => all4.push((x as u32, x as u32)),
                    }
                }
            }
            PeerSpec::Block { cidr, except } => {
                all4.extend(block::<u32>(*cidr, except, false).iter());
                all6.extend(block::<u128>(*cidr, except, true).iter());
            }
        }
    }
    (IpSet::new(all4, Vec::new()), IpSet::new(all6, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(backends: &[(&str, bool)]) -> ServiceSpec {
        ServiceSpec {
            ips: vec!["198.19.0.10".parse().unwrap()],
            port: 80,
            proto: 6,
            node_port: 30080,
            local_only: true,
            affinity_s: 0,
            backends: backends
                .iter()
                .map(|(ip, local)| BackendSpec {
                    ip: ip.parse().unwrap(),
                    port: 8080,
                    weight: 1,
                    local: *local,
                })
                .collect(),
        }
    }

    #[test]
    fn compile_services_and_local_table() {
        let mut st = ServiceState::new(Settings::default());
        st.set_service(
            "default/web",
            svc(&[("198.18.1.2", true), ("198.18.9.2", false)]),
        );
        let t = st.compile(4, &|_, _| None);
        assert!(t.enabled);
        let s = t.vips.get(&vip_key(0xc613_000a, 80, 6)).unwrap();
        assert!(t.node_ports.contains_key(&vip_key(0, 30080, 6)));
        for h in 0..1000 {
            assert_eq!(s.pick(h, true).unwrap().ip, 0xc612_0102, "local only");
        }
        let remote = (0..1000).filter(|&h| s.pick(h, false).unwrap().ip == 0xc612_0902);
        assert!(remote.count() > 300);
        // A replace keeps the id (affinity) and a delete empties the table.
        let id = s.id;
        st.set_service("default/web", svc(&[]));
        let t = st.compile(4, &|_, _| None);
        let s = t.vips.get(&vip_key(0xc613_000a, 80, 6)).unwrap();
        assert_eq!(s.id, id);
        assert!(s.pick(1, false).is_none());
        st.del_service("default/web");
        assert!(!st.compile(4, &|_, _| None).enabled);
    }

    /// The maps as the full rebuild made them: every service in name
    /// order, the last write winning.
    fn rebuilt(st: &ServiceState) -> VipIndex {
        let mut ix = VipIndex::default();
        for (spec, [svc4, svc6]) in st.services.values() {
            for ip in &spec.ips {
                match *ip {
                    IpAddr::V4(a) => {
                        ix.vips
                            .insert(vip_key(ip_u32(a), spec.port, spec.proto), svc4.clone());
                        ix.vip_addrs.insert(ip_u32(a));
                    }
                    IpAddr::V6(a) => {
                        ix.vips6
                            .insert(vip_key6(u128::from(a), spec.port, spec.proto), svc6.clone());
                        ix.vip_addrs6.insert(u128::from(a));
                    }
                }
            }
            if spec.node_port != 0 {
                let k = vip_key(0, spec.node_port, spec.proto);
                if !svc4.backends.is_empty() || svc6.backends.is_empty() {
                    ix.node_ports.insert(k, svc4.clone());
                }
                if !svc6.backends.is_empty() {
                    ix.node_ports6.insert(k, svc6.clone());
                }
            }
        }
        ix
    }

    fn same<K: std::hash::Hash + Eq + std::fmt::Debug>(
        a: &HashMap<K, Arc<Service>, Fast>,
        b: &HashMap<K, Arc<Service>, Fast>,
    ) -> bool {
        a.len() == b.len()
            && a.iter()
                .all(|(k, v)| b.get(k).is_some_and(|w| Arc::ptr_eq(v, w)))
    }

    proptest::proptest! {
        /// After any sequence of adds, replaces and deletes of services
        /// that share VIPs, ports and NodePorts, the incrementally kept maps
        /// equal a rebuild from every service.
        #[test]
        fn incremental_maps_equal_a_full_rebuild(
            steps in proptest::collection::vec(
                (0u8..6, proptest::option::of((
                    proptest::collection::vec(0u8..6, 0..3), 0u8..2, 0u8..3, 0u8..2, 0u8..3,
                ))),
                1..40,
            )
        ) {
            let ips: [IpAddr; 6] = [
                "198.19.0.1".parse().unwrap(), "198.19.0.2".parse().unwrap(),
                "198.19.0.3".parse().unwrap(), "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(), "198.19.0.1".parse().unwrap(),
            ];
            let backends: [&[&str]; 3] = [&[], &["198.18.1.2"], &["2001:db8:1::2", "198.18.1.3"]];
            let mut st = ServiceState::new(Settings { maglev_size: 7, ..Settings::default() });
            for (name, spec) in steps {
                let name = format!("ns/s{name}");
                match spec {
                    None => { st.del_service(&name); }
                    Some((vips, port, node_port, proto, be)) => {
                        st.set_service(&name, ServiceSpec {
                            ips: vips.iter().map(|&i| ips[usize::from(i)]).collect(),
                            port: 80 + u16::from(port),
                            proto: if proto == 0 { 6 } else { 17 },
                            node_port: [0, 30080, 30081][usize::from(node_port)],
                            local_only: false,
                            affinity_s: 0,
                            backends: backends[usize::from(be)].iter().map(|ip| BackendSpec {
                                ip: ip.parse().unwrap(), port: 8080, weight: 1, local: true,
                            }).collect(),
                        });
                    }
                }
                let want = rebuilt(&st);
                let t = st.compile(0, &|_, _| None);
                proptest::prop_assert!(same(&t.vips, &want.vips));
                proptest::prop_assert!(same(&t.vips6, &want.vips6));
                proptest::prop_assert!(same(&t.node_ports, &want.node_ports));
                proptest::prop_assert!(same(&t.node_ports6, &want.node_ports6));
                proptest::prop_assert_eq!(&t.vip_addrs, &want.vip_addrs);
                proptest::prop_assert_eq!(&t.vip_addrs6, &want.vip_addrs6);
            }
        }
    }

    #[test]
    fn policy_compile_keeps_counters_and_isolates() {
        let mut st = ServiceState::new(Settings::default());
        let pod: Ipv4Addr = "198.18.1.2".parse().unwrap();
        st.set_policy(
            "ns/deny-all",
            PolicySpec {
                pods: vec![pod.into()],
                ingress: Some(vec![]),
                egress: None,
            },
        );
        st.set_policy(
            "ns/allow-block",
            PolicySpec {
                pods: vec![pod.into()],
                ingress: Some(vec![RuleSpec {
                    peers: Some(vec![PeerSpec::Block {
                        cidr: ("198.18.0.0".parse().unwrap(), 16),
                        except: vec![("198.18.2.0".parse().unwrap(), 24)],
                    }]),
                    ports: vec![],
                }]),
                egress: None,
            },
        );
        let t = st.compile(0, &|_, _| None);
        let p = &t.policy;
        use crate::policy::Verdict;
        let a = u32::from(pod);
        assert_eq!(p.allow(0xc612_0302, a, 6, 80), Verdict::Allow);
        assert_eq!(p.allow(0xc612_0202, a, 6, 80), Verdict::DenyIngress);
        assert_eq!(
            p.allow(a, 0xc612_0202, 6, 80),
            Verdict::Allow,
            "egress open"
        );
        st.set_policy(
            "ns/other",
            PolicySpec {
                pods: vec![],
                ingress: None,
                egress: None,
            },
        );
        let t2 = st.compile(0, &|_, _| None);
        let carried: u64 = t2.policy.counters.iter().map(|c| c.load(Relaxed)).sum();
        assert_eq!(carried, 1, "rule counters survive a recompile");
    }
}
