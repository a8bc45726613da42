//! VXLAN interop with the Linux kernel: node A is vrouterd (VTEP
//! 198.18.100.1) with pod namespaces, node B is a namespace whose kernel
//! VXLAN devices (VTEP 198.18.100.2) carry a Linux bridge (L2 overlay, VNI
//! 100) and routes (L3 overlay, Flannel style, VNI 1). Linux's ping, iperf3
//! and tcpdump check the result; a rogue node sends VXLAN from an unknown
//! VTEP and with an unknown VNI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use vrouter_pktgen_tests::*;

const B_VX1_MAC: &str = "02:00:00:00:0b:02";
const A_VNI1_MAC: &str = "02:76:78:00:00:01";

/// Both nodes, their pods and a rogue namespace `e` behind node B.
///
/// Node A (vrouterd, ns `r`): pod `a` bridged into bridge `ov` (VNI 100,
/// 198.19.0.1/24), pod `p` routed (198.19.1.2/24 via 198.19.1.1, VNI 1).
/// Node B (kernel, ns `b`): pod `c` on bridge br0 with vx100 (198.19.0.3/24),
/// pod `d` routed (198.19.2.2/24 via 198.19.2.1), vx1 with routes to
/// 198.19.1.0/24. Rogue `e` (198.18.101.2) is routed by node B.
fn topology(driver: &str) -> (Topology, usize) {
    topology_with(
        driver,
        &format!(
            r#"routes = [{{ prefix = "198.19.2.0/24", remote = "198.18.100.2", mac = "{B_VX1_MAC}" }}]"#
        ),
    )
}

/// As [`topology`], with `l3_routes` as the L3 VNI's `routes` line (empty:
/// no overlay route in the configuration).
fn topology_with(driver: &str, l3_routes: &str) -> (Topology, usize) {
    let mut t = Topology::new();
    for n in ["r", "a", "p", "b", "c", "d", "e"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rp, _) = t.veth("r", "rp", "p", "pp");
    let (ru, _) = t.veth("r", "ru", "b", "bu");
    t.veth("b", "bc", "c", "pc");
    t.veth("b", "bd", "d", "pd");
    t.veth("b", "be", "e", "pe");
    for i in [&ra, &rp, &ru] {
        t.quiet("r", i);
    }
    let p = t.prefix.clone();
    // Node A's pods. The bridged pod uses the overlay MTU.
    t.exec(
        "a",
        &format!("ip link set {p}pa mtu 1450 && ip addr add 198.19.0.1/24 dev {p}pa"),
    );
    t.exec(
        "p",
        &format!("ip addr add 198.19.1.2/24 dev {p}pp && ip route add default via 198.19.1.1"),
    );
    // Node B: underlay, L2 overlay (bridge + vx100), L3 overlay (vx1 + routes).
    t.exec(
        "b",
        &format!(
            "sysctl -qw net.ipv4.ip_forward=1 && \
             ip addr add 198.18.100.2/24 dev {p}bu && \
             ip link add vx100 type vxlan id 100 local 198.18.100.2 dev {p}bu dstport 4789 && \
             bridge fdb append 00:00:00:00:00:00 dev vx100 dst 198.18.100.1 && \
             ip link add br0 type bridge && ip link set br0 up && \
             ip link set {p}bc mtu 1450 && ip link set {p}bc master br0 && \
             ip link set vx100 master br0 && ip link set vx100 up && \
             ip link add vx1 address {B_VX1_MAC} type vxlan id 1 local 198.18.100.2 dev {p}bu \
                dstport 4789 nolearning && ip link set vx1 up && \
             ip addr add 198.19.2.0/32 dev vx1 && \
             ip neigh add 198.19.1.0 lladdr {A_VNI1_MAC} dev vx1 nud permanent && \
             bridge fdb append {A_VNI1_MAC} dev vx1 dst 198.18.100.1 && \
             ip route add 198.19.1.0/24 via 198.19.1.0 dev vx1 onlink && \
             ip addr add 198.19.2.1/24 dev {p}bd && \
             ip addr add 198.18.101.1/24 dev {p}be"
        ),
    );
    t.exec(
        "c",
        &format!("ip link set {p}pc mtu 1450 && ip addr add 198.19.0.3/24 dev {p}pc"),
    );
    t.exec(
        "d",
        &format!("ip addr add 198.19.2.2/24 dev {p}pd && ip route add default via 198.19.2.1"),
    );
    t.exec(
        "e",
        &format!("ip addr add 198.18.101.2/24 dev {p}pe && ip route add default via 198.18.101.1"),
    );
    let ports = format!(
        "{}{}{}",
        port_toml("a", driver, &ra, 0),
        port_toml("p", driver, &rp, 1),
        port_toml("up", driver, &ru, 2)
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
{ports}
[[bridge]]
name = "ov"
[[interface]]
name = "a"
bridge = "ov"
mtu = 1450
[[interface]]
name = "p"
addresses = ["198.19.1.1/24"]
[[interface]]
name = "up"
addresses = ["198.18.100.1/24"]
[[vtep]]
name = "vtep0"
local = "198.18.100.1"
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "ov"
flood = ["198.18.100.2"]
[[vni]]
vtep = "vtep0"
vni = 1
vrf = "default"
{l3_routes}
"#
        ),
    );
    (t, k)
}

