//! The Prometheus text endpoint (`[metrics]`, default `127.0.0.1:9469`):
//! a minimal HTTP/1.0 server in the control thread, on mio, answering
//! `GET /metrics` with the text exposition format (version 0.0.4).
//!
//! Bounded like the control socket: at most `MAX_CONNS` connections, a
//! request head of at most `MAX_REQUEST` bytes, one request per connection
//! (the connection is closed after the answer). The page is rendered only
//! when a complete request arrives, from counters the workers write without
//! locks, so scraping never touches the data path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::api::{ApiStats, PortInfo, write_pending};
use crate::control::Router;
use crate::graph::{Counter, NodeId};

const LISTENER: Token = Token(0);
const MAX_CONNS: usize = 32;
const MAX_REQUEST: usize = 8192;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics endpoint {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    answered: bool,
}

/// See the module doc.
pub struct MetricsServer {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    /// Scrapes answered.
    pub scrapes: u64,
}

impl MetricsServer {
    /// Listens on `addr`.
    pub fn bind(addr: &str) -> Result<MetricsServer, MetricsError> {
        let io = |source| MetricsError::Io {
            addr: addr.to_string(),
            source,
        };
        let sa: SocketAddr = addr.parse().map_err(|_| {
            io(std::io::Error::new(
                ErrorKind::InvalidInput,
                "not an address:port",
            ))
        })?;
        let mut listener = TcpListener::bind(sa).map_err(io)?;
        let poll = Poll::new().map_err(io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io)?;
        Ok(MetricsServer {
            poll,
            events: Events::with_capacity(64),
            listener,
            conns: HashMap::new(),
            next: 1,
            scrapes: 0,
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves pending connections without waiting; `page` renders the
    /// metrics when a request needs them.
    pub fn serve(&mut self, mut page: impl FnMut() -> String) {
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_err()
        {
            return;
        }
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for t in tokens {
            if t == LISTENER {
                self.accept();
            } else {
                self.read(t, &mut page);
                self.flush(t);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(_) => return,
            };
            if self.conns.len() >= MAX_CONNS {
                continue;
            }
            let t = Token(self.next);
            self.next += 1;
            if self
                .poll
                .registry()
                .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
                .is_ok()
            {
                self.conns.insert(
                    t,
                    Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        answered: false,
                    },
                );
            }
        }
    }

    fn close(&mut self, t: Token) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn read(&mut self, t: Token, page: &mut impl FnMut() -> String) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let mut buf = [0u8; 2048];
        let mut eof = false;
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if !c.answered {
                        c.input.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if !c.answered {
            let end = c
                .input
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .or_else(|| c.input.windows(2).position(|w| w == b"\n\n"));
            if end.is_some() || c.input.len() > MAX_REQUEST || eof {
                let head = String::from_utf8_lossy(&c.input).into_owned();
                let (status, body) = answer(&head, end.is_some(), page);
                if status.starts_with("200") {
                    self.scrapes += 1;
                }
                c.output = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    if status.starts_with("200") {
                        "text/plain; version=0.0.4; charset=utf-8"
                    } else {
                        "text/plain; charset=utf-8"
                    },
                    body.len()
                )
                .into_bytes();
                c.answered = true;
                c.input = Vec::new();
            }
        }
        if eof && c.output.is_empty() {
            self.close(t);
        }
    }

    fn flush(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if write_pending(&mut c.stream, &mut c.output).is_err() {
            self.close(t);
            return;
        }
        if c.answered && c.output.is_empty() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            self.close(t);
        }
    }
}

