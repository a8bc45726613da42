//! `glean`: packets whose next hop has no MAC yet wait here while the
//! router asks for it (ARP request, or ND neighbour solicitation to the
//! solicited-node group).
//!
//! Reads `tx_if` (interface to resolve on), `addr` (the IPv4 or IPv6 address
//! to resolve), `ethertype`. A packet is held (`Disposition::Held`) until the
//! control thread installs the neighbour, then re-enters `ip4-lookup` /
//! `ip6-lookup`; held packets are re-examined whenever a new table
//! generation is published and every 10 ms. A packet not resolved within
//! `glean-timeout-ms` is dropped (`glean-timeout`) and reported to the
//! control thread (`Event::NeighborFailed`, published as `neighbor-failed`). At most `glean-hold`
//! packets are held per worker (`glean-queue-full`). Requests for one target
//! are sent at most once per `glean-retry-ms` (a 64-entry direct-mapped
//! memory of recent requests; a collision only costs an extra request).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vrouter_wire::EtherType;

use crate::ethernet::{drop_pkt, l3_output};
use crate::graph::{ARENA, Counter, Graph, NodeId, Queues};
use crate::pipeline::{Ctx, Event, NodeState};
use crate::pkt::{Disposition, Meta, NO_IFACE, Pkt, flags};

/// Upper bound of held packets per worker, whatever the configuration says.
pub const MAX_HELD: usize = 4096;
const RECENT: usize = 64;
const RECHECK_NS: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    target: u128,
    iface: u16,
    last: u64,
    used: bool,
}

/// Held packets and the memory of recent requests.
pub struct GleanState {
    held: Vec<Pkt>,
    /// Packets marked held in the current run (not yet in `held`).
    pending: usize,
    recent: [Recent; RECENT],
    next_due: u64,
}

impl Default for GleanState {
    fn default() -> Self {
        GleanState {
            held: Vec::with_capacity(MAX_HELD),
            pending: 0,
            recent: [Recent::default(); RECENT],
            next_due: 0,
        }
    }
}

impl GleanState {
    /// Packets held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Keeps `p`; gives it back if the queue is full.
    pub fn hold(&mut self, p: Pkt) -> Option<Pkt> {
        self.pending = 0;
        if self.held.len() < MAX_HELD {
            self.held.push(p);
            None
        } else {
            Some(p)
        }
    }

    /// Everything held (shutdown).
    pub fn take_all(&mut self) -> std::vec::Drain<'_, Pkt> {
        self.held.drain(..)
    }

    /// True if held packets should be looked at again.
    pub fn due(&self, now: u64) -> bool {
        !self.held.is_empty() && now >= self.next_due
    }

    /// Moves held packets back into the arena, queued at their lookup node.
    pub fn reinject(&mut self, cx: &Ctx, pkts: &mut Vec<Pkt>, graph: &mut Graph) {
        self.next_due = cx.now + RECHECK_NS;
        let room = (ARENA / 2).saturating_sub(pkts.len()).min(self.held.len());
        for mut p in self.held.drain(..room) {
            let node = if p.meta.ethertype == EtherType::IPV6.0 {
                NodeId::Ip6Lookup
            } else {
                NodeId::Ip4Lookup
            };
            p.meta.disposition = Disposition::InFlight;
            let j = pkts.len() as u16;
            pkts.push(p);
            graph.enqueue(node, j);
        }
    }

    fn should_solicit(&mut self, target: u128, iface: u16, now: u64, retry: u64) -> bool {
        let h = (target as u64 ^ (target >> 64) as u64 ^ u64::from(iface))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = &mut self.recent[(h >> 58) as usize % RECENT];
        if slot.used
            && slot.target == target
            && slot.iface == iface
            && now.saturating_sub(slot.last) < retry
        {
            return false;
        }
        *slot = Recent {
            target,
            iface,
            last: now,
            used: true,
        };
        true
    }
}

/// The `glean` node.
pub fn node(cx: &mut Ctx, st: &mut NodeState, pkts: &mut Vec<Pkt>, input: &[u16], q: &mut Queues) {
    let t = cx.t;
    let now_ms = (cx.now / 1_000_000) as u32;
    let limit = usize::from(t.params.glean_hold).min(MAX_HELD);
    for &i in input {
        let p = &mut pkts[i as usize];
        if p.meta.flags & flags::GLEANED == 0 {
            if st.glean.len() + st.glean.pending >= limit {
                drop_pkt(p, q, i, Counter::GleanQueueFull);
                continue;
            }
            p.meta.flags |= flags::GLEANED;
            p.meta.aux = now_ms.wrapping_add((t.params.glean_timeout_ns / 1_000_000) as u32);
            cx.stats.count(Counter::GleanQueued, 1);
        } else if now_ms.wrapping_sub(p.meta.aux) as i32 >= 0 {
            let ip = if p.meta.ethertype == EtherType::IPV6.0 {
                IpAddr::V6(Ipv6Addr::from(p.meta.addr))
            } else {
                let a = p.meta.addr;
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            };
            cx.event(Event::NeighborFailed {
                iface: p.meta.tx_if,
                ip,
            });
            drop_pkt(p, q, i, Counter::GleanTimeout);
            continue;
        }
        p.meta.disposition = Disposition::Held;
        st.glean.pending += 1;
        let v6 = p.meta.ethertype == EtherType::IPV6.0;
        let target = if v6 {
            u128::from_be_bytes(p.meta.addr)
        } else {
            u128::from(u32::from_be_bytes([
                p.meta.addr[0],
                p.meta.addr[1],
                p.meta.addr[2],
                p.meta.addr[3],
            ]))
        };
        let iface = p.meta.tx_if;
        if !st
            .glean
            .should_solicit(target, iface, cx.now, t.params.glean_retry_ns)
        {
            continue;
        }
        let Some(f) = t.iface(iface) else { continue };
        if pkts.len() >= ARENA {
            cx.stats.count(Counter::NoBuffer, 1);
            continue;
        }
        let Some(buf) = cx.pool.alloc() else {
            cx.stats.count(Counter::NoBuffer, 1);
            continue;
        };
        let mut r = Pkt {
            buf,
            meta: Meta {
                rx_if: NO_IFACE,
                flags: flags::LOCAL_ORIGIN,
                ..Meta::default()
            },
        };
        let built = if v6 {
            super::ip6::build_solicit(&mut r, f, Ipv6Addr::from(target))
        } else {
            super::arp::build_request(&mut r, f, Ipv4Addr::from(target as u32))
        };
        if !built {
            cx.pool.free(r.buf);
            continue;
        }
        cx.stats.count(
            if v6 {
                Counter::NdSolicitSent
            } else {
                Counter::ArpRequestSent
            },
            1,
        );
        let j = pkts.len() as u16;
        pkts.push(r);
        l3_output(cx, &mut pkts[j as usize], q, j, iface);
    }
}
