//! One worker's packet pipeline: the graph, the arena of packets in flight,
//! node state, and the dispatch from node id to node function.
//!
//! The pipeline is deterministic: time, buffers and tables are passed in
//! (`Ctx`), so tests run it without ports, clocks or threads.

use std::net::IpAddr;

use crossbeam_queue::ArrayQueue;
use vrouter_buf::{FramePool, PacketBuf};
use vrouter_wire::MacAddr;

use crate::graph::{ARENA, Counter, Graph, NodeId, Queues, WorkerStats};
use crate::ip::glean::GleanState;
use crate::ip::icmp::TokenBucket;
use crate::pkt::{Disposition, Pkt};
use crate::tables::Tables;
use crate::{ethernet, graph, ip, l2, output, vxlan};

/// Something a worker tells the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A neighbour's MAC was seen (ARP or ND) on a routed interface or BVI.
    Neighbor {
        iface: u16,
        ip: IpAddr,
        mac: MacAddr,
    },
    /// A MAC was learned in a bridge domain.
    MacLearned { bd: u16, mac: MacAddr, iface: u16 },
    /// A learned MAC moved between interfaces.
    MacMoved {
        bd: u16,
        mac: MacAddr,
        from: u16,
        to: u16,
    },
    /// A next hop did not resolve in time (`glean-timeout`).
    NeighborFailed { iface: u16, ip: IpAddr },
}

/// The bounded queue workers push events into.
pub type Events = ArrayQueue<Event>;

/// What a node sees besides its packets.
pub struct Ctx<'a> {
    pub t: &'a Tables,
    pub pool: &'a mut FramePool,
    pub stats: &'a WorkerStats,
    /// Monotonic time in nanoseconds.
    pub now: u64,
    /// `now` in whole seconds (MAC ages).
    pub now_s: u32,
    pub events: &'a Events,
}

impl Ctx<'_> {
    /// Sends an event to the control thread; counts it if the queue is full.
    #[inline]
    pub fn event(&self, e: Event) {
        if self.events.push(e).is_err() {
            self.stats.count(Counter::EventQueueFull, 1);
        }
    }
}

/// Per-worker node state (scratch vectors, rate limiters, held packets).
pub struct NodeState {
    pub keys4: Box<[u32; ARENA]>,
    pub keys6: Box<[u128; ARENA]>,
    pub nhs: Box<[u32; ARENA]>,
    /// `ip4-lookup`: whether each packet's TTL allows forwarding.
    pub ttl_ok: Box<[bool; ARENA]>,
    /// `l2-input`: MACs and buckets of each frame of the vector.
    pub l2: Box<[l2::datapath::L2Key; ARENA]>,
    /// Adjacencies of recently used next hops (`ip4-rewrite`, `ip6-rewrite`).
    pub adj4: ip::ip4::AdjCache,
    pub adj6: ip::ip4::AdjCache,
    pub icmp4: TokenBucket,
    pub icmp6: TokenBucket,
    pub glean: GleanState,
    /// `ip4-conntrack`: the worker's flow table and scratch.
    pub ct: crate::service::node::CtState,
    /// `ip6-conntrack`: the same for IPv6.
    pub ct6: crate::service::node::CtState<u128>,
}

/// See the module doc.
pub struct Pipeline {
    graph: Graph,
    /// Packets in flight. Ports append here; `drain` empties it.
    pub pkts: Vec<Pkt>,
    st: NodeState,
    last_generation: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// A pipeline with empty queues.
    pub fn new() -> Self {
        Pipeline {
            graph: Graph::default(),
            pkts: Vec::with_capacity(ARENA),
            st: NodeState {
                keys4: Box::new([0; ARENA]),
                keys6: Box::new([0; ARENA]),
                nhs: Box::new([0; ARENA]),
                ttl_ok: Box::new([false; ARENA]),
                l2: Box::new([l2::datapath::L2Key::default(); ARENA]),
                adj4: ip::ip4::AdjCache::default(),
                adj6: ip::ip4::AdjCache::default(),
                icmp4: TokenBucket::default(),
                icmp6: TokenBucket::default(),
                glean: GleanState::default(),
                ct: crate::service::node::CtState::default(),
                ct6: crate::service::node::CtState::default(),
            },
            last_generation: u64::MAX,
        }
    }

