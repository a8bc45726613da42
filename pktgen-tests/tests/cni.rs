//! vrouter-cni invoked exactly like a container runtime (the `CNI_*`
//! environment, the network configuration on stdin, the result or the
//! error object on stdout) inside a "node" namespace that runs vrouterd
//! with a bridge domain over a pool of veth ports. Pods are namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use vrouter_pktgen_tests::*;

/// A node: namespace `n`, vrouterd with `ports` pool ports in bridge `pods`
/// (gateway 198.18.0.1/24), and the network configuration for it.
struct Node {
    t: Topology,
    conf: Value,
    ports: usize,
}

impl Node {
    fn new(ports: usize) -> Node {
        let mut t = Topology::new();
        t.add_ns("n");
        let mut toml = String::from("[dataplane]\nworkers = 1\npoll = \"adaptive\"\n");
        for i in 0..ports {
            let (host, _) = t.veth("n", &format!("s{i}"), "n", &format!("s{i}p"));
            t.quiet("n", &host);
            toml += &port_toml(&format!("s{i}"), "af-packet", &host, i);
        }
        toml += "[[bridge]]\nname = \"pods\"\n\
                 gateway = { addresses = [\"198.18.0.1/24\"], mac = \"02:00:00:00:00:01\" }\n";
        for i in 0..ports {
            toml += &format!("[[interface]]\nname = \"s{i}\"\nbridge = \"pods\"\n");
        }
        toml += "[metrics]\nenabled = false\n";
        let k = t.start_vrouterd("n", &toml);
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": format!("{}net", t.prefix),
            "type": "vrouter-cni",
            "socket": t.socket(k),
            "bridge": "pods",
            "ports": {"count": ports, "interface": "s{}", "device": format!("{}s{{}}p", t.prefix)},
            "ipam": {"subnet": "198.18.0.0/24", "gateway": "198.18.0.1", "dataDir": t.dir().join("ipam")},
        });
        Node { t, conf, ports }
    }

    /// Runs the plugin in the node's namespace: (success, stdout as JSON or
    /// Null when empty, stderr).
    fn cni(&self, cmd: &str, id: &str, pod: &str, stdin: &str) -> (bool, Value, String) {
        let netns = if pod.is_empty() {
            String::new()
        } else {
            format!("/var/run/netns/{}", self.t.ns(pod))
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.t.ns("n")])
            .arg(vrouter_cni())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vrouter-cni");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
        };
        (
            out.status.success(),
            v,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn conf(&self) -> String {
        self.conf.to_string()
    }

    /// ADD that must succeed: the pod's address.
    fn add(&mut self, id: &str) -> String {
        if !std::path::Path::new(&format!("/var/run/netns/{}", self.t.ns(id))).exists() {
            self.t.add_ns(id);
        }
        let (ok, v, err) = self.cni("ADD", id, id, &self.conf());
        assert!(ok, "ADD {id}: {v} {err}");
        assert_eq!(v["cniVersion"], "1.0.0", "{v}");
        assert_eq!(v["interfaces"][0]["name"], "eth0", "{v}");
        assert_eq!(v["ips"][0]["gateway"], "198.18.0.1", "{v}");
        let a = v["ips"][0]["address"].as_str().unwrap();
        assert!(a.starts_with("198.18.0.") && a.ends_with("/24"), "{v}");
        a.trim_end_matches("/24").to_string()
    }

    fn ipam_dir(&self) -> PathBuf {
        self.t
            .dir()
            .join("ipam")
            .join(format!("{}net", self.t.prefix))
    }

    /// Addresses with an allocation file.
    fn allocated(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.ipam_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Pool devices waiting in the node's namespace.
    fn free_devices(&self) -> usize {
        (0..self.ports)
            .filter(|i| {
                self.t
                    .exec_out("n", &format!("ip link show dev {}s{i}p", self.t.prefix))
                    .status
                    .success()
            })
            .count()
    }

    /// Links in pod namespace `pod` other than lo.
    fn pod_links(&self, pod: &str) -> Vec<String> {
        self.t
            .exec(pod, "ip -o link show")
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n != "lo")
            .collect()
    }

    fn endpoints(&self) -> String {
        let (rc, out, err) = ctl(&self.t, &["show", "endpoints"]);
        assert_eq!(rc, 0, "{err}");
        out
    }
}

fn ctl(t: &Topology, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vrouterctl())
        .arg("--socket")
        .arg(t.socket(0))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version() {
    let out = Command::new(vrouter_cni())
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supportedVersions"], json!(["1.0.0"]), "{v}");
    // No CNI_COMMAND: error 4 on stdout, non-zero exit.
    let out = Command::new(vrouter_cni())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 4, "{v}");
}

