//! The translation without any server: Kubernetes objects as the API server
//! serializes them → model → desired scopes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use vrouter_agent::model::{self, Cluster};
use vrouter_agent::translate::{self, Config, Mode, ROUTE_SCOPE, all_scopes, translate};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    match serde_json::from_value(v) {
        Ok(t) => t,
        Err(e) => panic!("bad test object: {e}"),
    }
}

fn node(name: &str, cidr: &str, ip: &str, vtep: Option<(&str, &str)>) -> Node {
    let mut ann = serde_json::Map::new();
    if let Some((vip, vmac)) = vtep {
        ann.insert(model::ANN_VTEP_IP.into(), json!(vip));
        ann.insert(model::ANN_VTEP_MAC.into(), json!(vmac));
    }
    obj(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "1", "annotations": ann},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
    }))
}

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: Value) -> Pod {
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "resourceVersion": "1", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    for n in [
        node(
            "n1",
            "198.19.1.0/24",
            "198.18.0.1",
            Some(("198.18.0.1", "02:76:78:00:00:01")),
        ),
        node(
            "n2",
            "198.19.2.0/24",
            "198.18.0.2",
            Some(("198.18.0.2", "02:76:78:00:00:02")),
        ),
        node("n3", "198.19.3.0/24", "198.18.0.3", None),
    ] {
        let i = model::node_info(&n).expect("node");
        c.nodes.insert(i.name.clone(), i);
    }
    for p in [
        pod(
            "default",
            "web-1",
            "n1",
            "198.19.1.10",
            json!({"app": "web"}),
        ),
        pod(
            "default",
            "web-2",
            "n2",
            "198.19.2.10",
            json!({"app": "web"}),
        ),
        pod("default", "db-1", "n1", "198.19.1.20", json!({"app": "db"})),
        pod(
            "other",
            "cli",
            "n2",
            "198.19.2.30",
            json!({"role": "client"}),
        ),
    ] {
        let (k, v) = model::pod_info(&p).expect("pod");
        c.pods.insert(k, v);
    }
    for (name, labels) in [("default", json!({})), ("other", json!({"team": "a"}))] {
        let n: Namespace = obj(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        );
        let (k, v) = model::namespace_info(&n).expect("ns");
        c.namespaces.insert(k, v);
    }
    c
}

fn cfg(mode: Mode) -> Config {
    Config {
        node: "n1".into(),
        mode,
        vni: 1,
        pod_bridge: "pods".into(),
    }
}

#[test]
fn host_gw_routes_other_nodes_via_internal_ip() {
    let d = translate(&cluster(), &cfg(Mode::HostGw));
    let r = &d.scopes[ROUTE_SCOPE].routes;
    let got: Vec<(String, Vec<String>)> = r
        .iter()
        .map(|r| (r.prefix.clone(), r.via.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("198.19.2.0/24".into(), vec!["198.18.0.2".into()]),
            ("198.19.3.0/24".into(), vec!["198.18.0.3".into()]),
        ]
    );
    assert!(r.iter().all(|r| r.remote.is_none() && r.mac.is_none()));
}

