//! Test topologies on real kernel interfaces: network namespaces and veth
//! pairs that a test creates under a unique prefix and removes when it ends
//! (also on panic, through `Drop`), plus vrouterd processes started in them
//! and stopped by PID.
//!
//! Rules (docs/TESTING.md): addresses only from 198.18.0.0/15 and
//! 2001:db8::/32; never touch an interface the test did not create; tests
//! that need root skip with one line when not root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pktgen;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True if the tests can create namespaces (running as root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Skips the calling test (returns from it) when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root to create network namespaces");
            return;
        }
    };
}

/// True if `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    if !out.status.success() {
        panic!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output, whatever the status.
pub fn sh_out(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Path of a workspace binary, built (or brought up to date) once per test
/// process, so a test never runs a stale binary.
fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = target_dir().join(profile).join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-q", "-p", package, "--bin", name]);
        // scripts/test.sh sets VROUTER_FEATURES=dpdk where libdpdk is installed.
        if let Ok(f) = std::env::var("VROUTER_FEATURES")
            && !f.is_empty()
            && package == "vrouter-dataplane"
        {
            c.args(["--features", &format!("vrouter-dataplane/{f}")]);
        }
        if profile == "release" {
            c.arg("--release");
        }
        assert!(c.status().expect("cargo").success(), "building {name}");
        built.push(name.to_string());
    }
    bin
}

/// Path of the vrouter-agent binary.
pub fn vrouter_agent() -> PathBuf {
    binary("vrouter-agent", "vrouter-agent")
}

/// Path of the vrouterd binary.
pub fn vrouterd() -> PathBuf {
    binary("vrouter-dataplane", "vrouterd")
}

/// True if vrouterd was built with DPDK ports.
pub fn vrouterd_has_dpdk() -> bool {
    Command::new(vrouterd())
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("dpdk"))
}

/// Port drivers the real-traffic scenarios run on: af-packet and af-xdp
/// always, dpdk (with net_af_packet vdevs) when vrouterd has it.
pub fn drivers() -> Vec<&'static str> {
    let mut d = vec!["af-packet", "af-xdp"];
    if vrouterd_has_dpdk() {
        d.push("dpdk");
    }
    d
}

/// The `[[port]]` section of a port on kernel interface `iface` with
/// `driver` (dpdk: a net_af_packet vdev on it, numbered `k`).
pub fn port_toml(name: &str, driver: &str, iface: &str, k: usize) -> String {
    if driver == "dpdk" {
        format!(
            "[[port]]\nname = \"{name}\"\ndriver = \"dpdk\"\ndevice = \"net_af_packet{k},iface={iface},framecnt=4096,qdisc_bypass=1\"\n"
        )
    } else {
        format!("[[port]]\nname = \"{name}\"\ndriver = \"{driver}\"\ninterface = \"{iface}\"\n")
    }
}

/// Path of the vrouter-cni plugin binary.
pub fn vrouter_cni() -> PathBuf {
    binary("vrouter-cni", "vrouter-cni")
}

/// Path of the vrouter-pktgen binary.
pub fn pktgen() -> PathBuf {
    binary("vrouter-pktgen-tests", "vrouter-pktgen")
}

/// Path of the vrouterctl binary.
pub fn vrouterctl() -> PathBuf {
    binary("vrouter-control", "vrouterctl")
}

/// A vrouterd started directly (no namespace) with a config written to a
/// scratch directory; its control socket is `<dir>/ctl.sock`. Stopped (by
/// PID) and cleaned up on drop.
pub struct Daemon {
    pub dir: PathBuf,
    child: Child,
}

