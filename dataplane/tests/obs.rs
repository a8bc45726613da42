//! Observability through the real pipeline: packet traces record the nodes
//! a packet took and their decisions, the drop capture keeps dropped
//! packets with their reason, `trace.packet` runs a synthetic packet over
//! the live tables without side effects, and the control plane makes
//! notices of what workers learn and what fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::Value;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::api::Api;
use vrouter_dataplane::control::Notice;
use vrouter_dataplane::graph::{Counter, NodeId};
use vrouter_dataplane::obs::{CaptureMode, DIR_DROP, NEXT_TX, PktTrace};
use vrouter_dataplane::pkt::Disposition;

fn cfg() -> String {
    "[dataplane]\nglean-timeout-ms = 100\n".to_string()
        + &two_nets(None, &["198.18.1.1/24"], &["198.18.2.1/24"])
        + r#"[[port]]
name = "p1"
driver = "memory"
[[port]]
name = "p2"
driver = "memory"
[[bridge]]
name = "br"
[[interface]]
name = "p1"
bridge = "br"
[[interface]]
name = "p2"
bridge = "br"
"# + &neighbor("net2", "198.18.2.2", H2)
        + r#"[[route]]
prefix = "198.19.255.0/24"
action = "drop"
"#
}

fn udp(dst: [u8; 4], ttl: u8) -> Vec<u8> {
    udp4(H1, R1, [198, 18, 1, 2], dst, ttl, 4000, 9, &[0xab; 20])
}

fn traces(h: &Harness) -> Vec<PktTrace> {
    let mut v = Vec::new();
    while let Some(t) = h.worker.link.obs.traces.pop() {
        v.push(t);
    }
    v
}

fn path(t: &PktTrace) -> Vec<&'static str> {
    t.step[..usize::from(t.steps)]
        .iter()
        .map(|s| NodeId::ALL[usize::from(s.node)].name())
        .collect()
}

#[test]
fn trace_records_the_nodes_a_packet_took() {
    let mut h = Harness::new(&cfg());
    h.worker.link.obs.trace_budget.store(2, Ordering::Relaxed);
    h.inject(0, udp([198, 18, 2, 2], 64));
    h.inject(0, udp([198, 19, 255, 7], 64));
    h.inject(0, udp([198, 18, 2, 2], 64));
    assert_eq!(h.out(1).len(), 2);
    let t = traces(&h);
    assert_eq!(t.len(), 2, "the budget was two packets");
    assert_eq!(
        path(&t[0]),
        [
            "ethernet-input",
            "ip4-input",
            "ip4-lookup",
            "ip4-rewrite",
            "interface-output"
        ]
    );
    assert_eq!(t[0].disposition, Disposition::Tx as u8);
    assert_eq!(t[0].tx_port, 1);
    let last = t[0].step[4];
    assert_eq!(last.next, NEXT_TX);
    // Each step names the next node.
    assert_eq!(t[0].step[2].next, NodeId::Ip4Rewrite as u8);
    // The rewrite: TTL 64 → 63, new destination MAC.
    assert_eq!(t[0].hdr_in[14 + 8], 64);
    assert_eq!(t[0].hdr_out[14 + 8], 63);
    assert_eq!(&t[0].hdr_out[..6], &mac("02:00:00:00:02:02"));
    assert_eq!(
        path(&t[1]),
        ["ethernet-input", "ip4-input", "ip4-lookup", "drop"]
    );
    assert_eq!(t[1].disposition, Disposition::Drop as u8);
    assert_eq!(t[1].drop, Counter::Ip4Blackhole as u16);
    assert_eq!(h.worker.link.obs.trace_budget.load(Ordering::Relaxed), 0);
    assert_eq!(h.frames_in_use(), 0);
}

#[test]
fn drop_capture_keeps_dropped_packets_only_while_armed() {
    let mut h = Harness::new(&cfg());
    let link = h.worker.link.clone();
    let obs = &link.obs;
    h.inject(0, udp([198, 19, 255, 7], 64));
    assert!(obs.capture.is_empty(), "nothing captured while disarmed");
    obs.capture_mode
        .store(CaptureMode::Drops as u8, Ordering::Relaxed);
    let dropped = udp([198, 19, 255, 8], 64);
    h.inject(0, dropped.clone());
    h.inject(0, udp([198, 18, 2, 2], 64));
    let r = obs.capture.pop().expect("a captured drop");
    assert_eq!(r.dir, DIR_DROP);
    assert_eq!(r.reason, Counter::Ip4Blackhole as u16);
    assert_eq!(usize::from(r.len), dropped.len());
    assert_eq!(&r.data[..dropped.len()], &dropped[..]);
    assert!(obs.capture.pop().is_none(), "forwarded packet not captured");
    // Sampled: one drop in three.
    obs.capture_every.store(3, Ordering::Relaxed);
    for k in 0..9 {
        h.inject(0, udp([198, 19, 255, 10 + k], 64));
    }
    assert_eq!(obs.capture.len(), 3);
}

