//! VXLAN overlay (RFC 7348): the tables the data path reads, and the
//! nodes: `vxlan4-input` / `vxlan6-input` (decapsulation, [`decap`]) and
//! `vxlan4-encap` / `vxlan6-encap` ([`encap`]), for an IPv4 or IPv6
//! underlay. The control side (building these tables from the
//! configuration) is `control::vxlan`.
//!
//! Model: every (VNI, remote VTEP) pair is a logical interface without a
//! port (`Iface::tunnel` names its [`Tunnel`]). For an L2 VNI it is a member
//! of the bound bridge domain, so MAC learning (MAC → tunnel interface, i.e.
//! remote VTEP), static remote MACs, flooding (head-end replication to every
//! flood-list tunnel) and split horizon (all tunnels of a domain share group
//! [`TUNNEL_SHG`], so a frame from the overlay is never flooded back into it)
//! are the bridge's own. For an L3 VNI it is a routed interface in the VRF,
//! and a route to another node's pod CIDR has a resolved next hop on it (the
//! remote VTEP and the inner destination MAC), so `ip4-rewrite`/`ip6-rewrite`
//! write the inner Ethernet header and check the inner MTU (ICMP
//! frag-needed / packet-too-big). `interface-output` hands frames for a tunnel
//! interface to `vxlan4-encap` (`vxlan6-encap`), which prepends outer
//! IPv4 (IPv6)/UDP/VXLAN in the headroom and sends the packet to
//! `ip4-lookup` (`ip6-lookup`) in the underlay VRF, so the
//! outer next hop, ARP, glean and the outer Ethernet header are the
//! underlay's own.
//!
//! ARP requests from local members for known remote endpoints (static
//! remote MACs with an IP) are answered locally ([`arp`]).
//!
//! Decapsulation accepts only configured VNIs of the VTEP and, per VNI, only
//! the remote VTEPs configured for it (flood list, static MAC targets,
//! route targets, `remotes`); everything else is dropped and counted
//! (`vxlan-unknown-vni`, `vxlan-unknown-vtep`, `vxlan-bad-header`). A VNI
//! maps to exactly one bridge domain or VRF, so VNIs are isolated.
//!
//! Must never: allocate, lock or make a syscall per packet; accept a frame
//! whose VNI or source VTEP is not configured.

pub mod arp;
pub mod decap;
pub mod encap;

use std::net::IpAddr;

use vrouter_wire::MacAddr;

/// Split-horizon group of every tunnel interface of a bridge domain
/// (reserved: a configured interface may not use it).
pub const TUNNEL_SHG: u8 = 255;
/// Outer IPv4 + UDP + VXLAN header length (the outer Ethernet header is
/// `vxlan4-encap`'s own for a resolved outer neighbour, else `ip4-rewrite`'s).
pub const OUTER4: usize = 36;
/// Outer IPv6 + UDP + VXLAN header length.
pub const OUTER6: usize = 56;

/// The key of a remote VTEP address in [`Vni::remotes`] (a VNI's remotes
/// are all of its VTEP's family).
#[inline(always)]
pub fn addr_key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// What the outer DSCP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dscp {
    /// The inner IPv4 TOS byte / IPv6 traffic class (DSCP and ECN, RFC 6040
    /// normal mode); 0 for non-IP inner frames.
    Copy,
    /// This DSCP (0..=63), ECN 0.
    Fixed(u8),
}

/// A local VTEP.
#[derive(Debug, Clone)]
pub struct Vtep {
    pub name: String,
    /// IPv4 or IPv6 (the underlay family).
    pub local: IpAddr,
    /// UDP destination port (4789 by default).
    pub udp_port: u16,
    /// Underlay VRF and the interface holding `local`.
    pub vrf: u16,
    pub iface: u16,
    pub ttl: u8,
    pub dscp: Dscp,
    /// UDP source ports: `sport_min .. sport_min + sport_span`.
    pub sport_min: u16,
    pub sport_span: u32,
    /// Largest inner frame payload (L3 MTU of the overlay).
    pub inner_mtu: u16,
}

