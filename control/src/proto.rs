//! Wire types of the control protocol.
//!
//! Every line is one JSON object. A request is
//! `{"id": N, "op": "route.add", "args": {…}}`; its response
//! `{"id": N, "result": …}` or `{"id": N, "error": {"code": "…", "message": "…"}}`.
//! The first request of a connection must be `hello` with the protocol
//! version. Events of a subscription arrive as `{"event": {…}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the server accepts (bytes, newline excluded).
pub const MAX_LINE: usize = 1 << 20;
/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/vrouter/vrouterd.sock";

/// A request line.
///
/// Deserialised by hand (see `RequestFields`) rather than with
/// `#[serde(flatten)]`, which would buffer the whole request (a batch of
/// thousands of routes) into an intermediate tree before reading it again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Request;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a request object {\"id\", \"op\", \"args\"}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Request, A::Error> {
                let mut fields = RequestFields { map, id: None };
                let op =
                    Op::deserialize(serde::de::value::MapAccessDeserializer::new(&mut fields))?;
                let id = fields
                    .id
                    .ok_or_else(|| serde::de::Error::missing_field("id"))?;
                Ok(Request { id, op })
            }
        }
        d.deserialize_map(V)
    }
}

/// The map of a request as `Op`'s (adjacently tagged) deserialiser sees it:
/// `op` and `args` pass through, `id` is taken out on the way, anything else
/// is refused. `Op` reads `op` then `args` without buffering when they come
/// in that order, as every client here sends them.
struct RequestFields<A> {
    map: A,
    id: Option<u64>,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for &mut RequestFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::{Error, IntoDeserializer};
        loop {
            let Some(key) = self.map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Ok(None);
            };
            match &*key {
                "id" => {
                    if self.id.is_some() {
                        return Err(A::Error::duplicate_field("id"));
                    }
                    self.id = Some(self.map.next_value()?);
                }
                "op" | "args" => {
                    let k: serde::de::value::StrDeserializer<'_, A::Error> =
                        key.as_ref().into_deserializer();
                    return seed.deserialize(k).map(Some);
                }
                other => return Err(A::Error::unknown_field(other, &["id", "op", "args"])),
            }
        }
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Every operation, with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args")]
pub enum Op {
    #[serde(rename = "hello")]
    Hello(Hello),
    #[serde(rename = "show.ports")]
    ShowPorts,
    #[serde(rename = "show.interfaces")]
    ShowInterfaces,
    #[serde(rename = "show.vrfs")]
    ShowVrfs,
    #[serde(rename = "show.bridges")]
    ShowBridges,
    #[serde(rename = "show.mac")]
    ShowMac(BridgeSel),
    #[serde(rename = "show.routes")]
    ShowRoutes(RouteSel),
    #[serde(rename = "show.neighbors")]
    ShowNeighbors,
    #[serde(rename = "show.endpoints")]
    ShowEndpoints,
    #[serde(rename = "show.counters")]
    ShowCounters,
    #[serde(rename = "show.errors")]
    ShowErrors,
    #[serde(rename = "show.runtime")]
    ShowRuntime,
    #[serde(rename = "route.add")]
    RouteAdd(Route),
    #[serde(rename = "route.replace")]
    RouteReplace(Route),
    #[serde(rename = "route.del")]
    RouteDel(RouteKey),
    #[serde(rename = "neighbor.add")]
    NeighborAdd(Neighbor),
    #[serde(rename = "neighbor.del")]
    NeighborDel(NeighborKey),
    #[serde(rename = "address.add")]
    AddressAdd(Address),
    #[serde(rename = "address.del")]
    AddressDel(Address),
    #[serde(rename = "static-mac.add")]
    StaticMacAdd(StaticMac),
    #[serde(rename = "static-mac.del")]
    StaticMacDel(StaticMac),
    #[serde(rename = "mac.flush")]
    MacFlush(MacFlush),
    #[serde(rename = "endpoint.add")]
    EndpointAdd(Endpoint),
    #[serde(rename = "endpoint.del")]
    EndpointDel(EndpointKey),
    #[serde(rename = "show.vteps")]
    ShowVteps,
    /// Overlay routes (prefix → remote VTEP + inner MAC) of a VRF or all.
    #[serde(rename = "show.overlay-routes")]
    ShowOverlayRoutes(OverlaySel),
    /// Adds a remote VTEP to an L2 VNI's flood list (and accepts it).
    #[serde(rename = "vxlan.flood.add")]
    VxlanFloodAdd(VxlanRemote),
    /// Removes a remote VTEP from an L2 VNI's flood list.
    #[serde(rename = "vxlan.flood.del")]
    VxlanFloodDel(VxlanRemote),
    /// A static remote MAC of an L2 VNI (behind a known remote VTEP).
    #[serde(rename = "vxlan.mac.add")]
    VxlanMacAdd(VxlanMac),
    #[serde(rename = "vxlan.mac.del")]
    VxlanMacDel(VxlanMac),
    /// Adds a service (`exists` if it is there).
    #[serde(rename = "service.add")]
    ServiceAdd(Service),
    /// Adds or replaces a service (its backends, ports, VIPs).
    #[serde(rename = "service.replace")]
    ServiceReplace(Service),
    #[serde(rename = "service.del")]
    ServiceDel(ObjectKey),
    /// Adds a NetworkPolicy (`exists` if it is there).
    #[serde(rename = "policy.add")]
    PolicyAdd(Policy),
    #[serde(rename = "policy.replace")]
    PolicyReplace(Policy),
    #[serde(rename = "policy.del")]
    PolicyDel(ObjectKey),
    #[serde(rename = "show.services")]
    ShowServices,
    /// Policies with their per-rule counters.
    #[serde(rename = "show.policies")]
    ShowPolicies,
    /// Conntrack capacity, flows, fill ratio and refusals.
    #[serde(rename = "show.conntrack")]
    ShowConntrack,
    /// Applies every op in order, all or nothing.
    #[serde(rename = "batch")]
    Batch(Batch),
    /// Replaces the desired state of one scope.
    #[serde(rename = "sync")]
    Sync(Sync),
    #[serde(rename = "subscribe")]
    Subscribe(Subscribe),
    /// Traces the next `count` packets each worker receives.
    #[serde(rename = "trace.add")]
    TraceAdd(TraceAdd),
    /// The traces recorded so far.
    #[serde(rename = "trace.show")]
    TraceShow,
    /// Stops tracing and forgets the traces.
    #[serde(rename = "trace.clear")]
    TraceClear,
    /// Runs a synthetic packet through the live tables, without sending it.
    #[serde(rename = "trace.packet")]
    TracePacket(TracePacket),
    /// Arms a capture (of drops, or of one port's traffic).
    #[serde(rename = "capture.start")]
    CaptureStart(CaptureStart),
    /// Captured packets so far (and whether the capture is still armed).
    #[serde(rename = "capture.read")]
    CaptureRead,
    /// Disarms the capture.
    #[serde(rename = "capture.stop")]
    CaptureStop,
}

