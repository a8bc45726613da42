//! The Kubernetes path end to end: the real kube-rs client against a local
//! API server speaking the list/watch protocol (tests/mockapi), the agent's
//! engine, and a real vrouterd whose state is read back over its socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mockapi;

use std::time::{Duration, Instant};

use mockapi::{MockApi, NAMESPACES, NODES, PODS, SERVICES, SLICES};
use serde_json::{Value, json};
use vrouter_agent::engine::{Engine, EngineConfig};
use vrouter_agent::kube_source;
use vrouter_agent::translate::{Config, Mode};
use vrouter_control::{Client, Op, RouteSel};
use vrouter_pktgen_tests::Daemon;

const CFG: &str = r#"
[[port]]
name = "net1"
driver = "memory"
[[port]]
name = "p1"
driver = "memory"
[[port]]
name = "p2"
driver = "memory"
[[port]]
name = "p3"
driver = "memory"
[[interface]]
name = "net1"
addresses = ["198.18.0.1/24"]
[[interface]]
name = "p1"
addresses = ["198.19.1.1/30"]
[[interface]]
name = "p2"
addresses = ["198.19.1.5/30"]
[[interface]]
name = "p3"
addresses = ["198.19.1.9/30"]
"#;

fn node(name: &str, cidr: &str, ip: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

fn pod(name: &str, ip: &str, iface: &str) -> Value {
    json!({"metadata": {"namespace": "default", "name": name, "labels": {"app": "web"},
                        "annotations": {"vrouter.io/interface": iface}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

/// (prefix, next hop) of the static routes.
fn routes(c: &mut Client) -> Vec<(String, String)> {
    let v = c.call(Op::ShowRoutes(RouteSel::default())).unwrap();
    let mut r: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "static")
        .map(|r| {
            (
                r["prefix"].as_str().unwrap().to_string(),
                r["next_hop"].to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

fn endpoints(c: &mut Client) -> Vec<String> {
    let v = c.call(Op::ShowEndpoints).unwrap();
    let mut e: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["namespace"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    e.sort();
    e
}

async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut f: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = f();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn prefixes(r: &[(String, String)]) -> Vec<&str> {
    r.iter().map(|(p, _)| p.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn nodes_pods_and_resyncs_reach_vrouterd() {
    let d = Daemon::start(CFG, "");
    let api = MockApi::start().await;
    api.apply(NAMESPACES, json!({"metadata": {"name": "default"}}));
    api.apply(NODES, node("n1", "198.19.1.0/24", "198.18.0.1"));
    api.apply(NODES, node("n2", "198.19.2.0/24", "198.18.0.2"));
    api.apply(PODS, pod("web-1", "198.19.1.2", "p1"));
    // A pod whose interface the CNI has not made yet: left out, not fatal.
    api.apply(PODS, pod("web-x", "198.19.1.200", "nope"));
    // A service's objects are watched too (the services ops are tested by
    // the translation tests; this vrouterd may not have them).
    api.apply(
        SERVICES,
        json!({"metadata": {"namespace": "default", "name": "web"},
                               "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
    );
    api.apply(
        SLICES,
        json!({"metadata": {"namespace": "default", "name": "web-1",
                              "labels": {"kubernetes.io/service-name": "web"}},
                             "addressType": "IPv4", "endpoints": []}),
    );
    api.set_slow(100);

    let dir = std::env::temp_dir().join(format!("vrouter-agent-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, api.kubeconfig()).unwrap();
    let client = kube_source::client(Some(&kc)).await.expect("kube client");
    // The agent's socket path is a link, so that vrouterd can be "down"
    // (no link) and "restarted" (the link moved to another vrouterd).
    let link = dir.join("agent.sock");
    let engine = Engine::start(
        &link,
        Config {
            node: "n1".into(),
            mode: Mode::HostGw,
            vni: 1,
            pod_bridge: "pods".into(),
        },
        EngineConfig {
            wait_for_sources: kube_source::KINDS,
            recheck: Duration::from_millis(500),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let tasks = kube_source::spawn_watchers(client.clone(), &engine.shared);
    // vrouterd unreachable: the engine fails, says why, and retries.
    let st = eventually(
        "a failure while vrouterd is away",
        || engine.status(),
        |s| s.failures >= 2,
    )
    .await;
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("agent.sock"),
        "{st:?}"
    );
    std::os::unix::fs::symlink(d.socket(), &link).unwrap();
    kube_source::publish_vtep(
        client,
        "n1",
        "198.18.0.1".parse().unwrap(),
        "02:76:78:00:00:01",
    )
    .await;
    let n1 = api.get(NODES, "n1").unwrap();
    assert_eq!(
        n1["metadata"]["annotations"]["vrouter.io/vtep-ip"],
        "198.18.0.1"
    );
    assert_eq!(
        n1["metadata"]["annotations"]["vrouter.io/vtep-mac"],
        "02:76:78:00:00:01"
    );

    let mut c = Client::connect(&d.socket(), "test").unwrap();
    let r = eventually(
        "initial routes",
        || routes(&mut c),
        |r| prefixes(r) == ["198.19.2.0/24"],
    )
    .await;
    assert!(r[0].1.contains("198.18.0.2"), "{r:?}");
    eventually(
        "initial endpoints",
        || endpoints(&mut c),
        |e| e == &["default/web-1"],
    )
    .await;
    api.set_slow(0);

    // Node join, then leave.
    api.apply(NODES, node("n3", "198.19.3.0/24", "198.18.0.3"));
    eventually(
        "n3 joined",
        || routes(&mut c),
        |r| prefixes(r) == ["198.19.2.0/24", "198.19.3.0/24"],
    )
    .await;
    api.delete(NODES, "n2");
    eventually(
        "n2 left",
        || routes(&mut c),
        |r| prefixes(r) == ["198.19.3.0/24"],
    )
    .await;

    // Scale up, then down.
    api.apply(PODS, pod("web-2", "198.19.1.6", "p2"));
    api.apply(PODS, pod("web-3", "198.19.1.10", "p3"));
    eventually(
        "scaled up",
        || endpoints(&mut c),
        |e| e == &["default/web-1", "default/web-2", "default/web-3"],
    )
    .await;
    api.delete(PODS, "default/web-1");
    api.delete(PODS, "default/web-2");
    eventually(
        "scaled down",
        || endpoints(&mut c),
        |e| e == &["default/web-3"],
    )
    .await;

    // Watches dropped mid-stream: changes made meanwhile still arrive.
    api.drop_watches();
    api.apply(NODES, node("n4", "198.19.4.0/24", "198.18.0.4"));
    eventually(
        "after a dropped watch",
        || routes(&mut c),
        |r| prefixes(r) == ["198.19.3.0/24", "198.19.4.0/24"],
    )
    .await;

    // 410 Gone: history compacted while the watches were down; the
    // watchers relist and the engine resyncs everything.
    let resyncs = engine.status().full_resyncs;
    let lists = api.lists(NODES);
    api.compact();
    api.delete(NODES, "n3");
    api.apply(PODS, pod("web-1", "198.19.1.2", "p1"));
    eventually(
        "after 410 Gone",
        || routes(&mut c),
        |r| prefixes(r) == ["198.19.4.0/24"],
    )
    .await;
    eventually(
        "endpoints after 410",
        || endpoints(&mut c),
        |e| e == &["default/web-1", "default/web-3"],
    )
    .await;
    eventually(
        "a full resync followed the relist",
        || engine.status().full_resyncs,
        |n| *n > resyncs,
    )
    .await;
    assert!(
        api.lists(NODES) > lists,
        "the nodes were listed again after 410 Gone"
    );

    // vrouterd restarts (here: another one takes over the socket path and
    // the first goes away): the agent reconnects and resyncs everything.
    let d2 = Daemon::start(CFG, "");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(d2.socket(), &link).unwrap();
    drop(c);
    drop(d);
    let mut c2 = Client::connect(&d2.socket(), "test").unwrap();
    eventually(
        "routes in the new vrouterd",
        || routes(&mut c2),
        |r| prefixes(r) == ["198.19.4.0/24"],
    )
    .await;
    eventually(
        "endpoints in the new vrouterd",
        || endpoints(&mut c2),
        |e| e == &["default/web-1", "default/web-3"],
    )
    .await;
    for t in tasks {
        t.abort();
    }
    engine.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
