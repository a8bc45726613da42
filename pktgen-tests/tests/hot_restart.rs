//! Hot restart (docs/HOT-RESTART.md): a new vrouterd takes over from the
//! running one (`--takeover`) on AF_XDP ports, in namespaces, while traffic
//! flows: a steady iperf3 TCP flow and a vrouter-pktgen UDP sequence flow
//! cross the takeover; the old process exits 0, the new one forwards, the
//! UDP flow loses nothing and TCP does not retransmit. State added over the
//! control socket survives, and a takeover with another port set fails
//! cleanly, the old process still forwarding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vrouter_control::Client;
use vrouter_control::proto::{self, Op};
use vrouter_pktgen_tests::*;

/// One takeover at a time: each measures loss on a 2-core machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// a [pa] ── [ra] vrouterd [rb] ── [pb] b, routed, plus [rc] ── [pc] c in
/// a bridge domain; every port af-xdp. Returns the topology and the
/// configuration (its control socket is vrouterd 0's, for both daemons).
fn topology() -> (Topology, String) {
    let _ = sh_out("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf");
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
    t.exec(
        "b",
        &format!(
            "ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1 && \
             ip addr add 198.19.0.1/32 dev lo && ip addr add 198.19.1.1/32 dev lo"
        ),
    );
    let sock = t.socket(0);
    let cfg = format!(
        r#"{}{}{}
[[interface]]
name = "a"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "b"
addresses = ["198.18.2.1/24"]
[[bridge]]
name = "pods"
[[interface]]
name = "c"
bridge = "pods"
[control]
socket = "{}"
"#,
        port_toml("a", "af-xdp", &ra, 0),
        port_toml("b", "af-xdp", &rb, 1),
        port_toml("c", "af-xdp", &rc, 2),
        sock.display()
    );
    (t, cfg)
}

