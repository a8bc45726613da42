//! Kubernetes services through vrouterd, over real TCP between namespaces:
//! ClusterIP spreading and Maglev stability, NodePort (with and without
//! externalTrafficPolicy=Local), ClientIP affinity, REJECT of a service
//! without endpoints, hairpin, and a SYN flood bounded by the per-pod
//! conntrack quota.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod k8s_lab;

use std::collections::HashMap;

use k8s_lab::*;
use vrouter_pktgen_tests::*;

const VIP: &str = "198.19.0.10";

fn spread(lines: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(who(l).to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn cluster_ip_spreads_and_removal_moves_only_that_backend() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(3, "");
    lab.ctl(&[
        "service",
        "add",
        &Lab::service("web", VIP, 80, &[0, 1, 2], ""),
    ]);
    let out = lab.connect("c", VIP, 80, 60);
    let by = spread(&out);
    assert_eq!(
        by.len(),
        3,
        "every backend gets connections: {by:?}\n{out:?}"
    );
    for b in ["b0", "b1", "b2"] {
        assert!(by.get(b).copied().unwrap_or(0) >= 5, "{by:?}");
    }
    // Long-lived connections: removing b0 leaves the others untouched.
    let script = format!(
        "{} {}/client.py {VIP} 80 30 4 > {}/held.txt",
        python(),
        lab.t.dir().display(),
        lab.t.dir().display()
    );
    let ns = lab.t.ns("c");
    let mut held = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2000));
    lab.ctl(&[
        "service",
        "replace",
        &Lab::service("web", VIP, 80, &[1, 2], ""),
    ]);
    let after = lab.connect("c", VIP, 80, 30);
    assert!(
        after.iter().all(|l| who(l) == "b1" || who(l) == "b2"),
        "new connections avoid the removed backend: {after:?}"
    );
    held.wait().unwrap();
    let text = std::fs::read_to_string(lab.t.dir().join("held.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let greet: Vec<&str> = lines.iter().take(30).copied().collect();
    assert!(greet.iter().all(|l| !l.starts_with("ERR")), "{text}");
    let echoes = lines.iter().filter(|l| l.starts_with("ECHO")).count();
    assert_eq!(echoes, 30, "{text}");
    for (i, g) in greet.iter().enumerate() {
        let echo = lines
            .iter()
            .find(|l| **l == format!("ECHO {i} ok") || **l == format!("ECHO {i} fail"))
            .unwrap();
        assert!(
            echo.ends_with("ok"),
            "connection {i} to {} broke after the change: {text}",
            who(g)
        );
    }
    let created = lab.counter("ct-flow-created");
    assert!(created >= 120, "flows tracked: {created}");
    let table = lab.ctl(&["show", "services"]);
    assert!(
        table.contains("default/web") && table.contains("198.18.11.2:8080"),
        "{table}"
    );
    let ct = lab.ctl(&["--json", "show", "conntrack"]);
    assert!(ct.contains("\"fill_ratio\""), "{ct}");
}

#[test]
fn node_port_with_and_without_local() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(2, "");
    // b0 counts as a backend on another node (SNAT), b1 as local.
    let svc = r#"{"namespace":"default","name":"np","ips":["198.19.0.20"],"port":80,"node_port":30080,
        "backends":[{"ip":"198.18.10.2","port":8080,"local":false},{"ip":"198.18.11.2","port":8080}]}"#;
    lab.ctl(&["service", "add", svc]);
    let out = lab.connect("x", "198.18.200.1", 30080, 40);
    let by = spread(&out);
    assert_eq!(by.len(), 2, "{out:?}");
    for l in &out {
        match who(l) {
            "b0" => assert_eq!(seen_as(l), "198.18.200.1", "remote backend: SNAT"),
            "b1" => assert_eq!(seen_as(l), "198.18.200.2", "local backend: client kept"),
            _ => panic!("{l}"),
        }
    }
    // The NodePort answers on every node address.
    let out = lab.connect("c", "198.18.1.1", 30080, 4);
    assert!(out.iter().all(|l| !l.starts_with("ERR")), "{out:?}");
    let local = svc.replace(
        "\"node_port\":30080,",
        "\"node_port\":30080,\"external_local\":true,",
    );
    lab.ctl(&["service", "replace", &local]);
    let out = lab.connect("x", "198.18.200.1", 30080, 20);
    for l in &out {
        assert_eq!(who(l), "b1", "Local: local backends only: {out:?}");
        assert_eq!(seen_as(l), "198.18.200.2", "Local keeps the client source");
    }
}

