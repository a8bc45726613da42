//! vrouterd on real kernel interfaces: pods in namespaces, veth pairs,
//! Linux's own ping, traceroute-style probes and iperf3 TCP through it.
//! Each scenario runs once per port driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vrouter_pktgen_tests::*;

/// Two pods on one bridge domain.
fn bridge(driver: &str) {
    let mut t = Topology::new();
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let ports = format!(
        "{}{}",
        port_toml("a", driver, &ra, 0),
        port_toml("b", driver, &rb, 1)
    );
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    t.exec(
        "a",
        &format!("ip addr add 198.18.0.1/24 dev {}pa", t.prefix),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.0.2/24 dev {}pb", t.prefix),
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
{ports}[[bridge]]
name = "pods"
[[interface]]
name = "a"
bridge = "pods"
[[interface]]
name = "b"
bridge = "pods"
"#
        ),
    );
    let out = t.exec("a", "ping -c 5 -i 0.1 -W 2 198.18.0.2");
    assert_eq!(ping_stats(&out), (5, 5), "{out}");
    let out = t.exec("b", "ping -c 5 -i 0.1 -W 2 198.18.0.1");
    assert_eq!(ping_stats(&out), (5, 5), "{out}");
    let r = iperf3(&t, "b", "a", "198.18.0.2", 5);
    assert!(r.seconds >= 4.9, "{r:?}");
    assert!(r.bits_per_second > 10e6, "{r:?}");
    let segments = r.bits_per_second * r.seconds / 8.0 / 1448.0;
    assert!(
        (r.retransmits as f64) < segments * 0.01 + 50.0,
        "retransmission storm: {r:?}"
    );
    let report = t.stop_vrouterd(k);
    assert_eq!(counter(&report, "l2-learned"), 2, "{report}");
    eprintln!(
        "{driver} bridge: {:.0} Mbit/s, {} retransmits",
        r.bits_per_second / 1e6,
        r.retransmits
    );
}

/// Two pods in two subnets, routed by vrouterd, which answers and asks ARP.
fn routed4(driver: &str) {
    let mut t = Topology::new();
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let ports = format!(
        "{}{}",
        port_toml("a", driver, &ra, 0),
        port_toml("b", driver, &rb, 1)
    );
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    let p = t.prefix.clone();
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
{ports}[[interface]]
name = "a"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "b"
addresses = ["198.18.2.1/24"]
"#
        ),
    );
    let out = t.exec("a", "ping -c 5 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (5, 5), "{out}");
    let out = t.exec("b", "ping -c 3 -i 0.1 -W 2 198.18.1.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    // The router itself answers on both addresses.
    let out = t.exec("a", "ping -c 2 -i 0.1 -W 2 198.18.2.1");
    assert_eq!(ping_stats(&out), (2, 2), "{out}");
    // A TTL-limited probe gets the router's time-exceeded from its ingress address.
    let out = t.exec_out("a", "ping -c 1 -t 1 -W 2 198.18.2.2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 198.18.1.1") && text.contains("Time to live exceeded"),
        "{text}"
    );
    if have("traceroute") {
        let tr = t.exec("a", "traceroute -n -q 1 -w 2 198.18.2.2");
        let hops: Vec<&str> = tr.lines().skip(1).collect();
        assert!(
            hops.first().is_some_and(|h| h.contains("198.18.1.1")),
            "{tr}"
        );
        assert!(
            hops.last().is_some_and(|h| h.contains("198.18.2.2")),
            "{tr}"
        );
    }
    let r = iperf3(&t, "b", "a", "198.18.2.2", 5);
    assert!(r.seconds >= 4.9 && r.bits_per_second > 10e6, "{r:?}");
    let segments = r.bits_per_second * r.seconds / 8.0 / 1448.0;
    assert!(
        (r.retransmits as f64) < segments * 0.01 + 50.0,
        "retransmission storm: {r:?}"
    );
    // The kernel's neighbour table in the pod shows the router's MAC.
    let neigh = t.exec("a", "ip neigh show 198.18.1.1");
    assert!(neigh.contains("lladdr"), "{neigh}");
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "arp-reply-sent") >= 1, "{report}");
    assert!(counter(&report, "ip4-ttl-expired") >= 1, "{report}");
    assert!(counter(&report, "icmp4-error-sent") >= 1, "{report}");
    eprintln!(
        "{driver} routed: {:.0} Mbit/s, {} retransmits",
        r.bits_per_second / 1e6,
        r.retransmits
    );
}

