//! The README's demo (`scripts/demo.sh`) run as CI runs tests: three nodes
//! in namespaces (two vrouterd + agent over etcd, one kernel VXLAN node),
//! pods made by vrouter-cni, ping and iperf3 across nodes over VXLAN, a
//! ClusterIP reached from another node, the summary; nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use vrouter_pktgen_tests::*;

#[test]
fn three_node_demo_forwards_and_cleans_up() {
    require_root!();
    if !have("etcd") {
        eprintln!("skipped: etcd not installed (apt-get install etcd-server)");
        return;
    }
    let bin = vrouterd();
    for b in [vrouterctl(), vrouter_cni(), vrouter_agent()] {
        assert_eq!(b.parent(), bin.parent());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("timeout")
        .args(["280", "bash", "scripts/demo.sh"])
        .current_dir(&root)
        .env("DEMO_SKIP_BUILD", "1")
        .env("DEMO_BIN", bin.parent().unwrap())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let summary = text.split("==== summary ====").nth(1).unwrap_or("");
    for line in [
        "p1a -> p2a (node1 -> node2, VXLAN)",
        "p2a -> p1b (node2 -> node1, VXLAN)",
        "p1a -> p3 (node1 -> kernel node3)",
        "p3 -> p2a (kernel node3 -> node2)",
    ] {
        let l = summary
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("no `{line}` in the summary:\n{text}"));
        assert!(l.contains("5 received"), "{l}\n{text}");
    }
    assert!(summary.contains("5/5 answered by p2a on node2"), "{text}");
    assert!(summary.contains("Mbit/s"), "{text}");
    // Both vrouterd nodes encapsulated and decapsulated.
    for node in ["node1 (vrouterd)", "node2 (vrouterd)"] {
        let l = summary.lines().find(|l| l.contains(node)).unwrap();
        let n: Vec<u64> = l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // [node number, transmitted, encapsulated, decapsulated, flows]
        assert!(n.len() >= 5 && n[1] > 0 && n[2] > 0 && n[3] > 0, "{l}");
    }
    // Nothing left behind.
    let prefix = text
        .lines()
        .find_map(|l| l.strip_prefix("== topology (prefix "))
        .map(|p| p.trim_end_matches(')').to_string())
        .unwrap();
    let netns = sh("ip netns list");
    assert!(!netns.contains(&prefix), "{netns}");
    let procs = sh("ps -eo args");
    assert!(!procs.contains(&prefix), "processes left: {procs}");
}