#[test]
fn client_ip_affinity_holds_until_timeout() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(3, "");
    let aff = r#","affinity_timeout_s":3"#;
    lab.ctl(&[
        "service",
        "add",
        &Lab::service("sticky", VIP, 80, &[0, 1, 2], aff),
    ]);
    let out = lab.connect("c", VIP, 80, 15);
    let by = spread(&out);
    assert_eq!(by.len(), 1, "one backend for one client: {out:?}");
    let first = by.keys().next().unwrap().clone();
    // Drain that backend (weight 0): the client stays while affinity lasts.
    let k: usize = first[1..].parse().unwrap();
    let backends: Vec<String> = (0..3)
        .map(|b| {
            format!(
                r#"{{"ip":"198.18.{}.2","port":8080,"weight":{}}}"#,
                10 + b,
                if b == k { 0 } else { 1 }
            )
        })
        .collect();
    let drained = format!(
        r#"{{"namespace":"default","name":"sticky","ips":["{VIP}"],"port":80,"affinity_timeout_s":3,"backends":[{}]}}"#,
        backends.join(",")
    );
    lab.ctl(&["service", "replace", &drained]);
    let out = lab.connect("c", VIP, 80, 5);
    assert!(
        out.iter().all(|l| who(l) == first),
        "affinity kept: {out:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let out = lab.connect("c", VIP, 80, 5);
    assert!(
        out.iter().all(|l| who(l) != first && !l.starts_with("ERR")),
        "after the timeout the client follows Maglev: {out:?}"
    );
    // Another client is not tied to the first one's backend.
    let out = lab.connect("d", VIP, 80, 3);
    assert_eq!(spread(&out).len(), 1, "{out:?}");
}

#[test]
fn empty_service_rejects_at_once() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "");
    lab.ctl(&["service", "add", &Lab::service("empty", VIP, 80, &[], "")]);
    let out = lab.connect("c", VIP, 80, 3);
    for l in &out {
        let mut w = l.split_whitespace();
        assert_eq!(w.next(), Some("ERR"), "{out:?}");
        assert_eq!(w.next(), Some("ConnectionRefusedError"), "{out:?}");
        let secs: f64 = w.next().unwrap().parse().unwrap();
        assert!(secs < 0.5, "refused at once, not after a timeout: {out:?}");
    }
    assert!(lab.counter("svc-reject-sent") >= 3);
    // UDP: ICMP port unreachable (the kernel reports ECONNREFUSED on recv).
    lab.ctl(&[
        "service",
        "add",
        r#"{"namespace":"default","name":"dns","ips":["198.19.0.53"],"port":53,"protocol":"udp","backends":[]}"#,
    ]);
    let out = lab.t.exec_out(
        "c",
        &format!(
            "{} -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2);s.connect((\"198.19.0.53\",53));s.send(b\"q\")\ntry:\n s.recv(10);print(\"answer\")\nexcept Exception as e:print(type(e).__name__)'",
            python()
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ConnectionRefusedError"), "{text}");
    assert!(lab.counter("svc-no-endpoints") >= 1);
}

#[test]
fn hairpin_reaches_itself_through_the_service() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "");
    lab.ctl(&["service", "add", &Lab::service("self", VIP, 80, &[0], "")]);
    let out = lab.connect("b0", VIP, 80, 5);
    for l in &out {
        assert_eq!(who(l), "b0", "{out:?}");
        assert_eq!(seen_as(l), "198.18.10.1", "SNAT to the pod's gateway");
    }
}

