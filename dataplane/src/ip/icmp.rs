//! `icmp4-error` and `icmp6-error`: turn a dropped packet into the ICMP
//! error its sender should get, in place (no new buffer), and route it back.
//!
//! Input packets carry the drop reason in `meta.drop`, the ICMP type and code
//! in `meta.nh` (`type << 8 | code`) and the MTU in `meta.hash`. The reason is
//! always counted once, whether or not an error is sent.
//!
//! No error is sent (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)) about: an ICMP
//! error, a packet the router generated, a non-first fragment, a packet sent
//! to a broadcast or multicast address (IPv6: except packet-too-big), or one
//! whose source is not a unicast address. Errors are rate-limited per worker
//! by a token bucket (`icmp-rate`, `icmp-burst`). The quoted original is as
//! much as fits in 576 bytes (IPv4) or 1280 bytes (IPv6). The error's source
//! is the ingress interface's address (IPv6: a global one if it has any).
//! Edges: `ip4-lookup` / `ip6-lookup` (the error is routed like any packet),
//! `drop`.

use std::net::{Ipv4Addr, Ipv6Addr};

use vrouter_wire::checksum;
use vrouter_wire::{EtherType, IpProtocol, Ipv4Packet, Ipv6ExtHeaders};

use super::{be16, be32, be128};
use crate::ethernet::drop_pkt;
use crate::graph::{Counter, NodeId, Queues};
use crate::pipeline::{Ctx, NodeState};
use crate::pkt::{Pkt, flags};

/// A token bucket in nanoseconds; one token per error.
#[derive(Debug, Default)]
pub struct TokenBucket {
    tokens: u64,
    last: u64,
    primed: bool,
}

impl TokenBucket {
    /// Takes a token if one is available at time `now` for `rate` tokens per
    /// second with at most `burst` saved up.
    #[inline]
    pub fn take(&mut self, now: u64, rate: u32, burst: u32) -> bool {
        const SCALE: u64 = 1_000_000_000;
        let cap = u64::from(burst.max(1)) * SCALE;
        if !self.primed {
            // A fresh bucket starts full.
            self.primed = true;
            self.tokens = cap;
            self.last = now;
        }
        let elapsed = now.saturating_sub(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.saturating_mul(u64::from(rate))).min(cap);
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

#[inline(always)]
fn suppress(cx: &Ctx, p: &mut Pkt, q: &mut Queues, i: u16, why: Counter) {
    cx.stats.count(why, 1);
    q.push(NodeId::Drop, i);
    let _ = p;
}

const V4_QUOTE_MAX: usize = 576 - 28;
const V6_QUOTE_MAX: usize = 1280 - 48;

/// The `icmp4-error` node.
pub fn error4(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let p = &mut pkts[i as usize];
        let (kind, code) = ((p.meta.nh >> 8) as u8, p.meta.nh as u8);
        let mtu = p.meta.aux as u16;
        let l3 = p.l3();
        let ihl = (l3[0] & 0x0f) as usize * 4;
        let (src, dst) = (be32(l3, 12), be32(l3, 16));
        let non_first_frag = be16(l3, 6) & 0x1fff != 0;
        let icmp_error_inside = l3[9] == 1
            && l3
                .get(ihl)
                .is_some_and(|&ty| matches!(ty, 3 | 4 | 5 | 11 | 12));
        if p.meta.flags & (flags::LOCAL_ORIGIN | flags::L2_MULTI) != 0
            || non_first_frag
            || icmp_error_inside
            || dst >> 28 == 0xe
            || dst == u32::MAX
            || src == 0
            || src >> 28 >= 0xe
            || src >> 24 == 127
        {
            suppress(cx, p, q, i, Counter::Icmp4ErrorSuppressed);
            continue;
        }
        let Some(me) = t
            .iface(p.meta.rx_if)
            .and_then(|f| f.src_ip4_for(Ipv4Addr::from(src)))
        else {
            suppress(cx, p, q, i, Counter::Icmp4ErrorSuppressed);
            continue;
        };
        if !st
            .icmp4
            .take(cx.now, t.params.icmp_rate, t.params.icmp_burst)
        {
            suppress(cx, p, q, i, Counter::Icmp4RateLimited);
            continue;
        }
        let quote = l3.len().min(V4_QUOTE_MAX);
        let l3_off = p.meta.l3_off as usize;
        if p.buf.advance(l3_off).is_err() || p.buf.prepend(28).is_err() {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            continue;
        }
        p.buf.truncate(28 + quote);
        let d = p.buf.data_mut();
        d[..28].fill(0);
        let mut ip = Ipv4Packet::new_unchecked(&mut d[..20]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len((28 + quote) as u16);
        ip.set_ttl(64);
        ip.set_protocol(IpProtocol(1));
        ip.set_src_addr(me);
        ip.set_dst_addr(Ipv4Addr::from(src));
        ip.fill_checksum();
        let icmp = &mut d[20..];
        icmp[0] = kind;
        icmp[1] = code;
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
        let c = checksum::checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        cx.stats.count(
            Counter::from_index(p.meta.drop).unwrap_or(Counter::GraphLost),
            1,
        );
        cx.stats.count(Counter::Icmp4ErrorSent, 1);
        p.meta.l3_off = 0;
        p.meta.ethertype = EtherType::IPV4.0;
        p.meta.flags = flags::LOCAL_ORIGIN;
        q.push(NodeId::Ip4Lookup, i);
    }
}

/// ICMPv6 types the router sends.
pub mod icmp6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const NO_ROUTE: u8 = 0;
    pub const PORT_UNREACHABLE: u8 = 4;
}

/// Fills the ICMPv6 checksum of `icmp` (checksum field at bytes 2..4).
pub fn fill_icmp6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &mut [u8]) {
    icmp[2..4].fill(0);
    let s = checksum::pseudo_header_v6(src, dst, 58, icmp.len() as u32) + checksum::sum(icmp);
    icmp[2..4].copy_from_slice(&checksum::finish(s).to_be_bytes());
}

