//! The packet pipeline entry: arbitrary bytes as frames, delivered to
//! vrouterd's real router, worker and graph exactly as a port delivers them
//! (in-memory ports, the harness of dataplane/tests/common, included here
//! with `#[path]`), on five nodes:
//!
//! | mode | node | ports |
//! |---|---|---|
//! | 0 `l2l3` | bridge with a BVI (v4+v6) and MAC limit; routed port with a VLAN sub-interface, default routes | 0 br1, 1 br2 (bridged), 2 r1 (routed) |
//! | 1 `vxlan4` | IPv4 VTEP: L2 overlay (VNI 100, flood list, ARP suppression) and L3 overlay (VNI 1) | 0 pod1 (bridged), 1 pod2 (routed), 2 uplink (underlay) |
//! | 2 `vxlan6` | IPv6 VTEP, L2 overlay | 0 pod1 (bridged), 1 uplink (underlay) |
//! | 3 `pod` | pod ports bridged behind a BVI with services (VIP, NodePort, remote backend), a NetworkPolicy, anti-spoofing bindings, a small conntrack with a pod quota | 0 uplink (routed), 1 pod0, 2 pod1 |
//! | 4 `ip6` | IPv6 routing, a smaller MTU, glean | 0 net1, 1 net2 |
//!
//! Input: byte 0 selects the mode (`(b & 7) % 5`) and, unless bit 7 is
//! set, the port (`(b >> 3) % ports`); the rest is one frame. With bit 7 set the rest
//! is a vector of records `[port, len_lo, len_hi, frame...]` (the last one
//! may be short), received in one poll. Every node keeps its state between
//! inputs (learned MACs and neighbours, flows, held packets), as a running
//! vrouterd does.
//!
//! Checked after each input, once nothing moves: no panic; every frame is
//! back in the pool except those held for neighbour resolution; nothing
//! lost or looping in the graph; every frame offered to a port was received
//! or counted as an RX drop.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::conntrack::{ConnTrack, Timeouts};
use vrouter_dataplane::control::Router;
use vrouter_dataplane::graph::Counter;

// The fixtures the pipeline tests use (one copy of the router set-up).
#[path = "../../dataplane/tests/common/mod.rs"]
mod common;
use common::{Harness, bind_api, port_infos};

const L2L3: &str = r#"
[dataplane]
glean-timeout-ms = 50
[[port]]
name = "br1"
driver = "memory"
mac = "02:00:00:00:00:01"
[[port]]
name = "br2"
driver = "memory"
mac = "02:00:00:00:00:02"
[[port]]
name = "r1"
driver = "memory"
mac = "02:00:00:00:00:03"
[[bridge]]
name = "b"
mac-limit = 1000
gateway = { addresses = ["198.18.3.1/24", "2001:db8:3::1/64"], mac = "02:00:00:00:00:0b" }
[[interface]]
name = "br1"
bridge = "b"
[[interface]]
name = "br2"
bridge = "b"
[[interface]]
name = "r1"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "r1.7"
port = "r1"
vlan = 7
addresses = ["198.18.7.1/24"]
[[neighbor]]
interface = "r1"
ip = "198.18.1.2"
mac = "02:00:00:00:01:02"
[[neighbor]]
interface = "r1"
ip = "2001:db8:1::2"
mac = "02:00:00:00:01:02"
[[route]]
prefix = "0.0.0.0/0"
via = ["198.18.1.2"]
[[route]]
prefix = "::/0"
via = ["2001:db8:1::2"]
[[route]]
prefix = "198.18.66.0/24"
action = "unreachable"
"#;

