//! The cluster as the agent sees it: the few fields of each Kubernetes
//! object that matter for vrouterd, extracted from the API objects (or from
//! etcd leases). Keeping these small structs instead of whole objects keeps
//! the agent's memory proportional to what it uses (250k endpoints).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

/// Node annotation carrying the node's VTEP address.
pub const ANN_VTEP_IP: &str = "vrouter.io/vtep-ip";
/// Node annotation carrying the MAC of the node's VXLAN (L3 VNI) interface.
pub const ANN_VTEP_MAC: &str = "vrouter.io/vtep-mac";
/// Pod annotation naming the vrouterd interface of the pod's endpoint;
/// without it, the pod bridge's routed interface (`bvi-pods`).
pub const ANN_POD_INTERFACE: &str = "vrouter.io/interface";
/// Pod annotation with the pod's MAC; without it the MAC is [`pod_mac`]
/// (what the CNI plugin sets).
pub const ANN_POD_MAC: &str = "vrouter.io/mac";
/// EndpointSlice label naming its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `namespace/name`.
pub type Key = String;

/// A node: its pod CIDRs, its underlay address and its VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub pod_cidrs: Vec<String>,
    pub internal_ips: Vec<IpAddr>,
    pub vtep_ip: Option<IpAddr>,
    pub vtep_mac: Option<String>,
}

/// A pod (only what endpoints and policies need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub host_network: bool,
    pub interface: Option<String>,
    pub mac: Option<String>,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: String,
    pub node_port: Option<u16>,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// ClusterIPs, externalIPs and LoadBalancer ingress IPs.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub external_local: bool,
    pub affinity_timeout_s: Option<u32>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    pub ready: bool,
}

/// An EndpointSlice: its service, ports (name → port/protocol) and endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub namespace: String,
    pub name: String,
    pub service: String,
    pub ports: Vec<(String, u16, String)>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// A label selector (matchLabels and matchExpressions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values)
    pub expressions: Vec<(String, String, Vec<String>)>,
}

/// A NetworkPolicy peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// podSelector and/or namespaceSelector (None: the policy's namespace
    /// for pods / every pod for namespaces, as the API defines).
    Pods {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    IpBlock {
        cidr: String,
        except: Vec<String>,
    },
}

/// A NetworkPolicy port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Option<String>,
    /// A number; named ports are resolved per pod by the API semantics,
    /// which the control ops cannot express: see `translate`.
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

/// A port number or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// An ingress or egress rule (None: the field was absent = any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<PolicyPort>>,
}

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub types: Vec<String>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// Everything the agent knows, keyed by name (`ns/name` for namespaced).
///
/// Sources change it through the `set_*` methods (or replace a whole map
/// and call [`Cluster::mark_all`]), which record in [`Cluster::dirty`] what
/// the incremental translation (`translate::Translator`) must redo.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub pods: BTreeMap<Key, PodInfo>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub services: BTreeMap<Key, ServiceInfo>,
    pub slices: BTreeMap<Key, SliceInfo>,
    pub policies: BTreeMap<Key, PolicyInfo>,
    /// What changed since the last translation.
    pub dirty: Dirty,
    /// EndpointSlices (`ns/slice`) of each Service (`ns/service`), kept by
    /// [`Cluster::set_slice`] and rebuilt by [`Cluster::reindex`].
    slice_index: BTreeMap<Key, std::collections::BTreeSet<Key>>,
}

/// What changed in a [`Cluster`] since it was last translated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Translate everything (a relist, a map replaced whole).
    pub all: bool,
    /// Nodes changed: the route scope.
    pub nodes: bool,
    /// Pods changed (`ns/name`): their endpoint shards.
    pub pods: std::collections::BTreeSet<Key>,
    /// Services whose objects must be rebuilt (`ns/service`): the Service
    /// itself or one of its EndpointSlices changed.
    pub services: std::collections::BTreeSet<Key>,
    /// Policies must be resolved again (a policy, a pod's labels or
    /// addresses, or a namespace changed).
    pub policies: bool,
}

impl Dirty {
    /// Whether anything is marked.
    pub fn any(&self) -> bool {
        self.all
            || self.nodes
            || self.policies
            || !self.pods.is_empty()
            || !self.services.is_empty()
    }
}