#[test]
fn port_capture_sees_rx_and_tx() {
    let mut h = Harness::new(&cfg());
    let obs = &h.worker.link.obs;
    obs.capture_port.store(1, Ordering::Relaxed);
    obs.capture_mode
        .store(CaptureMode::Port as u8, Ordering::Relaxed);
    h.inject(0, udp([198, 18, 2, 2], 64));
    let r = h.worker.link.obs.capture.pop().expect("tx on net2");
    assert_eq!((r.dir, r.port), (vrouter_dataplane::obs::DIR_TX, 1));
    assert_eq!(r.data[14 + 8], 63);
}

fn api(h: &Harness) -> Api {
    let tag = format!("obs-{:?}", std::thread::current().id());
    common::api(h, &tag)
}

fn trace_packet(h: &mut Harness, a: &mut Api, in_port: &str, src: &str, dst: &str) -> Value {
    a.handle(
        &mut h.router,
        &Op::TracePacket(proto::TracePacket {
            in_port: in_port.into(),
            src: src.into(),
            dst: dst.into(),
            proto: Some("udp".into()),
            sport: Some(1000),
            dport: Some(53),
            src_mac: Some("02:00:00:00:0a:01".into()),
            dst_mac: None,
            vlan: None,
            ttl: None,
        }),
    )
    .unwrap()
}

#[test]
fn trace_packet_shows_decisions_without_side_effects() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h);
    let v = trace_packet(&mut h, &mut a, "net1", "198.18.1.2", "198.18.2.2");
    let t = &v["traces"][0];
    let nodes: Vec<&str> = t["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "ethernet-input",
            "ip4-input",
            "ip4-lookup",
            "ip4-rewrite",
            "interface-output"
        ],
        "{v:#}"
    );
    assert_eq!(v["generation"], h.router.tables().generation);
    assert_eq!(t["result"], "transmitted on port net2", "{v:#}");
    let lookup = t["path"][2]["detail"].as_str().unwrap();
    assert!(
        lookup.starts_with("route 198.18.2.2/32 (neighbor) → next hop ")
            && lookup.ends_with(": 02:00:00:00:02:02 (net2)"),
        "{v:#}"
    );
    assert_eq!(t["rewrite"]["ttl"], "64 → 63", "{v:#}");
    // A drop names its reason.
    let v = trace_packet(&mut h, &mut a, "net1", "198.18.1.2", "198.19.255.1");
    assert_eq!(v["traces"][0]["result"], "dropped: ip4-blackhole", "{v:#}");
    // Bridged: flooded, and the source MAC is not learned into the live table.
    let v = trace_packet(&mut h, &mut a, "p1", "198.18.9.1", "198.18.9.2");
    assert!(
        v["traces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["path"][1]["node"] == "l2-input"),
        "{v:#}"
    );
    let macs = a
        .handle(&mut h.router, &Op::ShowMac(proto::BridgeSel::default()))
        .unwrap();
    assert_eq!(macs.as_array().unwrap().len(), 0, "{macs:#}");
    // Nothing reached the ports, and bad input is an error, not a panic.
    assert!(h.out(1).is_empty());
    for (port, src, dst) in [
        ("nope", "198.18.1.2", "198.18.2.2"),
        ("net1", "x", "198.18.2.2"),
        ("net1", "198.18.1.2", "2001:db8::1"),
    ] {
        let r = a.handle(
            &mut h.router,
            &Op::TracePacket(proto::TracePacket {
                in_port: port.into(),
                src: src.into(),
                dst: dst.into(),
                proto: None,
                sport: None,
                dport: None,
                src_mac: None,
                dst_mac: None,
                vlan: None,
                ttl: None,
            }),
        );
        assert!(r.is_err(), "{port} {src} {dst}");
    }
}