    /// Room left in the arena for received packets (at most a burst).
    pub fn rx_room(&self) -> usize {
        (ARENA / 2)
            .saturating_sub(self.pkts.len())
            .min(graph::BURST)
    }

    /// Replaces the conntrack table (its size comes from `[conntrack]`).
    pub fn set_conntrack(&mut self, ct: crate::conntrack::ConnTrack) {
        self.st.ct = crate::service::node::CtState::new(ct);
    }

    /// Replaces the IPv6 conntrack table.
    pub fn set_conntrack6(&mut self, ct: crate::conntrack::ConnTrack6) {
        self.st.ct6 = crate::service::node::CtState::new(ct);
    }

    /// The worker's conntrack table.
    pub fn conntrack(&self) -> &crate::conntrack::ConnTrack {
        &self.st.ct.ct
    }

    /// The worker's IPv6 conntrack table.
    pub fn conntrack6(&self) -> &crate::conntrack::ConnTrack6 {
        &self.st.ct6.ct
    }

    /// Packets held for neighbour resolution.
    pub fn held(&self) -> usize {
        self.st.glean.len()
    }

    /// Runs the graph over every packet added to `pkts` since the last
    /// `drain` (they enter at `ethernet-input`), after re-injecting held
    /// packets whose neighbours may have resolved.
    pub fn run(&mut self, cx: &mut Ctx) {
        let new = self.pkts.len();
        for i in 0..new {
            self.graph.enqueue(NodeId::EthernetInput, i as u16);
        }
        if cx.t.generation != self.last_generation || self.st.glean.due(cx.now) {
            self.last_generation = cx.t.generation;
            self.st.glean.reinject(cx, &mut self.pkts, &mut self.graph);
        }
        let Pipeline {
            graph, pkts, st, ..
        } = self;
        graph.run(cx.stats, pkts, |node, pkts, input, q| {
            dispatch(node, cx, st, pkts, input, q)
        });
    }

    /// Empties the arena: transmitted packets go to the TX batch of their
    /// port, `tx[slot[port]]` (a packet for a port without a slot is freed
    /// and counted as `tx-ring-full`), dropped ones back to the pool, held
    /// ones to the glean queue. Order per port is kept.
    pub fn drain(
        &mut self,
        pool: &mut FramePool,
        stats: &WorkerStats,
        slot: &[Option<usize>],
        tx: &mut [Vec<PacketBuf>],
    ) {
        // The batch of the previous packet's port: a vector usually goes
        // out of one or two ports.
        let mut last: (u16, usize) = (u16::MAX, usize::MAX);
        for p in self.pkts.drain(..) {
            if p.meta.disposition == Disposition::Tx {
                if p.meta.tx_port != last.0 {
                    last = (
                        p.meta.tx_port,
                        slot.get(usize::from(p.meta.tx_port))
                            .copied()
                            .flatten()
                            .unwrap_or(usize::MAX),
                    );
                }
                match tx.get_mut(last.1) {
                    Some(v) => v.push(p.buf),
                    None => {
                        stats.count(Counter::TxRingFull, 1);
                        pool.free(p.buf);
                    }
                }
                continue;
            }
            settle(&mut self.st.glean, pool, stats, p);
        }
    }

    /// Marks up to `n` packets, from arena index `from` on, for tracing;
    /// returns how many were marked.
    pub fn mark_traced(&mut self, from: usize, n: u32) -> u32 {
        let mut k = 0;
        for p in self.pkts.iter_mut().skip(from).take(n as usize) {
            p.meta.flags |= crate::pkt::flags::TRACED;
            k += 1;
        }
        if k > 0 {
            self.graph.trace.active = true;
        }
        k
    }

