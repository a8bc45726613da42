//! Services through the real pipeline on memory ports, checked with
//! etherparse: DNAT and reverse NAT with valid checksums, fragments to a
//! VIP, a full conntrack table keeping its flows; and the control objects
//! in `batch` (all or nothing) and `sync` (scopes, generations).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::tcp4 as tcp;
use common::*;
use etherparse::{NetSlice, TransportSlice};
use serde_json::json;
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::conntrack::{ConnTrack, Timeouts};
use vrouter_dataplane::graph::Counter;

const B: &str = H2;

fn cfg() -> String {
    two_nets(None, &["198.18.1.1/24"], &["198.18.2.1/24"])
        + &neighbor("net1", "198.18.1.2", H1)
        + &neighbor("net2", "198.18.2.2", B)
}

fn service(name: &str, vip: &str, backends: &[&str]) -> proto::Service {
    serde_json::from_value(json!({
        "namespace": "default", "name": name, "ips": [vip], "port": 80,
        "backends": backends.iter().map(|b| json!({"ip": b, "port": 8080})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// (src, dst, sport, dport) of a frame, asserting valid IP and TCP checksums.
fn tuple(frame: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let p = decode(frame);
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    assert_eq!(
        t.checksum(),
        t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(),
        "TCP checksum"
    );
    (
        h.source,
        h.destination,
        t.source_port(),
        t.destination_port(),
    )
}

#[test]
fn dnat_out_and_reverse_nat_back() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "nat");
    a.handle(
        &mut h.router,
        &Op::ServiceAdd(service("web", "198.19.0.10", &["198.18.2.2"])),
    )
    .unwrap();
    h.inject(
        0,
        tcp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 19, 0, 10],
            40000,
            80,
            true,
            b"",
        ),
    );
    let out = h.out(1);
    assert_eq!(out.len(), 1, "{}", h.report());
    assert_eq!(
        tuple(&out[0]),
        ([198, 18, 1, 2], [198, 18, 2, 2], 40000, 8080),
        "DNAT to the backend"
    );
    h.inject(
        1,
        tcp(
            B,
            R2,
            [198, 18, 2, 2],
            [198, 18, 1, 2],
            8080,
            40000,
            false,
            b"hi",
        ),
    );
    let back = h.out(0);
    assert_eq!(back.len(), 1, "{}", h.report());
    assert_eq!(
        tuple(&back[0]),
        ([198, 19, 0, 10], [198, 18, 1, 2], 80, 40000),
        "reply comes from the VIP"
    );
    assert_eq!(h.counter(Counter::CtFlowCreated), 1);
    // A fragment to the VIP is dropped and counted.
    let mut frag = tcp(
        H1,
        R1,
        [198, 18, 1, 2],
        [198, 19, 0, 10],
        40001,
        80,
        true,
        b"",
    );
    frag[20] |= 0x20; // MF
    let c = vrouter_wire::checksum::update_u16(
        u16::from_be_bytes([frag[24], frag[25]]),
        u16::from_be_bytes([frag[20] & !0x20, frag[21]]),
        u16::from_be_bytes([frag[20], frag[21]]),
    );
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    h.inject(0, frag);
    assert!(h.out(1).is_empty());
    assert_eq!(h.counter(Counter::CtFragment), 1, "{}", h.report());
}

/// Packets of one vector see the flows that earlier packets of the same
/// vector created or freed (the staged lookup's hints are taken before any
/// of them): a new connection's SYN and its next segments in one burst
/// create one flow and are all translated, replies in the same burst too.
#[test]
fn a_burst_of_one_new_connection_creates_one_flow() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "burst");
    a.handle(
        &mut h.router,
        &Op::ServiceAdd(service("web", "198.19.0.10", &["198.18.2.2"])),
    )
    .unwrap();
    let seg = |sport: u16, syn: bool| {
        tcp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 19, 0, 10],
            sport,
            80,
            syn,
            b"x",
        )
    };
    for k in 0..4 {
        h.send(0, seg(41000, k == 0));
        h.send(0, seg(41001 + k, true));
    }
    h.run();
    let out = h.out(1);
    assert_eq!(out.len(), 8, "{}", h.report());
    for f in &out {
        let (src, dst, _, dport) = tuple(f);
        assert_eq!((src, dst, dport), ([198, 18, 1, 2], [198, 18, 2, 2], 8080));
    }
    assert_eq!(h.counter(Counter::CtFlowCreated), 5);
    assert_eq!(h.counter(Counter::CtTableFull), 0);
    assert_eq!(h.worker.pipeline.conntrack().len(), 5);
    // The backend's replies of two connections, interleaved, in one burst.
    for k in 0..3 {
        for sport in [41000, 41001] {
            h.send(
                1,
                tcp(
                    B,
                    R2,
                    [198, 18, 2, 2],
                    [198, 18, 1, 2],
                    8080,
                    sport,
                    false,
                    &[k],
                ),
            );
        }
    }
    h.run();
    let back = h.out(0);
    assert_eq!(back.len(), 6, "{}", h.report());
    for f in &back {
        let (src, _, sport, _) = tuple(f);
        assert_eq!((src, sport), ([198, 19, 0, 10], 80), "reverse NAT");
    }
}