/// The `icmp6-error` node.
pub fn error6(cx: &mut Ctx, st: &mut NodeState, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let p = &mut pkts[i as usize];
        let (kind, code) = ((p.meta.nh >> 8) as u8, p.meta.nh as u8);
        let mtu = p.meta.aux;
        let l3 = p.l3();
        let src = Ipv6Addr::from(be128(l3, 8));
        let dst = Ipv6Addr::from(be128(l3, 24));
        let ext = Ipv6ExtHeaders::walk(IpProtocol(l3[6]), &l3[40..]);
        let (non_first_frag, icmp_error_inside) = match ext {
            Ok(e) => (
                e.fragment.is_some_and(|f| !f.is_first()),
                e.protocol == IpProtocol(58)
                    && e.fragment.is_none_or(|f| f.is_first())
                    && l3.get(40 + e.offset).is_some_and(|&ty| ty < 128),
            ),
            Err(_) => (false, false),
        };
        let ptb = kind == icmp6::PACKET_TOO_BIG;
        if p.meta.flags & flags::LOCAL_ORIGIN != 0
            || non_first_frag
            || icmp_error_inside
            || (!ptb && (dst.is_multicast() || p.meta.flags & flags::L2_MULTI != 0))
            || src.is_unspecified()
            || src.is_multicast()
        {
            suppress(cx, p, q, i, Counter::Icmp6ErrorSuppressed);
            continue;
        }
        let Some(me) = t.iface(p.meta.rx_if).and_then(|f| f.src_ip6_for(src)) else {
            suppress(cx, p, q, i, Counter::Icmp6ErrorSuppressed);
            continue;
        };
        if !st
            .icmp6
            .take(cx.now, t.params.icmp_rate, t.params.icmp_burst)
        {
            suppress(cx, p, q, i, Counter::Icmp6RateLimited);
            continue;
        }
        let quote = l3.len().min(V6_QUOTE_MAX);
        let l3_off = p.meta.l3_off as usize;
        if p.buf.advance(l3_off).is_err() || p.buf.prepend(48).is_err() {
            drop_pkt(p, q, i, Counter::GraphNoSpace);
            continue;
        }
        p.buf.truncate(48 + quote);
        let d = p.buf.data_mut();
        d[..48].fill(0);
        d[0] = 0x60;
        d[4..6].copy_from_slice(&((8 + quote) as u16).to_be_bytes());
        d[6] = 58;
        d[7] = 64;
        d[8..24].copy_from_slice(&me.octets());
        d[24..40].copy_from_slice(&src.octets());
        let icmp = &mut d[40..];
        icmp[0] = kind;
        icmp[1] = code;
        icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
        fill_icmp6_checksum(&me, &src, icmp);
        cx.stats.count(
            Counter::from_index(p.meta.drop).unwrap_or(Counter::GraphLost),
            1,
        );
        cx.stats.count(Counter::Icmp6ErrorSent, 1);
        p.meta.l3_off = 0;
        p.meta.ethertype = EtherType::IPV6.0;
        p.meta.flags = flags::LOCAL_ORIGIN;
        q.push(NodeId::Ip6Lookup, i);
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn token_bucket_limits_rate_and_burst() {
        let mut b = TokenBucket::default();
        // Starts full: a burst of 5 at once, then nothing.
        let n: u32 = (0..20).map(|_| b.take(0, 10, 5) as u32).sum();
        assert_eq!(n, 5);
        // One second at 10/s refills only up to the burst.
        let n: u32 = (0..20).map(|_| b.take(1_000_000_000, 10, 5) as u32).sum();
        assert_eq!(n, 5);
        // 100 ms later: one more.
        assert!(b.take(1_100_000_000, 10, 5));
        assert!(!b.take(1_100_000_000, 10, 5));
    }
}
