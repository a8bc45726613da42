//! NetworkPolicy and anti-spoofing through vrouterd, with real TCP
//! connect/refuse between namespaces: the scenarios of the Kubernetes
//! documentation (deny all ingress, allow from a namespace, allow from an
//! ipBlock with except, egress to a port range), statefulness (replies of
//! allowed connections pass although both directions are isolated), and a
//! pod that spoofs its source address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod k8s_lab;

use k8s_lab::*;
use vrouter_pktgen_tests::*;

const B0: &str = "198.18.10.2";
const B1: &str = "198.18.11.2";

fn ok(lines: &[String]) -> bool {
    !lines.is_empty() && lines.iter().all(|l| !l.starts_with("ERR"))
}

fn denied(lines: &[String]) -> bool {
    !lines.is_empty() && lines.iter().all(|l| l.starts_with("ERR"))
}

#[test]
fn deny_all_then_allow_from_namespace_and_ip_block() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(2, "");
    assert!(ok(&lab.connect("c", B0, 8080, 2)));
    // Deny all ingress to b0; b1 is not selected and stays open.
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"deny-all","pods":["{B0}"],"types":["ingress"]}}"#
        ),
    ]);
    assert!(denied(&lab.connect("c", B0, 8080, 2)), "deny all ingress");
    assert!(ok(&lab.connect("c", B1, 8080, 2)), "b1 not selected");
    let before = lab.counter("policy-denied");
    assert!(before >= 1);
    // Allow from the namespace of c (its pods resolved to an IP set).
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"from-ns","pods":["{B0}"],
              "ingress":[{{"peers":[{{"ips":["198.18.1.2"]}}]}}]}}"#
        ),
    ]);
    assert!(ok(&lab.connect("c", B0, 8080, 2)), "allowed namespace");
    assert!(denied(&lab.connect("d", B0, 8080, 2)), "other namespace");
    // An ipBlock with except: 198.18.0.0/16 but not 198.18.1.0/24.
    lab.ctl(&["policy", "del", "default/from-ns"]);
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"block","pods":["{B0}"],
              "ingress":[{{"peers":[{{"ip_block":"198.18.0.0/16","except":["198.18.1.0/24"]}}],
                           "ports":[{{"protocol":"tcp","port":8080}}]}}]}}"#
        ),
    ]);
    assert!(ok(&lab.connect("d", B0, 8080, 2)), "in the block");
    assert!(denied(&lab.connect("c", B0, 8080, 2)), "in the except");
    assert!(denied(&lab.connect("d", B0, 9090, 2)), "port not listed");
    let v: serde_json::Value =
        serde_json::from_str(&lab.ctl(&["--json", "show", "policies"])).unwrap();
    let block = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "default/block")
        .unwrap();
    assert!(
        block["rules"][0]["allowed"].as_u64().unwrap() >= 2,
        "{block}"
    );
    let table = lab.ctl(&["show", "policies"]);
    assert!(
        table.contains("default/block") && table.contains("ingress 0="),
        "{table}"
    );
    // Deleting the policies opens b0 again.
    lab.ctl(&["policy", "del", "default/block"]);
    lab.ctl(&["policy", "del", "default/deny-all"]);
    assert!(ok(&lab.connect("c", B0, 8080, 2)));
}

#[test]
fn egress_port_range_and_stateful_replies() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "");
    // c may only open connections to ports 8000-8100.
    lab.ctl(&[
        "policy",
        "add",
        r#"{"namespace":"default","name":"egress","pods":["198.18.1.2"],"types":["egress"],
            "egress":[{"ports":[{"protocol":"tcp","port":8000,"end_port":8100}]}]}"#,
    ]);
    assert!(ok(&lab.connect("c", B0, 8080, 2)), "in the range");
    assert!(denied(&lab.connect("c", B0, 9090, 2)), "outside the range");
    // b0 isolated both ways with one ingress rule: the replies of allowed
    // connections still pass (conntrack), b0 cannot open connections.
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"b0","pods":["{B0}"],"types":["ingress","egress"],
              "ingress":[{{"peers":[{{"ips":["198.18.2.2"]}}]}}]}}"#
        ),
    ]);
    let out = lab.connect("d", B0, 8080, 3);
    assert!(ok(&out), "replies of allowed connections pass: {out:?}");
    let t0 = std::time::Instant::now();
    let out = lab.t.exec_out(
        "b0",
        "ping -c 1 -W 1 198.18.2.2 >/dev/null && echo reach || echo blocked",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "blocked",
        "b0 egress denied"
    );
    assert!(t0.elapsed().as_secs() < 5);
}

