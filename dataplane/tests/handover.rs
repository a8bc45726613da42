//! The control-plane half of a hot restart, without processes: what one
//! vrouterd changed over its control socket (and learned) is snapshotted,
//! carried as JSON and applied to a fresh router built from the same
//! configuration, which then shows the same state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{Value, json};
use vrouter_control::proto::{self, Op};
use vrouter_dataplane::api::{Api, ApiConfig, Snapshot};

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
addresses = ["198.18.1.1/24"]
[[interface]]
name = "net2"
addresses = ["198.18.2.1/24", "198.18.3.1/24"]
[[interface]]
name = "p1"
bridge = "br"
[[route]]
prefix = "198.19.9.0/24"
via = ["198.18.2.2"]
"#;

fn api() -> Api {
    Api::unbound(
        ApiConfig {
            path: "".into(),
            allowed_uids: vec![0],
            allowed_gids: vec![],
            max_connections: 4,
        },
        Vec::new(),
    )
    .unwrap()
}

fn op(v: Value) -> Op {
    serde_json::from_value(v).unwrap()
}

/// What an operator sees: routes, neighbours, MACs, endpoints, services.
fn shown(a: &mut Api, h: &mut Harness) -> Vec<String> {
    [
        Op::ShowRoutes(proto::RouteSel::default()),
        Op::ShowNeighbors,
        Op::ShowMac(proto::BridgeSel { bridge: None }),
        Op::ShowEndpoints,
        Op::ShowServices,
        Op::ShowInterfaces,
    ]
    .into_iter()
    .map(|o| {
        let mut v = a.handle(&mut h.router, &o).unwrap();
        // Counters and ages are not state.
        strip(&mut v);
        v.to_string()
    })
    .collect()
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| {
                !k.contains("packets") && !k.contains("bytes") && k != "age" && k != "drops"
            });
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[test]
fn a_snapshot_rebuilds_the_same_state_in_a_new_router() {
    let mut h1 = Harness::new(CFG);
    let mut a1 = api();
    let changes = [
        json!({"op": "route.add", "args": {"prefix": "198.19.0.0/16", "via": ["198.18.2.2"]}}),
        json!({"op": "route.add", "args": {"prefix": "198.19.1.0/24", "action": "drop"}}),
        json!({"op": "route.del", "args": {"prefix": "198.19.1.0/24"}}),
        // A configured route and a configured address removed over the socket.
        json!({"op": "route.del", "args": {"prefix": "198.19.9.0/24"}}),
        json!({"op": "address.del", "args": {"interface": "net2", "address": "198.18.3.1"}}),
        json!({"op": "address.add", "args": {"interface": "net1", "address": "198.18.5.1/24"}}),
        json!({"op": "route.add", "args": {"prefix": "198.19.5.0/24", "via": ["198.18.5.9"]}}),
        json!({"op": "neighbor.add", "args": {"interface": "net1", "ip": "198.18.1.7", "mac": "02:00:00:00:01:07"}}),
        json!({"op": "static-mac.add", "args": {"bridge": "br", "mac": "02:00:00:00:0c:01", "interface": "p1"}}),
        json!({"op": "endpoint.add", "args": {"namespace": "default", "name": "web-1", "ips": ["198.18.1.50"], "mac": "02:00:00:00:01:50", "interface": "net1"}}),
        json!({"op": "service.add", "args": {"namespace": "default", "name": "web", "ips": ["198.19.200.10"], "port": 80, "backends": [{"ip": "198.18.1.50", "port": 8080}]}}),
    ];
    for c in changes {
        a1.handle(&mut h1.router, &op(c.clone()))
            .unwrap_or_else(|e| panic!("{c}: {e:?}"));
    }
    // A failed batch leaves nothing behind, in the router or the snapshot.
    let bad = op(json!({"op": "batch", "args": {"ops": [
        {"op": "route.add", "args": {"prefix": "198.19.77.0/24", "action": "drop"}},
        {"op": "route.del", "args": {"prefix": "198.19.78.0/24"}},
    ]}}));
    assert!(a1.handle(&mut h1.router, &bad).is_err());
    let sync = proto::Sync {
        scope: "node/n2".into(),
        generation: 5,
        routes: vec![
            serde_json::from_value(json!({"prefix": "198.19.2.0/24", "via": ["198.18.2.2"]}))
                .unwrap(),
        ],
        neighbors: Vec::new(),
        endpoints: Vec::new(),
        services: Vec::new(),
        policies: Vec::new(),
    };
    a1.handle(&mut h1.router, &Op::Sync(sync.clone())).unwrap();
    // A neighbour learned from the wire.
    h1.router
        .set_neighbor(
            1,
            "198.18.2.2".parse().unwrap(),
            "02:00:00:00:02:02".parse().unwrap(),
            false,
        )
        .unwrap();

    let snap = a1.snapshot(&h1.router);
    // (Its undo may leave a delete, which a restore skips when absent.)
    assert!(
        !serde_json::to_string(&snap.changes)
            .unwrap()
            .contains("198.19.77.0"),
        "undone changes are not in the snapshot"
    );
    let wire = serde_json::to_vec(&snap).unwrap();
    let snap: Snapshot = serde_json::from_slice(&wire).unwrap();

    let mut h2 = Harness::new(CFG);
    let mut a2 = api();
    a2.restore(&mut h2.router, &snap).unwrap();
    assert_eq!(shown(&mut a1, &mut h1), shown(&mut a2, &mut h2));
    let routes = shown(&mut a2, &mut h2)[0].clone();
    assert!(!routes.contains("198.19.9.0/24"), "{routes}");
    assert!(!routes.contains("198.19.1.0/24"), "{routes}");
    let neighbors = shown(&mut a2, &mut h2)[1].clone();
    assert!(neighbors.contains("02:00:00:00:02:02"), "{neighbors}");
    // The scope came along: the same sync is a no-op, a smaller one removes.
    let r = a2.handle(&mut h2.router, &Op::Sync(sync.clone())).unwrap();
    assert_eq!(r["unchanged"], 1, "{r}");
    let stale = proto::Sync {
        generation: 4,
        ..sync.clone()
    };
    assert!(a2.handle(&mut h2.router, &Op::Sync(stale)).is_err());
    // And a snapshot of the new one is the same again (a second upgrade).
    let again = serde_json::to_string(&a2.snapshot(&h2.router)).unwrap();
    let mut h3 = Harness::new(CFG);
    let mut a3 = api();
    a3.restore(&mut h3.router, &serde_json::from_str(&again).unwrap())
        .unwrap();
    assert_eq!(shown(&mut a2, &mut h2), shown(&mut a3, &mut h3));
}

#[test]
fn a_snapshot_that_does_not_fit_the_new_configuration_is_refused() {
    let mut h1 = Harness::new(CFG);
    let mut a1 = api();
    a1.handle(
        &mut h1.router,
        &op(json!({"op": "static-mac.add", "args": {"bridge": "br", "mac": "02:00:00:00:0c:01", "interface": "p1"}})),
    )
    .unwrap();
    let snap = a1.snapshot(&h1.router);
    // The new configuration has no bridge `br`.
    let other = CFG
        .replace("[[bridge]]\nname = \"br\"\n", "")
        .replace("[[interface]]\nname = \"p1\"\nbridge = \"br\"\n", "");
    let mut h2 = Harness::new(&other);
    let mut a2 = api();
    let e = a2.restore(&mut h2.router, &snap).unwrap_err();
    assert!(e.message.contains("p1"), "{e:?}");
}