impl Op {
    /// Every op name, for error messages and completion.
    pub const NAMES: &'static [&'static str] = &[
        "hello",
        "show.ports",
        "show.interfaces",
        "show.vrfs",
        "show.bridges",
        "show.mac",
        "show.routes",
        "show.neighbors",
        "show.endpoints",
        "show.counters",
        "show.errors",
        "show.runtime",
        "route.add",
        "route.replace",
        "route.del",
        "neighbor.add",
        "neighbor.del",
        "address.add",
        "address.del",
        "static-mac.add",
        "static-mac.del",
        "mac.flush",
        "endpoint.add",
        "endpoint.del",
        "show.vteps",
        "show.overlay-routes",
        "vxlan.flood.add",
        "vxlan.flood.del",
        "vxlan.mac.add",
        "vxlan.mac.del",
        "service.add",
        "service.replace",
        "service.del",
        "policy.add",
        "policy.replace",
        "policy.del",
        "show.services",
        "show.policies",
        "show.conntrack",
        "batch",
        "sync",
        "subscribe",
        "trace.add",
        "trace.show",
        "trace.clear",
        "trace.packet",
        "capture.start",
        "capture.read",
        "capture.stop",
    ];

    /// True for operations that change state (allowed inside `batch`).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Op::RouteAdd(_)
                | Op::RouteReplace(_)
                | Op::RouteDel(_)
                | Op::NeighborAdd(_)
                | Op::NeighborDel(_)
                | Op::AddressAdd(_)
                | Op::AddressDel(_)
                | Op::StaticMacAdd(_)
                | Op::StaticMacDel(_)
                | Op::MacFlush(_)
                | Op::EndpointAdd(_)
                | Op::EndpointDel(_)
                | Op::VxlanFloodAdd(_)
                | Op::VxlanFloodDel(_)
                | Op::VxlanMacAdd(_)
                | Op::VxlanMacDel(_)
                | Op::ServiceAdd(_)
                | Op::ServiceReplace(_)
                | Op::ServiceDel(_)
                | Op::PolicyAdd(_)
                | Op::PolicyReplace(_)
                | Op::PolicyDel(_)
        )
    }
}