#[test]
fn spoofed_source_gets_nothing_through() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "");
    let p = lab.t.prefix.clone();
    let mac = lab
        .t
        .exec("c", &format!("cat /sys/class/net/{p}pc/address"))
        .trim()
        .to_string();
    lab.ctl(&[
        "endpoint",
        "add",
        "default/c",
        "--interface",
        "c",
        "--mac",
        &mac,
        "--ip",
        "198.18.1.2",
    ]);
    assert!(ok(&lab.connect("c", B0, 8080, 2)), "own address passes");
    lab.t
        .exec("c", &format!("ip addr add 198.18.1.99/24 dev {p}pc"));
    let out = lab.connect_from("c", B0, 8080, 2, Some("198.18.1.99"));
    assert!(denied(&out), "spoofed IP: {out:?}");
    let spoofed_ip = lab.counter("spoofed-source");
    assert!(spoofed_ip >= 2, "{spoofed_ip}");
    // A spoofed MAC with the pod's own IP.
    lab.t.exec(
        "c",
        &format!("ip link set {p}pc address 02:00:00:00:99:99 && ip neigh flush dev {p}pc"),
    );
    let out = lab.connect("c", B0, 8080, 2);
    assert!(denied(&out), "spoofed MAC: {out:?}");
    assert!(lab.counter("spoofed-source") > spoofed_ip);
}

const B0_6: &str = "2001:db8:10::2";

#[test]
fn ipv6_deny_all_then_allow_ip_block_with_except() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(2, "");
    lab.wait6();
    assert!(ok(&lab.connect("c", B0_6, 8080, 2)));
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"deny-all6","pods":["{B0_6}"],"types":["ingress"]}}"#
        ),
    ]);
    assert!(denied(&lab.connect("c", B0_6, 8080, 2)), "deny all ingress");
    assert!(
        ok(&lab.connect("c", "2001:db8:11::2", 8080, 2)),
        "b1 not selected"
    );
    assert!(
        ok(&lab.connect("c", B0, 8080, 2)),
        "the pod's IPv4 address is not in the IPv6 pod list"
    );
    lab.ctl(&[
        "policy",
        "add",
        &format!(
            r#"{{"namespace":"default","name":"block6","pods":["{B0_6}"],
              "ingress":[{{"peers":[{{"ip_block":"2001:db8::/32","except":["2001:db8:1::/64"]}}],
                           "ports":[{{"protocol":"tcp","port":8080}}]}}]}}"#
        ),
    ]);
    assert!(ok(&lab.connect("d", B0_6, 8080, 2)), "in the block");
    assert!(denied(&lab.connect("c", B0_6, 8080, 2)), "in the except");
    assert!(denied(&lab.connect("d", B0_6, 9090, 2)), "port not listed");
    assert!(lab.counter("policy-denied") >= 6);
}

#[test]
fn ipv6_spoofed_source_gets_nothing_through() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "");
    lab.wait6();
    lab.bind("c", &["198.18.1.2", "2001:db8:1::2"]);
    assert!(ok(&lab.connect("c", B0_6, 8080, 2)), "own address passes");
    let p = lab.t.prefix.clone();
    lab.t.exec(
        "c",
        &format!("ip -6 addr add 2001:db8:1::99/64 dev {p}pc nodad"),
    );
    let out = lab.connect_from("c", B0_6, 8080, 2, Some("2001:db8:1::99"));
    assert!(denied(&out), "spoofed IPv6 source: {out:?}");
    assert!(lab.counter("spoofed-source") >= 2);
    lab.t
        .exec("c", &format!("ip -6 addr del 2001:db8:1::99/64 dev {p}pc"));
    assert!(
        ok(&lab.connect("c", B0_6, 8080, 1)),
        "own address still passes"
    );
}
