//! The vector pipeline: node ids, per-node queues of packet indices, the
//! dispatcher that runs them, and the per-worker statistics block.
//!
//! A worker puts a burst of packets into the arena (`Vec<Pkt>`) and the index
//! of each into the `ethernet-input` queue. `Graph::run` then calls each node
//! with its whole queue (a vector), in a fixed order, and repeats the order
//! until every queue is empty. A node moves each packet index to exactly one
//! next queue; terminal nodes set the packet's [`Disposition`]. The arena is
//! drained by the worker afterwards (transmit, free, or hold), so a node never
//! moves a buffer itself and packets keep their order per output port.
//!
//! Trade-off accepted (as in VPP): a node sees the tables as of the start of
//! its vector (a table change published meanwhile is seen by the next one). Loops inside the graph (bridge → BVI → routing → BVI →
//! bridge) are bounded by a pass limit and counted as `graph-loop`.
//!
//! Nothing here allocates after construction.

mod counters;
mod stats;

pub use counters::Counter;
pub use stats::{IfaceAcc, IfaceCounters, MAX_IFACES, NodeCounters, WorkerStats};

use crate::pkt::{Disposition, Pkt};

/// Maximum packets in flight in one graph run: a burst of 256 plus copies
/// (flooding) and packets the router generates.
pub const ARENA: usize = 1024;
/// Maximum packets a port hands the graph per burst.
pub const BURST: usize = 256;
/// A packet still queued after this many passes is in a loop and dropped.
pub const MAX_PASSES: usize = 8;

macro_rules! nodes {
    ($($variant:ident = $name:literal;)*) => {
        /// A node of the graph. The declaration order is the dispatch order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum NodeId { $($variant,)* }

        impl NodeId {
            /// All nodes in dispatch order.
            pub const ALL: &'static [NodeId] = &[$(NodeId::$variant,)*];
            /// Number of nodes.
            pub const COUNT: usize = Self::ALL.len();
            /// The node's name as operators see it (`ip4-lookup`).
            pub const fn name(self) -> &'static str {
                match self { $(NodeId::$variant => $name,)* }
            }
        }
    };
}

nodes! {
    EthernetInput = "ethernet-input";
    PodGuard = "pod-guard";
    L2Input = "l2-input";
    L2Flood = "l2-flood";
    ArpInput = "arp-input";
    Ip4Input = "ip4-input";
    Ip4Conntrack = "ip4-conntrack";
    Ip4Local = "ip4-local";
    Vxlan4Input = "vxlan4-input";
    Icmp4Error = "icmp4-error";
    Ip4Lookup = "ip4-lookup";
    Ip4Rewrite = "ip4-rewrite";
    Ip6Input = "ip6-input";
    Ip6Conntrack = "ip6-conntrack";
    Ip6Local = "ip6-local";
    Vxlan6Input = "vxlan6-input";
    Icmp6Error = "icmp6-error";
    Ip6Lookup = "ip6-lookup";
    Ip6Rewrite = "ip6-rewrite";
    Glean = "glean";
    InterfaceOutput = "interface-output";
    Vxlan4Encap = "vxlan4-encap";
    Vxlan6Encap = "vxlan6-encap";
    Drop = "drop";
}

/// A queue of packet indices into the arena: one node's input vector.
pub struct Vector {
    len: usize,
    idx: [u16; ARENA],
}

impl Default for Vector {
    fn default() -> Self {
        Vector {
            len: 0,
            idx: [0; ARENA],
        }
    }
}

impl Vector {
    /// The queued indices.
    #[inline(always)]
    pub fn as_slice(&self) -> &[u16] {
        &self.idx[..self.len]
    }