fn ping(t: &Topology, ns: &str, args: &str) -> (u32, u32, String) {
    let out = t.exec_out(ns, &format!("ping {args}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (tx, rx) = ping_stats(&text);
    (tx, rx, text)
}

fn iperf_both_ways(t: &Topology, a: (&str, &str), b: (&str, &str), what: &str) {
    for ((server, addr), client) in [(b, a.0), (a, b.0)] {
        let r = iperf3(t, server, client, addr, 3);
        assert!(
            r.seconds >= 2.9 && r.bits_per_second > 5e6,
            "{what} {client}→{server}: {r:?}"
        );
        eprintln!(
            "{what} {client}→{server}: {:.0} Mbit/s, {} retransmits",
            r.bits_per_second / 1e6,
            r.retransmits
        );
    }
}

/// Starts tcpdump on node B's underlay for `count` VXLAN packets from A.
fn capture(t: &Topology, count: u32) -> (std::process::Child, std::path::PathBuf) {
    capture_filter(t, count, "udp dst port 4789 and src host 198.18.100.1")
}

/// Starts tcpdump on node B's underlay for `count` packets matching `filter`.
fn capture_filter(
    t: &Topology,
    count: u32,
    filter: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let file = t.dir().join("underlay.pcap");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.ns("b"),
            "timeout",
            "20",
            "tcpdump",
            "-U",
            "-nn",
            "-c",
        ])
        .arg(count.to_string())
        .args(["-i", &format!("{}bu", t.prefix), "-w"])
        .arg(&file)
        .arg(filter)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1000));
    (child, file)
}

/// tcpdump's own decode of a capture: (VNIs seen, UDP source ports seen).
fn decode_capture(
    mut child: std::process::Child,
    file: &std::path::Path,
) -> (HashSet<u32>, HashSet<u16>, String) {
    let _ = child.wait();
    let text = sh(&format!("tcpdump -nn -r {} 2>/dev/null", file.display()));
    let (mut vnis, mut ports) = (HashSet::new(), HashSet::new());
    for l in text.lines() {
        // "IP 198.18.100.1.54321 > 198.18.100.2.4789: VXLAN, flags [I] (0x08), vni 100"
        if let Some(v) = l.split("vni ").nth(1) {
            vnis.insert(
                v.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(0),
            );
        }
        if let Some(src) = l.split("IP 198.18.100.1.").nth(1) {
            ports.insert(
                src.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(0),
            );
        }
    }
    (vnis, ports, text)
}