    /// True if the last run traced packets (call `finish_trace` before `drain`).
    #[inline]
    pub fn tracing(&self) -> bool {
        self.graph.trace.active
    }

    /// Completes the traces of the last run and hands each to `sink`.
    pub fn finish_trace(&mut self, now: u64, sink: impl FnMut(&crate::obs::PktTrace)) {
        self.graph.trace.finish(&self.pkts, now, sink);
    }

    /// Frees every held packet (shutdown), counting them as timed out.
    pub fn release_held(&mut self, pool: &mut FramePool, stats: &WorkerStats) {
        for p in self.st.glean.take_all() {
            stats.count(Counter::GleanTimeout, 1);
            pool.free(p.buf);
        }
    }
}

/// The end of a packet that is not transmitted: dropped, held or lost.
#[inline(never)]
fn settle(glean: &mut GleanState, pool: &mut FramePool, stats: &WorkerStats, p: Pkt) {
    match p.meta.disposition {
        Disposition::Held => {
            if let Some(p) = glean.hold(p) {
                stats.count(Counter::GleanQueueFull, 1);
                pool.free(p.buf);
            }
        }
        Disposition::Drop | Disposition::Tx => pool.free(p.buf),
        Disposition::InFlight => {
            stats.count(Counter::GraphLost, 1);
            pool.free(p.buf);
        }
    }
}

fn dispatch(
    node: NodeId,
    cx: &mut Ctx,
    st: &mut NodeState,
    pkts: &mut Vec<Pkt>,
    input: &[u16],
    q: &mut Queues,
) {
    match node {
        NodeId::EthernetInput => ethernet::input(cx, pkts, input, q),
        NodeId::PodGuard => crate::service::guard::node(cx, pkts, input, q),
        NodeId::L2Input => l2::datapath::input(cx, st, pkts, input, q),
        NodeId::L2Flood => l2::datapath::flood(cx, pkts, input, q),
        NodeId::ArpInput => ip::arp::input(cx, pkts, input, q),
        NodeId::Ip4Input => ip::ip4::input(cx, pkts, input, q),
        NodeId::Ip4Conntrack => crate::service::node::node(cx, &mut st.ct, pkts, input, q),
        NodeId::Ip4Local => ip::ip4::local(cx, pkts, input, q),
        NodeId::Vxlan4Input => vxlan::decap::node(cx, pkts, input, q),
        NodeId::Icmp4Error => ip::icmp::error4(cx, st, pkts, input, q),
        NodeId::Ip4Lookup => ip::ip4::lookup(cx, st, pkts, input, q),
        NodeId::Ip4Rewrite => ip::ip4::rewrite(cx, st, pkts, input, q),
        NodeId::Ip6Input => ip::ip6::input(cx, pkts, input, q),
        NodeId::Ip6Conntrack => crate::service::node::node6(cx, &mut st.ct6, pkts, input, q),
        NodeId::Ip6Local => ip::ip6::local(cx, pkts, input, q),
        NodeId::Vxlan6Input => vxlan::decap::node6(cx, pkts, input, q),
        NodeId::Icmp6Error => ip::icmp::error6(cx, st, pkts, input, q),
        NodeId::Ip6Lookup => ip::ip6::lookup(cx, st, pkts, input, q),
        NodeId::Ip6Rewrite => ip::ip6::rewrite(cx, st, pkts, input, q),
        NodeId::Glean => ip::glean::node(cx, st, pkts, input, q),
        NodeId::InterfaceOutput => output::node(cx, pkts, input, q),
        NodeId::Vxlan4Encap => vxlan::encap::node4(cx, st, pkts, input, q),
        NodeId::Vxlan6Encap => vxlan::encap::node6(cx, pkts, input, q),
        // The graph runs the drop node itself.
        NodeId::Drop => {}
    }
}