/// `hello`: the first request of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub version: u32,
    #[serde(default)]
    pub client: String,
}

/// `trace.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceAdd {
    /// Packets per worker (at most 10000).
    pub count: u32,
}

/// `trace.packet`: a synthetic packet entering on `in_port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracePacket {
    pub in_port: String,
    pub src: String,
    pub dst: String,
    /// `icmp`, `tcp` or `udp` (default `icmp`).
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub sport: Option<u16>,
    #[serde(default)]
    pub dport: Option<u16>,
    /// Default: a locally administered MAC.
    #[serde(default)]
    pub src_mac: Option<String>,
    /// Default: the MAC of the interface the packet enters.
    #[serde(default)]
    pub dst_mac: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
    /// TTL or hop limit (default 64).
    #[serde(default)]
    pub ttl: Option<u8>,
}

/// `capture.start`: `drops`, or `port` (received and transmitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStart {
    #[serde(default)]
    pub drops: bool,
    #[serde(default)]
    pub port: Option<String>,
    /// Packets to keep at most (default 1000, at most 100000).
    #[serde(default)]
    pub count: Option<u32>,
    /// Keep one matching packet in this many (default 1: every one).
    #[serde(default)]
    pub sample: Option<u32>,
}

/// The server's answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    pub version: u32,
    pub server: String,
}

/// Selects one bridge domain (or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSel {
    #[serde(default)]
    pub bridge: Option<String>,
}

/// Selects routes of a VRF (default `default`), optionally one family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSel {
    #[serde(default)]
    pub vrf: Option<String>,
    /// `ipv4` or `ipv6`.
    #[serde(default)]
    pub family: Option<String>,
}

/// Selects overlay routes: of one VRF (default all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySel {
    #[serde(default)]
    pub vrf: Option<String>,
}

/// A static route: through gateways (`via`), onto an interface, an
/// `action`, or (with `remote`) an overlay route into a VXLAN tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub vrf: Option<String>,
    pub prefix: String,
    #[serde(default)]
    pub via: Vec<String>,
    #[serde(default)]
    pub interface: Option<String>,
    /// `drop` or `unreachable` instead of `via`.
    #[serde(default)]
    pub action: Option<String>,
    /// Overlay route: the remote VTEP address (another node's VTEP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Overlay route: the inner destination MAC (the remote node's VXLAN
    /// device on that VNI). Required with `remote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Overlay route: the L3 VNI; default the VNI bound to the route's VRF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Overlay route: the local VTEP; needed only when several VTEPs carry
    /// an L3 VNI of the VRF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
}

/// Names a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteKey {
    #[serde(default)]
    pub vrf: Option<String>,
    pub prefix: String,
}

/// A static neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    pub interface: String,
    pub ip: String,
    pub mac: String,
}

/// Names a neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborKey {
    pub interface: String,
    pub ip: String,
}

/// An interface address (`198.18.0.1/24`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub interface: String,
    pub address: String,
}

/// A static MAC entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticMac {
    pub bridge: String,
    pub mac: String,
    pub interface: String,
}

/// Flushes learned MACs of a bridge (optionally of one interface).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacFlush {
    pub bridge: String,
    #[serde(default)]
    pub interface: Option<String>,
}