impl Daemon {
    /// Starts vrouterd with `config` plus a `[control]` section (socket in
    /// the scratch dir, and `control_extra` lines).
    pub fn start(config: &str, control_extra: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "vrouter-d{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("ctl.sock");
        let cfg = dir.join("vrouter.toml");
        // Outside a namespace, no test listens on the host's metrics port.
        let metrics = if config.contains("[metrics]") {
            ""
        } else {
            "[metrics]\nenabled = false\n"
        };
        std::fs::write(
            &cfg,
            format!(
                "{config}\n{metrics}[control]\nsocket = \"{}\"\n{control_extra}\n",
                sock.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("vrouterd.log")).unwrap();
        let child = Command::new(vrouterd())
            .arg("--config")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting vrouterd");
        let mut d = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.log().contains("control socket listening") {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("vrouterd exited ({st}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "vrouterd did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// vrouterd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// vrouterd's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vrouterd.log")).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs vrouterctl against this daemon: (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(vrouterctl())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("vrouterctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = sh_out(&format!("kill -TERM {}", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A set of namespaces and veth pairs, all named `<prefix>…`, removed on drop.
pub struct Topology {
    pub prefix: String,
    namespaces: Vec<String>,
    daemons: Vec<Child>,
    dir: PathBuf,
}

impl Topology {
    /// A new, empty topology with a unique prefix (`vt<pid><n>`, short
    /// enough for 15-character interface names).
    pub fn new() -> Topology {
        let prefix = format!(
            "vt{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("vrouter-test-{prefix}"));
        std::fs::create_dir_all(&dir).unwrap();
        Topology {
            prefix,
            namespaces: Vec::new(),
            daemons: Vec::new(),
            dir,
        }
    }

    /// A scratch directory removed with the topology.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Full name of namespace `n`.
    pub fn ns(&self, n: &str) -> String {
        format!("{}{}", self.prefix, n)
    }

    /// Creates namespace `n` (loopback up).
    pub fn add_ns(&mut self, n: &str) -> String {
        let ns = self.ns(n);
        sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        self.namespaces.push(ns.clone());
        ns
    }

    /// Creates a veth pair `<prefix><a>` in namespace `na` and `<prefix><b>`
    /// in `nb`, both up, with offloads a userspace forwarder cannot pass on
    /// (TSO/GSO/GRO, checksum offload) turned off. Returns the two names.
    pub fn veth(&mut self, na: &str, a: &str, nb: &str, b: &str) -> (String, String) {
        self.veth_queues(na, a, nb, b, 1)
    }

    /// [`Topology::veth`] with `queues` RX and TX queues on each end.
    pub fn veth_queues(
        &mut self,
        na: &str,
        a: &str,
        nb: &str,
        b: &str,
        queues: u32,
    ) -> (String, String) {
        let (ia, ib) = (
            format!("{}{}", self.prefix, a),
            format!("{}{}", self.prefix, b),
        );
        let (sa, sb) = (self.ns(na), self.ns(nb));
        let q = format!("numrxqueues {queues} numtxqueues {queues}");
        sh(&format!(
            "ip link add {ia} netns {sa} {q} type veth peer name {ib} netns {sb} {q} && \
             ip -n {sa} link set {ia} up && ip -n {sb} link set {ib} up"
        ));
        for (ns, i) in [(&sa, &ia), (&sb, &ib)] {
            let _ = sh_out(&format!(
                "ip netns exec {ns} ethtool -K {i} tso off gso off gro off tx off rx off 2>/dev/null"
            ));
        }
        (ia, ib)
    }

    /// Runs shell command `cmd` in namespace `n`; panics on failure.
    pub fn exec(&self, n: &str, cmd: &str) -> String {
        let out = self.exec_out(n, cmd);
        if !out.status.success() {
            panic!(
                "`{cmd}` in {} failed: {}{}",
                self.ns(n),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs shell command `cmd` in namespace `n`, returning its output
    /// whatever the status.
    pub fn exec_out(&self, n: &str, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(n), "sh", "-c", cmd])
            .output()
            .expect("ip netns exec")
    }

    /// Makes `ifname` in namespace `n` a pure L2 port for a forwarder: no
    /// IPv6 autoconfiguration, so the kernel stays silent on it.
    pub fn quiet(&self, n: &str, ifname: &str) {
        self.exec(
            n,
            &format!("sysctl -qw net.ipv6.conf.{ifname}.disable_ipv6=1"),
        );
    }

    /// Starts vrouterd in namespace `n` with `config`; waits until it runs.
    /// Its output goes to `<dir>/vrouterd-<k>.log`. Stopped on drop.
    pub fn start_vrouterd(&mut self, n: &str, config: &str) -> usize {
        self.start_vrouterd_args(n, config, &[])
    }

    /// [`Topology::start_vrouterd`] with extra command-line arguments (e.g.
    /// `--takeover`).
    pub fn start_vrouterd_args(&mut self, n: &str, config: &str, args: &[&str]) -> usize {
        let k = self.daemons.len();
        let cfg = self.dir.join(format!("vrouterd-{k}.toml"));
        let mut config = config.to_string();
        if !config.contains("[control]") {
            // Each vrouterd of a test gets its own control socket.
            config += &format!("\n[control]\nsocket = \"{}\"\n", self.socket(k).display());
        }
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("vrouterd-{k}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .arg(vrouterd())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting vrouterd");
        self.daemons.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log(k).contains("vrouterd running") {
            if let Ok(Some(st)) = self.daemons[k].try_wait() {
                panic!("vrouterd exited ({st}):\n{}", self.log(k));
            }
            assert!(
                Instant::now() < deadline,
                "vrouterd did not start:\n{}",
                self.log(k)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    /// The control socket of vrouterd `k`.
    pub fn socket(&self, k: usize) -> PathBuf {
        self.dir.join(format!("vrouterd-{k}.sock"))
    }

    /// The output of vrouterd `k` so far.
    pub fn log(&self, k: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("vrouterd-{k}.log"))).unwrap_or_default()
    }

    /// Stops vrouterd `k` with SIGTERM and returns its output (counters).
    pub fn stop_vrouterd(&mut self, k: usize) -> String {
        let pid = self.daemons[k].id();
        let _ = sh_out(&format!("kill -TERM {pid}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.daemons[k].try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.daemons[k].kill();
                let _ = self.daemons[k].wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log(k)
    }

    /// The process id of vrouterd `k`.
    pub fn pid(&self, k: usize) -> u32 {
        self.daemons[k].id()
    }

    /// Waits up to `timeout` for vrouterd `k` to exit; its exit code
    /// (`None` if it still runs or died of a signal).
    pub fn wait_vrouterd(&mut self, k: usize, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.daemons[k].try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while vrouterd `k` runs.
    pub fn vrouterd_running(&mut self, k: usize) -> bool {
        matches!(self.daemons[k].try_wait(), Ok(None))
    }

    /// Kills vrouterd `k` with SIGKILL (a crash).
    pub fn kill_vrouterd(&mut self, k: usize) {
        let _ = self.daemons[k].kill();
        let _ = self.daemons[k].wait();
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if let Ok(None) = d.try_wait() {
                let _ = sh_out(&format!("kill -TERM {}", d.id()));
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        // Deleting a namespace deletes the veth ends inside it, and with them
        // their peers.
        for ns in &self.namespaces {
            let _ = sh_out(&format!(
                "ip netns pids {ns} | xargs -r kill -9 2>/dev/null; ip netns del {ns}"
            ));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Counter `name` from a vrouterd counters report (0 if absent).
pub fn counter(report: &str, name: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let v = it.next()?.parse().ok()?;
            (it.next()? == name).then_some(v)
        })
        .unwrap_or(0)
}

/// Parses `ping` output: (transmitted, received).
pub fn ping_stats(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("");
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

/// Result of an iperf3 TCP run (from its JSON output).
#[derive(Debug, Clone, Copy)]
pub struct Iperf {
    pub bits_per_second: f64,
    pub retransmits: u64,
    pub seconds: f64,
}

/// Runs an iperf3 server in `server_ns` and a TCP client in `client_ns`
/// towards `addr` for `secs` seconds.
pub fn iperf3(t: &Topology, server_ns: &str, client_ns: &str, addr: &str, secs: u32) -> Iperf {
    let mut server = Command::new("ip")
        .args(["netns", "exec", &t.ns(server_ns), "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = t.exec_out(client_ns, &format!("iperf3 -c {addr} -t {secs} -J"));
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "iperf3 output: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let sent = &v["end"]["sum_sent"];
    Iperf {
        bits_per_second: v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0),
        retransmits: sent["retransmits"].as_u64().unwrap_or(0),
        seconds: sent["seconds"].as_f64().unwrap_or(0.0),
    }
}
