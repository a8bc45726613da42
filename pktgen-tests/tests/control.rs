//! The control socket against a real vrouterd process: every operation
//! through the client library and through vrouterctl, batch and sync
//! semantics, and hostile clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};
use vrouter_control::proto::{self, Op};
use vrouter_control::{Client, ClientError};
use vrouter_pktgen_tests::*;

const CFG: &str = r#"
[[port]]
name = "net1"
driver = "memory"
[[port]]
name = "net2"
driver = "memory"
[[port]]
name = "p1"
driver = "memory"
[[bridge]]
name = "br"
[[interface]]
name = "net1"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "net2"
addresses = ["198.18.2.1/24"]
[[interface]]
name = "p1"
bridge = "br"
"#;

fn client(d: &Daemon) -> Client {
    Client::connect(&d.socket(), "test").expect("connect")
}

fn route(prefix: &str, via: &[&str]) -> proto::Route {
    proto::Route {
        vrf: None,
        prefix: prefix.into(),
        via: via.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn routes(c: &mut Client) -> Vec<(String, String, String)> {
    let v = c.call(Op::ShowRoutes(proto::RouteSel::default())).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["prefix"].as_str().unwrap().to_string(),
                r["source"].as_str().unwrap().to_string(),
                r["next_hop"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has_route(c: &mut Client, prefix: &str) -> bool {
    routes(c)
        .iter()
        .any(|(p, s, _)| p == prefix && s == "static")
}

fn api_code(r: Result<Value, ClientError>) -> String {
    match r {
        Err(ClientError::Api(e)) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn every_operation_round_trips() {
    let d = Daemon::start(CFG, "");
    let mut c = client(&d);
    assert!(c.server.starts_with("vrouterd "));
    for op in [
        Op::ShowPorts,
        Op::ShowInterfaces,
        Op::ShowVrfs,
        Op::ShowBridges,
        Op::ShowMac(proto::BridgeSel::default()),
        Op::ShowRoutes(proto::RouteSel::default()),
        Op::ShowNeighbors,
        Op::ShowEndpoints,
        Op::ShowCounters,
        Op::ShowErrors,
        Op::ShowRuntime,
    ] {
        assert!(c.call(op.clone()).is_ok(), "{op:?}");
    }
    let ports = c.call(Op::ShowPorts).unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 3);
    // Routes: add, refuse a duplicate add, replace, delete.
    c.call(Op::RouteAdd(route("198.19.0.0/16", &["198.18.1.2"])))
        .unwrap();
    assert_eq!(
        api_code(c.call(Op::RouteAdd(route("198.19.0.0/16", &["198.18.1.3"])))),
        proto::code::EXISTS
    );
    c.call(Op::RouteReplace(route(
        "198.19.0.0/16",
        &["198.18.1.2", "198.18.2.2"],
    )))
    .unwrap();
    assert!(
        routes(&mut c)
            .iter()
            .any(|(p, _, nh)| p == "198.19.0.0/16" && nh.starts_with("ecmp"))
    );
    c.call(Op::RouteDel(proto::RouteKey {
        vrf: None,
        prefix: "198.19.0.0/16".into(),
    }))
    .unwrap();
    assert!(!has_route(&mut c, "198.19.0.0/16"));
    assert_eq!(
        api_code(c.call(Op::RouteDel(proto::RouteKey {
            vrf: None,
            prefix: "198.19.0.0/16".into()
        }))),
        proto::code::NOT_FOUND
    );
    // Neighbours.
    c.call(Op::NeighborAdd(proto::Neighbor {
        interface: "net1".into(),
        ip: "198.18.1.9".into(),
        mac: "02:00:00:00:01:09".into(),
    }))
    .unwrap();
    let n = c.call(Op::ShowNeighbors).unwrap();
    assert!(
        n.as_array()
            .unwrap()
            .iter()
            .any(|x| x["ip"] == "198.18.1.9" && x["static"] == true)
    );
    assert!(
        routes(&mut c)
            .iter()
            .any(|(p, s, _)| p == "198.18.1.9/32" && s == "neighbor")
    );
    c.call(Op::NeighborDel(proto::NeighborKey {
        interface: "net1".into(),
        ip: "198.18.1.9".into(),
    }))
    .unwrap();
    assert!(
        c.call(Op::ShowNeighbors)
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Addresses.
    c.call(Op::AddressAdd(proto::Address {
        interface: "net2".into(),
        address: "198.18.22.1/24".into(),
    }))
    .unwrap();
    assert!(
        routes(&mut c)
            .iter()
            .any(|(p, s, _)| p == "198.18.22.0/24" && s == "connected")
    );
    c.call(Op::AddressDel(proto::Address {
        interface: "net2".into(),
        address: "198.18.22.1".into(),
    }))
    .unwrap();
    assert!(!routes(&mut c).iter().any(|(p, ..)| p == "198.18.22.0/24"));
    // Static MACs and flush.
    c.call(Op::StaticMacAdd(proto::StaticMac {
        bridge: "br".into(),
        mac: "02:00:00:00:00:0c".into(),
        interface: "p1".into(),
    }))
    .unwrap();
    let m = c
        .call(Op::ShowMac(proto::BridgeSel {
            bridge: Some("br".into()),
        }))
        .unwrap();
    assert_eq!(m.as_array().unwrap().len(), 1);
    c.call(Op::MacFlush(proto::MacFlush {
        bridge: "br".into(),
        interface: None,
    }))
    .unwrap();
    assert_eq!(
        c.call(Op::ShowMac(proto::BridgeSel::default()))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "static entries survive a flush"
    );
    c.call(Op::StaticMacDel(proto::StaticMac {
        bridge: "br".into(),
        mac: "02:00:00:00:00:0c".into(),
        interface: "p1".into(),
    }))
    .unwrap();
    // Endpoints.
    let ep = proto::Endpoint {
        namespace: "default".into(),
        name: "web-1".into(),
        node: "n1".into(),
        ips: vec!["198.18.1.50".into(), "2001:db8:1::50".into()],
        mac: "02:00:00:00:01:50".into(),
        interface: "net1".into(),
    };
    c.call(Op::EndpointAdd(ep.clone())).unwrap();
    assert_eq!(c.call(Op::ShowEndpoints).unwrap()[0]["name"], "web-1");
    assert_eq!(
        c.call(Op::ShowNeighbors).unwrap().as_array().unwrap().len(),
        2
    );
    c.call(Op::EndpointDel(proto::EndpointKey {
        namespace: "default".into(),
        name: "web-1".into(),
    }))
    .unwrap();
    assert!(
        c.call(Op::ShowNeighbors)
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The same through vrouterctl, tables and JSON, and its exit codes.
    let (rc, out, _) = d.ctl(&["route", "add", "198.19.1.0/24", "via", "198.18.1.2"]);
    assert_eq!(rc, 0);
    let (rc, out2, _) = d.ctl(&["show", "routes"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out2.lines().next().unwrap().starts_with("vrf"), "{out2}");
    assert!(out2.contains("198.19.1.0/24"), "{out2}");
    let (rc, js, _) = d.ctl(&["--json", "show", "ports"]);
    assert_eq!(rc, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&js)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (rc, _, err) = d.ctl(&["route", "del", "198.19.9.0/24"]);
    assert_eq!(rc, 1, "refused request");
    assert!(err.contains("not_found"), "{err}");
    let (rc, _, _) = d.ctl(&["route", "frobnicate"]);
    assert_eq!(rc, 2, "bad command line");
    let out = std::process::Command::new(vrouterctl())
        .args(["--socket", "/nonexistent/sock", "show", "ports"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "unreachable vrouterd");
    for args in [
        vec!["neighbor", "add", "net1", "198.18.1.7", "02:00:00:00:01:07"],
        vec!["neighbor", "del", "net1", "198.18.1.7"],
        vec!["address", "add", "net2", "198.18.23.1/24"],
        vec!["address", "del", "net2", "198.18.23.1"],
        vec!["mac", "add", "br", "02:00:00:00:00:0d", "p1"],
        vec!["mac", "del", "br", "02:00:00:00:00:0d", "p1"],
        vec!["mac", "flush", "br"],
        vec![
            "endpoint",
            "add",
            "ns/pod",
            "--interface",
            "net1",
            "--mac",
            "02:00:00:00:01:51",
            "--ip",
            "198.18.1.51",
        ],
        vec!["endpoint", "del", "ns/pod"],
        vec!["route", "replace", "198.19.1.0/24", "--drop"],
        vec!["route", "del", "198.19.1.0/24"],
        vec!["show", "bridge"],
        vec!["show", "interfaces"],
        vec!["show", "counters"],
        vec!["raw", r#"{"op":"show.vrfs"}"#],
    ] {
        let (rc, out, err) = d.ctl(&args);
        assert_eq!(rc, 0, "{args:?}: {out}{err}");
    }
}

#[test]
fn batch_is_all_or_nothing() {
    let d = Daemon::start(CFG, "");
    let mut c = client(&d);
    c.call(Op::RouteAdd(route("198.19.9.0/24", &["198.18.1.2"])))
        .unwrap();
    let batch = |ops: Vec<Op>| {
        Op::Batch(proto::Batch {
            ops: ops.into_iter().map(|op| proto::BatchOp { op }).collect(),
        })
    };
    let bad = batch(vec![
        Op::RouteAdd(route("198.19.1.0/24", &["198.18.1.2"])),
        Op::RouteReplace(route("198.19.9.0/24", &["198.18.2.2"])),
        Op::RouteAdd(route("198.19.2.0/24", &["203.0.113.1"])), // not in a connected subnet
    ]);
    match c.call(bad) {
        Err(ClientError::Api(e)) => assert!(e.message.starts_with("op 2:"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!has_route(&mut c, "198.19.1.0/24"), "first op undone");
    let r = routes(&mut c);
    assert!(
        r.iter()
            .any(|(p, _, nh)| p == "198.19.9.0/24" && nh.contains("198.18.1.2")),
        "replacement undone: {r:?}"
    );
    let good = batch(
        (0..100)
            .map(|k| Op::RouteAdd(route(&format!("198.19.{k}.0/24"), &["198.18.1.2"])))
            .filter(|o| !matches!(o, Op::RouteAdd(r) if r.prefix == "198.19.9.0/24"))
            .collect(),
    );
    assert_eq!(c.call(good).unwrap()["applied"], 99);
    assert_eq!(
        routes(&mut c)
            .iter()
            .filter(|(_, s, _)| s == "static")
            .count(),
        100
    );
}

#[test]
fn sync_changes_only_what_differs() {
    let d = Daemon::start(CFG, "");
    let mut c = client(&d);
    let sync = |generation: u64, routes: Vec<proto::Route>| {
        Op::Sync(proto::Sync {
            scope: "node/n2".into(),
            generation,
            routes,
            neighbors: vec![],
            endpoints: vec![],
            services: vec![],
            policies: vec![],
        })
    };
    let set: Vec<_> = (0..50)
        .map(|k| route(&format!("198.19.{k}.0/24"), &["198.18.1.2"]))
        .collect();
    let r = c.call(sync(1, set.clone())).unwrap();
    assert_eq!(
        (r["added"].as_u64(), r["removed"].as_u64()),
        (Some(50), Some(0))
    );
    let publishes_before = routes(&mut c).len();
    let r = c.call(sync(1, set.clone())).unwrap();
    assert_eq!(
        (
            r["added"].as_u64(),
            r["changed"].as_u64(),
            r["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(50))
    );
    assert_eq!(routes(&mut c).len(), publishes_before);
    // An agent restart resyncs with a newer generation and a changed world:
    // 40 kept, 10 gone, 1 changed, 5 new.
    let mut next: Vec<_> = set[..40].to_vec();
    next[0] = route("198.19.0.0/24", &["198.18.2.2"]);
    next.extend((100..105).map(|k| route(&format!("198.19.{k}.0/24"), &["198.18.1.2"])));
    let r = c.call(sync(2, next)).unwrap();
    assert_eq!(
        (
            r["added"].as_u64(),
            r["changed"].as_u64(),
            r["removed"].as_u64(),
            r["unchanged"].as_u64()
        ),
        (Some(5), Some(1), Some(10), Some(39))
    );
    let rs = routes(&mut c);
    assert!(
        rs.iter()
            .any(|(p, _, nh)| p == "198.19.0.0/24" && nh.contains("198.18.2.2"))
    );
    assert!(!rs.iter().any(|(p, ..)| p == "198.19.45.0/24"));
    assert_eq!(api_code(c.call(sync(1, vec![]))), proto::code::STALE);
}

/// Sends one raw line and returns the parsed response line.
fn raw(s: &mut BufReader<UnixStream>, line: &str) -> Value {
    s.get_mut().write_all(line.as_bytes()).unwrap();
    s.get_mut().write_all(b"\n").unwrap();
    let mut out = String::new();
    s.read_line(&mut out).unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn bad_input_gets_clear_errors_and_bounded_resources() {
    let mut d = Daemon::start(CFG, "max-connections = 8");
    let stream = UnixStream::connect(d.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut s = BufReader::new(stream);
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    assert_eq!(
        code(&raw(&mut s, r#"{"id":1,"op":"show.ports"}"#)),
        "hello_first"
    );
    assert_eq!(
        code(&raw(
            &mut s,
            r#"{"id":1,"op":"hello","args":{"version":1}}"#
        )),
        ""
    );
    let cases = [
        (r#"{"id":2,"op":"show.ports""#, "bad_json"),
        (r#"not json at all"#, "bad_json"),
        (r#"{"id":3,"op":"route.frobnicate"}"#, "unknown_op"),
        (r#"{"id":4}"#, "bad_request"),
        (
            r#"{"id":5,"op":"route.del","args":{"prefix":42}}"#,
            "bad_request",
        ),
        (r#"{"id":6,"op":"route.del","args":{}}"#, "bad_request"),
        (
            r#"{"id":7,"op":"route.del","args":{"prefix":"198.19.0.0/16","prefix":"198.19.0.0/17"}}"#,
            "bad_request",
        ),
        (
            r#"{"id":8,"op":"route.add","args":{"prefix":"198.19.0.0/33","via":["198.18.1.2"]}}"#,
            "invalid",
        ),
        (
            r#"{"id":9,"op":"route.add","args":{"prefix":"198.19.0.1/16","via":["198.18.1.2"]}}"#,
            "invalid",
        ),
        (
            r#"{"id":10,"op":"neighbor.add","args":{"interface":"nope","ip":"198.18.1.2","mac":"02:00:00:00:00:01"}}"#,
            "not_found",
        ),
        (
            r#"{"id":11,"op":"neighbor.add","args":{"interface":"net1","ip":"198.18.1.2","mac":"ff:ff:ff:ff:ff:ff"}}"#,
            "invalid",
        ),
        (
            r#"{"id":12,"op":"route.add","args":{"prefix":"198.19.0.0/16","via":["2001:db8::1"]}}"#,
            "invalid",
        ),
        (
            r#"{"id":13,"op":"show.routes","args":{"family":"ipx"}}"#,
            "invalid",
        ),
        (r#"{"id":-5,"op":"show.ports"}"#, "bad_request"),
    ];
    for (line, want) in cases {
        let v = raw(&mut s, line);
        assert_eq!(code(&v), want, "{line} -> {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The connection still works after all that.
    assert!(raw(&mut s, r#"{"id":20,"op":"show.vrfs"}"#)["result"].is_array());

    // A line over the limit: an error, then the connection is closed.
    let mut big = UnixStream::connect(d.socket()).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let blob = vec![b'x'; proto::MAX_LINE + 4096];
    let _ = big.write_all(&blob);
    let mut got = String::new();
    let _ = big.read_to_string(&mut got);
    assert!(got.contains("too_large"), "{got}");

    // Many idle connections: beyond the limit they are refused.
    let idle: Vec<UnixStream> = (0..7)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = UnixStream::connect(d.socket()).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    let _ = extra.read_to_string(&mut got);
    assert!(got.contains("too_many_connections"), "{got}");
    drop(idle);

    // A client that never reads while asking for a lot is cut off, and
    // vrouterd keeps serving others.
    let mut greedy = UnixStream::connect(d.socket()).unwrap();
    greedy
        .write_all(b"{\"id\":1,\"op\":\"hello\",\"args\":{\"version\":1}}\n")
        .unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let req = b"{\"id\":2,\"op\":\"show.interfaces\"}\n".repeat(1000);
    for _ in 0..100 {
        if greedy.write_all(&req).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut c = client(&d);
    assert!(c.call(Op::ShowVrfs).is_ok(), "vrouterd still serves");
    assert!(d.running());
    // Version mismatch.
    let mut v2 = BufReader::new(UnixStream::connect(d.socket()).unwrap());
    assert_eq!(
        code(&raw(
            &mut v2,
            r#"{"id":1,"op":"hello","args":{"version":99}}"#
        )),
        "unsupported_version"
    );
}

#[test]
fn socket_is_private_and_checks_credentials() {
    require_root!();
    let d = Daemon::start(CFG, "");
    let mode = std::fs::metadata(d.socket())
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    // Another uid: the socket file refuses it...
    let as_nobody = |d: &Daemon| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(vrouterctl())
            .arg("--socket")
            .arg(d.socket())
            .args(["show", "ports"])
            .output()
            .unwrap()
    };
    let out = as_nobody(&d);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and with the file opened up, SO_PEERCRED still does.
    std::fs::set_permissions(
        d.socket(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = as_nobody(&d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not_allowed"), "{err}");
    // The refusal is counted where operators look for refusals.
    let (code, out, _) = d.ctl(&["--json", "show", "errors"]);
    assert_eq!(code, 0);
    let errors: Value = serde_json::from_str(&out).unwrap();
    let refused = errors
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "control-refused-credentials")
        .and_then(|c| c["value"].as_u64());
    assert_eq!(refused, Some(1), "{out}");
    let _ = json!(null);
}

/// Tables change under traffic: 100k route changes while a steady ping flow
/// (whose route never changes) loses nothing, and a flow whose route is
/// switched is delivered on its new path.
#[test]
fn forwarding_continues_through_100k_route_changes() {
    require_root!();
    let mut t = Topology::new();
    for n in ["r", "a", "b", "c"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let (rc, _) = t.veth("r", "rc", "c", "pc");
    for i in [&ra, &rb, &rc] {
        t.quiet("r", i);
    }
    let p = t.prefix.clone();
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec("b", &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1 && ip addr add 198.19.5.1/32 dev lo"));
    t.exec("c", &format!("ip addr add 198.18.3.2/24 dev {p}pc && ip route add default via 198.18.3.1 && ip addr add 198.19.5.1/32 dev lo"));
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
[[port]]
name = "a"
driver = "af-packet"
interface = "{ra}"
[[port]]
name = "b"
driver = "af-packet"
interface = "{rb}"
[[port]]
name = "c"
driver = "af-packet"
interface = "{rc}"
[[interface]]
name = "a"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "b"
addresses = ["198.18.2.1/24"]
[[interface]]
name = "c"
addresses = ["198.18.3.1/24"]
[[route]]
prefix = "198.19.5.0/24"
via = ["198.18.2.2"]
"#
        ),
    );
    let mut c = Client::connect(&t.socket(k), "test").unwrap();
    // Warm up ARP on every path.
    for dst in ["198.18.2.2", "198.18.3.2", "198.19.5.1"] {
        t.exec("a", &format!("ping -c 2 -i 0.2 -W 2 {dst}"));
    }
    let rx_b0: u64 = t
        .exec(
            "b",
            &format!("cat /sys/class/net/{p}pb/statistics/rx_packets"),
        )
        .trim()
        .parse()
        .unwrap();
    let churn = std::thread::spawn({
        let sock = t.socket(k);
        move || {
            let mut c = Client::connect(&sock, "churn").unwrap();
            let batch = |ops: Vec<Op>| {
                Op::Batch(proto::Batch {
                    ops: ops.into_iter().map(|op| proto::BatchOp { op }).collect(),
                })
            };
            let start = std::time::Instant::now();
            // 50 batches of 1000 adds, then 50 of 1000 deletes: 100k changes.
            for round in 0..50u32 {
                let ops = (0..1000u32)
                    .map(|j| {
                        let n = round * 1000 + j;
                        Op::RouteAdd(route(
                            &format!("10.{}.{}.0/24", n >> 8, n & 255),
                            &["198.18.3.2"],
                        ))
                    })
                    .collect();
                c.call(batch(ops)).unwrap();
            }
            for round in 0..50u32 {
                let ops = (0..1000u32)
                    .map(|j| {
                        let n = round * 1000 + j;
                        Op::RouteDel(proto::RouteKey {
                            vrf: None,
                            prefix: format!("10.{}.{}.0/24", n >> 8, n & 255),
                        })
                    })
                    .collect();
                c.call(batch(ops)).unwrap();
            }
            start.elapsed()
        }
    });
    // Steady flow: rounds of 500 pings at 2 ms for as long as the churn
    // runs; each round waits for its last replies, so every loss is real.
    let (mut sent, mut got, mut rounds) = (0, 0, 0);
    while !churn.is_finished() || rounds == 0 {
        let text = t.exec_out("a", "ping -q -c 500 -i 0.002 -W 2 198.18.2.2");
        let (s, g) = ping_stats(&String::from_utf8_lossy(&text.stdout));
        sent += s;
        got += g;
        rounds += 1;
    }
    let took = churn.join().unwrap();
    assert!(sent >= 500, "{sent}");
    assert_eq!(
        sent, got,
        "the steady flow lost packets during the churn ({rounds} rounds)"
    );
    eprintln!(
        "100k route changes in {:.2} s; steady flow {sent}/{got}",
        took.as_secs_f64()
    );
    // The switched flow: 198.19.5.0/24 moves from b to c.
    let rx_c0: u64 = t
        .exec(
            "c",
            &format!("cat /sys/class/net/{p}pc/statistics/rx_packets"),
        )
        .trim()
        .parse()
        .unwrap();
    c.call(Op::RouteReplace(route("198.19.5.0/24", &["198.18.3.2"])))
        .unwrap();
    let out = t.exec("a", "ping -c 20 -i 0.01 -W 2 198.19.5.1");
    assert_eq!(ping_stats(&out), (20, 20), "{out}");
    let rx_c1: u64 = t
        .exec(
            "c",
            &format!("cat /sys/class/net/{p}pc/statistics/rx_packets"),
        )
        .trim()
        .parse()
        .unwrap();
    assert!(rx_c1 - rx_c0 >= 20, "the switched flow goes to c now");
    let rx_b1: u64 = t
        .exec(
            "b",
            &format!("cat /sys/class/net/{p}pb/statistics/rx_packets"),
        )
        .trim()
        .parse()
        .unwrap();
    assert!(rx_b1 > rx_b0, "b carried the steady flow");
}

#[test]
fn observability_ops_round_trip_and_refuse_bad_input() {
    let d = Daemon::start(CFG, "");
    // Through vrouterctl.
    let (rc, out, err) = d.ctl(&["trace", "add", "5"]);
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, _) = d.ctl(&["trace", "show"]);
    assert_eq!(rc, 0);
    assert!(out.contains("no traces"), "{out}");
    let (rc, out, _) = d.ctl(&["--json", "trace", "clear"]);
    assert_eq!(rc, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["cleared"], 0);
    let (rc, out, err) = d.ctl(&[
        "trace",
        "packet",
        "--in-port",
        "net1",
        "--src",
        "198.18.1.2",
        "--dst",
        "198.18.2.2",
        "--proto",
        "tcp",
        "--dport",
        "443",
    ]);
    assert_eq!(rc, 0, "{err}");
    // net2's neighbour is unknown: the packet is held for resolution.
    assert!(out.contains("ip4-lookup") && out.contains("glean"), "{out}");
    assert!(out.contains("result: held"), "{out}");
    let (rc, _, err) = d.ctl(&["trace", "add", "0"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("invalid") && err.contains("count 0"), "{err}");
    let (rc, _, err) = d.ctl(&[
        "trace",
        "packet",
        "--in-port",
        "nope",
        "--src",
        "198.18.1.2",
        "--dst",
        "198.18.2.2",
    ]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("not_found") && err.contains("port nope"),
        "{err}"
    );
    let (rc, _, _) = d.ctl(&["capture", "-w", "/dev/null"]);
    assert_eq!(rc, 2, "capture needs --drops or --port");
    let pcap = d.dir.join("empty.pcapng");
    let (rc, _, err) = d.ctl(&[
        "capture",
        "--drops",
        "--seconds",
        "1",
        "-w",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("0 packets written"), "{err}");
    assert!(std::fs::metadata(&pcap).unwrap().len() > 0);

    // Through raw JSON.
    let stream = UnixStream::connect(d.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut s = BufReader::new(stream);
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    raw(&mut s, r#"{"id":1,"op":"hello","args":{"version":1}}"#);
    let v = raw(
        &mut s,
        r#"{"id":2,"op":"trace.packet","args":{"in_port":"net1","src":"198.18.1.2","dst":"198.18.1.1","proto":"icmp"}}"#,
    );
    assert!(
        v["result"]["traces"][0]["path"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["node"] == "ip4-local"),
        "{v}"
    );
    for (line, want) in [
        (
            r#"{"id":3,"op":"trace.add","args":{"count":20000}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"trace.add","args":{"count":-1}}"#,
            "bad_request",
        ),
        (r#"{"id":3,"op":"trace.add"}"#, "bad_request"),
        (
            r#"{"id":3,"op":"trace.packet","args":{"in_port":"net1","src":"198.18.1.2","dst":"198.18.1.1","proto":"sctp"}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"trace.packet","args":{"in_port":"net1","src":"198.18.1.2","dst":"198.18.1.1","vlan":4095}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"trace.packet","args":{"in_port":"net1","src":"198.18.1.2","dst":"198.18.1.1","src_mac":"zz"}}"#,
            "invalid",
        ),
        (r#"{"id":3,"op":"capture.read"}"#, "invalid"),
        (r#"{"id":3,"op":"capture.start","args":{}}"#, "invalid"),
        (
            r#"{"id":3,"op":"capture.start","args":{"drops":true,"port":"net1"}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"capture.start","args":{"port":"nope"}}"#,
            "not_found",
        ),
        (
            r#"{"id":3,"op":"capture.start","args":{"drops":true,"count":0}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"capture.start","args":{"drops":true,"sample":0}}"#,
            "invalid",
        ),
        (
            r#"{"id":3,"op":"subscribe","args":{"events":["mac","bogus"]}}"#,
            "invalid",
        ),
    ] {
        assert_eq!(code(&raw(&mut s, line)), want, "{line}");
    }
    let v = raw(
        &mut s,
        r#"{"id":4,"op":"capture.start","args":{"port":"net1","count":5}}"#,
    );
    assert_eq!(v["result"]["armed"], true, "{v}");
    // A second client cannot take the capture over.
    let mut c = client(&d);
    assert_eq!(
        api_code(c.call(Op::CaptureStart(proto::CaptureStart {
            drops: true,
            port: None,
            count: None,
            sample: None,
        }))),
        proto::code::INVALID
    );
    let v = raw(&mut s, r#"{"id":5,"op":"capture.read"}"#);
    assert_eq!(v["result"]["packets"].as_array().unwrap().len(), 0, "{v}");
    let v = raw(&mut s, r#"{"id":6,"op":"capture.stop"}"#);
    assert_eq!(v["result"]["armed"], false, "{v}");
    // Once stopped, another client may capture.
    c.call(Op::CaptureStart(proto::CaptureStart {
        drops: true,
        port: None,
        count: Some(1),
        sample: Some(2),
    }))
    .unwrap();
    c.call(Op::CaptureStop).unwrap();
}

/// The CPUs of a `Cpus_allowed_list` line ("0-2,5").
fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap(),
            None => p.parse::<usize>().unwrap()..=p.parse::<usize>().unwrap(),
        })
        .collect()
}

/// (thread name, allowed CPUs) of every thread of `pid`.
fn thread_cpus(pid: u32) -> Vec<(String, Vec<usize>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let t = t.unwrap().path();
            let comm = std::fs::read_to_string(t.join("comm")).unwrap();
            let status = std::fs::read_to_string(t.join("status")).unwrap();
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_string();
            (comm.trim().to_string(), cpu_list(&list))
        })
        .collect()
}

#[test]
fn control_threads_stay_off_the_worker_cores() {
    let me = thread_cpus(std::process::id())[0].1.clone();
    if me.len() < 2 {
        eprintln!("skipped: needs two CPUs, this test may use {me:?}");
        return;
    }
    let worker = *me.last().unwrap();
    let d = Daemon::start(&format!("[dataplane]\ncores = [{worker}]\n{CFG}"), "");
    let threads = thread_cpus(d.pid());
    let w = threads.iter().find(|(n, _)| n == "vrouter-w0").unwrap();
    assert_eq!(w.1, vec![worker], "{threads:?}");
    let others: Vec<_> = threads.iter().filter(|(n, _)| n != "vrouter-w0").collect();
    assert!(!others.is_empty());
    for (name, cpus) in others {
        assert!(
            !cpus.contains(&worker),
            "{name} may run on the worker's core: {threads:?}"
        );
        assert!(!cpus.is_empty());
    }
    drop(d);
    // `control-cores = []`: not pinned, the main thread keeps every CPU.
    let d = Daemon::start(
        &format!("[dataplane]\ncores = [{worker}]\ncontrol-cores = []\n{CFG}"),
        "",
    );
    let threads = thread_cpus(d.pid());
    let main = threads.iter().find(|(n, _)| n == "vrouterd").unwrap();
    assert_eq!(main.1, me, "{threads:?}");
}