/// A pod: who it is and where it is attached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub node: String,
    pub ips: Vec<String>,
    pub mac: String,
    /// The vrouterd interface the pod is attached to.
    pub interface: String,
}

/// Names a service or a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// A service: VIPs + port + protocol → backends. A Kubernetes Service with
/// several ports is one object per port (e.g. name `web/http`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// ClusterIP, external IPs and LoadBalancer IPs, IPv4 and/or IPv6 (each
    /// family balances over its own backends).
    #[serde(default)]
    pub ips: Vec<String>,
    pub port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// NodePort on every address of the node (0 or absent: none).
    #[serde(default)]
    pub node_port: Option<u16>,
    /// `externalTrafficPolicy: Local`: NodePort uses local backends only and
    /// keeps the client's source address.
    #[serde(default)]
    pub external_local: bool,
    /// `sessionAffinity: ClientIP` with this timeout (seconds).
    #[serde(default)]
    pub affinity_timeout_s: Option<u32>,
    #[serde(default)]
    pub backends: Vec<Backend>,
}

/// A service backend (an endpoint address of the service).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub ip: String,
    pub port: u16,
    /// Relative weight (default 1; 0 = drain: no new flows).
    #[serde(default)]
    pub weight: Option<u16>,
    /// On this node (default true). A NodePort flow to a backend that is not
    /// local is SNATed to the node address.
    #[serde(default)]
    pub local: Option<bool>,
}

/// A NetworkPolicy, its selectors already resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// The selected pods' addresses.
    pub pods: Vec<String>,
    /// `ingress` and/or `egress` (the policyTypes): the directions in which
    /// the selected pods are isolated. Default: `ingress`, plus `egress` if
    /// `egress` rules are given.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub ingress: Vec<PolicyRule>,
    #[serde(default)]
    pub egress: Vec<PolicyRule>,
}

/// One ingress (`from`) or egress (`to`) rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Peers; absent or empty = any peer.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Ports; absent or empty = any port and protocol.
    #[serde(default)]
    pub ports: Vec<PolicyPort>,
}

/// A peer: pods/namespaces resolved to `ips`, or an `ip_block` with `except`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub ip_block: Option<String>,
    #[serde(default)]
    pub except: Vec<String>,
}

/// A port or port range (`port`..=`end_port`); named ports are resolved by
/// the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPort {
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Absent: every port of the protocol.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub end_port: Option<u16>,
}

/// Names an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointKey {
    pub namespace: String,
    pub name: String,
}

/// A remote VTEP of a VNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanRemote {
    pub vtep: String,
    pub vni: u32,
    pub remote: String,
}

/// A static remote MAC of an L2 VNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanMac {
    pub vtep: String,
    pub vni: u32,
    pub mac: String,
    pub remote: String,
    /// The endpoint's IPv4 address: ARP requests for it are answered locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// `batch`: changes applied in order, all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub ops: Vec<BatchOp>,
}

/// One change inside a batch (`{"op": …, "args": …}`, no id): exactly
/// `Op`'s own form, so it is read directly (no `flatten`, which would buffer
/// each change before reading it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchOp {
    pub op: Op,
}

/// `sync`: the complete desired state of a scope. Objects of the scope that
/// are not listed are removed, listed ones are added or changed, unchanged
/// ones are left alone. A generation not newer than the scope's last one is
/// refused (a stale agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    pub scope: String,
    pub generation: u64,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub neighbors: Vec<Neighbor>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// What a `sync` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncResult {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// `subscribe`: event kinds to receive (`mac`, `neighbor`, `port`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub events: Vec<String>,
}

