//! The `pod-guard` node: anti-spoofing on pod ports, routed or bridged.
//!
//! `ethernet-input` sends here every frame received on an interface that
//! has a pod bound to it (`endpoint.add`: its MAC and addresses), before
//! the bridge or L3 input sees it; frames of other interfaces never come
//! here. A frame passes only if:
//!
//! - its source MAC is a bound pod's MAC (else `spoofed-source`);
//! - IPv4: the source address is bound to that MAC (DHCP's `0.0.0.0` → port
//!   67 aside) (else `spoofed-source`);
//! - IPv6: the source address is bound to that MAC, or link-local, or `::`
//!   for ICMPv6/hop-by-hop (duplicate address detection, MLD) (else
//!   `spoofed-source`); neighbour discovery claims only the pod's own: a
//!   neighbour advertisement's target is a bound or link-local address and
//!   its target link-layer option the pod's MAC, a solicitation's source
//!   link-layer option the pod's MAC, and a pod never sends router
//!   advertisements or redirects (else `spoofed-nd`);
//! - ARP: the sender MAC is the pod's and the sender IPv4 is bound to it, or
//!   `0.0.0.0` (a probe) (else `spoofed-arp`).
//!
//! Other EtherTypes are checked by source MAC only. Because the check is at
//! the port, a bridged pod is covered exactly like a routed one: frames
//! switched pod to pod inside a bridge domain never reach IP input, and
//! those routed through the BVI enter IP input with the BVI as interface.
//!
//! Reads `rx_if`, `ethertype`, `l3_off`. Edges: `l2-input` (bridged
//! interfaces), `arp-input` / `ip4-input` / `ip6-input` (routed), `drop`.
//!
//! Must never: modify the frame.

use vrouter_wire::EtherType;

use crate::ethernet::{drop_pkt, l3_input};
use crate::graph::{Counter, NodeId, Queues};
use crate::pipeline::Ctx;
use crate::pkt::Pkt;
use crate::service::PodBinding;
use crate::tables::IfaceMode;

const ND_RS: u8 = 133;
const ND_RA: u8 = 134;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const ND_REDIRECT: u8 = 137;