/// IPv6: routed with neighbour discovery.
fn routed6(driver: &str) {
    let mut t = Topology::new();
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let ports = format!(
        "{}{}",
        port_toml("a", driver, &ra, 0),
        port_toml("b", driver, &rb, 1)
    );
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    let p = t.prefix.clone();
    t.exec("a", &format!("ip -6 addr add 2001:db8:1::2/64 dev {p}pa nodad && ip -6 route add default via 2001:db8:1::1"));
    t.exec("b", &format!("ip -6 addr add 2001:db8:2::2/64 dev {p}pb nodad && ip -6 route add default via 2001:db8:2::1"));
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
{ports}[[interface]]
name = "a"
addresses = ["2001:db8:1::1/64"]
[[interface]]
name = "b"
addresses = ["2001:db8:2::1/64"]
"#
        ),
    );
    let out = t.exec("a", "ping -6 -c 5 -i 0.1 -W 2 2001:db8:2::2");
    assert_eq!(ping_stats(&out), (5, 5), "{out}");
    let out = t.exec("b", "ping -6 -c 3 -i 0.1 -W 2 2001:db8:1::2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let out = t.exec_out("a", "ping -6 -c 1 -t 1 -W 2 2001:db8:2::2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 2001:db8:1::1") && text.contains("Time exceeded"),
        "{text}"
    );
    let r = iperf3(&t, "b", "a", "2001:db8:2::2", 3);
    assert!(r.bits_per_second > 10e6, "{r:?}");
    let report = t.stop_vrouterd(k);
    assert!(counter(&report, "nd-advert-sent") >= 1, "{report}");
    assert!(counter(&report, "nd-solicit-sent") >= 1, "{report}");
}

/// vrouterd killed with SIGKILL and started again forwards again.
fn restart(driver: &str) {
    let mut t = Topology::new();
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    let ports = format!(
        "{}{}",
        port_toml("a", driver, &ra, 0),
        port_toml("b", driver, &rb, 1)
    );
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    let p = t.prefix.clone();
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
    );
    let cfg = format!(
        "{ports}\
         [[interface]]\nname = \"a\"\naddresses = [\"198.18.1.1/24\"]\n[[interface]]\nname = \"b\"\naddresses = [\"198.18.2.1/24\"]\n"
    );
    let k = t.start_vrouterd("r", &cfg);
    assert_eq!(
        ping_stats(&t.exec("a", "ping -c 2 -i 0.1 -W 2 198.18.2.2")),
        (2, 2)
    );
    let xdp_attached = |t: &Topology| {
        t.exec("r", &format!("ip link show {ra}"))
            .contains("prog/xdp")
    };
    t.kill_vrouterd(k);
    let out = t.exec_out("a", "ping -c 1 -W 1 198.18.2.2");
    assert!(
        !out.status.success(),
        "nothing forwards while vrouterd is down"
    );
    let k = t.start_vrouterd("r", &cfg);
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    if driver == "af-xdp" {
        assert!(xdp_attached(&t), "AF_XDP port runs with its XDP program");
    }
    t.stop_vrouterd(k);
    assert!(
        !xdp_attached(&t),
        "no XDP program left behind after a clean stop"
    );
}

#[test]
fn bridge_mode() {
    require_root!();
    for d in drivers() {
        bridge(d);
    }
}

#[test]
fn routed_ipv4_mode() {
    require_root!();
    for d in drivers() {
        routed4(d);
    }
}

#[test]
fn routed_ipv6_mode() {
    require_root!();
    for d in drivers() {
        routed6(d);
    }
}

#[test]
fn restart_after_sigkill() {
    require_root!();
    for d in drivers() {
        restart(d);
    }
}

/// A TAP port gives the node's own kernel stack an interface behind
/// vrouterd: a pod reaches an address of the router namespace's kernel.
#[test]
fn tap_host_interface() {
    require_root!();
    let mut t = Topology::new();
    for n in ["r", "a"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    t.quiet("r", &ra);
    let p = t.prefix.clone();
    let tap = format!("{p}tap");
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    let k = t.start_vrouterd(
        "r",
        &format!(
            r#"
[[port]]
name = "a"
driver = "af-packet"
interface = "{ra}"
[[port]]
name = "host"
driver = "tap"
interface = "{tap}"
[[interface]]
name = "a"
addresses = ["198.18.1.1/24"]
[[interface]]
name = "host"
addresses = ["198.18.5.1/24"]
"#
        ),
    );
    // The kernel side of the TAP device, in the router's namespace.
    t.exec(
        "r",
        &format!(
            "ip addr add 198.18.5.2/24 dev {tap} && ip route add 198.18.1.0/24 via 198.18.5.1"
        ),
    );
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.5.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let out = t.exec("r", "ping -c 2 -i 0.1 -W 2 198.18.1.2");
    assert_eq!(ping_stats(&out), (2, 2), "{out}");
    let report = t.stop_vrouterd(k);
    assert!(report.contains("host"), "{report}");
    let gone = t.exec_out("r", &format!("ip link show {tap}"));
    assert!(!gone.status.success(), "the TAP device goes with vrouterd");
}

/// CPU seconds (user + system) vrouterd `k` has used so far.
fn cpu_seconds(t: &Topology, k: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", t.pid(k))).unwrap();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Received packets of each queue of port `name`, from vrouterd's report.
fn queue_rx(report: &str, name: &str) -> Vec<u64> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("ports:"))
        .take_while(|l| !l.starts_with("interfaces:"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&name)).then(|| f[1].parse().unwrap())
        })
        .collect()
}