#[test]
fn syn_flood_from_one_pod_leaves_other_pods_connections() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(1, "[conntrack]\npod-quota = 300\n");
    lab.ctl(&["service", "add", &Lab::service("web", VIP, 80, &[0], "")]);
    // A black hole for the flood: a backend address nobody answers for.
    lab.ctl(&[
        "service",
        "add",
        r#"{"namespace":"default","name":"void","ips":["198.19.0.66"],"port":80,"backends":[{"ip":"198.18.10.66","port":80}]}"#,
    ]);
    // The quota applies to pod ports: bind c and d as endpoints.
    let p = lab.t.prefix.clone();
    for (pod, ip) in [("c", "198.18.1.2"), ("d", "198.18.2.2")] {
        let mac = lab
            .t
            .exec(pod, &format!("cat /sys/class/net/{p}p{pod}/address"))
            .trim()
            .to_string();
        lab.ctl(&[
            "endpoint",
            "add",
            &format!("default/{pod}"),
            "--interface",
            pod,
            "--mac",
            &mac,
            "--ip",
            ip,
        ]);
    }
    let script = format!(
        "{} {}/client.py {VIP} 80 10 6 > {}/held.txt",
        python(),
        lab.t.dir().display(),
        lab.t.dir().display()
    );
    let ns = lab.t.ns("d");
    let mut held = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let flood = "import socket\nss=[]\nfor i in range(2000):\n s=socket.socket();s.setblocking(False);s.connect_ex((\"198.19.0.66\",80));ss.append(s)\nimport time;time.sleep(2)";
    std::fs::write(lab.t.dir().join("flood.py"), flood).unwrap();
    lab.t.exec(
        "c",
        &format!("{} {}/flood.py", python(), lab.t.dir().display()),
    );
    let refused = lab.counter("ct-pod-quota");
    assert!(refused >= 1000, "the flood hit the quota: {refused}");
    // Other pods: held connections survive and new ones work.
    let out = lab.connect("d", VIP, 80, 5);
    assert!(out.iter().all(|l| who(l) == "b0"), "{out:?}");
    held.wait().unwrap();
    let text = std::fs::read_to_string(lab.t.dir().join("held.txt")).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" ok")).count(),
        10,
        "{text}"
    );
    assert_eq!(lab.counter("ct-table-full"), 0);
}

const VIP6: &str = "2001:db8:99::10";