#[test]
fn trace_ops_through_the_api() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h);
    assert!(
        a.handle(&mut h.router, &Op::TraceAdd(proto::TraceAdd { count: 0 }))
            .is_err()
    );
    a.handle(&mut h.router, &Op::TraceAdd(proto::TraceAdd { count: 1 }))
        .unwrap();
    h.inject(0, udp([198, 18, 2, 2], 64));
    let v = a.handle(&mut h.router, &Op::TraceShow).unwrap();
    let t = &v["traces"][0];
    assert!(
        t["packet"]
            .as_str()
            .unwrap()
            .contains("198.18.1.2 → 198.18.2.2"),
        "{v:#}"
    );
    assert_eq!(t["path"][4]["node"], "interface-output");
    assert_eq!(t["path"][4]["detail"], "port net2");
    let v = a.handle(&mut h.router, &Op::TraceClear).unwrap();
    assert_eq!(v["cleared"], 1);
    let v = a.handle(&mut h.router, &Op::TraceShow).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 0);
}

#[test]
fn notices_for_learned_macs_and_failed_neighbours() {
    let mut h = Harness::new(&cfg());
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac("02:00:00:00:0b:01"));
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&[0x55; 46]);
    h.inject(2, f.clone());
    // The same MAC appears behind p2: moved.
    h.inject(3, f);
    // A next hop that never answers.
    h.inject(0, udp([198, 18, 2, 77], 64));
    std::thread::sleep(std::time::Duration::from_millis(150));
    for _ in 0..3 {
        h.run();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let n: Vec<Notice> = h.router.take_notices().collect();
    assert!(
        n.contains(&Notice::MacLearned {
            bridge: "br".into(),
            mac: "02:00:00:00:0b:01".parse().unwrap(),
            interface: "p1".into()
        }),
        "{n:?}"
    );
    assert!(
        n.contains(&Notice::MacMoved {
            bridge: "br".into(),
            mac: "02:00:00:00:0b:01".parse().unwrap(),
            from: "p1".into(),
            to: "p2".into()
        }),
        "{n:?}"
    );
    assert!(
        n.contains(&Notice::NeighborFailed {
            interface: "net2".into(),
            ip: "198.18.2.77".parse().unwrap()
        }),
        "{n:?}"
    );
    assert!(h.router.take_notices().next().is_none(), "drained");
    // Aging happens in the control thread.
    let now = (h.router.shared().now() / 1_000_000_000) as u32;
    h.router.tick(now + 400);
    let n: Vec<Notice> = h.router.take_notices().collect();
    assert_eq!(
        n,
        [Notice::MacAged {
            bridge: "br".into(),
            mac: "02:00:00:00:0b:01".parse().unwrap(),
            interface: "p2".into()
        }]
    );
}

#[test]
fn a_subscriber_that_stops_reading_misses_events_and_is_told() {
    use std::io::{BufRead, BufReader, Write};
    let mut h = Harness::new(&cfg());
    let mut a = api(&h);
    let mut s = std::os::unix::net::UnixStream::connect(a.path()).unwrap();
    s.write_all(
        b"{\"id\":1,\"op\":\"hello\",\"args\":{\"version\":1}}\n{\"id\":2,\"op\":\"subscribe\",\"args\":{\"events\":[\"port\"]}}\n",
    )
    .unwrap();
    for _ in 0..20 {
        a.poll(&mut h.router, std::time::Duration::from_millis(5));
    }
    // The client does not read: ~5 MB of events would pile up unbounded.
    for k in 0..50_000 {
        a.publish_link(&format!("port{k}"), "veth-with-a-long-name", k % 2 == 0);
    }
    assert!(a.stats.events_dropped > 20_000, "{:?}", a.stats);
    assert_eq!(a.connections(), 1, "the subscriber stays connected");
    // It catches up, then learns how many it missed.
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut got = 0u64;
    let mut line = String::new();
    loop {
        a.poll(&mut h.router, std::time::Duration::ZERO);
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => got += 1,
            _ => break,
        }
    }
    a.publish_link("a", "x", true);
    let mut lost = None;
    for _ in 0..10 {
        a.poll(&mut h.router, std::time::Duration::from_millis(1));
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) > 0 && line.contains("events-dropped") {
            let v: Value = serde_json::from_str(&line).unwrap();
            lost = v["event"]["count"].as_u64();
            break;
        }
    }
    assert_eq!(lost, Some(a.stats.events_dropped), "after {got} lines");
}
