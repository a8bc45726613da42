//! Control-plane figures for benches/RESULTS.md: routes per second through
//! the control socket (`batch`), per-update latency until every worker uses
//! a change, and vrouterd's memory for the installed routes.
//!
//! `control-bench [ROUTES] [BATCH]` starts `target/release/vrouterd` (build
//! it first: `cargo build --release -p vrouter-dataplane`) with memory ports
//! and one worker, installs ROUTES (default 1,000,000) IPv4 routes in batches
//! of BATCH (default 5,000: a request line is at most 1 MiB), then measures 1,000 single `route.replace`
//! round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vrouter_control::Client;
use vrouter_control::proto::{self, Op};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let dir = std::env::temp_dir().join(format!("vrouter-cbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("ctl.sock");
    let cfg = dir.join("vr.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dataplane]\nworkers = 1\npoll = \"adaptive\"\n[[port]]\nname = \"a\"\ndriver = \"memory\"\n[[port]]\nname = \"b\"\ndriver = \"memory\"\n\
             [[interface]]\nname = \"a\"\naddresses = [\"198.18.1.1/24\"]\n[[interface]]\nname = \"b\"\naddresses = [\"198.18.2.1/24\"]\n\
             [control]\nsocket = \"{}\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vrouterd");
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("vrouterd");
    // Stops vrouterd (by PID) however this program ends.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status();
            let _ = self.0.wait();
        }
    }
    let child = Guard(child);
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect(&sock, "control-bench").expect("connect");
    let rss0 = rss_kib(child.0.id());
    let gws = ["198.18.1.2", "198.18.1.3", "198.18.2.2", "198.18.2.3"];
    let route = |k: u32| proto::Route {
        vrf: None,
        // 1M distinct /24s spread over 1.0.0.0 - 16.x (no overlap with our subnets).
        prefix: format!("{}.{}.{}.0/24", 1 + (k >> 16), (k >> 8) & 255, k & 255),
        via: vec![gws[(k % 4) as usize].to_string()],
        ..Default::default()
    };
    // The request lines are serialised before the clock starts, then sent
    // pipelined from a second socket-writer thread while this thread reads
    // the acknowledgements: the figure is vrouterd's rate, not this
    // client's JSON encoding.
    let lines: Vec<String> = (0..n.div_ceil(batch))
        .map(|b| {
            let k = b * batch;
            let ops = (k..(k + batch).min(n))
                .map(|i| proto::BatchOp {
                    op: Op::RouteAdd(route(i)),
                })
                .collect();
            serde_json::to_string(&proto::Request {
                id: 1_000_000 + u64::from(b),
                op: Op::Batch(proto::Batch { ops }),
            })
            .unwrap()
        })
        .collect();
    let nlines = lines.len();
    let stream = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    use std::io::{BufRead, Write};
    writer
        .write_all(b"{\"id\":0,\"op\":\"hello\",\"args\":{\"version\":1}}\n")
        .unwrap();
    let mut hello = String::new();
    reader.read_line(&mut hello).unwrap();
    let start = Instant::now();
    let w = std::thread::spawn(move || {
        for l in lines {
            writer.write_all(l.as_bytes()).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        writer
    });
    for _ in 0..nlines {
        let mut resp = String::new();
        reader.read_line(&mut resp).unwrap();
        assert!(resp.contains("\"result\""), "batch refused: {resp}");
    }
    let _writer = w.join().unwrap();
    let took = start.elapsed();
    let rss1 = rss_kib(child.0.id());
    let mut lat = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut r = route(i);
        r.via = vec![gws[((i + 1) % 4) as usize].to_string()];
        let t = Instant::now();
        c.call(Op::RouteReplace(r)).expect("replace");
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{n} routes in batches of {batch}: {:.2} s ({:.0} routes/s); vrouterd RSS {} MiB -> {} MiB (+{} MiB)",
        took.as_secs_f64(),
        f64::from(n) / took.as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        (rss1 - rss0) / 1024
    );
    println!(
        "single route.replace acknowledged (every worker uses it): p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