/// VNIs of the captured VXLAN frames whose inner packet (the line tcpdump
/// prints after the outer one) contains `inner`.
fn vnis_carrying(text: &str, inner: &str) -> HashSet<u32> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[1].contains(inner))
        .filter_map(|w| w[0].split("vni ").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

fn l2_overlay(driver: &str) {
    let (mut t, k) = topology(driver);
    let (tx, rx, out) = ping(&t, "a", "-c 5 -i 0.2 -W 2 198.19.0.3");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (tx, rx, out) = ping(&t, "c", "-c 5 -i 0.2 -W 2 198.19.0.1");
    assert_eq!((tx, rx), (5, 5), "{out}");
    iperf_both_ways(
        &t,
        ("a", "198.19.0.1"),
        ("c", "198.19.0.3"),
        &format!("{driver} L2 overlay"),
    );
    // Several flows: the underlay sees VNI 100 and more than one source port.
    let (cap, file) = capture(&t, 400);
    let mut server = Command::new("ip")
        .args(["netns", "exec", &t.ns("c"), "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    t.exec("a", "iperf3 -c 198.19.0.3 -t 2 -P 8 >/dev/null");
    let _ = server.wait();
    let (vnis, ports, text) = decode_capture(cap, &file);
    assert!(text.contains("VXLAN, flags [I] (0x08), vni 100"), "{text}");
    assert!(vnis.contains(&100), "{text}");
    assert_eq!(
        vnis_carrying(&text, "198.19.0.3"),
        HashSet::from([100]),
        "{text}"
    );
    assert!(ports.len() > 1, "one source port for 8 flows: {ports:?}");
    assert!(ports.iter().all(|&p| p >= 49152), "{ports:?}");
    // Per-tunnel counters.
    let js = sh(&format!(
        "{} --socket {} --json show vteps",
        vrouterctl().display(),
        t.socket(k).display()
    ));
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let l2 = v[0]["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["vni"] == 100)
        .cloned()
        .unwrap();
    assert!(l2["rx_packets"].as_u64().unwrap() > 1000, "{js}");
    assert!(l2["tx_packets"].as_u64().unwrap() > 1000, "{js}");
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "l2-learned") >= 2, "{report}");
    assert_eq!(counter(&report, "vxlan-unknown-vtep"), 0, "{report}");
}

fn l3_overlay(driver: &str) {
    let (mut t, k) = topology(driver);
    let (tx, rx, out) = ping(&t, "p", "-c 5 -i 0.2 -W 2 198.19.2.2");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (tx, rx, out) = ping(&t, "d", "-c 5 -i 0.2 -W 2 198.19.1.2");
    assert_eq!((tx, rx), (5, 5), "{out}");
    // PMTU: a DF packet larger than the inner MTU gets frag-needed (1450).
    let (_, rx, out) = ping(&t, "p", "-M do -s 1472 -c 2 -i 0.3 -W 2 198.19.2.2");
    assert_eq!(rx, 0, "{out}");
    assert!(
        out.contains("mtu = 1450") || out.contains("mtu=1450"),
        "{out}"
    );
    // 1422 + 28 = 1450 fits.
    let (_, rx, out) = ping(&t, "p", "-M do -s 1422 -c 2 -i 0.2 -W 2 198.19.2.2");
    assert_eq!(rx, 2, "{out}");
    // TCP with a 1500-byte pod MTU finds the path MTU by itself.
    t.exec("p", "ip route flush cache");
    iperf_both_ways(
        &t,
        ("p", "198.19.1.2"),
        ("d", "198.19.2.2"),
        &format!("{driver} L3 overlay"),
    );
    let (cap, file) = capture(&t, 5);
    let _ = ping(&t, "p", "-c 5 -i 0.2 -W 2 198.19.2.2");
    let (_, _, text) = decode_capture(cap, &file);
    // Only the pings' frames: the bridged pods of VNI 100 on the same
    // underlay may send their own (IPv6 router solicitations) meanwhile.
    assert_eq!(
        vnis_carrying(&text, "198.19.1.2 > 198.19.2.2"),
        HashSet::from([1]),
        "{text}"
    );
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "ip4-mtu-exceeded") >= 1, "{report}");
    assert!(counter(&report, "icmp4-error-sent") >= 1, "{report}");
}

