//! A small Kubernetes-like lab for services.rs and policy.rs: vrouterd in
//! namespace `r` routes between a client pod `c` (198.18.1.2), a second
//! client pod `d` (198.18.2.2), an "external" host `x` (198.18.200.2; the
//! node address on that side is 198.18.200.1) and backend pods `b0..bN`
//! (198.18.(10+k).2). Every pod also has an IPv6 address, 2001:db8:N::2 for
//! 198.18.N.2 (the router side is ::1). Each backend runs a dual-stack TCP
//! server that greets every connection with its name and the client address
//! it sees, then echoes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use vrouter_pktgen_tests::*;

pub const SERVER: &str = r#"
import socket, sys, threading
name, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
def serve(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(1024)
    while True:
        c, a = s.accept()
        threading.Thread(target=handle, args=(c, a), daemon=True).start()
def handle(c, a):
    try:
        peer = a[0][7:] if a[0].startswith("::ffff:") else a[0]
        c.sendall(("%s %s\n" % (name, peer)).encode())
        while True:
            d = c.recv(100)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
def userve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        d, a = s.recvfrom(100)
        peer = a[0][7:] if a[0].startswith("::ffff:") else a[0]
        s.sendto(("%s %s\n" % (name, peer)).encode(), a)
threading.Thread(target=userve, args=(ports[0],), daemon=True).start()
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
serve(ports[0])
"#;

/// `udpflows.py HOST PORT FIRST COUNT`: one UDP flow per source port
/// FIRST..FIRST+COUNT (a datagram, retried up to 3 times with the same
/// 5-tuple); prints `<sport> <backend>` (`ERR` if none answered).
pub const UDP_FLOWS: &str = r#"
import socket, sys
host, port, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
for sp in range(first, first + count):
    name = "ERR"
    for attempt in range(3):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", sp))
        s.settimeout(0.5)
        try:
            s.sendto(b"q", (host, port))
            name = s.recv(100).decode().split()[0]
            break
        except Exception:
            pass
        finally:
            s.close()
    print(sp, name, flush=True)
"#;

/// `client.py HOST PORT COUNT [HOLD_S] [SRC]`: opens COUNT connections and
/// prints, per connection, the greeting (`b0 198.18.1.2`) or `ERR <reason>
/// <seconds>`. With HOLD_S, keeps them open that long, then checks each
/// with an echo and prints `ECHO <i> ok|fail`.
pub const CLIENT: &str = r#"
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hold = float(sys.argv[4]) if len(sys.argv) > 4 else 0
src = sys.argv[5] if len(sys.argv) > 5 else None
socks = []
for i in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(2)
    t0 = time.time()
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        line = b""
        while not line.endswith(b"\n"):
            d = s.recv(100)
            if not d:
                break
            line += d
        print(line.decode().strip(), flush=True)
        socks.append((i, s))
    except Exception as e:
        print("ERR %s %.2f" % (type(e).__name__, time.time() - t0), flush=True)
        s.close()
    if not hold:
        for _, x in socks:
            x.close()
        socks = []
if hold:
    time.sleep(hold)
    for i, s in socks:
        try:
            s.sendall(b"ping\n")
            ok = s.recv(100) == b"ping\n"
        except Exception:
            ok = False
        print("ECHO %d %s" % (i, "ok" if ok else "fail"), flush=True)
"#;

pub struct Lab {
    pub t: Topology,
    pub k: usize,
    pub backends: usize,
}

pub fn python() -> &'static str {
    // The system Python (the one scripts/deps.sh installs packages for).
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl Lab {
    /// The lab with `backends` backend pods; `extra` is appended to the
    /// vrouterd configuration.
    pub fn new(backends: usize, extra: &str) -> Lab {
        let mut t = Topology::new();
        t.add_ns("r");
        let mut ports = String::new();
        let mut ifaces = String::new();
        let mut pods: Vec<(String, String)> = vec![
            ("c".into(), "198.18.1".into()),
            ("d".into(), "198.18.2".into()),
            ("x".into(), "198.18.200".into()),
        ];
        for k in 0..backends {
            pods.push((format!("b{k}"), format!("198.18.{}", 10 + k)));
        }
        let p = t.prefix.clone();
        for (k, (name, net)) in pods.iter().enumerate() {
            t.add_ns(name);
            let (ri, _) = t.veth("r", &format!("r{name}"), name, &format!("p{name}"));
            t.quiet("r", &ri);
            ports += &port_toml(name, "af-packet", &ri, k);
            let net6 = v6_net(net);
            ifaces += &format!(
                "[[interface]]\nname = \"{name}\"\naddresses = [\"{net}.1/24\", \"{net6}::1/64\"]\n"
            );
            t.exec(
                name,
                &format!(
                    "ip addr add {net}.2/24 dev {p}p{name} && ip route add default via {net}.1 && \
                     ip -6 addr add {net6}::2/64 dev {p}p{name} nodad && \
                     ip -6 route add default via {net6}::1"
                ),
            );
        }
        std::fs::write(t.dir().join("server.py"), SERVER).unwrap();
        std::fs::write(t.dir().join("client.py"), CLIENT).unwrap();
        std::fs::write(t.dir().join("udpflows.py"), UDP_FLOWS).unwrap();
        for k in 0..backends {
            let name = format!("b{k}");
            t.exec(
                &name,
                &format!(
                    "nohup {} {}/server.py {name} 8080 9090 >/dev/null 2>&1 &",
                    python(),
                    t.dir().display()
                ),
            );
        }
        let k = t.start_vrouterd("r", &format!("{ports}{ifaces}{extra}"));
        let lab = Lab { t, k, backends };
        // Servers up and neighbours resolved: every backend answers directly.
        for b in 0..backends {
            let mut ok = false;
            for _ in 0..50 {
                let out = lab.connect("c", &format!("198.18.{}.2", 10 + b), 8080, 1);
                if out
                    .first()
                    .is_some_and(|l| l.starts_with(&format!("b{b} ")))
                {
                    ok = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            assert!(ok, "backend b{b} does not answer\n{}", lab.t.log(lab.k));
        }
        lab
    }

    /// Waits until every backend answers over IPv6 (neighbour discovery
    /// both ways done).
    pub fn wait6(&self) {
        for b in 0..self.backends {
            let mut ok = false;
            for _ in 0..50 {
                let out = self.connect("c", &format!("2001:db8:{}::2", 10 + b), 8080, 1);
                if out
                    .first()
                    .is_some_and(|l| l.starts_with(&format!("b{b} ")))
                {
                    ok = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            assert!(
                ok,
                "backend b{b} does not answer over IPv6\n{}",
                self.t.log(self.k)
            );
        }
    }

    /// A service object over IPv6 backends (2001:db8:(10+k)::2).
    pub fn service6(name: &str, vip: &str, port: u16, backends: &[usize], extra: &str) -> String {
        let b: Vec<String> = backends
            .iter()
            .map(|k| format!(r#"{{"ip":"2001:db8:{}::2","port":8080}}"#, 10 + k))
            .collect();
        format!(
            r#"{{"namespace":"default","name":"{name}","ips":["{vip}"],"port":{port},"backends":[{}]{extra}}}"#,
            b.join(",")
        )
    }

    /// Binds pod `pod` (its MAC read from its namespace) to its interface
    /// with `ips` (anti-spoofing, per-pod quota).
    pub fn bind(&self, pod: &str, ips: &[&str]) {
        let p = &self.t.prefix;
        let mac = self
            .t
            .exec(pod, &format!("cat /sys/class/net/{p}p{pod}/address"))
            .trim()
            .to_string();
        let name = format!("default/{pod}");
        let mut args = vec!["endpoint", "add", &name, "--interface", pod, "--mac", &mac];
        for ip in ips {
            args.push("--ip");
            args.push(ip);
        }
        self.ctl(&args);
    }

    /// Runs vrouterctl; panics unless it succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(vrouterctl())
            .arg("--socket")
            .arg(self.t.socket(self.k))
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

    /// `count` connections from pod `from` to `host:port`: one line each.
    pub fn connect(&self, from: &str, host: &str, port: u16, count: usize) -> Vec<String> {
        self.connect_from(from, host, port, count, None)
    }

    /// Like `connect`, binding the source address `src`.
    pub fn connect_from(
        &self,
        from: &str,
        host: &str,
        port: u16,
        count: usize,
        src: Option<&str>,
    ) -> Vec<String> {
        let args = match src {
            Some(s) => format!("0 {s}"),
            None => String::new(),
        };
        let out = self.t.exec_out(
            from,
            &format!(
                "{} {}/client.py {host} {port} {count} {args}",
                python(),
                self.t.dir().display()
            ),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// One UDP flow per source port `first..first + count` from pod `from`
    /// to `host:port`: the backend each landed on, by source port.
    pub fn udp_flows(
        &self,
        from: &str,
        host: &str,
        port: u16,
        first: u16,
        count: u16,
    ) -> std::collections::BTreeMap<u16, String> {
        let out = self.t.exec_out(
            from,
            &format!(
                "{} {}/udpflows.py {host} {port} {first} {count}",
                python(),
                self.t.dir().display()
            ),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (sp, who) = l.split_once(' ')?;
                Some((sp.parse().ok()?, who.to_string()))
            })
            .collect()
    }

    /// A service object (JSON) for `vrouterctl service add`.
    pub fn service(name: &str, vip: &str, port: u16, backends: &[usize], extra: &str) -> String {
        let b: Vec<String> = backends
            .iter()
            .map(|k| format!(r#"{{"ip":"198.18.{}.2","port":8080}}"#, 10 + k))
            .collect();
        format!(
            r#"{{"namespace":"default","name":"{name}","ips":["{vip}"],"port":{port},"backends":[{}]{extra}}}"#,
            b.join(",")
        )
    }

    /// The named counter, summed over workers (from `show counters`).
    pub fn counter(&self, name: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ctl(&["--json", "show", "counters"])).unwrap();
        v.as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_u64())
            .unwrap_or(0)
    }
}

/// The IPv6 /64 (without the trailing `::`) of an IPv4 lab /24
/// (`198.18.10` → `2001:db8:10`).
pub fn v6_net(net: &str) -> String {
    format!("2001:db8:{}", net.rsplit('.').next().unwrap_or("0"))
}

/// The backend name of a greeting (`b0 198.18.1.2` → `b0`).
pub fn who(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// The client address a backend saw.
pub fn seen_as(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("")
}