#[test]
fn overlay_routes_need_the_vtep_annotations() {
    let d = translate(&cluster(), &cfg(Mode::Overlay));
    let r = &d.scopes[ROUTE_SCOPE].routes;
    assert_eq!(r.len(), 1, "n3 has no VTEP annotation: {r:?}");
    assert_eq!(r[0].prefix, "198.19.2.0/24");
    // An overlay route (route.add with `remote`): the node's VTEP, its
    // VXLAN device's MAC, the L3 VNI; no gateway, no interface.
    assert_eq!(r[0].remote.as_deref(), Some("198.18.0.2"));
    assert_eq!(r[0].mac.as_deref(), Some("02:76:78:00:00:02"));
    assert_eq!(r[0].vni, Some(1));
    assert!(r[0].via.is_empty() && r[0].interface.is_none());
    let line = serde_json::to_string(&r[0]).unwrap();
    assert!(line.contains(r#""remote":"198.18.0.2""#), "{line}");
}

#[test]
fn bad_annotations_and_cidrs_are_ignored_not_fatal() {
    let mut c = cluster();
    let n = node(
        "n4",
        "not-a-cidr",
        "198.18.0.4",
        Some(("nonsense", "zz:zz")),
    );
    let i = model::node_info(&n).expect("node");
    assert_eq!(i.vtep_ip, None);
    assert_eq!(i.vtep_mac, None);
    c.nodes.insert(i.name.clone(), i);
    let d = translate(&c, &cfg(Mode::HostGw));
    assert!(
        d.scopes[ROUTE_SCOPE]
            .routes
            .iter()
            .all(|r| r.prefix != "not-a-cidr")
    );
}

#[test]
fn l2_and_none_install_no_routes_and_none_nothing() {
    let d = translate(&cluster(), &cfg(Mode::L2));
    assert!(d.scopes[ROUTE_SCOPE].routes.is_empty());
    assert_eq!(translate::endpoints(&cluster(), &cfg(Mode::L2)).len(), 2);
    let d = translate(&cluster(), &cfg(Mode::None));
    assert_eq!(
        d.scopes.len(),
        all_scopes().len(),
        "every scope is synced (empty)"
    );
    assert!(d.scopes.values().all(|s| s == &Default::default()));
}

#[test]
fn endpoints_are_the_pods_of_this_node() {
    let mut c = cluster();
    // A host-network pod and a finished pod are not endpoints.
    let mut hn = pod("kube-system", "proxy", "n1", "198.18.0.1", json!({}));
    if let Some(s) = hn.spec.as_mut() {
        s.host_network = Some(true);
    }
    let mut done = pod("default", "job", "n1", "198.19.1.99", json!({}));
    if let Some(s) = done.status.as_mut() {
        s.phase = Some("Succeeded".into());
    }
    for p in [hn, done] {
        let (k, v) = model::pod_info(&p).expect("pod");
        c.pods.insert(k, v);
    }
    let eps = translate::endpoints(&c, &cfg(Mode::HostGw));
    let mut names: Vec<&str> = eps.iter().map(|(_, e)| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["db-1", "web-1"]);
    let web = &eps
        .iter()
        .find(|(_, e)| e.name == "web-1")
        .expect("web-1")
        .1;
    // The CNI plugin's convention (vrouter_control::naming): the MAC
    // follows the address, the endpoint is on the pod bridge's BVI.
    assert_eq!(web.mac, "02:58:c6:13:01:0a");
    assert_eq!(
        web.mac,
        vrouter_control::naming::pod_mac("198.19.1.10".parse().unwrap())
    );
    assert_eq!(web.ips, ["198.19.1.10"]);
    assert_eq!(web.interface, "bvi-pods");
    let mut other = cfg(Mode::HostGw);
    other.pod_bridge = "pods2".into();
    let eps2 = translate::endpoints(&c, &other);
    assert!(eps2.iter().all(|(_, e)| e.interface == "bvi-pods2"));
    // The endpoints are spread over the endpoint scopes, each once.
    let d = translate(&c, &cfg(Mode::HostGw));
    let n: usize = d.scopes.values().map(|s| s.endpoints.len()).sum();
    assert_eq!(n, 2);
}

#[test]
fn pod_annotations_override_interface_and_mac() {
    let mut p = pod("default", "a", "n1", "198.19.1.5", json!({}));
    p.metadata.annotations = Some(
        [
            (model::ANN_POD_INTERFACE.to_string(), "eth-a".to_string()),
            (
                model::ANN_POD_MAC.to_string(),
                "02:00:00:00:00:aa".to_string(),
            ),
        ]
        .into(),
    );
    let (_, v) = model::pod_info(&p).expect("pod");
    assert_eq!(v.interface.as_deref(), Some("eth-a"));
    assert_eq!(v.mac.as_deref(), Some("02:00:00:00:00:aa"));
}

fn service_cluster() -> Cluster {
    let mut c = cluster();
    let s: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "web", "resourceVersion": "5"},
        "spec": {"clusterIP": "198.18.200.10", "clusterIPs": ["198.18.200.10"], "type": "NodePort",
                 "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                           {"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "sctp", "port": 99, "protocol": "SCTP"}]}
    }));
    let (k, v) = model::service_info(&s).expect("svc");
    assert_eq!(v.affinity_timeout_s, Some(10800));
    c.services.insert(k, v);
    let headless: Service = obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "hl"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
    }));
    let (k, v) = model::service_info(&headless).expect("svc");
    c.services.insert(k, v);
    let sl: EndpointSlice = obj(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": [
            {"addresses": ["198.19.1.10"], "nodeName": "n1", "conditions": {"ready": true}},
            {"addresses": ["198.19.2.10"], "nodeName": "n2"},
            {"addresses": ["198.19.2.11"], "nodeName": "n2", "conditions": {"ready": false}}
        ]
    }));
    let (k, v) = model::slice_info(&sl).expect("slice");
    c.slices.insert(k, v);
    c
}