/// What a VNI is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VniKind {
    /// L2 overlay: bridge domain `bd`.
    Bridge { bd: u16 },
    /// L3 overlay: inner packets are routed in `vrf`.
    Routed { vrf: u16 },
}

/// A VNI of a VTEP.
#[derive(Debug, Clone)]
pub struct Vni {
    pub vtep: u16,
    pub vni: u32,
    pub kind: VniKind,
    /// Our inner MAC (L3 VNIs: the destination MAC remote nodes use).
    pub mac: MacAddr,
    /// Accepted remote VTEPs, sorted: ([`addr_key`], tunnel interface).
    pub remotes: Vec<(u128, u16)>,
    /// Open-addressing hash index of `remotes` (positions; `u16::MAX` is
    /// empty; a power of two, at least twice as long), rebuilt by
    /// [`VxlanTables::indexed`] whenever `remotes` changes.
    pub index: Vec<u16>,
    /// L2: answer ARP requests for known endpoints locally.
    pub arp_suppress: bool,
    /// L2: known remote endpoints, sorted: (IPv4 address as u32, MAC).
    pub arp: Vec<(u32, MacAddr)>,
}

impl Vni {
    /// The tunnel interface of remote VTEP `src` ([`addr_key`]), if it is
    /// known: one hash and, usually, one probe of [`Vni::index`]. A hit is
    /// always checked against `remotes`, so a stale index can only miss.
    #[inline(always)]
    pub fn remote(&self, src: u128) -> Option<u16> {
        let mask = self.index.len().wrapping_sub(1);
        let mut k = remote_slot(src, mask);
        for _ in 0..self.index.len() {
            let at = *self.index.get(k)?;
            // An empty slot (`u16::MAX`) is past the end of `remotes`.
            let r = self.remotes.get(usize::from(at))?;
            if r.0 == src {
                return Some(r.1);
            }
            k = (k + 1) & mask;
        }
        None
    }

    /// Rebuilds [`Vni::index`] from `remotes`.
    pub fn reindex(&mut self) {
        let n = (self.remotes.len() * 2).next_power_of_two().max(4);
        self.index.clear();
        self.index.resize(n, u16::MAX);
        for (pos, r) in self.remotes.iter().enumerate() {
            let mut k = remote_slot(r.0, n - 1);
            while self.index.get(k).is_some_and(|&s| s != u16::MAX) {
                k = (k + 1) & (n - 1);
            }
            if let Some(s) = self.index.get_mut(k) {
                *s = pos as u16;
            }
        }
    }
}