impl Cluster {
    /// Marks everything for translation (after a map was replaced whole).
    pub fn mark_all(&mut self) {
        self.dirty.all = true;
    }

    /// Rebuilds the Service → EndpointSlices index (after `slices` was
    /// changed other than through [`Cluster::set_slice`]).
    pub fn reindex(&mut self) {
        self.slice_index.clear();
        for (k, s) in &self.slices {
            self.slice_index
                .entry(format!("{}/{}", s.namespace, s.service))
                .or_default()
                .insert(k.clone());
        }
    }

    /// The keys of the EndpointSlices of Service `namespace/service`.
    pub fn slices_of(&self, namespace: &str, service: &str) -> impl Iterator<Item = &Key> {
        self.slice_index
            .get(&format!("{namespace}/{service}"))
            .into_iter()
            .flatten()
    }

    /// Adds, changes (`Some`) or removes (`None`) a node.
    pub fn set_node(&mut self, key: String, v: Option<NodeInfo>) {
        let changed = match v {
            Some(v) => self.nodes.insert(key, v.clone()).as_ref() != Some(&v),
            None => self.nodes.remove(&key).is_some(),
        };
        self.dirty.nodes |= changed;
    }

    /// Adds, changes or removes a pod.
    pub fn set_pod(&mut self, key: Key, v: Option<PodInfo>) {
        let old = match v {
            Some(v) => {
                let old = self.pods.insert(key.clone(), v);
                if old.as_ref() == self.pods.get(&key) {
                    return;
                }
                old
            }
            None => match self.pods.remove(&key) {
                Some(o) => Some(o),
                None => return,
            },
        };
        // Policies resolve pods by labels and addresses; a pod whose only
        // change is, say, its phase leaves them alone.
        let new = self.pods.get(&key);
        fn relevant(p: Option<&PodInfo>) -> Option<(&BTreeMap<String, String>, &[IpAddr], bool)> {
            p.map(|p| (&p.labels, p.ips.as_slice(), p.host_network))
        }
        if !self.policies.is_empty() && relevant(old.as_ref()) != relevant(new) {
            self.dirty.policies = true;
        }
        self.dirty.pods.insert(key);
    }

    /// Adds, changes or removes a namespace (its labels).
    pub fn set_namespace(&mut self, key: String, v: Option<BTreeMap<String, String>>) {
        let changed = match v {
            Some(v) => self.namespaces.insert(key, v.clone()).as_ref() != Some(&v),
            None => self.namespaces.remove(&key).is_some(),
        };
        self.dirty.policies |= changed && !self.policies.is_empty();
    }

    /// Adds, changes or removes a Service.
    pub fn set_service(&mut self, key: Key, v: Option<ServiceInfo>) {
        let changed = match v {
            Some(v) => self.services.insert(key.clone(), v.clone()).as_ref() != Some(&v),
            None => self.services.remove(&key).is_some(),
        };
        if changed {
            self.dirty.services.insert(key);
        }
    }

    /// Adds, changes or removes an EndpointSlice (its Service is marked,
    /// and the Service it belonged to before, if another).
    pub fn set_slice(&mut self, key: Key, v: Option<SliceInfo>) {
        let old = match v {
            Some(v) => {
                let k = self.slices.insert(key.clone(), v);
                if k.as_ref() == self.slices.get(&key) {
                    return;
                }
                k
            }
            None => match self.slices.remove(&key) {
                Some(o) => Some(o),
                None => return,
            },
        };
        if let Some(o) = &old {
            let svc = format!("{}/{}", o.namespace, o.service);
            if let Some(set) = self.slice_index.get_mut(&svc) {
                set.remove(&key);
                if set.is_empty() {
                    self.slice_index.remove(&svc);
                }
            }
            self.dirty.services.insert(svc);
        }
        if let Some(n) = self.slices.get(&key) {
            let svc = format!("{}/{}", n.namespace, n.service);
            self.slice_index
                .entry(svc.clone())
                .or_default()
                .insert(key.clone());
            self.dirty.services.insert(svc);
        }
    }

