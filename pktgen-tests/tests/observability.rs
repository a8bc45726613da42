//! Observability of a real vrouterd on veths: the event stream (MAC
//! learned, neighbour resolved, port down/up) as `vrouterctl events` prints
//! it, packet traces of real pings, `trace packet`, drop and port captures
//! decoded by tshark, and the metrics endpoint parsed by prometheus_client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vrouter_pktgen_tests::*;

/// Lines printed by a `vrouterctl events` child, collected by a thread.
struct Events {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Events {
    fn start(sock: &std::path::Path) -> Events {
        let mut child = Command::new(vrouterctl())
            .arg("--socket")
            .arg(sock)
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vrouterctl events");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Events { child, lines }
    }

    /// Waits until a line contains every one of `words`.
    fn wait(&self, words: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| words.iter().all(|w| l.contains(w)))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no event with {words:?}; got:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(t: &Topology, args: &[&str]) -> String {
    let out = Command::new(vrouterctl())
        .arg("--socket")
        .arg(t.socket(0))
        .args(args)
        .output()
        .expect("vrouterctl");
    assert!(
        out.status.success(),
        "vrouterctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `vrouterctl capture` in the background while `traffic` runs;
/// returns its stdout.
fn capture(t: &Topology, args: &[&str], traffic: impl FnOnce()) -> String {
    let child = Command::new(vrouterctl())
        .arg("--socket")
        .arg(t.socket(0))
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vrouterctl capture");
    std::thread::sleep(Duration::from_millis(500));
    traffic();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn events_traces_captures_and_metrics() {
    require_root!();
    let mut t = Topology::new();
    for n in ["r", "a", "b", "c", "d"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let (rc, _) = t.veth("r", "rc", "c", "pc");
    let (rd, _) = t.veth("r", "rd", "d", "pd");
    for i in [&ra, &rb, &rc, &rd] {
        t.quiet("r", i);
    }
    let p = t.prefix.clone();
    // IPv4 only in the pods: no IPv6 chatter in the drop capture.
    for n in ["a", "b", "c", "d"] {
        t.quiet(n, &format!("{p}p{n}"));
    }
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
    );
    t.exec("c", &format!("ip addr add 198.18.3.1/24 dev {p}pc"));
    t.exec("d", &format!("ip addr add 198.18.3.2/24 dev {p}pd"));
    let ports = format!(
        "{}{}{}{}",
        port_toml("a", "af-packet", &ra, 0),
        port_toml("b", "af-packet", &rb, 1),
        port_toml("c", "af-packet", &rc, 2),
        port_toml("d", "af-packet", &rd, 3)
    );
    t.start_vrouterd(
        "r",
        &format!(
            r#"
[dataplane]
glean-timeout-ms = 300
{ports}[[bridge]]
name = "pods"
[[interface]]
name = "a"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "b"
addresses = ["198.18.2.1/24"]
[[interface]]
name = "c"
bridge = "pods"
[[interface]]
name = "d"
bridge = "pods"
[metrics]
listen = "127.0.0.1:9469"
"#
        ),
    );
    let events = Events::start(&t.socket(0));
    std::thread::sleep(Duration::from_millis(300));
    // The pods' own chatter (IPv6 DAD, MLD) may have been learned already.
    ctl(&t, &["mac", "flush", "pods"]);

    // MAC learned when a pod pings.
    let c_mac = t
        .exec("c", &format!("cat /sys/class/net/{p}pc/address"))
        .trim()
        .to_string();
    let out = t.exec("c", "ping -c 2 -i 0.2 -W 2 198.18.3.2");
    assert_eq!(ping_stats(&out), (2, 2), "{out}");
    events.wait(
        &[
            "mac-learned",
            "bridge=pods",
            &format!("mac={c_mac}"),
            "interface=c",
        ],
        5,
    );

    // Neighbour resolved when vrouterd routes to b, failed for a silent one.
    let out = t.exec("a", "ping -c 2 -i 0.2 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (2, 2), "{out}");
    events.wait(&["neighbor-resolved", "interface=b", "ip=198.18.2.2"], 5);
    let _ = t.exec_out("a", "ping -c 1 -W 1 198.18.2.99");
    events.wait(&["neighbor-failed", "interface=b", "ip=198.18.2.99"], 5);

    // Port down and up when the peer's link changes.
    t.exec("a", &format!("ip link set {p}pa down"));
    events.wait(&["port-down", "port=a"], 5);
    t.exec("a", &format!("ip link set {p}pa up"));
    events.wait(&["port-up", "port=a"], 5);
    // The kernel removed a's routes with its link.
    t.exec("a", "ip route replace default via 198.18.1.1");
    std::thread::sleep(Duration::from_millis(500));

    // Trace: a routed ping takes ethernet-input → ip4-input → ip4-lookup →
    // ip4-rewrite → interface-output.
    ctl(&t, &["trace", "add", "20"]);
    let out = t.exec("a", "ping -c 1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (1, 1), "{out}");
    let v: Value = serde_json::from_str(&ctl(&t, &["--json", "trace", "show"])).unwrap();
    let echo = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            let s = t["packet"].as_str().unwrap_or("");
            s.contains("198.18.1.2 → 198.18.2.2") && s.contains("echo-request")
        })
        .unwrap_or_else(|| panic!("no trace of the echo request: {v:#}"));
    let nodes: Vec<&str> = echo["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "ethernet-input",
            "ip4-input",
            "ip4-lookup",
            "ip4-rewrite",
            "interface-output"
        ],
        "{echo:#}"
    );
    assert_eq!(echo["result"], "transmitted on port b", "{echo:#}");
    let text = ctl(&t, &["trace", "show"]);
    eprintln!("vrouterctl trace show:\n{text}");
    assert!(
        text.contains("ip4-lookup") && text.contains("result: transmitted on port b"),
        "{text}"
    );
    ctl(&t, &["trace", "clear"]);

    // trace packet: decisions over the live tables, nothing sent.
    let out = ctl(
        &t,
        &[
            "trace",
            "packet",
            "--in-port",
            "a",
            "--src",
            "198.18.1.2",
            "--dst",
            "198.18.2.2",
            "--proto",
            "udp",
            "--sport",
            "1234",
            "--dport",
            "53",
        ],
    );
    eprintln!("vrouterctl trace packet:\n{out}");
    for want in [
        "tables generation",
        "ip4-rewrite",
        "result: transmitted on port b",
        "ttl 64 → 63",
        "UDP 1234 → 53",
    ] {
        assert!(out.contains(want), "{want} missing in:\n{out}");
    }

    // Drop capture: blackholed pings, with their reason, decoded by tshark.
    ctl(&t, &["route", "add", "198.19.255.0/24", "--drop"]);
    let file = t.dir().join("drops.pcapng");
    let f = file.display().to_string();
    let out = capture(
        &t,
        &["--drops", "--count", "3", "--seconds", "10", "-w", &f],
        || {
            let _ = t.exec_out("a", "ping -c 3 -i 0.2 -W 1 198.19.255.1");
        },
    );
    assert!(out.contains("ip4-blackhole"), "{out}");
    let dec = sh(&format!(
        "tshark -r {f} -T fields -e ip.dst -e icmp.type -e frame.comment 2>/dev/null"
    ));
    let rows: Vec<&str> = dec.lines().collect();
    assert_eq!(rows.len(), 3, "{dec}");
    assert!(rows.iter().all(|r| r.contains("\tdrop: ")), "{dec}");
    let blackholed = rows
        .iter()
        .filter(|r| {
            r.starts_with("198.19.255.1\t8\t") && r.ends_with("drop: ip4-blackhole (rx port a)")
        })
        .count();
    assert!(blackholed >= 2, "{dec}");

    // Port capture: both directions of a ping through port b.
    let file = t.dir().join("b.pcapng");
    let f = file.display().to_string();
    capture(
        &t,
        &["--port", "b", "--count", "4", "--seconds", "10", "-w", &f],
        || {
            let _ = t.exec_out("a", "ping -c 2 -i 0.2 -W 1 198.18.2.2");
        },
    );
    let dec = sh(&format!(
        "tshark -r {f} -T fields -e ip.src -e ip.dst -e icmp.type 2>/dev/null"
    ));
    assert!(dec.contains("198.18.1.2\t198.18.2.2\t8"), "{dec}");
    assert!(dec.contains("198.18.2.2\t198.18.1.2\t0"), "{dec}");

    // Metrics: strict parse with prometheus_client, and the numbers add up.
    let page = t.exec("r", "curl -sf http://127.0.0.1:9469/metrics");
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
v = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "{" + ",".join(f"{k}={s.labels[k]}" for k in sorted(s.labels)) + "}"
        v[key] = s.value
for k in sorted(v):
    print(k, int(v[k]))
"#;
    let mut py = Command::new(python3())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut py.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the page (scripts/deps.sh installs it): {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| -> u64 {
        parsed
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} missing:\n{parsed}"))
    };
    assert!(get("vrouter_port_rx_packets_total{port=a,queue=0}") >= 5);
    assert!(get("vrouter_port_tx_packets_total{port=b,queue=0}") >= 5);
    // Exported for every port (AF_XDP reads it from XDP_STATISTICS); a
    // pool of thousands of frames never runs dry at this rate.
    assert_eq!(get("vrouter_port_rx_fill_empty_total{port=a,queue=0}"), 0);
    assert!(get("vrouter_drops_total{reason=ip4-blackhole,worker=0}") >= 3);
    assert!(get("vrouter_interface_rx_packets_total{interface=c}") >= 2);
    assert_eq!(get("vrouter_mac_entries{bridge=pods}"), 2);
    assert!(get("vrouter_routes{family=ipv4,vrf=default}") >= 5);
    assert!(get("vrouter_neighbors{}") >= 1);
    assert!(get("vrouter_worker_busy_polls_total{worker=0}") > 0);
    assert!(get("vrouter_worker_idle_cycles_total{worker=0}") > 0);
    assert_eq!(get("vrouter_port_up{port=a}"), 1);
    assert!(get("vrouter_control_events_published_total{}") >= 5);
    assert_eq!(get("vrouter_control_events_dropped_total{}"), 0);
    // Anything but GET /metrics is refused.
    let code = t.exec(
        "r",
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9469/",
    );
    assert_eq!(code.trim(), "404");
    drop(events);
}