const VXLAN4: &str = r#"
[[port]]
name = "pod1"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "pod2"
driver = "memory"
mac = "02:00:00:00:02:01"
[[port]]
name = "uplink"
driver = "memory"
mac = "02:00:00:00:0a:01"
[[bridge]]
name = "ov"
[[interface]]
name = "pod1"
bridge = "ov"
[[interface]]
name = "pod2"
addresses = ["198.19.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "uplink"
addresses = ["198.18.100.1/24"]
[[neighbor]]
interface = "uplink"
ip = "198.18.100.2"
mac = "02:00:00:00:0b:01"
[[neighbor]]
interface = "uplink"
ip = "198.18.100.3"
mac = "02:00:00:00:0c:01"
[[neighbor]]
interface = "pod2"
ip = "198.19.1.2"
mac = "02:00:00:00:02:02"
[[neighbor]]
interface = "pod2"
ip = "2001:db8:1::2"
mac = "02:00:00:00:02:02"
[[vtep]]
name = "vtep0"
local = "198.18.100.1"
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "ov"
flood = ["198.18.100.2", "198.18.100.3"]
remote-macs = [{ mac = "02:00:00:00:0c:09", remote = "198.18.100.3", ip = "198.19.0.9" }]
[[vni]]
vtep = "vtep0"
vni = 1
vrf = "default"
routes = [
  { prefix = "198.19.2.0/24", remote = "198.18.100.2", mac = "02:00:00:00:0b:02" },
  { prefix = "2001:db8:2::/64", remote = "198.18.100.2", mac = "02:00:00:00:0b:02" },
]
"#;

const VXLAN6: &str = r#"
[[port]]
name = "pod1"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "uplink"
driver = "memory"
mac = "02:00:00:00:0a:01"
[[bridge]]
name = "ov"
[[interface]]
name = "pod1"
bridge = "ov"
[[interface]]
name = "uplink"
addresses = ["2001:db8:100::1/64"]
[[neighbor]]
interface = "uplink"
ip = "2001:db8:100::2"
mac = "02:00:00:00:0b:01"
[[vtep]]
name = "vtep6"
local = "2001:db8:100::1"
ttl = 10
dscp = 10
[[vni]]
vtep = "vtep6"
vni = 100
bridge = "ov"
flood = ["2001:db8:100::2"]
"#;

const POD: &str = r#"
[[port]]
name = "uplink"
driver = "memory"
mac = "02:00:00:00:00:01"
[[port]]
name = "pod0"
driver = "memory"
mac = "02:00:00:00:00:02"
[[port]]
name = "pod1"
driver = "memory"
mac = "02:00:00:00:00:03"
[[bridge]]
name = "pods"
gateway = { addresses = ["198.18.10.1/24", "2001:db8:10::1/64"], mac = "02:00:00:00:00:0b" }
[[interface]]
name = "uplink"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "pod0"
bridge = "pods"
[[interface]]
name = "pod1"
bridge = "pods"
[[neighbor]]
interface = "uplink"
ip = "198.18.1.2"
mac = "02:00:00:00:01:02"
[[route]]
prefix = "0.0.0.0/0"
via = ["198.18.1.2"]
[[service]]
namespace = "default"
name = "web"
ips = ["198.19.0.10"]
port = 80
node_port = 30080
backends = [{ ip = "198.18.10.2", port = 8080 }, { ip = "198.18.1.50", port = 8080, weight = 2 }]
[[service]]
namespace = "default"
name = "dns"
ips = ["198.19.0.53"]
port = 53
protocol = "udp"
backends = [{ ip = "198.18.10.3", port = 53 }]
[[policy]]
namespace = "default"
name = "db"
pods = ["198.18.10.3"]
ingress = [{ peers = [{ ip_block = "198.18.0.0/16", except = ["198.18.200.0/24"] }], ports = [{ protocol = "tcp", port = 5432 }, { protocol = "udp", port = 53 }] }]
"#;

const IP6: &str = r#"
[dataplane]
glean-timeout-ms = 200
[[port]]
name = "net1"
driver = "memory"
mac = "02:00:00:00:01:01"
[[port]]
name = "net2"
driver = "memory"
mac = "02:00:00:00:02:01"
mtu = 1400
[[interface]]
name = "net1"
addresses = ["2001:db8:1::1/64"]
[[interface]]
name = "net2"
addresses = ["2001:db8:2::1/64"]
[[neighbor]]
interface = "net2"
ip = "2001:db8:2::2"
mac = "02:00:00:00:02:02"
[[route]]
prefix = "2001:db8:100::/48"
via = ["2001:db8:2::2"]
[[route]]
prefix = "2001:db8:66::/48"
action = "unreachable"
"#;

/// The pods of mode 3, registered as vrouter-cni does: the pod's MAC pinned
/// to its port, the endpoint (anti-spoofing: MAC + IPv4) on the BVI.
const POD_ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("pod-a", "pod0", "02:00:00:00:10:02", "198.18.10.2"),
    ("pod-b", "pod1", "02:00:00:00:10:03", "198.18.10.3"),
];