#[test]
fn services_one_object_per_port_with_ready_backends() {
    let c = service_cluster();
    let svcs = translate::services(&c, &cfg(Mode::HostGw));
    assert_eq!(svcs.len(), 2, "headless and SCTP are skipped: {svcs:?}");
    let http = svcs
        .iter()
        .find(|s| s.name == "web/http")
        .expect("web/http");
    let v = serde_json::to_value(http).expect("json");
    assert_eq!(
        v,
        json!({"namespace": "default", "name": "web/http", "ips": ["198.18.200.10"], "port": 80,
               "protocol": "tcp", "node_port": 30080, "external_local": true, "affinity_timeout_s": 10800,
               "backends": [{"ip": "198.19.1.10", "port": 8080, "local": true},
                            {"ip": "198.19.2.10", "port": 8080, "local": false}]})
    );
    let dns = svcs.iter().find(|s| s.name == "web/dns").expect("web/dns");
    assert_eq!(dns.protocol, "udp");
    assert_eq!(dns.backends.len(), 2);
    assert!(dns.backends.iter().all(|b| b.port == 5353));
    let d = translate(&c, &cfg(Mode::HostGw));
    assert_eq!(d.backends(), 4);
}

#[test]
fn policies_resolve_selectors_to_addresses() {
    let mut c = cluster();
    let p: NetworkPolicy = obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "default", "name": "db"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                          {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
                          {"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.200.0/24"]}}],
                 "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": "metrics"}]},
                {"ports": [{"protocol": "TCP", "port": "only-named"}]}
            ]
        }
    }));
    let (k, v) = model::policy_info(&p).expect("policy");
    c.policies.insert(k, v);
    // A policy selecting no pod of this node is not sent.
    let p2: NetworkPolicy = obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "other", "name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    }));
    let (k, v) = model::policy_info(&p2).expect("policy");
    c.policies.insert(k, v);
    let pols = translate::policies(&c, &cfg(Mode::HostGw));
    assert_eq!(pols.len(), 1);
    let v = serde_json::to_value(&pols[0]).expect("json");
    assert_eq!(
        v,
        json!({"namespace": "default", "name": "db", "pods": ["198.19.1.20"], "types": ["ingress"],
               "ingress": [{"peers": [{"ips": ["198.19.1.10", "198.19.2.10"]},
                                      {"ips": ["198.19.2.30"]},
                                      {"ip_block": "198.18.0.0/16", "except": ["198.18.200.0/24"]}],
                            "ports": [{"protocol": "tcp", "port": 5432}]}],
               "egress": []})
    );
    // On n2, `other/deny` selects cli and isolates both directions.
    let pols = translate::policies(
        &c,
        &Config {
            node: "n2".into(),
            ..cfg(Mode::HostGw)
        },
    );
    let deny = pols.iter().find(|p| p.name == "deny").expect("deny");
    assert_eq!(deny.types, ["ingress", "egress"]);
    assert!(deny.ingress.is_empty() && deny.egress.is_empty());
}

#[test]
fn selector_operators() {
    let sel = model::Selector {
        match_labels: [("a".to_string(), "1".to_string())].into(),
        expressions: vec![
            ("b".into(), "NotIn".into(), vec!["x".into()]),
            ("c".into(), "Exists".into(), vec![]),
            ("d".into(), "DoesNotExist".into(), vec![]),
        ],
    };
    let l = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert!(sel.matches(&l(&[("a", "1"), ("c", "")])));
    assert!(!sel.matches(&l(&[("a", "1"), ("c", ""), ("b", "x")])));
    assert!(!sel.matches(&l(&[("a", "1"), ("c", ""), ("d", "")])));
    assert!(!sel.matches(&l(&[("a", "2"), ("c", "")])));
    let bad = model::Selector {
        expressions: vec![("a".into(), "Bogus".into(), vec![])],
        ..Default::default()
    };
    assert!(
        !bad.matches(&l(&[("a", "1")])),
        "unknown operators match nothing"
    );
}

#[test]
fn shards_are_stable_and_in_range() {
    assert_eq!(
        translate::shard("default/web", 64),
        translate::shard("default/web", 64)
    );
    for i in 0..1000 {
        assert!(translate::shard(&format!("ns/s{i}"), 64) < 64);
    }
}