#[test]
fn two_pods_talk_and_del_is_idempotent() {
    require_root!();
    let mut n = Node::new(3);
    let a = n.add("pa");
    let b = n.add("pb");
    assert_ne!(a, b);
    let out = n.t.exec("pa", &format!("ping -c 3 -i 0.2 -W 2 {b}"));
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let out = n.t.exec("pb", &format!("ping -c 3 -i 0.2 -W 2 {a}"));
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let out = n.t.exec("pa", "ping -c 2 -i 0.2 -W 2 198.18.0.1");
    assert_eq!(ping_stats(&out), (2, 2), "gateway: {out}");
    let eps = n.endpoints();
    assert!(eps.contains(&a) && eps.contains(&b), "{eps}");
    // The naming convention the agent shares (vrouter_control::naming):
    // the pod's MAC follows its address, its endpoint is on the bridge's
    // BVI — what the agent computes for the same pod.
    let (_, js, _) = ctl(&n.t, &["--json", "show", "endpoints"]);
    let eps: Value = serde_json::from_str(&js).unwrap();
    let ep = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ips"][0] == a.as_str())
        .cloned()
        .unwrap();
    let want_mac = vrouter_control::naming::pod_mac(a.parse().unwrap());
    assert_eq!(ep["mac"], want_mac.as_str(), "{js}");
    assert_eq!(
        ep["interface"],
        vrouter_control::naming::bridge_interface("pods").as_str(),
        "{js}"
    );
    let link = n.t.exec("pa", "ip -o link show dev eth0");
    assert!(link.contains(&want_mac), "{link}");
    assert_eq!(n.allocated().len(), 2);
    assert_eq!(n.free_devices(), 1);
    // CHECK of a healthy pod passes.
    let (ok, v, err) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(ok, "{v} {err}");

    // DEL twice: both succeed; the port comes back, the address is freed,
    // the endpoint is gone.
    for _ in 0..2 {
        let (ok, v, err) = n.cni("DEL", "pa", "pa", &n.conf());
        assert!(ok, "DEL: {v} {err}");
        assert_eq!(v, Value::Null, "DEL prints nothing");
    }
    assert!(n.pod_links("pa").is_empty(), "{:?}", n.pod_links("pa"));
    assert_eq!(n.allocated(), vec![b.clone()]);
    assert_eq!(n.free_devices(), 2);
    let eps = n.endpoints();
    assert!(!eps.contains(&a) && eps.contains(&b), "{eps}");
    // DEL without a namespace (already gone) and of an unknown container.
    let (ok, v, _) = n.cni("DEL", "pa", "", &n.conf());
    assert!(ok, "{v}");
    let (ok, v, _) = n.cni("DEL", "nobody", "", &n.conf());
    assert!(ok, "{v}");

    // The freed port serves a new pod, which reaches the old one.
    let c = n.add("pc");
    let out = n.t.exec("pc", &format!("ping -c 3 -i 0.2 -W 2 {b}"));
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    // The pool is now full.
    n.add("pd");
    n.t.add_ns("pe");
    let (ok, v, _) = n.cni("ADD", "pe", "pe", &n.conf());
    assert!(!ok);
    assert_eq!(v["code"], 101, "{v}");
    assert!(n.pod_links("pe").is_empty());
    assert_eq!(n.allocated().len(), 3, "{c}");
}

