//! Floods against vrouterd on real interfaces (issue 9, part 3): a MAC
//! flood, an ARP storm and a SYN flood, each while a legitimate flow runs
//! through the same vrouterd. Each test asserts that the legitimate flow
//! is intact, that the table under attack stayed at its limit, and that
//! the refusals were counted; and prints the figures (benches/RESULTS.md,
//! "Floods").
//!
//! vrouterd runs on af-packet ports; the floods and the legitimate UDP
//! flows come from vrouter-pktgen (af-packet), the legitimate TCP flow is
//! iperf3. On this shared 2-core machine the rates are whatever the
//! generator reaches: the tests assert on what vrouterd did with what it
//! got, and print the offered rate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod k8s_lab;

use std::process::{Child, Command, Stdio};

use serde_json::Value;
use vrouter_pktgen_tests::*;

/// One flood at a time: each takes a core or two of its own.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn mac_of(t: &Topology, ns: &str, ifname: &str) -> String {
    t.exec(ns, &format!("cat /sys/class/net/{ifname}/address"))
        .trim()
        .to_string()
}

/// `vrouterctl --json ARGS` against vrouterd `k` of `t`.
fn ctl_json(t: &Topology, k: usize, args: &[&str]) -> Value {
    let out = Command::new(vrouterctl())
        .arg("--socket")
        .arg(t.socket(k))
        .arg("--json")
        .args(args)
        .output()
        .expect("vrouterctl");
    assert!(
        out.status.success(),
        "vrouterctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A named counter from `show counters` (0 when absent).
fn counter_of(counters: &Value, name: &str) -> u64 {
    counters
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["value"].as_u64())
        .unwrap_or(0)
}

/// vrouter-pktgen `send` with `args` and `--json`, started after `delay_s`
/// seconds, in the background.
fn spawn_pktgen(delay_s: f64, args: &[String]) -> Child {
    let bin = pktgen();
    let mut cmd = format!("sleep {delay_s} && exec {}", bin.display());
    for a in args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd.push_str(" --json");
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vrouter-pktgen")
}

/// Waits for a pktgen started by `spawn_pktgen`; its JSON result. Exit
/// code 3 (a paced rate missed by more than 5% on a busy machine) is
/// accepted: the figures say what was offered.
fn wait_pktgen(c: Child) -> Value {
    let out = c.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        code == 0 || code == 3,
        "vrouter-pktgen failed ({code}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The legitimate UDP flow's loss ratio, and a one-line summary.
fn legit(r: &Value) -> (f64, String) {
    let res = &r["result"];
    let loss = res["loss_ratio"].as_f64().unwrap();
    (
        loss,
        format!(
            "legit flow: {} sent at {:.0} pps, {} received, loss {:.4}%",
            res["sent"],
            res["offered_pps"].as_f64().unwrap_or(0.0),
            res["rx"]["unique"],
            loss * 100.0
        ),
    )
}

/// Per-port packets and drops of vrouterd (`show ports`): where a loss
/// happened (`rx_dropped`: the kernel's ring was full before vrouterd read
/// it; `tx_dropped`: the output ring was full).
fn ports_summary(t: &Topology, k: usize) -> String {
    let ports = ctl_json(t, k, &["show", "ports"]);
    ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} rx {} (dropped {}, fill ring empty {}) tx {} (dropped {})",
                p["name"].as_str().unwrap_or("?"),
                p["rx_packets"],
                p["rx_dropped"],
                p["rx_fill_empty"],
                p["tx_packets"],
                p["tx_dropped"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// vrouterd's counters of port `name`: (rx, tx).
fn port(t: &Topology, k: usize, name: &str) -> (u64, u64) {
    let ports = ctl_json(t, k, &["show", "ports"]);
    let p = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    (
        p["rx_packets"].as_u64().unwrap(),
        p["tx_packets"].as_u64().unwrap(),
    )
}

/// Frames the kernel dropped on receive on interface `ifname` in
/// namespace `ns` (a full backlog when softirqs cannot keep up).
fn kernel_rx_dropped(t: &Topology, ns: &str, ifname: &str) -> u64 {
    let out = t.exec(ns, &format!("ip -s -j link show {ifname}"));
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["stats64"]["rx"]["dropped"].as_u64().unwrap_or(0)
}

/// The legitimate flow entered vrouterd on `from` and left on `to`:
/// vrouterd itself lost none of it (a few frames of slack for ARP, ND and
/// ping), whatever the machine's load did before or after it. The total
/// loss is the figure printed; `LEGIT_LOSS_MAX` only catches a collapse.
fn assert_vrouterd_lost_nothing(t: &Topology, k: usize, from: &str, to: &str, flow: &Value) {
    let (rx, _) = port(t, k, from);
    let (_, tx) = port(t, k, to);
    let sent = flow["result"]["sent"].as_u64().unwrap();
    assert!(
        rx.saturating_sub(tx) <= sent / 1000 + 20,
        "vrouterd received {rx} on {from} and sent {tx} on {to}"
    );
    let (loss, line) = legit(flow);
    assert!(loss <= LEGIT_LOSS_MAX, "{line}");
}

fn flood_summary(r: &Value) -> String {
    let res = &r["result"];
    format!(
        "flood: {} frames in {:.2} s = {:.0} pps offered",
        res["sent"],
        res["seconds"].as_f64().unwrap_or(0.0),
        res["offered_pps"].as_f64().unwrap_or(0.0)
    )
}

/// Legitimate flows may lose at most this end to end; the figure printed
/// is the measure. On this shared 2-core machine under other builds some
/// frames of the legitimate flow are lost before they reach vrouterd's
/// socket (the generator and the veth starve for CPU; it happens without
/// any flood too), which is not vrouterd's doing:
/// `assert_vrouterd_lost_nothing` checks vrouterd's own part exactly.
const LEGIT_LOSS_MAX: f64 = 0.10;

/// 1M random source MACs into a bridge domain (at most 28 s of it) while
/// pod a sends a sequenced UDP flow to pod b for 30 s: the flow loses nothing, the MAC table
/// stays at `mac-limit`, and every source beyond it is counted
/// (`l2-mac-limit`). The flood frames go to the flooder's own MAC, so
/// they are learned and then dropped (`l2-same-interface`), never
/// flooded onto the pods' ports.
#[test]
fn mac_flood_leaves_the_table_at_its_limit_and_the_flow_intact() {
    require_root!();
    let _serial = serial();
    let mut t = Topology::new();
    for n in ["r", "a", "b", "f"] {
        t.add_ns(n);
    }
    let p = t.prefix.clone();
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let (rf, _) = t.veth("r", "rf", "f", "pf");
    for i in [&ra, &rb, &rf] {
        t.quiet("r", i);
    }
    for (ns, ip) in [
        ("a", "198.18.0.1"),
        ("b", "198.18.0.2"),
        ("f", "198.18.0.3"),
    ] {
        t.exec(ns, &format!("ip addr add {ip}/24 dev {p}p{ns}"));
    }
    let ports = format!(
        "{}{}{}",
        port_toml("a", "af-packet", &ra, 0),
        port_toml("b", "af-packet", &rb, 1),
        port_toml("f", "af-packet", &rf, 2)
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            "{ports}[[bridge]]\nname = \"pods\"\nmac-limit = 8192\n\
             [[interface]]\nname = \"a\"\nbridge = \"pods\"\n\
             [[interface]]\nname = \"b\"\nbridge = \"pods\"\n\
             [[interface]]\nname = \"f\"\nbridge = \"pods\"\n"
        ),
    );
    // Every legitimate MAC is learned before the flood.
    for (from, to) in [("a", "198.18.0.2"), ("f", "198.18.0.1")] {
        let out = t.exec(from, &format!("ping -c 2 -i 0.2 -W 2 {to}"));
        assert_eq!(ping_stats(&out).1, 2, "{out}");
    }
    let (pa, pb, pf) = (
        mac_of(&t, "a", &format!("{p}pa")),
        mac_of(&t, "b", &format!("{p}pb")),
        mac_of(&t, "f", &format!("{p}pf")),
    );
    let flood = spawn_pktgen(
        1.0,
        &args(&format!(
            "send -i {p}pf --netns {} --driver af-packet --dst-mac {pf} --src-mac-random \
             --src 198.18.0.3 --dst 198.18.0.250 --rate max --count 1000000 --duration 28",
            t.ns("f")
        )),
    );
    let flow = spawn_pktgen(
        0.0,
        &args(&format!(
            "send -i {p}pa --netns {} --rx-iface {p}pb --rx-netns {} --driver af-packet \
             --dst-mac {pb} --src 198.18.0.1 --dst 198.18.0.2 --rate 5000 --duration 30",
            t.ns("a"),
            t.ns("b")
        )),
    );
    let flow = wait_pktgen(flow);
    let flood = wait_pktgen(flood);
    let counters = ctl_json(&t, k, &["show", "counters"]);
    let macs = ctl_json(&t, k, &["show", "mac", "pods"]);
    let entries = macs.as_array().unwrap();
    let (_, flow_line) = legit(&flow);
    let sent = flood["result"]["sent"].as_u64().unwrap();
    let (learned, limit, full) = (
        counter_of(&counters, "l2-learned"),
        counter_of(&counters, "l2-mac-limit"),
        counter_of(&counters, "l2-table-full"),
    );
    eprintln!(
        "MAC flood: {}; {flow_line}; MAC table {} entries (mac-limit 8192); \
         l2-learned {learned}, l2-mac-limit {limit}, l2-table-full {full}, l2-same-interface {}; ports: {}; kernel rx drops on {ra}: {}",
        flood_summary(&flood),
        entries.len(),
        counter_of(&counters, "l2-same-interface"),
        ports_summary(&t, k),
        kernel_rx_dropped(&t, "r", &ra)
    );
    // 1M unless this machine is too busy to offer that in 28 s.
    assert!(sent >= 100_000, "the flood was a flood: {sent}");
    assert_vrouterd_lost_nothing(&t, k, "a", "b", &flow);
    assert!(entries.len() <= 8192, "{} entries", entries.len());
    assert!(
        entries.len() + full as usize >= 8192 - 3,
        "the table filled up to its limit: {} entries",
        entries.len()
    );
    for m in [&pa, &pb, &pf] {
        assert!(
            entries.iter().any(|e| e["mac"] == m.as_str()),
            "{m} is still in the table"
        );
    }
    // Every frame vrouterd received on f had a new source: learned, or
    // refused and counted (the kernel drops part of a flood before
    // vrouterd's socket; a few frames of slack for f's own ping and ARP).
    let (f_rx, _) = port(&t, k, "f");
    assert!(
        learned + limit + full + 64 >= f_rx,
        "refusals counted: {learned} learned, {limit} + {full} refused of {f_rx} received"
    );
    assert!(learned <= 8192 + 16, "learned {learned}");
}

/// An ARP storm at a routed interface — requests for the router's address
/// from ~10k senders (learned up to `max-neighbors`, each answered) and
/// gratuitous ARPs for as many addresses (never learned) — while pod a
/// sends a sequenced UDP flow through the router to pod b.
#[test]
fn arp_storm_leaves_the_neighbour_table_bounded_and_the_flow_intact() {
    require_root!();
    let _serial = serial();
    let mut t = Topology::new();
    for n in ["r", "a", "b", "s"] {
        t.add_ns(n);
    }
    let p = t.prefix.clone();
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let (rs, _) = t.veth("r", "rs", "s", "ps");
    for i in [&ra, &rb, &rs] {
        t.quiet("r", i);
    }
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
    );
    t.exec("s", &format!("ip addr add 198.19.0.2/16 dev {p}ps"));
    let ports = format!(
        "{}{}{}",
        port_toml("a", "af-packet", &ra, 0),
        port_toml("b", "af-packet", &rb, 1),
        port_toml("s", "af-packet", &rs, 2)
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            "[dataplane]\nmax-neighbors = 1024\n{ports}\
             [[interface]]\nname = \"a\"\naddresses = [\"198.18.1.1/24\"]\n\
             [[interface]]\nname = \"b\"\naddresses = [\"198.18.2.1/24\"]\n\
             [[interface]]\nname = \"s\"\naddresses = [\"198.19.0.1/16\"]\n"
        ),
    );
    let out = t.exec("a", "ping -c 2 -i 0.2 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out).1, 2, "{out}");
    let ra_mac = mac_of(&t, "r", &ra);
    let storm_ns = t.ns("s");
    let requests = spawn_pktgen(
        1.0,
        &args(&format!(
            "send -i {p}ps --netns {storm_ns} --driver af-packet --proto arp \
             --dst-mac ff:ff:ff:ff:ff:ff --src-mac-random --src 198.19.1.0-198.19.40.255 \
             --dst 198.19.0.1 --rate max --count 300000 --duration 8"
        )),
    );
    let garps = spawn_pktgen(
        1.0,
        &args(&format!(
            "send -i {p}ps --netns {storm_ns} --driver af-packet --proto garp \
             --dst-mac ff:ff:ff:ff:ff:ff --src-mac-random --src 198.19.41.0-198.19.80.255 \
             --rate max --count 300000 --duration 8"
        )),
    );
    let flow = spawn_pktgen(
        0.0,
        &args(&format!(
            "send -i {p}pa --netns {} --rx-iface {p}pb --rx-netns {} --driver af-packet \
             --dst-mac {ra_mac} --src 198.18.1.2 --dst 198.18.2.2 --rate 5000 --duration 10",
            t.ns("a"),
            t.ns("b")
        )),
    );
    let flow = wait_pktgen(flow);
    let requests = wait_pktgen(requests);
    let garps = wait_pktgen(garps);
    let counters = ctl_json(&t, k, &["show", "counters"]);
    let neighbors = ctl_json(&t, k, &["show", "neighbors"]);
    let on_s = neighbors
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["interface"] == "s")
        .count();
    let (_, flow_line) = legit(&flow);
    let refused = counter_of(&counters, "neighbor-limit");
    let not_for_us = counter_of(&counters, "arp-not-for-us");
    let replies = counter_of(&counters, "arp-reply-sent");
    eprintln!(
        "ARP storm: requests {}; gratuitous {}; {flow_line}; neighbours on the storm \
         interface {on_s} (max-neighbors 1024); arp-reply-sent {replies}, arp-neighbor-learned {}, \
         neighbor-limit {refused}, arp-not-for-us {not_for_us}, event-queue-full {}; ports: {}; kernel rx drops on {ra}: {}",
        flood_summary(&requests),
        flood_summary(&garps),
        counter_of(&counters, "arp-neighbor-learned"),
        counter_of(&counters, "event-queue-full"),
        ports_summary(&t, k),
        kernel_rx_dropped(&t, "r", &ra),
    );
    let sent =
        requests["result"]["sent"].as_u64().unwrap() + garps["result"]["sent"].as_u64().unwrap();
    assert!(sent >= 100_000, "the storm was a storm: {sent}");
    assert_vrouterd_lost_nothing(&t, k, "a", "b", &flow);
    assert_eq!(
        on_s, 1024,
        "the table filled up to max-neighbors, no further"
    );
    assert!(refused > 1000, "refusals counted: {refused}");
    assert!(not_for_us > 1000, "gratuitous ARPs dropped: {not_for_us}");
    // The legitimate neighbours are still there.
    let nb = neighbors.as_array().unwrap();
    for ip in ["198.18.1.2", "198.18.2.2"] {
        assert!(nb.iter().any(|n| n["ip"] == ip), "{ip} still resolved");
    }
}