/// The incremental translation (what the engine runs per change) always
/// ends where a full translation of the same cluster does, and reports
/// exactly the scopes whose content changed.
#[test]
fn incremental_translation_equals_the_full_one() {
    let mut c = service_cluster();
    let pol: NetworkPolicy = obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "default", "name": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}
    }));
    let (k, v) = model::policy_info(&pol).expect("policy");
    c.policies.insert(k, v);
    for mode in [Mode::Overlay, Mode::HostGw] {
        let cfg = cfg(mode);
        let mut c = c.clone();
        let mut t = translate::Translator::new(cfg.clone());
        let first = t.update(&mut c);
        assert_eq!(first.len(), all_scopes().len(), "the first is full");
        assert_eq!(t.desired(), &translate(&c, &cfg));
        let mut check = |c: &mut Cluster, what: &str| {
            let before = t.desired().clone();
            let changed = t.update(c);
            let full = translate(c, &cfg);
            assert_eq!(t.desired(), &full, "{what}");
            let differ: std::collections::BTreeSet<String> = full
                .scopes
                .iter()
                .filter(|(k, v)| before.scopes.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(changed, differ, "{what}");
            assert!(!c.dirty.any(), "{what}: marks cleared");
            changed
        };
        // An endpoint of a Service's slice changes: that Service's scope.
        let mut sl = c.slices["default/web-abc"].clone();
        sl.endpoints[1].ready = false;
        c.set_slice("default/web-abc".into(), Some(sl.clone()));
        let ch = check(&mut c, "slice endpoint not ready");
        assert_eq!(ch.len(), 1, "{ch:?}");
        assert!(ch.iter().all(|s| s.starts_with("agent/services/")));
        // The same object again: nothing.
        c.set_slice("default/web-abc".into(), Some(sl));
        assert!(check(&mut c, "same slice").is_empty());
        // A second slice of the same Service, then the Service's port
        // removed, then the Service gone.
        let mut sl2 = c.slices["default/web-abc"].clone();
        sl2.name = "web-def".into();
        sl2.endpoints[0].ips = vec!["198.19.1.77".parse().unwrap()];
        c.set_slice("default/web-def".into(), Some(sl2));
        check(&mut c, "second slice");
        let mut svc = c.services["default/web"].clone();
        svc.ports.truncate(1);
        c.set_service("default/web".into(), Some(svc));
        check(&mut c, "service port removed");
        c.set_slice("default/web-def".into(), None);
        check(&mut c, "slice deleted");
        c.set_service("default/web".into(), None);
        check(&mut c, "service deleted");
        // A pod of this node appears; one moves; one goes.
        let (k, v) = model::pod_info(&pod(
            "default",
            "new",
            "n1",
            "198.19.1.40",
            json!({"app": "web"}),
        ))
        .expect("pod");
        c.set_pod(k, Some(v));
        let ch = check(&mut c, "pod added (endpoint + policy peer)");
        assert!(
            ch.iter().any(|s| s.starts_with("agent/endpoints/")),
            "{ch:?}"
        );
        assert!(
            ch.iter().any(|s| s.starts_with("agent/policies/")),
            "{ch:?}"
        );
        c.set_pod("default/db-1".into(), None);
        check(&mut c, "pod deleted");
        let (k, v) = model::pod_info(&pod(
            "other",
            "cli",
            "n2",
            "198.19.2.31",
            json!({"role": "client"}),
        ))
        .expect("pod");
        c.set_pod(k, Some(v));
        check(&mut c, "remote pod changed");
        // Nodes: the VTEP annotation of n3 arrives; n2 leaves.
        let i = model::node_info(&node(
            "n3",
            "198.19.3.0/24",
            "198.18.0.3",
            Some(("198.18.0.3", "02:76:78:00:00:03")),
        ))
        .expect("node");
        c.set_node("n3".into(), Some(i));
        check(&mut c, "node annotated");
        c.set_node("n2".into(), None);
        check(&mut c, "node left");
        // Namespaces and policies.
        c.set_namespace(
            "other".into(),
            Some([("team".to_string(), "b".to_string())].into()),
        );
        check(&mut c, "namespace labels");
        c.set_policy("default/db".into(), None);
        check(&mut c, "policy deleted");
        // A relist replaces a map whole.
        c.slices.clear();
        c.mark_all();
        check(&mut c, "relist");
    }
}