fn answer(head: &str, complete: bool, page: &mut impl FnMut() -> String) -> (&'static str, String) {
    if !complete {
        return (
            "400 Bad Request",
            "incomplete or oversized request\n".into(),
        );
    }
    let line = head.lines().next().unwrap_or("");
    let mut it = line.split_whitespace();
    match (it.next(), it.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", page()),
        (Some("GET"), Some(_)) => ("404 Not Found", "try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "GET /metrics only\n".into()),
    }
}

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (k, (l, val)) in labels.iter().enumerate() {
                if k > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{l}=\"{}\"", esc(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
}

/// Renders every metric. `links` gives known port link states.
pub fn render<'a>(
    router: &Router,
    ports: &[PortInfo],
    links: impl Iterator<Item = (&'a str, bool)>,
    api: Option<&ApiStats>,
) -> String {
    let mut p = Page(String::with_capacity(64 << 10));
    let t = router.tables();
    let workers = router.shared().worker_links();

    // Ports, per queue (one stats block per queue object).
    type PortField = fn(&crate::port::PortCounters) -> u64;
    let fields: [(&str, &str, PortField); 7] = [
        ("vrouter_port_rx_packets_total", "Packets received", |c| {
            c.rx_packets
        }),
        ("vrouter_port_rx_bytes_total", "Bytes received", |c| {
            c.rx_bytes
        }),
        (
            "vrouter_port_rx_dropped_total",
            "Packets dropped at receive (no buffer, oversize)",
            |c| c.rx_dropped,
        ),
        (
            "vrouter_port_rx_fill_empty_total",
            "Receive descriptors the kernel found no fill-ring frame for (AF_XDP)",
            |c| c.rx_fill_empty,
        ),
        (
            "vrouter_port_tx_packets_total",
            "Packets transmitted",
            |c| c.tx_packets,
        ),
        ("vrouter_port_tx_bytes_total", "Bytes transmitted", |c| {
            c.tx_bytes
        }),
        (
            "vrouter_port_tx_dropped_total",
            "Packets the port could not transmit",
            |c| c.tx_dropped,
        ),
    ];
    let snaps: Vec<(String, Vec<crate::port::PortCounters>)> = ports
        .iter()
        .map(|pi| {
            (
                pi.name.clone(),
                pi.stats.iter().map(|s| s.snapshot()).collect(),
            )
        })
        .collect();
    for (name, help, f) in fields {
        p.family(name, "counter", &format!("{help}, per port queue."));
        for (port, qs) in &snaps {
            for (q, c) in qs.iter().enumerate() {
                p.sample(name, &[("port", port), ("queue", &q.to_string())], f(c));
            }
        }
    }
    p.family(
        "vrouter_port_up",
        "gauge",
        "Link state of kernel-backed ports (1 up, 0 down).",
    );
    for (port, up) in links {
        p.sample("vrouter_port_up", &[("port", port)], u64::from(up));
    }

    // Interfaces, summed over workers.
    type IfField = fn(&crate::graph::IfaceCounters) -> u64;
    let ifields: [(&str, &str, IfField); 5] = [
        (
            "vrouter_interface_rx_packets_total",
            "Packets received",
            |c| c.rx_packets,
        ),
        ("vrouter_interface_rx_bytes_total", "Bytes received", |c| {
            c.rx_bytes
        }),
        (
            "vrouter_interface_tx_packets_total",
            "Packets transmitted",
            |c| c.tx_packets,
        ),
        (
            "vrouter_interface_tx_bytes_total",
            "Bytes transmitted",
            |c| c.tx_bytes,
        ),
        (
            "vrouter_interface_drops_total",
            "Packets received here and dropped",
            |c| c.drops,
        ),
    ];
    let ic: Vec<(String, crate::graph::IfaceCounters)> = t
        .ifaces
        .iter()
        .enumerate()
        .map(|(k, f)| (f.name.clone(), crate::report::iface(&workers, k as u16)))
        .collect();
    for (name, help, f) in ifields {
        p.family(name, "counter", &format!("{help}, per interface."));
        for (iface, c) in &ic {
            p.sample(name, &[("interface", iface)], f(c));
        }
    }

    // Named counters per worker: drops by reason, and events.
    p.family(
        "vrouter_drops_total",
        "counter",
        "Packets dropped, by reason (graph/counters.rs names), per worker.",
    );
    for w in &workers {
        let id = w.id.to_string();
        for &c in Counter::ALL.iter().filter(|c| c.is_drop()) {
            p.sample(
                "vrouter_drops_total",
                &[("worker", &id), ("reason", c.name())],
                w.stats.counter(c),
            );
        }
    }
    p.family(
        "vrouter_events_total",
        "counter",
        "Pipeline events (learned, replied, rate-limited, ...), by name, per worker.",
    );
    for w in &workers {
        let id = w.id.to_string();
        for &c in Counter::ALL.iter().filter(|c| !c.is_drop()) {
            p.sample(
                "vrouter_events_total",
                &[("worker", &id), ("name", c.name())],
                w.stats.counter(c),
            );
        }
    }

    // Workers (queues): polls and cycles.
    type WField = fn(&crate::graph::WorkerStats) -> u64;
    let wfields: [(&str, &str, WField); 4] = [
        (
            "vrouter_worker_busy_polls_total",
            "Poll loops that received packets",
            |s| s.busy_polls.get(),
        ),
        (
            "vrouter_worker_idle_polls_total",
            "Poll loops that received nothing",
            |s| s.idle_polls.get(),
        ),
        (
            "vrouter_worker_busy_cycles_total",
            "CPU cycles (TSC) in busy poll loops",
            |s| s.busy_cycles.get(),
        ),
        (
            "vrouter_worker_idle_cycles_total",
            "CPU cycles (TSC) in idle poll loops",
            |s| s.idle_cycles.get(),
        ),
    ];
    for (name, help, f) in wfields {
        p.family(name, "counter", &format!("{help}, per worker."));
        for w in &workers {
            p.sample(name, &[("worker", &w.id.to_string())], f(&w.stats));
        }
    }
    type Gauge = (&'static str, &'static str, WField);
    let gauges: [Gauge; 2] = [
        (
            "vrouter_worker_frames",
            "Frames in the worker's pool",
            |s| s.frames.get(),
        ),
        (
            "vrouter_worker_frames_available",
            "Free frames in the worker's pool (back to its start value when idle, else frames leaked)",
            |s| s.frames_available.get(),
        ),
    ];
    for (name, help, f) in gauges {
        p.family(name, "gauge", &format!("{help}, per worker."));
        for w in &workers {
            p.sample(name, &[("worker", &w.id.to_string())], f(&w.stats));
        }
    }
    p.family(
        "vrouter_worker_trace_lost_total",
        "counter",
        "Packet traces lost (queue full or too many traced packets in one vector), per worker.",
    );
    for w in &workers {
        p.sample(
            "vrouter_worker_trace_lost_total",
            &[("worker", &w.id.to_string())],
            w.obs.trace_lost.load(Ordering::Relaxed),
        );
    }
    p.family(
        "vrouter_worker_capture_lost_total",
        "counter",
        "Captured packets lost (capture queue full), per worker.",
    );
    for w in &workers {
        p.sample(
            "vrouter_worker_capture_lost_total",
            &[("worker", &w.id.to_string())],
            w.obs.capture_lost.load(Ordering::Relaxed),
        );
    }
    p.family(
        "vrouter_node_packets_total",
        "counter",
        "Packets processed per graph node (all workers).",
    );
    for &n in NodeId::ALL {
        p.sample(
            "vrouter_node_packets_total",
            &[("node", n.name())],
            crate::report::node(&workers, n).packets,
        );
    }

    // Tables.
    p.family(
        "vrouter_routes",
        "gauge",
        "Routes (every source) per VRF and family.",
    );
    for (k, v) in t.vrfs.iter().enumerate() {
        let (v4, v6) = router.route_counts(k as u16);
        p.sample(
            "vrouter_routes",
            &[("vrf", &v.name), ("family", "ipv4")],
            v4 as u64,
        );
        p.sample(
            "vrouter_routes",
            &[("vrf", &v.name), ("family", "ipv6")],
            v6 as u64,
        );
    }
    p.family(
        "vrouter_mac_entries",
        "gauge",
        "MAC table entries per bridge domain.",
    );
    for b in &t.bds {
        p.sample(
            "vrouter_mac_entries",
            &[("bridge", &b.name)],
            b.macs.len() as u64,
        );
    }
    p.family(
        "vrouter_neighbors",
        "gauge",
        "Neighbours (ARP/ND entries, learned and static).",
    );
    p.sample("vrouter_neighbors", &[], router.neighbor_count() as u64);
    p.family(
        "vrouter_nexthops",
        "gauge",
        "Next hops in the published tables.",
    );
    p.sample("vrouter_nexthops", &[], t.nexthops.len() as u64);
    p.family(
        "vrouter_tables_generation",
        "gauge",
        "Generation of the published tables.",
    );
    p.sample("vrouter_tables_generation", &[], t.generation);
    // Conntrack pressure (services, NetworkPolicy): live flows are the
    // created minus removed counts of all workers.
    let ct_sum = |c: Counter| -> u64 { workers.iter().map(|w| w.stats.counter(c)).sum() };
    let ct_flows = ct_sum(Counter::CtFlowCreated).saturating_sub(ct_sum(Counter::CtFlowRemoved));
    let ct_cap = (router.svc.settings.max_flows + router.svc.settings.max_flows_ip6) as u64;
    p.family(
        "vrouter_conntrack_flows",
        "gauge",
        "Tracked flows (all workers).",
    );
    p.sample("vrouter_conntrack_flows", &[], ct_flows);
    p.family(
        "vrouter_conntrack_capacity",
        "gauge",
        "Conntrack capacity ([conntrack] max-flows + max-flows-ip6, all workers).",
    );
    p.sample("vrouter_conntrack_capacity", &[], ct_cap);
    p.family(
        "vrouter_conntrack_fill_ratio",
        "gauge",
        "Tracked flows / capacity (pressure; at 1 new flows are refused).",
    );
    let _ = writeln!(
        p.0,
        "vrouter_conntrack_fill_ratio {}",
        if ct_cap == 0 {
            0.0
        } else {
            ct_flows as f64 / ct_cap as f64
        }
    );
    p.family("vrouter_workers", "gauge", "Worker threads.");
    p.sample("vrouter_workers", &[], workers.len() as u64);
    p.family(
        "vrouter_mac_aged_total",
        "counter",
        "MAC entries removed by aging.",
    );
    p.sample("vrouter_mac_aged_total", &[], router.stats.macs_aged);
    p.family(
        "vrouter_neighbors_learned_total",
        "counter",
        "Neighbours learned or changed from ARP/ND.",
    );
    p.sample(
        "vrouter_neighbors_learned_total",
        &[],
        router.stats.neighbors_learned,
    );
    p.family(
        "vrouter_notices_dropped_total",
        "counter",
        "Control-plane notices (events) lost before publication.",
    );
    p.sample(
        "vrouter_notices_dropped_total",
        &[],
        router.stats.notices_dropped,
    );
    p.family(
        "vrouter_neighbors_refused_total",
        "counter",
        "Neighbours not learned: the interface is at max-neighbors.",
    );
    p.sample(
        "vrouter_neighbors_refused_total",
        &[],
        router.stats.neighbors_refused,
    );
    p.family(
        "vrouter_neighbors_aged_total",
        "counter",
        "Learned neighbours removed after neighbor-age seconds unheard.",
    );
    p.sample(
        "vrouter_neighbors_aged_total",
        &[],
        router.stats.neighbors_aged,
    );
    if let Some(a) = api {
        p.family(
            "vrouter_control_connections_refused_total",
            "counter",
            "Control connections refused, by reason (credentials: SO_PEERCRED; limit: max-connections).",
        );
        p.sample(
            "vrouter_control_connections_refused_total",
            &[("reason", "credentials")],
            a.refused_credentials,
        );
        p.sample(
            "vrouter_control_connections_refused_total",
            &[("reason", "limit")],
            a.refused_limit,
        );
        p.family(
            "vrouter_control_connections_closed_total",
            "counter",
            "Control connections closed by vrouterd (oversize: request too long; slow: output not read).",
        );
        p.sample(
            "vrouter_control_connections_closed_total",
            &[("reason", "oversize")],
            a.closed_oversize,
        );
        p.sample(
            "vrouter_control_connections_closed_total",
            &[("reason", "slow")],
            a.closed_slow,
        );
        p.family(
            "vrouter_control_requests_total",
            "counter",
            "Control socket requests.",
        );
        p.sample("vrouter_control_requests_total", &[], a.requests);
        p.family(
            "vrouter_control_errors_total",
            "counter",
            "Control socket requests refused.",
        );
        p.sample("vrouter_control_errors_total", &[], a.errors);
        p.family(
            "vrouter_control_events_published_total",
            "counter",
            "Events sent to subscribers.",
        );
        p.sample(
            "vrouter_control_events_published_total",
            &[],
            a.events_published,
        );
        p.family(
            "vrouter_control_events_dropped_total",
            "counter",
            "Events not sent to a subscriber that was behind.",
        );
        p.sample(
            "vrouter_control_events_dropped_total",
            &[],
            a.events_dropped,
        );
    }
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_get_metrics() {
        let mut f = || "x 1\n".to_string();
        assert_eq!(
            answer("GET /metrics HTTP/1.0\r\n\r\n", true, &mut f).0,
            "200 OK"
        );
        assert_eq!(
            answer("GET / HTTP/1.0\r\n\r\n", true, &mut f).0,
            "404 Not Found"
        );
        assert!(
            answer("POST /metrics HTTP/1.0\r\n\r\n", true, &mut f)
                .0
                .starts_with("405")
        );
        assert!(answer("GET /metr", false, &mut f).0.starts_with("400"));
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