    /// Number of queued packets.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is queued.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues an index. Each packet is in at most one queue, so a queue can
    /// never hold more than `ARENA` entries; an overflow would be a bug and is
    /// ignored rather than allowed to panic.
    #[inline(always)]
    pub fn push(&mut self, i: u16) {
        if let Some(slot) = self.idx.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        } else {
            debug_assert!(false, "vector overflow");
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// The next-node queues a node writes to: one vector per node, inline (a
/// push is an offset from `self`, no indirection).
pub struct Queues {
    q: [Vector; NodeId::COUNT],
}

impl Default for Queues {
    fn default() -> Self {
        Queues {
            q: std::array::from_fn(|_| Vector::default()),
        }
    }
}

impl Queues {
    /// Sends packet `i` to `node`.
    #[inline(always)]
    pub fn push(&mut self, node: NodeId, i: u16) {
        if let Some(v) = self.q.get_mut(node as usize) {
            v.push(i);
        }
    }

    /// Drops packet `i` for `reason` (counted by the `drop` node).
    #[inline(always)]
    pub fn drop(&mut self, pkts: &mut [Pkt], i: u16, reason: Counter) {
        if let Some(p) = pkts.get_mut(i as usize) {
            p.meta.drop = reason as u16;
        }
        self.push(NodeId::Drop, i);
    }

    /// Queued packets of `node`.
    pub fn get(&self, node: NodeId) -> &Vector {
        &self.q[node as usize]
    }

    fn any(&self) -> bool {
        self.q.iter().any(|v| !v.is_empty())
    }

    /// Moves `node`'s queue into `out` and empties it.
    fn take(&mut self, node: NodeId, out: &mut Vector) {
        let v = &mut self.q[node as usize];
        out.idx[..v.len].copy_from_slice(&v.idx[..v.len]);
        out.len = v.len;
        v.clear();
    }
}

/// The `drop` node: counts each packet under its reason and marks it for the
/// pool. Reads `meta.drop`; writes `meta.disposition`.
pub fn drop_node(stats: &WorkerStats, pkts: &mut [Pkt], input: &[u16]) {
    for &i in input {
        if let Some(p) = pkts.get_mut(i as usize) {
            p.meta.disposition = Disposition::Drop;
            stats.count(
                Counter::from_index(p.meta.drop).unwrap_or(Counter::GraphLoop),
                1,
            );
            stats.iface(p.meta.rx_if).drops.add(1);
        }
    }
}

/// Drives the nodes over the queues. `dispatch` runs one node over one
/// vector; the caller (the pipeline) owns node state and tables.
#[derive(Default)]
pub struct Graph {
    pub queues: Queues,
    scratch: Vector,
    /// Records the path of packets flagged `TRACED` (only while active).
    pub trace: crate::obs::Tracer,
}

impl Graph {
    /// Queues packet `i` of the arena at `node` (new input for the next run).
    #[inline(always)]
    pub fn enqueue(&mut self, node: NodeId, i: u16) {
        self.queues.push(node, i);
    }

    /// Runs every node with a non-empty queue, in dispatch order, until all
    /// queues are empty or the pass limit is hit (leftovers are dropped as
    /// `graph-loop`). `dispatch` runs one node over one vector; the caller
    /// owns node state and tables. The `drop` node is run here.
    pub fn run(
        &mut self,
        stats: &WorkerStats,
        pkts: &mut Vec<Pkt>,
        mut dispatch: impl FnMut(NodeId, &mut Vec<Pkt>, &[u16], &mut Queues),
    ) {
        for _ in 0..MAX_PASSES {
            if !self.queues.any() {
                return;
            }
            for &node in NodeId::ALL {
                if self.queues.get(node).is_empty() {
                    continue;
                }
                self.queues.take(node, &mut self.scratch);
                let t0 = vrouter_buf::cycles();
                let input = self.scratch.as_slice();
                if self.trace.active {
                    self.trace.before(pkts, input);
                }
                if node == NodeId::Drop {
                    drop_node(stats, pkts, input);
                } else {
                    dispatch(node, pkts, input, &mut self.queues);
                }
                if self.trace.active {
                    self.trace.after(node, pkts, input, &self.queues);
                }
                stats
                    .node(node)
                    .record(input.len() as u64, vrouter_buf::cycles().wrapping_sub(t0));
            }
        }
        // Pass limit reached: whatever is still queued loops inside the router.
        for &node in NodeId::ALL {
            self.queues.take(node, &mut self.scratch);
            for &i in self.scratch.as_slice() {
                if let Some(p) = pkts.get_mut(i as usize) {
                    p.meta.disposition = Disposition::Drop;
                    stats.count(Counter::GraphLoop, 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_buf::FramePool;

    #[test]
    fn architecture_doc_shows_every_node() {
        let doc = include_str!("../../../docs/ARCHITECTURE.md");
        for n in NodeId::ALL {
            assert!(
                doc.contains(n.name()),
                "docs/ARCHITECTURE.md does not show node {}",
                n.name()
            );
        }
    }

    #[test]
    fn node_names_unique() {
        let names: std::collections::HashSet<_> = NodeId::ALL.iter().map(|n| n.name()).collect();
        assert_eq!(names.len(), NodeId::COUNT);
    }

    #[test]
    fn run_dispatches_in_order_and_bounds_loops() {
        let mut pool = FramePool::new(4).unwrap();
        let mut pkts: Vec<Pkt> = (0..3).map(|_| Pkt::new(pool.alloc().unwrap(), 0)).collect();
        let stats = WorkerStats::new();
        let mut g = Graph::default();
        for i in 0..3 {
            g.enqueue(NodeId::EthernetInput, i);
        }
        let mut seen = Vec::new();
        g.run(&stats, &mut pkts, |node, pkts, input, q| {
            seen.push((node, input.len()));
            for &i in input {
                match (node, i) {
                    // packet 0 is dropped, 1 is sent, 2 loops between two nodes.
                    (NodeId::EthernetInput, 0) => q.drop(pkts, i, Counter::EthRunt),
                    (NodeId::EthernetInput, 1) => {
                        pkts[1].meta.disposition = Disposition::Tx;
                    }
                    (NodeId::EthernetInput, _) | (NodeId::L2Input, _) => {
                        q.push(NodeId::Ip4Lookup, i)
                    }
                    (NodeId::Ip4Lookup, _) => q.push(NodeId::L2Input, i),
                    _ => unreachable!(),
                }
            }
        });
        assert_eq!(seen[0], (NodeId::EthernetInput, 3));
        assert_eq!(seen[1], (NodeId::Ip4Lookup, 1));
        assert_eq!(seen[2], (NodeId::L2Input, 1));
        assert_eq!(stats.counter(Counter::EthRunt), 1);
        assert_eq!(
            stats.counter(Counter::GraphLoop),
            1,
            "looping packet dropped once"
        );
        assert_eq!(pkts[0].meta.disposition, Disposition::Drop);
        assert_eq!(pkts[1].meta.disposition, Disposition::Tx);
        assert_eq!(pkts[2].meta.disposition, Disposition::Drop);
        assert_eq!(stats.node_counters(NodeId::EthernetInput).packets, 3);
        assert_eq!(stats.node_counters(NodeId::Drop).packets, 1);
        for p in pkts {
            pool.free(p.buf);
        }
    }
}