#[test]
fn ipv6_cluster_ip_spreads_and_removal_moves_only_that_backend() {
    if !is_root() {
        return;
    }
    let lab = Lab::new(3, "");
    lab.wait6();
    lab.ctl(&[
        "service",
        "add",
        &Lab::service6("web6", VIP6, 80, &[0, 1, 2], ""),
    ]);
    let out = lab.connect("c", VIP6, 80, 60);
    let by = spread(&out);
    assert_eq!(
        by.len(),
        3,
        "every backend gets connections: {by:?}\n{out:?}"
    );
    for b in ["b0", "b1", "b2"] {
        assert!(by.get(b).copied().unwrap_or(0) >= 5, "{by:?}");
    }
    assert!(
        out.iter().all(|l| seen_as(l) == "2001:db8:1::2"),
        "DNAT only, the client address is kept: {out:?}"
    );
    let script = format!(
        "{} {}/client.py {VIP6} 80 30 4 > {}/held6.txt",
        python(),
        lab.t.dir().display(),
        lab.t.dir().display()
    );
    let ns = lab.t.ns("c");
    let mut held = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2000));
    lab.ctl(&[
        "service",
        "replace",
        &Lab::service6("web6", VIP6, 80, &[1, 2], ""),
    ]);
    let after = lab.connect("c", VIP6, 80, 30);
    assert!(
        after.iter().all(|l| who(l) == "b1" || who(l) == "b2"),
        "new connections avoid the removed backend: {after:?}"
    );
    held.wait().unwrap();
    let text = std::fs::read_to_string(lab.t.dir().join("held6.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let greet: Vec<&str> = lines.iter().take(30).copied().collect();
    assert!(greet.iter().all(|l| !l.starts_with("ERR")), "{text}");
    let moved: Vec<usize> = (0..30)
        .filter(|i| !lines.iter().any(|l| *l == format!("ECHO {i} ok")))
        .collect();
    assert!(
        moved.is_empty(),
        "connections broke after the change: {moved:?}\n{text}"
    );
    assert!(lab.counter("ct-flow-created") >= 120);
    // An empty IPv6 service rejects at once (TCP RST).
    lab.ctl(&[
        "service",
        "add",
        &Lab::service6("empty6", "2001:db8:99::11", 80, &[], ""),
    ]);
    let out = lab.connect("c", "2001:db8:99::11", 80, 2);
    for l in &out {
        let mut w = l.split_whitespace();
        assert_eq!(w.next(), Some("ERR"), "{out:?}");
        assert_eq!(w.next(), Some("ConnectionRefusedError"), "{out:?}");
    }
}

/// Flows whose backend changed between two runs over the same source ports.
fn moved(
    before: &std::collections::BTreeMap<u16, String>,
    after: &std::collections::BTreeMap<u16, String>,
) -> (usize, usize) {
    let mut moved = 0;
    let mut to_new = 0;
    for (sp, b) in before {
        let a = &after[sp];
        if a != b {
            moved += 1;
            if a == "b3" {
                to_new += 1;
            }
        }
    }
    (moved, to_new)
}

#[test]
fn adding_a_backend_moves_a_bounded_fraction_of_new_flows() {
    if !is_root() {
        return;
    }
    // Short UDP timeouts: the second run's flows are new flows again (the
    // same 5-tuples, looked up in Maglev, not found in conntrack).
    let lab = Lab::new(
        4,
        "[conntrack]\nudp-timeout-s = 1\nudp-stream-timeout-s = 1\n",
    );
    lab.wait6();
    const FLOWS: u16 = 400;
    for (vip, svc) in [
        (VIP, Lab::service("flows", VIP, 80, &[0, 1, 2], "")),
        (VIP6, Lab::service6("flows6", VIP6, 80, &[0, 1, 2], "")),
    ] {
        let proto = svc.replace("\"backends\"", "\"protocol\":\"udp\",\"backends\"");
        lab.ctl(&["service", "add", &proto]);
        let before = lab.udp_flows("c", vip, 80, 20000, FLOWS);
        assert_eq!(before.len(), usize::from(FLOWS), "{before:?}");
        let mut per: HashMap<&str, usize> = HashMap::new();
        for b in before.values() {
            *per.entry(b.as_str()).or_insert(0) += 1;
        }
        assert!(
            per.len() == 3 && per.values().all(|&n| n >= 80),
            "{vip}: three backends share the flows: {per:?}"
        );
        // The same flows again with 3 backends: none moves (Maglev is a
        // function of the 5-tuple), which the comparison below relies on.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let again = lab.udp_flows("c", vip, 80, 20000, FLOWS);
        assert_eq!(
            moved(&before, &again).0,
            0,
            "{vip}: stable without a change"
        );
        // Add b3, wait for the old flows to expire, run the same flows.
        let four = if vip.contains(':') {
            Lab::service6("flows6", VIP6, 80, &[0, 1, 2, 3], "")
        } else {
            Lab::service("flows", VIP, 80, &[0, 1, 2, 3], "")
        };
        lab.ctl(&[
            "service",
            "replace",
            &four.replace("\"backends\"", "\"protocol\":\"udp\",\"backends\""),
        ]);
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let after = lab.udp_flows("c", vip, 80, 20000, FLOWS);
        assert!(after.values().all(|b| b != "ERR"), "{after:?}");
        let (m, to_new) = moved(&before, &after);
        let frac = m as f64 / f64::from(FLOWS);
        // Maglev: adding the (n+1)th backend moves ≈ 1/(n+1) of the flows,
        // all to the new backend (modulo hashing would move n/(n+1) = 75%).
        // Slack: 3 standard deviations of a binomial over FLOWS flows, plus
        // 2% for slots Maglev shuffles between old backends.
        let p = 1.0 / 4.0;
        let bound = p + 3.0 * (p * (1.0 - p) / f64::from(FLOWS)).sqrt() + 0.02;
        eprintln!(
            "{vip}: {m}/{FLOWS} flows moved ({:.1}%, bound {:.1}%), {to_new} to the new backend",
            frac * 100.0,
            bound * 100.0
        );
        assert!(frac <= bound, "{vip}: {m}/{FLOWS} moved, bound {bound:.3}");
        assert!(frac >= 0.15, "{vip}: the new backend takes its share: {m}");
        assert!(
            m - to_new <= usize::from(FLOWS) / 50,
            "{vip}: flows moved between old backends: {}",
            m - to_new
        );
    }
}