/// The L3 overlay route to node B comes over the control socket
/// (`vrouterctl overlay add`), not from the configuration: before it,
/// node B's VXLAN is refused; with it, pods ping both ways through the
/// kernel's VXLAN device; after `overlay del`, traffic stops again.
#[test]
fn l3_overlay_route_added_over_the_control_socket() {
    require_root!();
    let (mut t, k) = topology_with("af-packet", "");
    let sock = t.socket(k);
    let ctl = |args: &[&str]| {
        let out = Command::new(vrouterctl())
            .arg("-s")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    };
    let (_, rx, out) = ping(&t, "p", "-c 1 -W 1 198.19.2.2");
    assert_eq!(rx, 0, "no overlay route yet: {out}");
    let (rc, out) = ctl(&["overlay", "add", "198.19.2.0/24", "198.18.100.2", B_VX1_MAC]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = ctl(&[
        "overlay",
        "add",
        "198.19.5.0/24",
        "198.18.100.2",
        B_VX1_MAC,
        "--vni",
        "9",
    ]);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("not_found") && out.contains("VNI 9"), "{out}");
    let (rc, out) = ctl(&["show", "overlay-routes"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("198.19.2.0/24")
            && out.contains("198.18.100.2")
            && out.contains(B_VX1_MAC)
            && out.contains("vxlan1-198.18.100.2"),
        "{out}"
    );
    let (tx, rx, out) = ping(&t, "p", "-c 5 -i 0.2 -W 2 198.19.2.2");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (tx, rx, out) = ping(&t, "d", "-c 5 -i 0.2 -W 2 198.19.1.2");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (rc, out) = ctl(&["overlay", "del", "198.19.2.0/24"]);
    assert_eq!(rc, 0, "{out}");
    let (_, rx, out) = ping(&t, "d", "-c 2 -i 0.2 -W 1 198.19.1.2");
    assert_eq!(rx, 0, "route removed, node B no longer accepted: {out}");
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "vxlan-unknown-vtep") >= 1, "{report}");
}

#[test]
fn l2_overlay_with_kernel_vxlan_and_bridge() {
    require_root!();
    l2_overlay("af-packet");
}

#[test]
fn l3_overlay_with_kernel_vxlan_routes_and_pmtu() {
    require_root!();
    l3_overlay("af-packet");
}

#[test]
fn overlays_on_af_xdp() {
    require_root!();
    l2_overlay("af-xdp");
    l3_overlay("af-xdp");
}

/// VXLAN from a VTEP that is not configured, and with a VNI that is not,
/// never reaches a pod and is counted.
#[test]
fn unknown_vtep_and_unknown_vni_never_reach_a_pod() {
    require_root!();
    let (mut t, k) = topology("af-packet");
    let p = t.prefix.clone();
    // Warm up the underlay (ARP both ways) with legitimate traffic.
    let (_, rx, out) = ping(&t, "a", "-c 2 -i 0.2 -W 2 198.19.0.3");
    assert_eq!(rx, 2, "{out}");
    // Rogue VTEP 198.18.101.2 speaking VNI 100 into pod a's subnet.
    t.exec(
        "e",
        &format!(
            "ip link add vx100 type vxlan id 100 local 198.18.101.2 remote 198.18.100.1 \
             dev {p}pe dstport 4789 && ip link set vx100 up && ip addr add 198.19.0.98/24 dev vx100"
        ),
    );
    // Known VTEP (node B) with VNI 999.
    t.exec(
        "b",
        &format!(
            "ip link add vx999 type vxlan id 999 local 198.18.100.2 remote 198.18.100.1 \
             dev {p}bu dstport 4789 && ip link set vx999 up && ip addr add 198.19.0.99/24 dev vx999"
        ),
    );
    let (_, rx, out) = ping(&t, "e", "-c 3 -i 0.3 -W 1 198.19.0.1");
    assert_eq!(rx, 0, "{out}");
    let (_, rx, out) = ping(&t, "b", "-I vx999 -c 3 -i 0.3 -W 1 198.19.0.1");
    assert_eq!(rx, 0, "{out}");
    // Pod a never saw their ARP requests (it would have a neighbour entry).
    let neigh = t.exec("a", "ip neigh show");
    assert!(
        !neigh.contains("198.19.0.98") && !neigh.contains("198.19.0.99"),
        "{neigh}"
    );
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "vxlan-unknown-vtep") >= 3, "{report}");
    assert!(counter(&report, "vxlan-unknown-vni") >= 3, "{report}");
}