#[test]
fn check_detects_a_broken_interface() {
    require_root!();
    let mut n = Node::new(1);
    let a = n.add("pa");
    let (ok, v, err) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(ok, "{v} {err}");
    n.t.exec("pa", &format!("ip addr del {a}/24 dev eth0"));
    let (ok, v, _) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(!ok);
    assert_eq!(v["code"], 104, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("lacks address"), "{v}");
    n.t.exec("pa", "ip link set dev eth0 down");
    let (ok, v, _) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(!ok && v["msg"].as_str().unwrap().contains("down"), "{v}");
    // Nothing allocated to this container.
    let (ok, v, _) = n.cni("CHECK", "other", "pa", &n.conf());
    assert!(!ok);
    assert_eq!(v["code"], 104, "{v}");
    // The endpoint gone from vrouterd is found too.
    n.t.exec("pa", &format!("ip addr add {a}/24 dev eth0 && ip link set dev eth0 up && ip route add default via 198.18.0.1"));
    let (ok, v, err) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(ok, "repaired: {v} {err}");
    let (rc, _, err) = ctl(
        &n.t,
        &[
            "raw",
            r#"{"id":1,"op":"endpoint.del","args":{"namespace":"default","name":"pa"}}"#,
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let (ok, v, _) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(
        !ok && v["msg"].as_str().unwrap().contains("endpoint"),
        "{v}"
    );
    // The interface gone (renamed away).
    n.t.exec(
        "pa",
        "ip link set dev eth0 down && ip link set dev eth0 name eth9",
    );
    let (ok, v, _) = n.cni("CHECK", "pa", "pa", &n.conf());
    assert!(!ok, "{v}");
    assert_eq!(v["code"], 104, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("missing"), "{v}");
}

#[test]
fn bad_netconf_gets_an_error_and_leaves_nothing() {
    require_root!();
    let mut n = Node::new(2);
    n.t.add_ns("pa");
    let good = n.conf.clone();
    let with = |path: &[&str], val: Value| {
        let mut c = good.clone();
        let mut p = &mut c;
        for k in &path[..path.len() - 1] {
            p = &mut p[*k];
        }
        p[path[path.len() - 1]] = val;
        c.to_string()
    };
    let cases: Vec<(String, u64)> = vec![
        ("{not json".into(), 6),
        (String::new(), 6),
        (with(&["cniVersion"], json!("0.2.0")), 1),
        (with(&["ipam", "subnet"], json!("198.18.0.1/24")), 7),
        (with(&["ipam", "gateway"], json!("198.18.9.1")), 7),
        (with(&["ports", "count"], json!(0)), 7),
        (with(&["type"], json!("bridge")), 7),
        (with(&["bridge"], json!(5)), 7),
        (with(&["socket"], json!(n.t.dir().join("nope.sock"))), 100),
        (with(&["bridge"], json!("elsewhere")), 101),
    ];
    for (conf, code) in &cases {
        let (ok, v, err) = n.cni("ADD", "pa", "pa", conf);
        assert!(!ok, "{conf}: {v}");
        assert_eq!(v["code"], *code, "{conf}: {v} {err}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(
            n.pod_links("pa").is_empty(),
            "{conf}: {:?}",
            n.pod_links("pa")
        );
        assert!(n.allocated().is_empty(), "{conf}: {:?}", n.allocated());
        assert_eq!(n.free_devices(), 2, "{conf}");
    }
    // A failure half-way (the pod already has a default route, so adding
    // ours fails after the port was moved in and the address allocated):
    // everything is rolled back.
    let (d, e) = n.t.veth("pa", "d", "pa", "e");
    n.t.exec(
        "pa",
        &format!("ip addr add 198.19.0.2/24 dev {d} && ip route add default via 198.19.0.1"),
    );
    let (ok, v, err) = n.cni("ADD", "pa", "pa", &n.conf());
    assert!(!ok, "{v}");
    assert_eq!(v["code"], 103, "{v} {err}");
    let mut links = n.pod_links("pa");
    links.sort();
    assert_eq!(links, vec![d, e]);
    assert!(n.allocated().is_empty(), "{:?}", n.allocated());
    assert_eq!(n.free_devices(), 2);
    assert!(!n.endpoints().contains("198.18.0."), "{}", n.endpoints());
    // A missing namespace is error 3.
    let (ok, v, _) = n.cni("ADD", "px", "px", &n.conf());
    assert!(!ok);
    assert_eq!(v["code"], 3, "{v}");
}

#[test]
fn concurrent_adds_get_distinct_addresses() {
    require_root!();
    const PODS: usize = 6;
    let mut n = Node::new(PODS);
    for i in 0..PODS {
        n.t.add_ns(&format!("p{i}"));
    }
    let n = &n;
    let results: Vec<(bool, Value, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..PODS)
            .map(|i| s.spawn(move || n.cni("ADD", &format!("p{i}"), &format!("p{i}"), &n.conf())))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|(ok, v, err)| {
            assert!(ok, "{v} {err}");
            v["ips"][0]["address"].as_str().unwrap().to_string()
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), PODS, "{addrs:?}");
    assert_eq!(n.allocated().len(), PODS);
    assert_eq!(n.free_devices(), 0);
    // Every pod reaches the last one.
    let last = addrs[PODS - 1].trim_end_matches("/24").to_string();
    for i in 0..PODS - 1 {
        let out =
            n.t.exec(&format!("p{i}"), &format!("ping -c 1 -W 2 {last}"));
        assert_eq!(ping_stats(&out), (1, 1), "{out}");
    }
}

/// The deployment path: deploy/vrouter-pool.sh creates the pool inside a
/// node namespace and renders vrouterd's sections, and the example conflist
/// (socket and data directory pointed at the test's) wires a pod.
#[test]
fn deploy_pool_script_and_example_conflist() {
    require_root!();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pool = root.join("deploy/vrouter-pool.sh");
    let mut t = Topology::new();
    t.add_ns("n");
    t.add_ns("pa");
    // Interfaces named vrph<i>/vrpp<i> live only in the test's namespace.
    t.exec("n", &format!("sh {} create 2", pool.display()));
    t.exec("n", &format!("sh {} create 2", pool.display())); // idempotent
    let sections = t.exec("n", &format!("sh {} toml 2 198.18.1.1/24", pool.display()));
    let k = t.start_vrouterd(
        "n",
        &format!("[dataplane]\npoll = \"adaptive\"\n[metrics]\nenabled = false\n{sections}"),
    );
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/10-vrouter.conflist")).unwrap(),
    )
    .unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["socket"] = json!(t.socket(k));
    conf["ipam"]["dataDir"] = json!(t.dir().join("ipam"));
    let n = Node { t, conf, ports: 0 };
    let (ok, v, err) = n.cni("ADD", "pa", "pa", &n.conf());
    assert!(ok, "{v} {err}");
    assert_eq!(v["ips"][0]["address"], "198.18.1.2/24", "{v}");
    let out = n.t.exec("pa", "ping -c 2 -i 0.2 -W 2 198.18.1.1");
    assert_eq!(ping_stats(&out), (2, 2), "{out}");
    let (ok, v, err) = n.cni("DEL", "pa", "pa", &n.conf());
    assert!(ok, "{v} {err}");
    n.t.exec("n", "ip link show dev vrpp0");
}