/// The home slot of remote VTEP `key` in an index of `mask + 1` slots.
#[inline(always)]
fn remote_slot(key: u128, mask: usize) -> usize {
    let h = ((key as u64) ^ ((key >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize & mask
}

/// One tunnel: a VNI towards one remote VTEP, with its outer header ready.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub vtep: u16,
    pub vni: u32,
    pub remote: IpAddr,
    /// Its logical interface.
    pub iface: u16,
    /// Underlay VRF.
    pub vrf: u16,
    pub dscp: Dscp,
    pub sport_min: u16,
    pub sport_span: u32,
    /// IPv6 underlay (`header` is [`OUTER6`] long), else IPv4 ([`OUTER4`]).
    pub v6: bool,
    /// Outer IP (IPv4: TOS, total length and checksum zero; IPv6: traffic
    /// class, flow label and payload length zero), UDP (source port,
    /// length and checksum zero) and VXLAN headers.
    pub header: [u8; OUTER6],
    /// IPv4: sum of the IPv4 header template. IPv6: sum of the UDP
    /// pseudo-header addresses and next header, and the constant words of
    /// the UDP and VXLAN headers (see `vrouter_wire::checksum`).
    pub csum: u32,
    /// IPv4: the configured TTL, and the template's sum with it, for a
    /// packet `vxlan4-encap` sends straight to its resolved outer next hop.
    pub ttl: u8,
    pub csum_direct: u32,
}

impl Tunnel {
    /// A tunnel of `vtep` for `vni` towards `remote` (of the VTEP's family),
    /// on interface `iface`.
    ///
    /// The outer TTL / hop limit is one more than configured because the
    /// packet enters the underlay through `ip4-lookup`/`ip4-rewrite` (or the
    /// IPv6 ones), which decrement it once (255 leaves as 254); an IPv4
    /// packet whose outer next hop is a resolved neighbour skips them and
    /// gets the configured TTL directly. IPv4: DF is
    /// set (the inner MTU keeps outer packets within the underlay MTU;
    /// vrouterd never fragments), so the IP ID is 0 (RFC 6864), and the UDP
    /// checksum is 0, as RFC 7348 §5 allows. IPv6: the UDP checksum is
    /// computed (RFC 6935/6936 allow a zero checksum for tunnels only where
    /// both ends are configured for it, and Linux by default drops such
    /// packets), and the flow label carries the flow hash (RFC 6438).
    pub fn new(v: &Vtep, vtep: u16, vni: u32, remote: IpAddr, iface: u16) -> Tunnel {
        let mut h = [0u8; OUTER6];
        let (csum, v6) = match (v.local, remote) {
            (IpAddr::V6(local), IpAddr::V6(remote)) => {
                h[0] = 0x60;
                if let Dscp::Fixed(d) = v.dscp {
                    h[0] |= d >> 2;
                    h[1] = (d & 3) << 6;
                }
                h[6] = 17;
                h[7] = v.ttl.saturating_add(1);
                h[8..24].copy_from_slice(&local.octets());
                h[24..40].copy_from_slice(&remote.octets());
                h[42..44].copy_from_slice(&v.udp_port.to_be_bytes());
                h[48] = vrouter_wire::vxlan::FLAG_I;
                h[52..55].copy_from_slice(&vni.to_be_bytes()[1..]);
                // Addresses, next header, and the constant UDP/VXLAN words.
                let c = vrouter_wire::checksum::sum(&h[8..40])
                    + 17
                    + vrouter_wire::checksum::sum(&h[40..56]);
                (c, true)
            }
            (local, remote) => {
                h[0] = 0x45;
                if let Dscp::Fixed(d) = v.dscp {
                    h[1] = d << 2;
                }
                h[6] = 0x40;
                h[8] = v.ttl.saturating_add(1);
                h[9] = 17;
                if let (IpAddr::V4(l), IpAddr::V4(r)) = (local, remote) {
                    h[12..16].copy_from_slice(&l.octets());
                    h[16..20].copy_from_slice(&r.octets());
                }
                h[22..24].copy_from_slice(&v.udp_port.to_be_bytes());
                h[28] = vrouter_wire::vxlan::FLAG_I;
                h[32..35].copy_from_slice(&vni.to_be_bytes()[1..]);
                (vrouter_wire::checksum::sum(&h[..20]), false)
            }
        };
        let mut direct = [0u8; 20];
        direct.copy_from_slice(&h[..20]);
        direct[8] = v.ttl;
        Tunnel {
            vtep,
            vni,
            remote,
            iface,
            vrf: v.vrf,
            dscp: v.dscp,
            sport_min: v.sport_min,
            sport_span: v.sport_span,
            v6,
            header: h,
            csum,
            ttl: v.ttl,
            csum_direct: vrouter_wire::checksum::sum(&direct),
        }
    }
}

/// Everything VXLAN in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct VxlanTables {
    pub vteps: Vec<Vtep>,
    /// Sorted by (VTEP, VNI).
    pub vnis: Vec<Vni>,
    pub tunnels: Vec<Tunnel>,
    /// The IPv4 VTEPs: (address, UDP port, VRF, index in `vteps`), built by
    /// [`VxlanTables::indexed`].
    pub vtep4: Vec<(u32, u16, u16, u16)>,
}

impl VxlanTables {
    /// These tables with every VNI's remote index rebuilt: what the control
    /// side publishes.
    pub fn indexed(mut self) -> Self {
        for n in &mut self.vnis {
            n.reindex();
        }
        self.vtep4 = self
            .vteps
            .iter()
            .enumerate()
            .filter_map(|(k, v)| match v.local {
                IpAddr::V4(a) => Some((u32::from(a), v.udp_port, v.vrf, k as u16)),
                IpAddr::V6(_) => None,
            })
            .collect();
        self
    }

    /// The address of the first IPv4 VTEP on interface `iface`.
    pub fn vtep4_on(&self, iface: u16) -> Option<u32> {
        self.vtep4
            .iter()
            .find(|v| {
                self.vteps
                    .get(usize::from(v.3))
                    .is_some_and(|t| t.iface == iface)
            })
            .map(|v| v.0)
    }

    /// True if IPv4 address `dst` is an IPv4 VTEP's (any port or VRF): a
    /// filter that costs one comparison per VTEP.
    #[inline(always)]
    pub fn is_vtep4(&self, dst: u32) -> bool {
        self.vtep4.iter().any(|v| v.0 == dst)
    }

    /// The IPv4 VTEP listening on `dst` and UDP port `port` in VRF `vrf`.
    #[inline(always)]
    pub fn vtep4_in(&self, dst: u32, port: u16, vrf: u16) -> Option<u16> {
        self.vtep4
            .iter()
            .find(|v| v.0 == dst && v.1 == port && v.2 == vrf)
            .map(|v| v.3)
    }

    /// The VTEP listening on IPv6 `dst` and UDP port `port`.
    #[inline(always)]
    pub fn vtep_for6(&self, dst: u128, port: u16) -> Option<u16> {
        self.vteps
            .iter()
            .position(|v| v.local == IpAddr::V6(dst.into()) && v.udp_port == port)
            .map(|k| k as u16)
    }

    /// VNI `vni` of VTEP `vtep`.
    #[inline(always)]
    pub fn vni(&self, vtep: u16, vni: u32) -> Option<&Vni> {
        self.vnis
            .binary_search_by(|v| (v.vtep, v.vni).cmp(&(vtep, vni)))
            .ok()
            .and_then(|k| self.vnis.get(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(remotes: Vec<(u128, u16)>) -> Vni {
        let mut v = Vni {
            vtep: 0,
            vni: 1,
            kind: VniKind::Routed { vrf: 0 },
            mac: MacAddr::ZERO,
            remotes,
            index: Vec::new(),
            arp_suppress: false,
            arp: Vec::new(),
        };
        v.reindex();
        v
    }

    /// The hash index agrees with a linear search of `remotes`, for hits
    /// and misses, at sizes from empty to past a power of two.
    #[test]
    fn remote_index_agrees_with_a_linear_search() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in [0usize, 1, 2, 3, 16, 17, 200, 1000] {
            let mut remotes: Vec<(u128, u16)> = (0..n)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // IPv4 keys (198.18.x.y) and full IPv6 keys.
                    let key = if k % 2 == 0 {
                        u128::from(0xc612_0000 | (x as u32 & 0xffff))
                    } else {
                        u128::from(x) << 64 | u128::from(x.rotate_left(7))
                    };
                    (key, k as u16)
                })
                .collect();
            remotes.sort_unstable();
            remotes.dedup_by_key(|r| r.0);
            let v = vni(remotes.clone());
            assert!(v.index.len() >= 2 * remotes.len());
            for r in &remotes {
                assert_eq!(v.remote(r.0), Some(r.1), "n={n}");
            }
            for probe in [0u128, 1, 0xc612_0001, u128::MAX, 0xc613_0000] {
                let want = remotes.iter().find(|r| r.0 == probe).map(|r| r.1);
                assert_eq!(v.remote(probe), want, "n={n} probe={probe:x}");
            }
        }
    }

    /// A remote removed from `remotes` is never accepted, even through an
    /// index that was not rebuilt (fail closed).
    #[test]
    fn a_stale_index_never_accepts_a_removed_remote() {
        let mut v = vni((1..=8u128).map(|k| (k, k as u16)).collect());
        v.remotes.retain(|r| r.0 != 5);
        assert_eq!(v.remote(5), None);
        v.reindex();
        assert_eq!(v.remote(5), None);
        assert_eq!(v.remote(6), Some(6));
    }
}