    /// Adds, changes or removes a NetworkPolicy.
    pub fn set_policy(&mut self, key: Key, v: Option<PolicyInfo>) {
        let changed = match v {
            Some(v) => self.policies.insert(key, v.clone()).as_ref() != Some(&v),
            None => self.policies.remove(&key).is_some(),
        };
        self.dirty.policies |= changed;
    }
}

fn key(ns: &str, name: &str) -> Key {
    format!("{ns}/{name}")
}

fn parse_ips<'a>(it: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    it.into_iter().filter_map(|s| s.parse().ok()).collect()
}

/// The MAC the agent assumes for a pod without the `vrouter.io/mac`
/// annotation: the CNI plugin's, [`vrouter_control::naming::pod_mac`] of
/// its first address.
pub fn pod_mac(ips: &[IpAddr]) -> String {
    ips.first()
        .map(|ip| vrouter_control::naming::pod_mac(*ip))
        .unwrap_or_default()
}

/// Extracts a Node.
pub fn node_info(n: &Node) -> Option<NodeInfo> {
    let name = n.metadata.name.clone()?;
    let spec = n.spec.as_ref();
    let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty()
        && let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
    {
        pod_cidrs.push(c);
    }
    let internal_ips = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let ann = n.metadata.annotations.as_ref();
    let vtep_ip = ann
        .and_then(|a| a.get(ANN_VTEP_IP))
        .and_then(|s| s.parse().ok());
    let vtep_mac = ann
        .and_then(|a| a.get(ANN_VTEP_MAC))
        .filter(|m| valid_mac(m))
        .cloned();
    Some(NodeInfo {
        name,
        pod_cidrs,
        internal_ips,
        vtep_ip,
        vtep_mac,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Extracts a Pod (None: not schedulable state we care about, or finished).
pub fn pod_info(p: &Pod) -> Option<(Key, PodInfo)> {
    let ns = p.metadata.namespace.clone()?;
    let name = p.metadata.name.clone()?;
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let mut ips: Vec<IpAddr> = Vec::new();
    if !matches!(phase, "Succeeded" | "Failed") {
        if let Some(list) = status.and_then(|s| s.pod_ips.as_ref()) {
            ips = parse_ips(list.iter().map(|i| &i.ip));
        }
        if ips.is_empty()
            && let Some(ip) = status.and_then(|s| s.pod_ip.as_ref())
        {
            ips = parse_ips([ip]);
        }
    }
    let ann = p.metadata.annotations.as_ref();
    let info = PodInfo {
        namespace: ns.clone(),
        name: name.clone(),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        ips,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        interface: ann.and_then(|a| a.get(ANN_POD_INTERFACE)).cloned(),
        mac: ann
            .and_then(|a| a.get(ANN_POD_MAC))
            .filter(|m| valid_mac(m))
            .cloned(),
    };
    Some((key(&ns, &name), info))
}

/// Extracts a Namespace's labels.
pub fn namespace_info(n: &Namespace) -> Option<(String, BTreeMap<String, String>)> {
    Some((
        n.metadata.name.clone()?,
        n.metadata.labels.clone().unwrap_or_default(),
    ))
}

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// Extracts a Service (headless and ExternalName services have no VIP).
pub fn service_info(s: &Service) -> Option<(Key, ServiceInfo)> {
    let ns = s.metadata.namespace.clone()?;
    let name = s.metadata.name.clone()?;
    let spec = s.spec.as_ref()?;
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(c) = &spec.cluster_ips {
        ips.extend(parse_ips(c));
    } else if let Some(c) = &spec.cluster_ip {
        ips.extend(parse_ips([c]));
    }
    if let Some(e) = &spec.external_ips {
        ips.extend(parse_ips(e));
    }
    if let Some(ing) = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        ips.extend(
            ing.iter()
                .filter_map(|i| i.ip.as_ref()?.parse::<IpAddr>().ok()),
        );
    }
    ips.dedup();
    let ports = spec
        .ports
        .as_ref()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        name: p.name.clone().unwrap_or_default(),
                        port: port_u16(p.port)?,
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        node_port: p.node_port.and_then(port_u16),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let affinity_timeout_s = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(10800)
    });
    Some((
        key(&ns, &name),
        ServiceInfo {
            namespace: ns,
            name,
            ips,
            ports,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            affinity_timeout_s,
        },
    ))
}

