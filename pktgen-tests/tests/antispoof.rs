//! Anti-spoofing (`pod-guard`) with real traffic from pod namespaces:
//! pods bridged into a bridge domain (they reach each other by switching
//! and the rest through the BVI; registered like vrouter-cni does: static
//! MAC on the port, endpoint on the BVI) and a routed pod. A bound pod's traffic
//! from its own addresses passes; from another source address (IPv4 and
//! IPv6) it is dropped inside the bridge, not only at the BVI; ARP and
//! neighbour advertisements that claim the gateway's address are dropped,
//! while the same frames from an unbound pod do poison a neighbour's cache
//! (so the test would fail without the guard).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use vrouter_pktgen_tests::*;

const GW_MAC: &str = "02:00:00:00:50:01";

struct Lab {
    t: Topology,
    k: usize,
}

impl Lab {
    /// vrouterd in `r`: bridge domain `pods` (BVI 198.18.50.1/24,
    /// 2001:db8:50::1/64) with pods `a` (.2) and `b` (.3), and a routed pod
    /// `c` (198.18.60.2, gateway 198.18.60.1).
    fn new() -> Lab {
        let mut t = Topology::new();
        t.add_ns("r");
        let p = t.prefix.clone();
        let mut ports = String::new();
        for (k, pod) in ["a", "b", "c"].iter().enumerate() {
            t.add_ns(pod);
            let (ri, _) = t.veth("r", &format!("r{pod}"), pod, &format!("p{pod}"));
            t.quiet("r", &ri);
            ports += &port_toml(pod, "af-packet", &ri, k);
        }
        for (pod, host) in [("a", 2), ("b", 3)] {
            t.exec(
                pod,
                &format!(
                    "ip addr add 198.18.50.{host}/24 dev {p}p{pod} && \
                     ip route add default via 198.18.50.1 && \
                     ip -6 addr add 2001:db8:50::{host}/64 dev {p}p{pod} nodad && \
                     sysctl -qw net.ipv4.conf.all.arp_accept=0"
                ),
            );
        }
        t.exec(
            "c",
            &format!(
                "ip addr add 198.18.60.2/24 dev {p}pc && ip route add default via 198.18.60.1"
            ),
        );
        let cfg = format!(
            "{ports}[[bridge]]\nname = \"pods\"\n\
             gateway = {{ addresses = [\"198.18.50.1/24\", \"2001:db8:50::1/64\"], mac = \"{GW_MAC}\" }}\n\
             [[interface]]\nname = \"a\"\nbridge = \"pods\"\n\
             [[interface]]\nname = \"b\"\nbridge = \"pods\"\n\
             [[interface]]\nname = \"c\"\naddresses = [\"198.18.60.1/24\"]\n"
        );
        let k = t.start_vrouterd("r", &cfg);
        let lab = Lab { t, k };
        for (pod, dst) in [
            ("a", "198.18.50.3"),
            ("a", "198.18.50.1"),
            ("b", "198.18.50.1"),
            ("c", "198.18.60.1"),
        ] {
            assert!(
                lab.ping(pod, dst, None),
                "{pod} → {dst} before any binding\n{}",
                lab.t.log(lab.k)
            );
        }
        lab
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(vrouterctl())
            .arg("--socket")
            .arg(self.t.socket(self.k))
            .args(args)
            .output()
            .expect("vrouterctl");
        assert!(
            out.status.success(),
            "vrouterctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn counter(&self, name: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ctl(&["--json", "show", "counters"])).unwrap();
        v.as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_u64())
            .unwrap_or(0)
    }

    fn mac(&self, pod: &str) -> String {
        let p = &self.t.prefix;
        self.t
            .exec(pod, &format!("cat /sys/class/net/{p}p{pod}/address"))
            .trim()
            .to_string()
    }

    /// Registers pod `pod` with `ips` the way vrouter-cni does: a bridged
    /// pod's MAC pinned to its port (static MAC) and the endpoint on the
    /// bridge's BVI; a routed pod's endpoint on its interface.
    fn bind(&self, pod: &str, ips: &[&str]) {
        let mac = self.mac(pod);
        let name = format!("default/{pod}");
        let iface = if pod == "c" {
            pod
        } else {
            self.ctl(&["mac", "add", "pods", &mac, pod]);
            "bvi-pods"
        };
        let mut args = vec![
            "endpoint",
            "add",
            &name,
            "--interface",
            iface,
            "--mac",
            &mac,
        ];
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        self.ctl(&args);
    }

    /// True if 2 pings from `pod` to `dst` (from `src` if given) get an answer.
    fn ping(&self, pod: &str, dst: &str, src: Option<&str>) -> bool {
        let from = src.map(|s| format!("-I {s}")).unwrap_or_default();
        let six = if dst.contains(':') { "-6" } else { "" };
        self.t
            .exec_out(pod, &format!("ping {six} -c 2 -i 0.2 -W 1 {from} {dst}"))
            .status
            .success()
    }

    /// Sends one frame from pod `pod` with scapy (`frame` is a scapy
    /// expression; `IFACE` is the pod's interface name).
    fn scapy(&self, pod: &str, frame: &str) {
        let p = &self.t.prefix;
        let script = format!(
            "from scapy.all import *\nIFACE='{p}p{pod}'\nconf.verb=0\nsendp({frame}, iface=IFACE)\n"
        );
        let path = self.t.dir().join(format!("scapy-{pod}.py"));
        std::fs::write(&path, script).unwrap();
        self.t
            .exec(pod, &format!("/usr/bin/python3 {}", path.display()));
    }