/// Starts the new vrouterd taking over from vrouterd 0, waits for the old
/// one to exit, and checks it exited 0. Returns the new one's index and the
/// time from its start to the old one's exit.
fn take_over(t: &mut Topology, cfg: &str) -> (usize, Duration) {
    let old = t.pid(0);
    let t0 = Instant::now();
    let k = t.start_vrouterd_args("r", cfg, &["--takeover"]);
    let code = t.wait_vrouterd(0, Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(
        code,
        Some(0),
        "old vrouterd {old} did not exit 0:\n{}\nnew:\n{}",
        t.log(0),
        t.log(k)
    );
    assert!(t.vrouterd_running(k), "new vrouterd:\n{}", t.log(k));
    assert!(
        t.log(0).contains("handed over; exiting"),
        "old:\n{}",
        t.log(0)
    );
    assert!(
        t.log(k).contains("took over from the old vrouterd"),
        "new:\n{}",
        t.log(k)
    );
    (k, took)
}

fn mac_of(t: &Topology, ns: &str, ifname: &str) -> String {
    t.exec(ns, &format!("cat /sys/class/net/{ifname}/address"))
        .trim()
        .to_string()
}

/// What the flows measured: (UDP sent, UDP lost, UDP duplicates, TCP
/// retransmits, TCP seconds, TCP Mbit/s, retransmits per second).
#[derive(Debug)]
struct Flows {
    sent: u64,
    lost: u64,
    duplicates: u64,
    retransmits: u64,
    seconds: f64,
    mbps: f64,
    per_second: Vec<u64>,
}

/// Runs a steady iperf3 TCP flow a → b (12 s, paced at `HOT_RESTART_TCP`,
/// default 10M) and a vrouter-pktgen UDP sequence flow a → b
/// (`HOT_RESTART_PPS`, default 2000 pps, 8 s) through vrouterd, and calls
/// `during` 3 s in.
fn flows(t: &mut Topology, during: impl FnOnce(&mut Topology)) -> Flows {
    let p = t.prefix.clone();
    let dst_mac = mac_of(t, "r", &format!("{p}ra"));
    let (ns_a, ns_b) = (t.ns("a"), t.ns("b"));
    // Moderate, steady loads, below what a debug build forwards on this
    // (shared, 2-core) machine.
    let pps: u64 = std::env::var("HOT_RESTART_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let bw = std::env::var("HOT_RESTART_TCP").unwrap_or_else(|_| "10M".into());
    let secs = 8u64;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ns_b, "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let iperf = Command::new("ip")
        .args(["netns", "exec", &ns_a])
        .args(["iperf3", "-c", "198.18.2.2", "-t", "12", "-b", &bw, "-J"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("iperf3 client");
    let count = (pps * secs).to_string();
    let rate = pps.to_string();
    let pktgen_child = Command::new(pktgen())
        .args([
            "send",
            "-i",
            &format!("{p}pa"),
            "--netns",
            &ns_a,
            "--rx-iface",
            &format!("{p}pb"),
            "--rx-netns",
            &ns_b,
            "--driver",
            "af-packet",
            "--dst-mac",
            &dst_mac,
            "--src",
            "198.18.1.2",
            "--dst",
            "198.18.2.2",
            "--dport",
            "5000-5009",
            "--count",
            &count,
            "--rate",
            &rate,
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vrouter-pktgen");
    std::thread::sleep(Duration::from_secs(3));
    during(t);
    let gout = pktgen_child.wait_with_output().unwrap();
    let iperf = iperf.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let g: Value = serde_json::from_slice(&gout.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&gout.stdout),
            String::from_utf8_lossy(&gout.stderr)
        )
    });
    let i: Value = serde_json::from_slice(&iperf.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&iperf.stdout),
            String::from_utf8_lossy(&iperf.stderr)
        )
    });
    let r = &g["result"];
    let sent = &i["end"]["sum_sent"];
    Flows {
        sent: r["sent"].as_u64().unwrap_or(0),
        lost: r["lost"].as_u64().unwrap_or(u64::MAX),
        duplicates: r["rx"]["duplicates"].as_u64().unwrap_or(u64::MAX),
        retransmits: sent["retransmits"].as_u64().unwrap_or(u64::MAX),
        seconds: sent["seconds"].as_f64().unwrap_or(0.0),
        mbps: i["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
        per_second: i["intervals"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|x| x["sum"]["retransmits"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[test]
fn takeover_under_steady_tcp_and_udp_flows_loses_nothing() {
    require_root!();
    let _s = serial();
    let (mut t, cfg) = topology();
    t.start_vrouterd("r", &cfg);
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    // The same flows without a takeover first: what this machine's load
    // costs TCP by itself (spurious retransmissions when a 2-core machine
    // is busy), to tell a takeover's burst from it.
    let base = flows(&mut t, |_| {});
    let old = t.pid(0);
    let mut took = Duration::ZERO;
    let mut k = 0;
    let f = flows(&mut t, |t| (k, took) = take_over(t, &cfg));
    let line = |l: &str, what: &str| {
        l.lines()
            .find(|x| x.contains(what))
            .unwrap_or("")
            .to_string()
    };
    eprintln!(
        "hot restart of pid {old} in {took:?}:\n  baseline: {base:?}\n  takeover: {f:?}\n  {}\n  {}",
        line(&t.log(0), "handed over"),
        line(&t.log(k), "switch-over: pools and ports taken"),
    );
    assert!(base.sent > 0 && f.sent == base.sent, "{base:?} {f:?}");
    assert_eq!(f.lost, 0, "UDP loss across the takeover: {f:?}");
    assert_eq!(f.duplicates, 0, "{f:?}");
    assert!(f.seconds >= 11.9, "iperf3 did not complete: {f:?}");
    assert!(f.mbps > 1.0 && base.mbps > 1.0, "{base:?} {f:?}");
    // No retransmission burst: at most what the same flow has without a
    // takeover, plus a little.
    assert!(
        f.retransmits <= 2 * base.retransmits + 10,
        "TCP retransmissions across the takeover: {f:?}, without: {base:?}"
    );
    let worst = |x: &Flows| x.per_second.iter().copied().max().unwrap_or(0);
    assert!(
        worst(&f) <= 2 * worst(&base) + 10,
        "a retransmission burst in one second: {f:?}, without: {base:?}"
    );
    // The new vrouterd forwards on its own.
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    // Stopped normally, it detaches the program it inherited.
    let report = t.stop_vrouterd(k);
    assert!(report.contains("counters"), "{report}");
    eprintln!("{report}");
    let links = t.exec("r", "ip link show");
    assert!(
        !links.contains("xsk_def_prog"),
        "program left attached:\n{links}"
    );
}

#[test]
fn state_from_the_control_socket_survives_the_takeover() {
    require_root!();
    let _s = serial();
    let (mut t, cfg) = topology();
    t.start_vrouterd("r", &cfg);
    let sock = t.socket(0);
    let mut c = Client::connect(&sock, "test").expect("connect");
    c.call(Op::RouteAdd(proto::Route {
        vrf: None,
        prefix: "198.19.0.0/24".into(),
        via: vec!["198.18.2.2".into()],
        interface: None,
        action: None,
        ..Default::default()
    }))
    .unwrap();
    c.call(Op::StaticMacAdd(proto::StaticMac {
        bridge: "pods".into(),
        mac: "02:00:00:00:0c:01".into(),
        interface: "c".into(),
    }))
    .unwrap();
    let sync = proto::Sync {
        scope: "node/n2".into(),
        generation: 7,
        routes: vec![proto::Route {
            vrf: None,
            prefix: "198.19.1.0/24".into(),
            via: vec!["198.18.2.2".into()],
            interface: None,
            action: None,
            ..Default::default()
        }],
        neighbors: Vec::new(),
        endpoints: Vec::new(),
        services: Vec::new(),
        policies: Vec::new(),
    };
    c.call(Op::Sync(sync.clone())).unwrap();
    // A configured address deleted over the socket stays deleted.
    c.call(Op::AddressDel(proto::Address {
        interface: "b".into(),
        address: "198.18.2.1".into(),
    }))
    .unwrap();
    c.call(Op::AddressAdd(proto::Address {
        interface: "b".into(),
        address: "198.18.2.1/24".into(),
    }))
    .unwrap();
    drop(c);
    for dst in ["198.19.0.1", "198.19.1.1"] {
        let out = t.exec("a", &format!("ping -c 2 -i 0.1 -W 2 {dst}"));
        assert_eq!(ping_stats(&out), (2, 2), "{dst}: {out}");
    }

    let (_k, _) = take_over(&mut t, &cfg);
    let mut c = Client::connect(&sock, "test").expect("connect to the new vrouterd");
    let routes = c
        .call(Op::ShowRoutes(proto::RouteSel::default()))
        .unwrap()
        .to_string();
    assert!(
        routes.contains("198.19.0.0/24") && routes.contains("198.19.1.0/24"),
        "{routes}"
    );
    let macs = c
        .call(Op::ShowMac(proto::BridgeSel {
            bridge: Some("pods".into()),
        }))
        .unwrap();
    assert!(
        macs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["mac"] == "02:00:00:00:0c:01"
                && m["interface"] == "c"
                && m["static"] == true),
        "{macs}"
    );
    // The sync scope came along: the same state again changes nothing.
    let r = c.call(Op::Sync(sync)).unwrap();
    assert_eq!(r["unchanged"], 1, "{r}");
    assert_eq!(r["added"], 0, "{r}");
    for dst in ["198.19.0.1", "198.19.1.1"] {
        let out = t.exec("a", &format!("ping -c 2 -i 0.1 -W 2 {dst}"));
        assert_eq!(ping_stats(&out), (2, 2), "{dst} after the takeover: {out}");
    }
}

#[test]
fn a_takeover_with_other_ports_fails_and_the_old_vrouterd_keeps_forwarding() {
    require_root!();
    let _s = serial();
    let (mut t, cfg) = topology();
    t.start_vrouterd("r", &cfg);
    let cfg_path = t.dir().join("mismatch.toml");
    // Port b with another ring size: not the same ports.
    let other = cfg.replacen(
        "driver = \"af-xdp\"\ninterface = ",
        "driver = \"af-xdp\"\nring-size = 4096\ninterface = ",
        1,
    );
    assert_ne!(other, cfg);
    std::fs::write(&cfg_path, &other).unwrap();
    let out = t.exec_out(
        "r",
        &format!(
            "{} --config {} --takeover",
            vrouterd().display(),
            cfg_path.display()
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refused the takeover: configuration mismatch: port a"),
        "{err}"
    );
    // Nobody listening: a clear error too.
    let out = t.exec_out(
        "r",
        &format!(
            "{} --config {} --takeover {}/nobody.sock",
            vrouterd().display(),
            cfg_path.display(),
            t.dir().display()
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no vrouterd to take over"), "{err}");
    // State the new configuration cannot take (its bridge is renamed): the
    // new vrouterd fails after it adopted the AF_XDP sockets, and must
    // leave the old one's program and map entries alone.
    let mut c = Client::connect(&t.socket(0), "test").expect("connect");
    c.call(Op::StaticMacAdd(proto::StaticMac {
        bridge: "pods".into(),
        mac: "02:00:00:00:0c:01".into(),
        interface: "c".into(),
    }))
    .unwrap();
    drop(c);
    std::fs::write(&cfg_path, cfg.replace("\"pods\"", "\"pods2\"")).unwrap();
    let out = t.exec_out(
        "r",
        &format!(
            "{} --config {} --takeover",
            vrouterd().display(),
            cfg_path.display()
        ),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("applying the running vrouterd's state") && err.contains("pods"),
        "{err}"
    );
    assert!(t.vrouterd_running(0), "{}", t.log(0));
    assert!(
        t.log(0).contains("still forwarding"),
        "the old vrouterd logs the refusal:\n{}",
        t.log(0)
    );
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    // And it can still be taken over with the right configuration.
    take_over(&mut t, &cfg);
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
}