/// A structured error: a stable code and a message naming the object and
/// the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// Error codes.
pub mod code {
    pub const BAD_JSON: &str = "bad_json";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNKNOWN_OP: &str = "unknown_op";
    pub const HELLO_FIRST: &str = "hello_first";
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub const NOT_FOUND: &str = "not_found";
    pub const EXISTS: &str = "exists";
    pub const INVALID: &str = "invalid";
    pub const TOO_LARGE: &str = "too_large";
    pub const STALE: &str = "stale_generation";
    pub const INTERNAL: &str = "internal";
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// Parses one request line, telling bad JSON, unknown ops and bad
/// arguments apart. The id is recovered when possible so the error can
/// answer it.
pub fn parse_request(line: &str) -> Result<Request, (u64, ApiError)> {
    // The common case parses once; only a failure is parsed again, as a
    // generic value, to say precisely what is wrong.
    match serde_json::from_str::<Request>(line) {
        Ok(r) => Ok(r),
        Err(_) => Err(classify(line)),
    }
}

fn classify(line: &str) -> (u64, ApiError) {
    match classify_inner(line) {
        Err(e) => e,
        Ok(()) => (0, ApiError::new(code::BAD_REQUEST, "request: malformed")),
    }
}

fn classify_inner(line: &str) -> Result<(), (u64, ApiError)> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| (0, ApiError::new(code::BAD_JSON, format!("request: {e}"))))?;
    let id = v.get("id").and_then(Value::as_u64).unwrap_or(0);
    let Some(op) = v.get("op").and_then(Value::as_str).map(str::to_string) else {
        return Err((
            id,
            ApiError::new(code::BAD_REQUEST, "request: missing `op` (a string)"),
        ));
    };
    if !Op::NAMES.contains(&op.as_str()) {
        return Err((
            id,
            ApiError::new(code::UNKNOWN_OP, format!("request: unknown op `{op}`")),
        ));
    }
    if v.get("id").is_some_and(|i| !i.is_u64()) {
        return Err((
            0,
            ApiError::new(
                code::BAD_REQUEST,
                "request: `id` must be a non-negative integer",
            ),
        ));
    }
    // From the text, not the Value: a Value keeps only the last of
    // duplicate keys, and a duplicate key must be refused.
    serde_json::from_str::<Request>(line)
        .map(|_| ())
        .map_err(|e| (id, ApiError::new(code::BAD_REQUEST, format!("{op}: {e}"))))
}