/// Two queues per port (veths with two queues; AF_XDP: a socket per queue,
/// AF_PACKET: a fanout group), two workers, adaptive polling: several TCP
/// flows are spread over both queues and both workers, and an idle vrouterd
/// sleeps instead of spinning.
fn multiqueue_adaptive(driver: &str) {
    let mut t = Topology::new();
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth_queues("r", "ra", "a", "pa", 2);
    let (rb, _) = t.veth_queues("r", "rb", "b", "pb", 2);
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    let p = t.prefix.clone();
    t.exec(
        "a",
        &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
    );
    let cfg = format!(
        "[dataplane]\nworkers = 2\npoll = \"adaptive\"\nidle-sleep-us = 200\n\
         {}queues = 2\n{}queues = 2\n\
         [[interface]]\nname = \"a\"\naddresses = [\"198.18.1.1/24\"]\n\
         [[interface]]\nname = \"b\"\naddresses = [\"198.18.2.1/24\"]\n",
        port_toml("a", driver, &ra, 0),
        port_toml("b", driver, &rb, 1)
    );
    let k = t.start_vrouterd("r", &cfg);
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &t.ns("b"), "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = t.exec("a", "iperf3 -c 198.18.2.2 -t 3 -P 16 -J");
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    assert!(bps > 10e6, "{bps} bit/s");

    // Idle: two busy-polling workers would burn 2 CPU-seconds a second.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let c0 = cpu_seconds(&t, k);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let idle_cpu = cpu_seconds(&t, k) - c0;
    assert!(
        idle_cpu < 1.0,
        "adaptive polling used {idle_cpu:.2} CPU-s in 2 s idle"
    );

    let report = t.stop_vrouterd(k);
    let rx = queue_rx(&report, "a");
    assert_eq!(rx.len(), 2, "one counter line per queue:\n{report}");
    assert!(
        rx.iter().all(|&n| n > 100),
        "16 flows reach both queues: {rx:?}\n{report}"
    );
    let busy_workers = report
        .lines()
        .filter(|l| l.trim_start().starts_with("worker ") && !l.contains("busy polls 0 "))
        .count();
    assert_eq!(busy_workers, 2, "both workers forwarded:\n{report}");
    eprintln!(
        "{driver} 2 queues, 2 workers, adaptive: {:.0} Mbit/s, rx per queue {rx:?}, idle CPU {idle_cpu:.2} s/2 s",
        bps / 1e6
    );
}

#[test]
fn two_queues_two_workers_adaptive_polling() {
    require_root!();
    for d in ["af-packet", "af-xdp"] {
        multiqueue_adaptive(d);
    }
}

/// Reserves `n` more 2 MiB hugepages on a private hugetlbfs mount; gives
/// both back on drop (panic included).
struct Hugepages {
    before: u64,
    mount: std::path::PathBuf,
}

impl Hugepages {
    fn reserve(n: u64, mount: std::path::PathBuf) -> Option<Hugepages> {
        let nr = "/proc/sys/vm/nr_hugepages";
        let before: u64 = std::fs::read_to_string(nr).ok()?.trim().parse().ok()?;
        let h = Hugepages { before, mount };
        std::fs::write(nr, format!("{}", before + n)).ok()?;
        std::fs::create_dir_all(&h.mount).ok()?;
        let got: u64 = std::fs::read_to_string(nr).ok()?.trim().parse().ok()?;
        let mounted = sh_out(&format!(
            "mount -t hugetlbfs -o pagesize=2M nodev {}",
            h.mount.display()
        ))
        .status
        .success();
        (got >= before + n && mounted).then_some(h)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = sh_out(&format!("umount -l {}", self.mount.display()));
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", format!("{}", self.before));
    }
}