/// `show vteps`, flood-list and remote-MAC changes through vrouterctl.
#[test]
fn control_socket_shows_vteps_and_changes_flood_lists() {
    let d = Daemon::start(
        r#"
[[port]]
name = "up"
driver = "memory"
[[port]]
name = "pod"
driver = "memory"
[[bridge]]
name = "ov"
[[interface]]
name = "pod"
bridge = "ov"
[[interface]]
name = "up"
addresses = ["198.18.100.1/24"]
[[vtep]]
name = "vtep0"
local = "198.18.100.1"
dscp = 46
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "ov"
flood = ["198.18.100.2"]
"#,
        "",
    );
    let (rc, out, err) = d.ctl(&["show", "vteps"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("vtep0") && out.contains("198.18.100.1") && out.contains("1450"),
        "{out}"
    );
    assert!(
        out.contains("198.18.100.2") && out.contains("bridge ov"),
        "{out}"
    );
    assert!(out.contains("49152-65535") && out.contains("46"), "{out}");
    let (rc, _, err) = d.ctl(&["vxlan", "flood-add", "vtep0", "100", "198.18.100.3"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = d.ctl(&[
        "vxlan",
        "mac-add",
        "vtep0",
        "100",
        "02:00:00:00:0c:01",
        "198.18.100.3",
    ]);
    assert_eq!(rc, 0, "{err}");
    let (_, js, _) = d.ctl(&["--json", "show", "vteps"]);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let tunnels = v[0]["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 2, "{js}");
    assert!(
        tunnels
            .iter()
            .all(|t| t["flood"] == true && t["accepted"] == true),
        "{js}"
    );
    let (_, mac, _) = d.ctl(&["show", "mac", "ov"]);
    assert!(
        mac.contains("02:00:00:00:0c:01") && mac.contains("vxlan100-198.18.100.3"),
        "{mac}"
    );
    let (rc, _, err) = d.ctl(&["vxlan", "flood-del", "vtep0", "100", "198.18.100.9"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("not in the flood list"), "{err}");
    let (rc, _, err) = d.ctl(&["vxlan", "flood-add", "vtep0", "5", "198.18.100.3"]);
    assert_eq!(rc, 1);
    assert!(err.contains("no such VNI"), "{err}");
    let (rc, _, err) = d.ctl(&["vxlan", "flood-del", "vtep0", "100", "198.18.100.2"]);
    assert_eq!(rc, 0, "{err}");
    let (_, js, _) = d.ctl(&["--json", "show", "vteps"]);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let t2 = v[0]["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["remote"] == "198.18.100.2")
        .cloned()
        .unwrap();
    assert_eq!(
        (t2["flood"].clone(), t2["accepted"].clone()),
        (false.into(), false.into()),
        "{js}"
    );
}

/// Counts ARP requests for `target` seen by tcpdump in namespace `ns` on
/// `ifname` (direction `dir`: `in` or `out`) while `f` runs.
fn count_arp(
    t: &Topology,
    watch: &[(&str, String, &str)],
    target: &str,
    f: impl FnOnce(),
) -> Vec<usize> {
    let files: Vec<_> = watch
        .iter()
        .enumerate()
        .map(|(k, (ns, ifname, dir))| {
            let file = t.dir().join(format!("arp{k}.pcap"));
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &t.ns(ns),
                    "timeout",
                    "8",
                    "tcpdump",
                    "-U",
                    "-nn",
                    "-Q",
                    dir,
                    "-i",
                    ifname,
                    "-w",
                ])
                .arg(&file)
                .arg(format!(
                    "arp and arp[6:2] = 1 and arp[24:4] = 0x{}",
                    target
                        .split('.')
                        .map(|o| format!("{:02x}", o.parse::<u8>().unwrap()))
                        .collect::<String>()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, file)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    f();
    files
        .into_iter()
        .map(|(mut c, file)| {
            let _ = c.wait();
            sh(&format!("tcpdump -nn -r {} 2>/dev/null", file.display()))
                .lines()
                .filter(|l| l.contains("Request"))
                .count()
        })
        .collect()
}

/// Three nodes on one underlay switch, full mesh on VNI 100: vrouterd A
/// (198.18.100.1), vrouterd A2 (.4), kernel node B (.2). Pods talk across
/// every pair, and a broadcast reaches every other node exactly once.
#[test]
fn three_nodes_full_mesh_broadcast_reaches_every_node_once() {
    require_root!();
    let mut t = Topology::new();
    for n in ["u", "r1", "r2", "b", "a", "a2", "c"] {
        t.add_ns(n);
    }
    let p = t.prefix.clone();
    let (u1, _) = t.veth("r1", "u1", "u", "s1");
    let (u2, _) = t.veth("r2", "u2", "u", "s2");
    t.veth("b", "ub", "u", "sb");
    let (ra, _) = t.veth("r1", "ra", "a", "pa");
    let (ra2, _) = t.veth("r2", "rb", "a2", "pb");
    t.veth("b", "bc", "c", "pc");
    t.exec(
        "u",
        &format!(
            "ip link add sw type bridge && ip link set sw up && \
             for i in {p}s1 {p}s2 {p}sb; do ip link set $i master sw; done"
        ),
    );
    for (ns, i) in [("r1", &u1), ("r1", &ra), ("r2", &u2), ("r2", &ra2)] {
        t.quiet(ns, i);
    }
    t.exec(
        "b",
        &format!(
            "ip addr add 198.18.100.2/24 dev {p}ub && \
             ip link add vx100 type vxlan id 100 local 198.18.100.2 dev {p}ub dstport 4789 && \
             bridge fdb append 00:00:00:00:00:00 dev vx100 dst 198.18.100.1 && \
             bridge fdb append 00:00:00:00:00:00 dev vx100 dst 198.18.100.4 && \
             ip link add br0 type bridge && ip link set br0 up && \
             ip link set {p}bc mtu 1450 && ip link set {p}bc master br0 && \
             ip link set vx100 master br0 && ip link set vx100 up"
        ),
    );
    for (ns, i, a) in [("a", "pa", 1), ("a2", "pb", 2), ("c", "pc", 3)] {
        t.exec(
            ns,
            &format!("ip link set {p}{i} mtu 1450 && ip addr add 198.19.0.{a}/24 dev {p}{i}"),
        );
    }
    let node = |pod: &str, up: &str, local: &str, flood: &str, k: usize| {
        format!(
            r#"{}{}
[[bridge]]
name = "ov"
[[interface]]
name = "pod"
bridge = "ov"
mtu = 1450
[[interface]]
name = "up"
addresses = ["{local}/24"]
[[vtep]]
name = "vtep0"
local = "{local}"
[[vni]]
vtep = "vtep0"
vni = 100
bridge = "ov"
flood = [{flood}]
"#,
            port_toml("pod", "af-packet", pod, 2 * k),
            port_toml("up", "af-packet", up, 2 * k + 1)
        )
    };
    let k1 = t.start_vrouterd(
        "r1",
        &node(
            &ra,
            &u1,
            "198.18.100.1",
            r#""198.18.100.2", "198.18.100.4""#,
            0,
        ),
    );
    let k2 = t.start_vrouterd(
        "r2",
        &node(
            &ra2,
            &u2,
            "198.18.100.4",
            r#""198.18.100.1", "198.18.100.2""#,
            1,
        ),
    );
    for (from, to) in [
        ("a", "198.19.0.3"),
        ("a", "198.19.0.2"),
        ("a2", "198.19.0.3"),
        ("c", "198.19.0.2"),
    ] {
        let (tx, rx, out) = ping(&t, from, &format!("-c 3 -i 0.2 -W 2 {to}"));
        assert_eq!((tx, rx), (3, 3), "{from} → {to}: {out}");
    }
    // ARP requests for an absent address from pod a: each reaches a2 and c
    // exactly as often as a sent it, and never comes back to a.
    let counts = count_arp(
        &t,
        &[
            ("a", format!("{p}pa"), "out"),
            ("a2", format!("{p}pb"), "in"),
            ("c", format!("{p}pc"), "in"),
            ("a", format!("{p}pa"), "in"),
        ],
        "198.19.0.99",
        || {
            let _ = t.exec_out("a", "ping -c 2 -i 1 -W 1 198.19.0.99");
        },
    );
    eprintln!("ARP requests [sent by a, at a2, at c, back at a]: {counts:?}");
    assert!(counts[0] >= 1, "{counts:?}");
    assert_eq!(
        counts[1], counts[0],
        "a2 [sent, a2, c, back to a]: {counts:?}"
    );
    assert_eq!(
        counts[2], counts[0],
        "c [sent, a2, c, back to a]: {counts:?}"
    );
    assert_eq!(counts[3], 0, "echoed back: {counts:?}");
    let r1 = t.stop_vrouterd(k1);
    let r2 = t.stop_vrouterd(k2);
    for r in [&r1, &r2] {
        assert_eq!(counter(r, "vxlan-unknown-vtep"), 0, "{r}");
        assert_eq!(counter(r, "graph-loop"), 0, "{r}");
    }
}

/// L2 overlay over an IPv6 underlay with the kernel's VXLAN device (which
/// checks our UDP checksums: Linux drops zero-checksum VXLAN over IPv6).
#[test]
fn l2_overlay_over_ipv6_underlay_with_kernel_vxlan() {
    require_root!();
    let mut t = Topology::new();
    for n in ["r", "a", "b", "c"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (ru, _) = t.veth("r", "ru", "b", "bu");
    t.veth("b", "bc", "c", "pc");
    t.quiet("r", &ra);
    t.quiet("r", &ru);
    let p = t.prefix.clone();
    t.exec(
        "a",
        &format!("ip link set {p}pa mtu 1430 && ip addr add 198.19.0.1/24 dev {p}pa"),
    );
    t.exec(
        "b",
        &format!(
            "ip -6 addr add 2001:db8:100::2/64 dev {p}bu nodad && \
             ip link add vx100 type vxlan id 100 local 2001:db8:100::2 dev {p}bu dstport 4789 && \
             bridge fdb append 00:00:00:00:00:00 dev vx100 dst 2001:db8:100::1 && \
             ip link add br0 type bridge && ip link set br0 up && \
             ip link set {p}bc mtu 1430 && ip link set {p}bc master br0 && \
             ip link set vx100 master br0 && ip link set vx100 up"
        ),
    );
    t.exec(
        "c",
        &format!("ip link set {p}pc mtu 1430 && ip addr add 198.19.0.3/24 dev {p}pc"),
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"{}{}
[[bridge]]
name = "ov"
[[interface]]
name = "a"
bridge = "ov"
mtu = 1430
[[interface]]
name = "up"
addresses = ["2001:db8:100::1/64"]
[[vtep]]
name = "vtep6"
local = "2001:db8:100::1"
[[vni]]
vtep = "vtep6"
vni = 100
bridge = "ov"
flood = ["2001:db8:100::2"]
"#,
            port_toml("a", "af-packet", &ra, 0),
            port_toml("up", "af-packet", &ru, 1)
        ),
    );
    let (tx, rx, out) = ping(&t, "a", "-c 5 -i 0.2 -W 2 198.19.0.3");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (tx, rx, out) = ping(&t, "c", "-c 5 -i 0.2 -W 2 198.19.0.1");
    assert_eq!((tx, rx), (5, 5), "{out}");
    let (cap, file) = capture_filter(&t, 5, "udp dst port 4789 and src host 2001:db8:100::1");
    let _ = ping(&t, "a", "-c 5 -i 0.2 -W 2 198.19.0.3");
    let (vnis, _, text) = decode_capture(cap, &file);
    assert_eq!(vnis, HashSet::from([100]), "{text}");
    assert!(text.contains("IP6 2001:db8:100::1."), "{text}");
    let r = iperf3(&t, "c", "a", "198.19.0.3", 3);
    assert!(r.seconds >= 2.9 && r.bits_per_second > 5e6, "{r:?}");
    eprintln!(
        "IPv6 underlay a→c: {:.0} Mbit/s, {} retransmits",
        r.bits_per_second / 1e6,
        r.retransmits
    );
    let report = t.stop_vrouterd(k);
    assert_eq!(counter(&report, "vxlan-bad-udp-checksum"), 0, "{report}");
    assert!(counter(&report, "l2-learned") >= 2, "{report}");
}
