//! The etcd backend against a real etcd (Debian's etcd-server, started here
//! on 127.0.0.1 with a temporary data directory, stopped by PID) and a real
//! vrouterd: leases appear and routes follow, a node that stops renewing is
//! removed, restarting etcd loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vrouter_agent::engine::{Engine, EngineConfig};
use vrouter_agent::etcd_source::{EtcdConfig, SubnetLease, hold_lease, watch_subnets};
use vrouter_agent::translate::{Config, Mode};
use vrouter_control::{Client, Op, RouteSel};
use vrouter_pktgen_tests::Daemon;

const CFG: &str = r#"
[[port]]
name = "net1"
driver = "memory"
[[interface]]
name = "net1"
addresses = ["198.18.0.1/24"]
"#;

struct Etcd {
    child: Child,
    dir: PathBuf,
    client: u16,
    peer: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start(dir: &Path, client: u16, peer: u16) -> Etcd {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("t=http://127.0.0.1:{peer}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        Etcd {
            child,
            dir: dir.to_path_buf(),
            client,
            peer,
        }
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // already stopped and reaped: its PID may be someone else's now
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        *self = Etcd::start(&self.dir.clone(), self.client, self.peer);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lease(node: &str, k: u8) -> SubnetLease {
    SubnetLease {
        node: node.into(),
        pod_cidr: format!("198.19.{k}.0/24"),
        public_ip: format!("198.18.0.{k}").parse().unwrap(),
        vtep_mac: format!("02:76:78:00:00:{k:02x}"),
    }
}

fn prefixes(c: &mut Client) -> Vec<String> {
    let v = c.call(Op::ShowRoutes(RouteSel::default())).unwrap();
    let mut r: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "static")
        .map(|r| r["prefix"].as_str().unwrap().to_string())
        .collect();
    r.sort();
    r
}

async fn eventually(what: &str, c: &mut Client, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = prefixes(c);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: routes {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn leases_routes_expiry_and_etcd_restart() {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!(
            "skipped: etcd not installed (apt-get install etcd-server; scripts/deps.sh does)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("vrouter-agent-etcd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut etcd = Etcd::start(&dir, free_port(), free_port());
    let d = Daemon::start(CFG, "");
    let client_port = etcd.client;
    let cfg = |node: &str, k: u8| EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{client_port}")],
        prefix: "/vrouter.io/network".into(),
        lease: lease(node, k),
        ttl_s: 2,
    };
    let engine = Engine::start(
        &d.socket(),
        Config {
            node: "n1".into(),
            mode: Mode::HostGw,
            vni: 1,
            pod_bridge: "pods".into(),
        },
        EngineConfig {
            wait_for_sources: 1,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let n1 = tokio::spawn(hold_lease(cfg("n1", 1)));
    let watch = tokio::spawn(watch_subnets(cfg("n1", 1), engine.shared.clone()));
    let n2 = tokio::spawn(hold_lease(cfg("n2", 2)));
    let n3 = tokio::spawn(hold_lease(cfg("n3", 3)));
    let mut c = Client::connect(&d.socket(), "test").unwrap();
    eventually(
        "leases appear",
        &mut c,
        &["198.19.2.0/24", "198.19.3.0/24"],
        Duration::from_secs(20),
    )
    .await;

    // n3 stops renewing: its lease expires (TTL 2 s) and its route goes.
    n3.abort();
    eventually(
        "n3 expired",
        &mut c,
        &["198.19.2.0/24"],
        Duration::from_secs(15),
    )
    .await;

    // etcd restarts: n2's lease survives, and the watch comes back (n4).
    etcd.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        prefixes(&mut c),
        ["198.19.2.0/24"],
        "the last state is kept while etcd restarts"
    );
    let n4 = tokio::spawn(hold_lease(cfg("n4", 4)));
    eventually(
        "n4 after the restart",
        &mut c,
        &["198.19.2.0/24", "198.19.4.0/24"],
        Duration::from_secs(30),
    )
    .await;
    // Several TTLs later n2 is still there: its keep-alive resumed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(prefixes(&mut c), ["198.19.2.0/24", "198.19.4.0/24"]);

    for t in [n1, n2, n4, watch] {
        t.abort();
    }
    engine.stop();
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