fn hugepages_free() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// With hugepages reserved by the operator (and a hugetlbfs mounted), DPDK's
/// EAL runs on them instead of `--no-huge`, and forwarding works.
#[test]
fn dpdk_uses_reserved_hugepages() {
    require_root!();
    if !vrouterd_has_dpdk() {
        eprintln!("skipped: vrouterd built without the dpdk feature");
        return;
    }
    let mut t = Topology::new();
    let Some(_huge) = Hugepages::reserve(128, t.dir().join("huge")) else {
        eprintln!("skipped: the kernel could not reserve 128 hugepages");
        return;
    };
    for n in ["r", "a", "b"] {
        t.add_ns(n);
    }
    let (ra, _) = t.veth("r", "ra", "a", "pa");
    let (rb, _) = t.veth("r", "rb", "b", "pb");
    t.quiet("r", &ra);
    t.quiet("r", &rb);
    t.exec(
        "a",
        &format!("ip addr add 198.18.0.1/24 dev {}pa", t.prefix),
    );
    t.exec(
        "b",
        &format!("ip addr add 198.18.0.2/24 dev {}pb", t.prefix),
    );
    let free0 = hugepages_free();
    let k = t.start_vrouterd(
        "r",
        &format!(
            "{}{}[[bridge]]\nname = \"pods\"\n[[interface]]\nname = \"a\"\nbridge = \"pods\"\n\
             [[interface]]\nname = \"b\"\nbridge = \"pods\"\n",
            port_toml("a", "dpdk", &ra, 0),
            port_toml("b", "dpdk", &rb, 1)
        ),
    );
    let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.0.2");
    assert_eq!(ping_stats(&out), (3, 3), "{out}");
    let used = free0.saturating_sub(hugepages_free());
    let log = t.stop_vrouterd(k);
    assert!(log.contains("DPDK EAL initialised on hugepages"), "{log}");
    assert!(used > 0, "EAL took no hugepage:\n{log}");
    eprintln!("DPDK EAL on hugepages: {used} 2 MiB pages in use");
}

/// The AF_XDP I/O-path knobs (docs/CONFIG.md): the redirect program in
/// native or generic mode, and socket busy polling. Each variant routes
/// ping and TCP, and the interface shows the mode asked for.
#[test]
fn af_xdp_modes_and_busy_poll() {
    require_root!();
    for (label, extra, shows) in [
        ("native", "xdp-mode = \"native\"\n", " xdp qdisc"),
        ("generic", "xdp-mode = \"generic\"\n", "xdpgeneric"),
        (
            "busy-poll",
            "busy-poll-us = 50\nbusy-poll-budget = 64\n",
            " xdp qdisc",
        ),
    ] {
        let mut t = Topology::new();
        for n in ["r", "a", "b"] {
            t.add_ns(n);
        }
        let (ra, _) = t.veth("r", "ra", "a", "pa");
        let (rb, _) = t.veth("r", "rb", "b", "pb");
        t.quiet("r", &ra);
        t.quiet("r", &rb);
        let p = t.prefix.clone();
        t.exec(
            "a",
            &format!("ip addr add 198.18.1.2/24 dev {p}pa && ip route add default via 198.18.1.1"),
        );
        t.exec(
            "b",
            &format!("ip addr add 198.18.2.2/24 dev {p}pb && ip route add default via 198.18.2.1"),
        );
        let cfg = format!(
            "{}{extra}{}{extra}\
             [[interface]]\nname = \"a\"\naddresses = [\"198.18.1.1/24\"]\n[[interface]]\nname = \"b\"\naddresses = [\"198.18.2.1/24\"]\n",
            port_toml("a", "af-xdp", &ra, 0),
            port_toml("b", "af-xdp", &rb, 1),
        );
        let k = t.start_vrouterd("r", &cfg);
        let link = t.exec("r", &format!("ip -d link show {ra}"));
        assert!(
            link.contains(shows),
            "{label}: expected `{shows}` in {link}"
        );
        assert!(link.contains("name xsk_def_prog"), "{label}: {link}");
        let out = t.exec("a", "ping -c 3 -i 0.1 -W 2 198.18.2.2");
        assert_eq!(ping_stats(&out), (3, 3), "{label}: {out}");
        let r = iperf3(&t, "b", "a", "198.18.2.2", 2);
        assert!(r.bits_per_second > 10e6, "{label}: {r:?}");
        t.stop_vrouterd(k);
        eprintln!("af-xdp {label}: {:.0} Mbit/s", r.bits_per_second / 1e6);
    }
}