/// A SYN flood from an external host towards a ClusterIP while an iperf3
/// TCP flow runs through the same ClusterIP: the flow keeps going, the
/// conntrack table stays at `max-flows`, and the refused SYNs are
/// counted (`ct-table-full`).
#[test]
fn syn_flood_fills_conntrack_to_its_limit_and_established_flows_go_on() {
    require_root!();
    let _serial = serial();
    if !have("iperf3") {
        eprintln!("skipped: needs iperf3");
        return;
    }
    let lab = k8s_lab::Lab::new(1, "[conntrack]\nmax-flows = 4096\n");
    let t = &lab.t;
    let vip = "198.19.0.10";
    lab.ctl(&[
        "service",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"iperf","ips":["{vip}"],"port":5201,"backends":[{{"ip":"198.18.10.2","port":5201}}]}}"#
        ),
    ]);
    let base = iperf3(t, "b0", "d", vip, 3);
    let x_mac = mac_of(t, "r", &format!("{}rx", t.prefix));
    let flood = spawn_pktgen(
        2.0,
        &args(&format!(
            "send -i {p}px --netns {} --driver af-packet --proto syn --size 78 \
             --dst-mac {x_mac} --src 198.18.200.2 --dst {vip} --sport 1024-65535 --dport 5201 \
             --rate max --duration 6",
            t.ns("x"),
            p = t.prefix
        )),
    );
    let during = iperf3(t, "b0", "d", vip, 10);
    let flood = wait_pktgen(flood);
    let ct = ctl_json(t, lab.k, &["show", "conntrack"]);
    let counters = ctl_json(t, lab.k, &["show", "counters"]);
    let full = ct["table_full"].as_u64().unwrap();
    let created = ct["created"].as_u64().unwrap();
    let capacity = ct["capacity"].as_u64().unwrap();
    eprintln!(
        "SYN flood: {}; iperf3 before {:.0} Mbit/s, during {:.0} Mbit/s ({} retransmits, {:.1} s); \
         conntrack capacity {capacity}, flows now {}, created {created}, ct-table-full {full}, \
         ct-flow-removed {}; ports: {}",
        flood_summary(&flood),
        base.bits_per_second / 1e6,
        during.bits_per_second / 1e6,
        during.retransmits,
        during.seconds,
        ct["flows"],
        counter_of(&counters, "ct-flow-removed"),
        ports_summary(t, lab.k),
    );
    let sent = flood["result"]["sent"].as_u64().unwrap();
    // `capacity` counts both families; the IPv4 table is `max-flows`.
    let capacity_ip6 = ct["capacity_ip6"].as_u64().unwrap_or(0);
    assert_eq!(capacity - capacity_ip6, 4096, "{ct}");
    assert!(sent >= 100_000, "the flood was a flood: {sent}");
    // Of what reached vrouterd on x (the kernel drops part of a flood
    // before vrouterd's socket; x's RSTs answering the backend's SYN-ACKs
    // ride flows that exist), what the table could not take was refused.
    let (x_rx, x_tx) = port(t, lab.k, "x");
    assert!(
        full + created + x_tx >= x_rx * 9 / 10,
        "refused SYNs counted: {full} of {x_rx} received"
    );
    assert!(ct["flows"].as_u64().unwrap() <= capacity);
    assert!(
        during.seconds >= 9.5,
        "the established flow ran to its end: {during:?}"
    );
    assert!(
        during.bits_per_second > 1e6,
        "the established flow kept going: {during:?}"
    );
}