#[inline(always)]
fn rd16(d: &[u8], at: usize) -> u16 {
    d.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

#[inline(always)]
fn rd32(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline(always)]
fn rd128(d: &[u8], at: usize) -> u128 {
    d.get(at..at + 16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u128::from_be_bytes)
}

#[inline(always)]
fn link_local(a: u128) -> bool {
    a >> 118 == 0x3fa
}

/// The `pod-guard` node.
pub fn node(cx: &mut Ctx, pkts: &mut [Pkt], input: &[u16], q: &mut Queues) {
    let t = cx.t;
    for &i in input {
        let Some(p) = pkts.get_mut(usize::from(i)) else {
            continue;
        };
        let rx = usize::from(p.meta.rx_if);
        if let Some(Some(b)) = t.services.spoof.get(rx) {
            let d = p.buf.data();
            let l3 = d.get(usize::from(p.meta.l3_off)..).unwrap_or(&[]);
            if let Err(c) = check(b, d.get(6..12).unwrap_or(&[]), p.meta.ethertype, l3) {
                drop_pkt(p, q, i, c);
                continue;
            }
        }
        match t.iface(p.meta.rx_if).map(|f| f.mode) {
            Some(IfaceMode::Bridged { .. }) => q.push(NodeId::L2Input, i),
            Some(IfaceMode::Routed { .. }) => l3_input(p, q, i),
            _ => drop_pkt(p, q, i, Counter::EthUnknownInterface),
        }
    }
}

/// Checks one frame (source MAC `smac`, L3 payload `l3` of `ethertype`)
/// against binding `b`; the error is the drop reason.
pub fn check(b: &PodBinding, smac: &[u8], ethertype: u16, l3: &[u8]) -> Result<(), Counter> {
    let Some(mac) = b.macs.iter().find(|m| m.as_bytes().as_slice() == smac) else {
        return Err(Counter::SpoofedSource);
    };
    match EtherType(ethertype) {
        EtherType::IPV4 => {
            let src = rd32(l3, 12);
            let dhcp = src == 0 && l3.get(9) == Some(&17) && {
                let ihl = usize::from(l3.first().map_or(0, |v| v & 0x0f)) * 4;
                rd16(l3, ihl + 2) == 67
            };
            if l3.len() >= 20 && (dhcp || b.v4.iter().any(|(m, a)| m == mac && *a == src)) {
                Ok(())
            } else {
                Err(Counter::SpoofedSource)
            }
        }
        EtherType::IPV6 => {
            if l3.len() < 40 {
                return Err(Counter::SpoofedSource);
            }
            let (src, next) = (rd128(l3, 8), l3[6]);
            let ok = b.v6.iter().any(|(m, a)| m == mac && *a == src)
                || link_local(src)
                || (src == 0 && matches!(next, 0 | 58));
            if !ok {
                return Err(Counter::SpoofedSource);
            }
            if next == 58 { nd(b, mac, l3) } else { Ok(()) }
        }
        EtherType::ARP => {
            // Ethernet/IPv4 ARP: sender MAC at 8, sender IPv4 at 14.
            if l3.len() < 28 || rd16(l3, 0) != 1 || rd16(l3, 2) != EtherType::IPV4.0 {
                return Err(Counter::SpoofedArp);
            }
            let sha = &l3[8..14];
            let spa = rd32(l3, 14);
            let ok = sha == mac.as_bytes().as_slice()
                && (spa == 0 || b.v4.iter().any(|(m, a)| m == mac && *a == spa));
            if ok { Ok(()) } else { Err(Counter::SpoofedArp) }
        }
        _ => Ok(()),
    }
}

/// Neighbour discovery from a pod (ICMPv6 right after the fixed header).
fn nd(b: &PodBinding, mac: &vrouter_wire::MacAddr, l3: &[u8]) -> Result<(), Counter> {
    let Some(&ty) = l3.get(40) else {
        return Ok(());
    };
    let (opts_at, want_opt) = match ty {
        ND_RA | ND_REDIRECT => return Err(Counter::SpoofedNd),
        ND_NA => {
            let target = rd128(l3, 48);
            if l3.len() < 64
                || !(link_local(target) || b.v6.iter().any(|(m, a)| m == mac && *a == target))
            {
                return Err(Counter::SpoofedNd);
            }
            (64, 2)
        }
        ND_NS => (64, 1),
        ND_RS => (48, 1),
        _ => return Ok(()),
    };
    // Options: type, length in units of 8 bytes, value; the link-layer
    // address options must carry the pod's MAC.
    let end = (40 + usize::from(rd16(l3, 4))).min(l3.len());
    let mut at = opts_at;
    while at + 8 <= end {
        let (kind, len) = (l3[at], usize::from(l3[at + 1]) * 8);
        if len == 0 {
            return Err(Counter::SpoofedNd);
        }
        if kind == want_opt && l3.get(at + 2..at + 8) != Some(mac.as_bytes().as_slice()) {
            return Err(Counter::SpoofedNd);
        }
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use vrouter_wire::MacAddr;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const V6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0002;

    fn binding() -> PodBinding {
        let m = MacAddr::from(MAC);
        PodBinding {
            macs: vec![m].into(),
            v4: vec![(m, 0xc612_0102)].into(),
            v6: vec![(m, V6)].into(),
        }
    }

    fn udp6(src: u128) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv6(src.to_be_bytes(), [0x20; 16], 64)
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        v
    }

    fn nd6(ty: u8, target: u128, opt: Option<(u8, [u8; 6])>) -> Vec<u8> {
        let mut body = vec![ty, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&target.to_be_bytes());
        if let Some((k, m)) = opt {
            body.extend_from_slice(&[k, 1]);
            body.extend_from_slice(&m);
        }
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&[58, 255]);
        v.extend_from_slice(&(0xfe80u128 << 112 | 1).to_be_bytes());
        v.extend_from_slice(&[0xff; 16]);
        v.extend_from_slice(&body);
        v
    }

    fn arp(sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
        let mut v = vec![0, 1, 8, 0, 6, 4, 0, 1];
        v.extend_from_slice(&sha);
        v.extend_from_slice(&spa);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&[198, 18, 1, 1]);
        v
    }

    #[test]
    fn ipv6_source_and_mac() {
        let b = binding();
        assert_eq!(check(&b, &MAC, 0x86dd, &udp6(V6)), Ok(()));
        let ll = 0xfe80u128 << 112 | 0x1234;
        assert_eq!(check(&b, &MAC, 0x86dd, &udp6(ll)), Ok(()), "link-local");
        assert_eq!(
            check(&b, &MAC, 0x86dd, &udp6(V6 + 1)),
            Err(Counter::SpoofedSource)
        );
        assert_eq!(
            check(&b, &OTHER, 0x86dd, &udp6(V6)),
            Err(Counter::SpoofedSource),
            "foreign MAC"
        );
        assert_eq!(
            check(&b, &MAC, 0x86dd, &udp6(0)),
            Err(Counter::SpoofedSource),
            ":: only for ND/MLD"
        );
        assert_eq!(
            check(&b, &MAC, 0x86dd, &udp6(V6)[..30]),
            Err(Counter::SpoofedSource),
            "truncated"
        );
    }

    #[test]
    fn neighbor_discovery_claims_only_own_addresses() {
        let b = binding();
        let ok = nd6(ND_NA, V6, Some((2, MAC)));
        assert_eq!(check(&b, &MAC, 0x86dd, &ok), Ok(()));
        let other_target = nd6(ND_NA, V6 + 7, Some((2, MAC)));
        assert_eq!(
            check(&b, &MAC, 0x86dd, &other_target),
            Err(Counter::SpoofedNd)
        );
        let other_lla = nd6(ND_NA, V6, Some((2, OTHER)));
        assert_eq!(check(&b, &MAC, 0x86dd, &other_lla), Err(Counter::SpoofedNd));
        let ns = nd6(ND_NS, V6 + 7, Some((1, MAC)));
        assert_eq!(check(&b, &MAC, 0x86dd, &ns), Ok(()), "asking is fine");
        let ns_bad = nd6(ND_NS, V6 + 7, Some((1, OTHER)));
        assert_eq!(check(&b, &MAC, 0x86dd, &ns_bad), Err(Counter::SpoofedNd));
        let ra = nd6(ND_RA, 0, None);
        assert_eq!(check(&b, &MAC, 0x86dd, &ra), Err(Counter::SpoofedNd));
    }

    #[test]
    fn ipv4_and_arp() {
        let b = binding();
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 18, 1, 2], [198, 18, 10, 2], 64)
            .udp(1, 2)
            .write(&mut v, b"x")
            .unwrap();
        assert_eq!(check(&b, &MAC, 0x0800, &v), Ok(()));
        v[15] = 99;
        assert_eq!(check(&b, &MAC, 0x0800, &v), Err(Counter::SpoofedSource));
        assert_eq!(check(&b, &MAC, 0x0806, &arp(MAC, [198, 18, 1, 2])), Ok(()));
        assert_eq!(
            check(&b, &MAC, 0x0806, &arp(MAC, [0, 0, 0, 0])),
            Ok(()),
            "probe"
        );
        assert_eq!(
            check(&b, &MAC, 0x0806, &arp(MAC, [198, 18, 1, 99])),
            Err(Counter::SpoofedArp),
            "another pod's address"
        );
        assert_eq!(
            check(&b, &MAC, 0x0806, &arp(OTHER, [198, 18, 1, 2])),
            Err(Counter::SpoofedArp),
            "sender MAC not the frame's"
        );
        assert_eq!(
            check(&b, &MAC, 0x0806, &arp(MAC, [198, 18, 1, 2])[..20]),
            Err(Counter::SpoofedArp)
        );
    }
}