#[test]
fn full_table_refuses_new_flows_and_keeps_old_ones() {
    let mut h = Harness::new(&cfg());
    h.worker
        .pipeline
        .set_conntrack(ConnTrack::new(16, 0, Timeouts::default()));
    let mut a = api(&h, "full");
    a.handle(
        &mut h.router,
        &Op::ServiceAdd(service("web", "198.19.0.10", &["198.18.2.2"])),
    )
    .unwrap();
    for p in 0..40u16 {
        h.inject(
            0,
            tcp(
                H1,
                R1,
                [198, 18, 1, 2],
                [198, 19, 0, 10],
                1000 + p,
                80,
                true,
                b"",
            ),
        );
    }
    let out = h.out(1);
    assert_eq!(out.len(), 16, "{}", h.report());
    assert_eq!(h.counter(Counter::CtTableFull), 24);
    // The first flows still translate.
    h.inject(
        0,
        tcp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 19, 0, 10],
            1000,
            80,
            false,
            b"x",
        ),
    );
    let out = h.out(1);
    assert_eq!(out.len(), 1);
    assert_eq!(tuple(&out[0]).1, [198, 18, 2, 2]);
    assert_eq!(h.worker.pipeline.conntrack().len(), 16);
}

#[test]
fn batch_is_all_or_nothing_and_sync_diffs_services_and_policies() {
    let mut h = Harness::new(&cfg());
    let mut a = api(&h, "sync");
    let bad: proto::Service = serde_json::from_value(json!({
        "namespace": "default", "name": "bad", "ips": ["not-an-ip"], "port": 80,
    }))
    .unwrap();
    let err = a
        .handle(
            &mut h.router,
            &Op::Batch(proto::Batch {
                ops: vec![
                    proto::BatchOp {
                        op: Op::ServiceAdd(service("web", "198.19.0.10", &["198.18.2.2"])),
                    },
                    proto::BatchOp {
                        op: Op::ServiceAdd(bad),
                    },
                ],
            }),
        )
        .unwrap_err();
    assert!(err.message.starts_with("op 1:"), "{err:?}");
    let shown = a.handle(&mut h.router, &Op::ShowServices).unwrap();
    assert_eq!(shown, json!([]), "the batch left nothing behind");
    assert!(!h.router.tables().services.enabled);

    let policy: proto::Policy = serde_json::from_value(json!({
        "namespace": "default", "name": "deny", "pods": ["198.18.2.2"],
    }))
    .unwrap();
    let sync = |generation, services: Vec<proto::Service>, policies: Vec<proto::Policy>| {
        Op::Sync(proto::Sync {
            scope: "agent".into(),
            generation,
            routes: vec![],
            neighbors: vec![],
            endpoints: vec![],
            services,
            policies,
        })
    };
    let r = a
        .handle(
            &mut h.router,
            &sync(
                1,
                vec![
                    service("a", "198.19.0.1", &["198.18.2.2"]),
                    service("b", "198.19.0.2", &["198.18.2.2"]),
                ],
                vec![policy.clone()],
            ),
        )
        .unwrap();
    assert_eq!(r["added"], 3, "{r}");
    let r = a
        .handle(
            &mut h.router,
            &sync(
                2,
                vec![service("a", "198.19.0.1", &["198.18.2.2", "198.18.2.3"])],
                vec![policy],
            ),
        )
        .unwrap();
    assert_eq!(
        (&r["changed"], &r["removed"], &r["unchanged"]),
        (&json!(1), &json!(1), &json!(1)),
        "{r}"
    );
    let shown = a.handle(&mut h.router, &Op::ShowServices).unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 1);
    assert_eq!(shown[0]["backends"].as_array().unwrap().len(), 2);
    let t = h.router.tables();
    assert!(t.services.enabled && t.services.policy.isolated(0xc612_0202u32));
    let err = a
        .handle(&mut h.router, &sync(1, vec![], vec![]))
        .unwrap_err();
    assert_eq!(err.code, "stale_generation");
}

#[test]
fn static_service_and_policy_from_the_config() {
    let cfg = format!(
        r#"{}
[[service]]
namespace = "default"
name = "web"
ips = ["198.19.0.10"]
port = 80
backends = [{{ ip = "198.18.2.2", port = 8080 }}]
[[policy]]
namespace = "default"
name = "deny-all"
pods = ["198.18.2.2"]
"#,
        cfg()
    );
    let mut h = Harness::new(&cfg);
    h.inject(
        0,
        tcp(
            H1,
            R1,
            [198, 18, 1, 2],
            [198, 19, 0, 10],
            40000,
            80,
            true,
            b"",
        ),
    );
    assert!(
        h.out(1).is_empty(),
        "the static policy isolates the backend"
    );
    assert_eq!(h.counter(Counter::PolicyDenied), 1, "{}", h.report());
    let bad = cfg.replace("port = 8080", "port = 0");
    let c = vrouter_dataplane::config::Config::parse("t.toml", &bad).unwrap();
    match vrouter_dataplane::control::Router::from_config(&c, &[None, None], "t.toml") {
        Ok(_) => panic!("a service with port 0 was accepted"),
        Err(e) => assert!(e.to_string().contains("service[0]"), "{e}"),
    }
}