/// Information returned by `show.*`.
pub mod info {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Port {
        pub name: String,
        pub driver: String,
        pub mac: String,
        pub rx_packets: u64,
        pub rx_bytes: u64,
        pub rx_dropped: u64,
        /// Descriptors the kernel found no fill-ring frame for (AF_XDP;
        /// 0 for other drivers): the worker fell behind refilling.
        #[serde(default)]
        pub rx_fill_empty: u64,
        pub tx_packets: u64,
        pub tx_bytes: u64,
        pub tx_dropped: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Interface {
        pub name: String,
        pub port: Option<String>,
        pub vlan: u16,
        /// `bridged`, `routed` or `bvi`.
        pub mode: String,
        pub bridge: Option<String>,
        pub vrf: Option<String>,
        pub mac: String,
        pub mtu: u16,
        pub addresses: Vec<String>,
        pub rx_packets: u64,
        pub tx_packets: u64,
        pub drops: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Bridge {
        pub name: String,
        pub members: Vec<String>,
        pub gateway: Option<String>,
        pub macs: usize,
        pub mac_limit: u32,
        pub mac_age: u32,
        pub learning: bool,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Mac {
        pub bridge: String,
        pub mac: String,
        pub interface: String,
        #[serde(rename = "static")]
        pub is_static: bool,
        pub age: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Route {
        pub vrf: String,
        pub prefix: String,
        /// `local`, `connected`, `static`, `neighbor`.
        pub source: String,
        pub next_hop: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Neighbor {
        pub interface: String,
        pub ip: String,
        pub mac: String,
        #[serde(rename = "static")]
        pub is_static: bool,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Counter {
        pub name: String,
        pub value: u64,
        pub drop: bool,
        pub help: String,
    }

    /// A local VTEP and its tunnels (`show.vteps`); counters are sums over
    /// its tunnels (inner frames).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Vtep {
        pub name: String,
        pub local: String,
        pub udp_port: u16,
        /// Underlay VRF and interface.
        pub vrf: String,
        pub interface: String,
        pub inner_mtu: u16,
        pub ttl: u8,
        /// `copy` or the fixed DSCP.
        pub dscp: String,
        pub source_ports: String,
        pub rx_packets: u64,
        pub rx_bytes: u64,
        pub tx_packets: u64,
        pub tx_bytes: u64,
        pub tunnels: Vec<VxlanTunnel>,
    }

    /// An overlay route (`show.overlay-routes`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OverlayRoute {
        pub vrf: String,
        pub prefix: String,
        pub vtep: String,
        pub vni: u32,
        pub remote: String,
        /// Inner destination MAC.
        pub mac: String,
        /// The tunnel interface (`vxlan<VNI>-<remote>`).
        pub interface: String,
    }

    /// One (VNI, remote VTEP) tunnel.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct VxlanTunnel {
        pub vtep: String,
        pub vni: u32,
        /// `bridge <name>` or `vrf <name>`.
        pub bound: String,
        pub remote: String,
        pub interface: String,
        /// In the flood list.
        pub flood: bool,
        /// Accepted as a source (false once removed at run time).
        pub accepted: bool,
        pub rx_packets: u64,
        pub rx_bytes: u64,
        pub tx_packets: u64,
        pub tx_bytes: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Node {
        pub name: String,
        pub calls: u64,
        pub packets: u64,
        pub clocks_per_packet: f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let r = Request {
            id: 3,
            op: Op::RouteDel(RouteKey {
                vrf: None,
                prefix: "198.19.0.0/16".into(),
            }),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"id":3,"op":"route.del","args":{"vrf":null,"prefix":"198.19.0.0/16"}}"#
        );
        assert_eq!(parse_request(&s).unwrap(), r);
        let show: Request = parse_request(r#"{"id":1,"op":"show.ports"}"#).unwrap();
        assert_eq!(show.op, Op::ShowPorts);
        assert_eq!(parse_request("{nope").unwrap_err().1.code, code::BAD_JSON);
        assert_eq!(
            parse_request(r#"{"id":4,"op":"route.ad"}"#).unwrap_err(),
            (
                4,
                ApiError::new(code::UNKNOWN_OP, "request: unknown op `route.ad`")
            )
        );
        let (id, e) =
            parse_request(r#"{"id":5,"op":"route.del","args":{"prefix":7}}"#).unwrap_err();
        assert_eq!((id, e.code.as_str()), (5, code::BAD_REQUEST));
        assert!(e.message.contains("invalid type"), "{e}");
        let (_, e) = parse_request(r#"{"id":5,"op":"route.del","args":{}}"#).unwrap_err();
        assert!(e.message.contains("missing field `prefix`"), "{e}");
        let (_, e) =
            parse_request(r#"{"id":5,"op":"route.del","args":{"prefix":"a","prefix":"b"}}"#)
                .unwrap_err();
        assert!(e.message.contains("duplicate field"), "{e}");
        let (_, e) = parse_request(r#"{"id":5,"op":"route.del","args":{"prefix":"a","color":1}}"#)
            .unwrap_err();
        assert!(e.message.contains("unknown field `color`"), "{e}");
        let (_, e) = parse_request(r#"{"id":-1,"op":"show.ports"}"#).unwrap_err();
        assert_eq!(e.code, code::BAD_REQUEST);
        // Key order does not matter (args first is buffered, still parsed).
        let r2: Request = parse_request(
            r#"{"args":{"vrf":null,"prefix":"198.19.0.0/16"},"op":"route.del","id":3}"#,
        )
        .unwrap();
        assert_eq!(r2, r);
        assert!(
            parse_request(r#"{"op":"show.ports"}"#).is_err(),
            "id is required"
        );
        assert!(parse_request(r#"{"id":1,"id":2,"op":"show.ports"}"#).is_err());
        assert!(parse_request(r#"{"id":1,"op":"show.ports","extra":0}"#).is_err());
        assert!(parse_request(r#"[1,2]"#).is_err());
        for n in Op::NAMES {
            assert!(!n.is_empty());
        }
    }

    #[test]
    fn batch_nests_ops() {
        let b = parse_request(
            r#"{"id":9,"op":"batch","args":{"ops":[{"op":"route.del","args":{"prefix":"198.19.0.0/16"}},{"op":"neighbor.del","args":{"interface":"a","ip":"198.18.0.2"}}]}}"#,
        )
        .unwrap();
        let Op::Batch(b) = b.op else { panic!() };
        assert_eq!(b.ops.len(), 2);
        assert!(b.ops.iter().all(|o| o.op.is_change()));
    }
}