    /// The MAC pod `pod` has cached for `ip`, if any.
    fn neigh(&self, pod: &str, ip: &str) -> String {
        let out = self.t.exec_out(pod, &format!("ip neigh show {ip}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .unwrap_or("")
            .to_string()
    }
}

fn have_scapy() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import scapy.all"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bridged_pod_spoofing_is_dropped_inside_the_bridge() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let p = lab.t.prefix.clone();
    lab.bind("a", &["198.18.50.2", "2001:db8:50::2"]);
    assert!(lab.ping("a", "198.18.50.3", None), "own address, switched");
    assert!(
        lab.ping("a", "198.18.50.1", None),
        "own address, to the BVI"
    );
    assert!(lab.ping("a", "2001:db8:50::3", None), "own IPv6 address");
    let before = lab.counter("spoofed-source") + lab.counter("spoofed-arp");
    lab.t.exec(
        "a",
        &format!(
            "ip addr add 198.18.50.99/24 dev {p}pa && \
             ip -6 addr add 2001:db8:50::99/64 dev {p}pa nodad"
        ),
    );
    assert!(
        !lab.ping("a", "198.18.50.3", Some("198.18.50.99")),
        "spoofed IPv4 source reaches a pod of the same bridge"
    );
    assert!(
        !lab.ping("a", "198.18.50.1", Some("198.18.50.99")),
        "spoofed IPv4 source reaches the BVI"
    );
    let after4 = lab.counter("spoofed-source") + lab.counter("spoofed-arp");
    assert!(after4 >= before + 2, "{before} → {after4}");
    let before6 = lab.counter("spoofed-source") + lab.counter("spoofed-nd");
    assert!(
        !lab.ping("a", "2001:db8:50::3", Some("2001:db8:50::99")),
        "spoofed IPv6 source reaches a pod of the same bridge"
    );
    let after6 = lab.counter("spoofed-source") + lab.counter("spoofed-nd");
    assert!(after6 >= before6 + 2, "{before6} → {after6}");
    // b is not bound: its traffic is not checked, and a still works from
    // its own addresses.
    assert!(lab.ping("b", "198.18.50.1", None));
    assert!(lab.ping("a", "198.18.50.3", Some("198.18.50.2")));
}

#[test]
fn arp_and_nd_claiming_the_gateway_are_dropped() {
    if !is_root() || !have_scapy() {
        eprintln!("skipped: needs root and python3-scapy");
        return;
    }
    let lab = Lab::new();
    let amac = lab.mac("a");
    assert!(lab.ping("b", "2001:db8:50::1", None));
    assert_eq!(lab.neigh("b", "198.18.50.1"), GW_MAC);
    assert_eq!(lab.neigh("b", "2001:db8:50::1"), GW_MAC);
    let arp = format!(
        "Ether(src='{amac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, hwsrc='{amac}', psrc='198.18.50.1', \
         hwdst='ff:ff:ff:ff:ff:ff', pdst='198.18.50.1')"
    );
    let na = format!(
        "Ether(src='{amac}', dst='33:33:00:00:00:01')/IPv6(src='fe80::99', dst='ff02::1', hlim=255)/\
         ICMPv6ND_NA(tgt='2001:db8:50::1', R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{amac}')"
    );
    // Unbound, a's claims poison b's cache (Linux honours an overriding
    // update of an existing entry after its lock time).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.scapy("a", &arp);
    lab.scapy("a", &na);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        lab.neigh("b", "198.18.50.1"),
        amac,
        "baseline: ARP poisoning works"
    );
    assert_eq!(
        lab.neigh("b", "2001:db8:50::1"),
        amac,
        "baseline: NA poisoning works"
    );
    // Repair b's cache, bind a, and try again.
    lab.t.exec("b", "ip neigh flush all");
    assert!(lab.ping("b", "198.18.50.1", None));
    assert!(lab.ping("b", "2001:db8:50::1", None));
    lab.bind("a", &["198.18.50.2", "2001:db8:50::2"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lab.scapy("a", &arp);
    lab.scapy("a", &na);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(lab.neigh("b", "198.18.50.1"), GW_MAC, "ARP claim dropped");
    assert_eq!(lab.neigh("b", "2001:db8:50::1"), GW_MAC, "NA claim dropped");
    assert!(lab.counter("spoofed-arp") >= 1);
    assert!(lab.counter("spoofed-nd") >= 1);
    // Its own ARP still works (a forgets b and asks again).
    lab.t.exec("a", "ip neigh flush all");
    assert!(lab.ping("a", "198.18.50.3", None));
    // A routed pod's ARP claiming another address is dropped and counted;
    // vrouterd does not learn it.
    lab.bind("c", &["198.18.60.2"]);
    let before = lab.counter("spoofed-arp");
    let cmac = lab.mac("c");
    lab.scapy(
        "c",
        &format!(
            "Ether(src='{cmac}', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='{cmac}', psrc='198.18.60.77', pdst='198.18.60.1')"
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(lab.counter("spoofed-arp"), before + 1);
    assert!(
        !lab.ctl(&["show", "neighbors"]).contains("198.18.60.77"),
        "vrouterd learnt the spoofed sender"
    );
    assert!(lab.ping("c", "198.18.60.1", None), "c's own traffic passes");
}
