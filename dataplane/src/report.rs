//! Human-readable counter tables (what vrouterd prints on exit and on
//! SIGUSR1): ports, interfaces, named counters, node runtime, workers.

use std::fmt::Write;
use std::sync::Arc;

use crate::control::WorkerLink;
use crate::graph::{Counter, IfaceCounters, NodeCounters, NodeId};
use crate::port::PortCounters;
use crate::tables::Tables;

/// Sum of a named counter over all workers.
pub fn counter(workers: &[Arc<WorkerLink>], c: Counter) -> u64 {
    workers.iter().map(|w| w.stats.counter(c)).sum()
}

/// Sum of an interface's counters over all workers.
pub fn iface(workers: &[Arc<WorkerLink>], i: u16) -> IfaceCounters {
    let mut s = IfaceCounters::default();
    for w in workers {
        s += w.stats.iface_counters(i);
    }
    s
}

/// Sum of a node's counters over all workers.
pub fn node(workers: &[Arc<WorkerLink>], n: NodeId) -> NodeCounters {
    let mut s = NodeCounters::default();
    for w in workers {
        let c = w.stats.node_counters(n);
        s.calls += c.calls;
        s.packets += c.packets;
        s.cycles += c.cycles;
    }
    s
}

/// The full report.
pub fn render(t: &Tables, ports: &[(String, PortCounters)], workers: &[Arc<WorkerLink>]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "ports:");
    let _ = writeln!(
        o,
        "  {:<16} {:>12} {:>14} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "name",
        "rx-packets",
        "rx-bytes",
        "rx-drops",
        "tx-packets",
        "tx-bytes",
        "tx-drops",
        "fill-empty"
    );
    for (name, c) in ports {
        let _ = writeln!(
            o,
            "  {:<16} {:>12} {:>14} {:>10} {:>12} {:>14} {:>10} {:>10}",
            name,
            c.rx_packets,
            c.rx_bytes,
            c.rx_dropped,
            c.tx_packets,
            c.tx_bytes,
            c.tx_dropped,
            c.rx_fill_empty
        );
    }
    let _ = writeln!(o, "interfaces:");
    let _ = writeln!(
        o,
        "  {:<16} {:>12} {:>14} {:>12} {:>14} {:>10}",
        "name", "rx-packets", "rx-bytes", "tx-packets", "tx-bytes", "drops"
    );
    for (k, f) in t.ifaces.iter().enumerate() {
        let c = iface(workers, k as u16);
        let _ = writeln!(
            o,
            "  {:<16} {:>12} {:>14} {:>12} {:>14} {:>10}",
            f.name, c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes, c.drops
        );
    }
    let _ = writeln!(o, "counters (non-zero):");
    for &c in Counter::ALL {
        let v = counter(workers, c);
        if v > 0 {
            let kind = if c.is_drop() { "drop" } else { "event" };
            let _ = writeln!(o, "  {:>12}  {:<32} {:<5}  {}", v, c.name(), kind, c.help());
        }
    }
    let _ = writeln!(o, "runtime:");
    let _ = writeln!(
        o,
        "  {:<18} {:>10} {:>12} {:>12} {:>14}",
        "node", "calls", "packets", "vectors/call", "clocks/packet"
    );
    for &n in NodeId::ALL {
        let c = node(workers, n);
        if c.calls == 0 {
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<18} {:>10} {:>12} {:>12.1} {:>14.1}",
            n.name(),
            c.calls,
            c.packets,
            c.packets as f64 / c.calls as f64,
            if c.packets > 0 {
                c.cycles as f64 / c.packets as f64
            } else {
                0.0
            }
        );
    }
    let _ = writeln!(o, "workers:");
    let rx: u64 = ports.iter().map(|(_, c)| c.rx_packets).sum();
    let mut busy_total = 0;
    for w in workers {
        let s = &w.stats;
        let (bc, ic) = (s.busy_cycles.get(), s.idle_cycles.get());
        busy_total += bc;
        let busy = if bc + ic > 0 {
            100.0 * bc as f64 / (bc + ic) as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  worker {}: busy polls {} idle polls {} busy cycles {} idle cycles {} ({:.1}% busy) frames {} available {}",
            w.id,
            s.busy_polls.get(),
            s.idle_polls.get(),
            bc,
            ic,
            busy,
            s.frames.get(),
            s.frames_available.get()
        );
    }
    if rx > 0 {
        // Cost per packet: cycles of polls that found work, over packets received.
        let _ = writeln!(
            o,
            "  busy cycles per received packet: {:.1}",
            busy_total as f64 / rx as f64
        );
    }
    o
}