/// One node: a router and its single worker on memory ports (4096
/// frames), driven from this thread; `pod` adds a small conntrack with a
/// pod quota and the pods of mode 3.
fn node(cfg: &str, pod: bool) -> Harness {
    let mut h = Harness::with_frames(cfg, 4096);
    if pod {
        h.worker
            .pipeline
            .set_conntrack(ConnTrack::new(1024, 64, Timeouts::default()));
        bind_pods(&mut h.router);
    }
    h
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("fuzz harness setup: {what}: {e}")
}

/// Registers the pods of mode 3 through the control API, as the CNI does.
fn bind_pods(router: &mut Router) {
    let mut api = bind_api("fuzz", port_infos(router), vec![0], 1);
    let path = api.path().to_path_buf();
    for (name, port, mac, ip) in POD_ENDPOINTS {
        let ops = serde_json::json!({"ops": [
            {"op": "static-mac.add", "args": {"bridge": "pods", "mac": mac, "interface": port}},
            {"op": "endpoint.add", "args": {
                "namespace": "default", "name": name, "ips": [ip], "mac": mac,
                "interface": "bvi-pods",
            }},
        ]});
        let batch: proto::Batch =
            serde_json::from_value(ops).unwrap_or_else(|e| die("endpoint", e));
        api.handle(router, &Op::Batch(batch))
            .unwrap_or_else(|e| die("endpoint.add", e.message));
    }
    drop(api);
    let _ = std::fs::remove_file(&path);
}

thread_local! {
    static NODES: RefCell<Vec<Harness>> = RefCell::new(vec![
        node(L2L3, false),
        node(VXLAN4, false),
        node(VXLAN6, false),
        node(POD, true),
        node(IP6, false),
    ]);
}

thread_local! {
    /// `VROUTER_FUZZ_COUNTERS=1`: print each node's non-zero counters after
    /// each input (to see what a corpus reaches: replay it file by file).
    static SHOW_COUNTERS: bool = std::env::var_os("VROUTER_FUZZ_COUNTERS").is_some();
}

/// Splits the input into (port, frame) pairs.
fn frames(data: &[u8], ports: usize) -> Vec<(usize, &[u8])> {
    let Some((&sel, rest)) = data.split_first() else {
        return Vec::new();
    };
    if sel & 0x80 == 0 {
        return vec![(usize::from(sel >> 3) % ports, rest)];
    }
    let mut out = Vec::new();
    let mut rest = rest;
    while let [port, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        out.push((usize::from(*port) % ports, &tail[..len]));
        rest = &tail[len..];
        if out.len() == 64 {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(&sel) = data.first() else { return };
    NODES.with(|nodes| {
        let mut nodes = nodes.borrow_mut();
        let mode = usize::from(sel & 0x07) % nodes.len();
        let node = &mut nodes[mode];
        let input = frames(data, node.ports());
        let before = node.rx_seen();
        for (port, f) in &input {
            node.send(*port, f.to_vec());
        }
        node.run();
        for port in 0..node.ports() {
            node.out(port);
        }
        assert_eq!(
            node.rx_seen() - before,
            input.len() as u64,
            "every offered frame is received or counted as an RX drop"
        );
        assert_eq!(
            node.worker.pool.outstanding(),
            node.worker.pipeline.held(),
            "every frame is back in the pool but the held ones (mode {mode})"
        );
        assert_eq!(node.counter(Counter::GraphLost), 0, "graph-lost");
        assert_eq!(node.counter(Counter::GraphLoop), 0, "graph-loop");
        if SHOW_COUNTERS.with(|s| *s) {
            let c: Vec<String> = Counter::ALL
                .iter()
                .map(|&c| (c, node.counter(c)))
                .filter(|&(_, n)| n > 0)
                .map(|(c, n)| format!("{}={n}", c.name()))
                .collect();
            eprintln!("mode {mode}: {}", c.join(" "));
        }
    });
});