/// Extracts an EndpointSlice (None: no service label).
pub fn slice_info(s: &EndpointSlice) -> Option<(Key, SliceInfo)> {
    let ns = s.metadata.namespace.clone()?;
    let name = s.metadata.name.clone()?;
    let service = s.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?.clone();
    let ports = s
        .ports
        .as_ref()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        p.port.and_then(port_u16)?,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let endpoints = s
        .endpoints
        .iter()
        .map(|e| SliceEndpoint {
            ips: parse_ips(&e.addresses),
            node: e.node_name.clone(),
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .collect();
    Some((
        key(&ns, &name),
        SliceInfo {
            namespace: ns,
            name,
            service,
            ports,
            endpoints,
        },
    ))
}

fn selector(s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> Selector {
    let Some(s) = s else {
        return Selector::default();
    };
    Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        expressions: s
            .match_expressions
            .as_ref()
            .map(|es| {
                es.iter()
                    .map(|e| {
                        (
                            e.key.clone(),
                            e.operator.clone(),
                            e.values.clone().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn peers(
    list: Option<&Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>>,
) -> Option<Vec<Peer>> {
    let list = list?;
    Some(
        list.iter()
            .map(|p| match &p.ip_block {
                Some(b) => Peer::IpBlock {
                    cidr: b.cidr.clone(),
                    except: b.except.clone().unwrap_or_default(),
                },
                None => Peer::Pods {
                    pods: p.pod_selector.as_ref().map(|s| selector(Some(s))),
                    namespaces: p.namespace_selector.as_ref().map(|s| selector(Some(s))),
                },
            })
            .collect(),
    )
}

fn ports(
    list: Option<&Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>,
) -> Option<Vec<PolicyPort>> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let list = list?;
    Some(
        list.iter()
            .map(|p| PolicyPort {
                protocol: p.protocol.clone(),
                port: p.port.as_ref().map(|v| match v {
                    IntOrString::Int(n) => match port_u16(*n) {
                        Some(n) => PortRef::Number(n),
                        None => PortRef::Name(n.to_string()),
                    },
                    IntOrString::String(s) => match s.parse::<u16>() {
                        Ok(n) if n != 0 => PortRef::Number(n),
                        _ => PortRef::Name(s.clone()),
                    },
                }),
                end_port: p.end_port.and_then(port_u16),
            })
            .collect(),
    )
}

/// Extracts a NetworkPolicy.
pub fn policy_info(p: &NetworkPolicy) -> Option<(Key, PolicyInfo)> {
    let ns = p.metadata.namespace.clone()?;
    let name = p.metadata.name.clone()?;
    let spec = p.spec.as_ref()?;
    let ingress: Vec<Rule> = spec
        .ingress
        .as_ref()
        .map(|rs| {
            rs.iter()
                .map(|r| Rule {
                    peers: peers(r.from.as_ref()),
                    ports: ports(r.ports.as_ref()),
                })
                .collect()
        })
        .unwrap_or_default();
    let egress: Vec<Rule> = spec
        .egress
        .as_ref()
        .map(|rs| {
            rs.iter()
                .map(|r| Rule {
                    peers: peers(r.to.as_ref()),
                    ports: ports(r.ports.as_ref()),
                })
                .collect()
        })
        .unwrap_or_default();
    let types = match &spec.policy_types {
        Some(t) => t.iter().map(|t| t.to_ascii_lowercase()).collect(),
        None if spec.egress.is_some() => vec!["ingress".into(), "egress".into()],
        None => vec!["ingress".into()],
    };
    Some((
        key(&ns, &name),
        PolicyInfo {
            namespace: ns,
            name,
            pod_selector: selector(spec.pod_selector.as_ref()),
            types,
            ingress,
            egress,
        },
    ))
}

impl Selector {
    /// Whether `labels` match (the API's semantics: every term must hold).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, vals)| {
                let got = labels.get(k);
                match op.as_str() {
                    "In" => got.is_some_and(|g| vals.contains(g)),
                    "NotIn" => got.is_none_or(|g| !vals.contains(g)),
                    "Exists" => got.is_some(),
                    "DoesNotExist" => got.is_none(),
                    // An unknown operator matches nothing (never widen a policy).
                    _ => false,
                }
            })
    }
}
