//! VXLAN overlay (RFC 7348): the tables the data path reads, and the two
//! nodes, `vxlan4-input` (decapsulation, [`decap`]) and `vxlan4-encap`
//! ([`encap`]). The control side (building these tables from the
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
//! interface to `vxlan4-encap`, which prepends outer IPv4/UDP/VXLAN in the
//! headroom and sends the packet to `ip4-lookup` in the underlay VRF, so the
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

use std::net::Ipv4Addr;

use vrouter_wire::MacAddr;

/// Split-horizon group of every tunnel interface of a bridge domain
/// (reserved: a configured interface may not use it).
pub const TUNNEL_SHG: u8 = 255;
/// Outer IPv4 + UDP + VXLAN header length (the outer Ethernet header is
/// written by `ip4-rewrite`).
pub const OUTER4: usize = 36;

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
    pub local: Ipv4Addr,
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
    /// Accepted remote VTEPs, sorted: (address as u32, tunnel interface).
    pub remotes: Vec<(u32, u16)>,
    /// L2: answer ARP requests for known endpoints locally.
    pub arp_suppress: bool,
    /// L2: known remote endpoints, sorted: (IPv4 address as u32, MAC).
    pub arp: Vec<(u32, MacAddr)>,
}

impl Vni {
    /// The tunnel interface of remote VTEP `src`, if it is known.
    #[inline(always)]
    pub fn remote(&self, src: u32) -> Option<u16> {
        self.remotes
            .binary_search_by_key(&src, |r| r.0)
            .ok()
            .and_then(|k| self.remotes.get(k))
            .map(|r| r.1)
    }
}

/// One tunnel: a VNI towards one remote VTEP, with its outer header ready.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub vtep: u16,
    pub vni: u32,
    pub remote: Ipv4Addr,
    /// Its logical interface.
    pub iface: u16,
    /// Underlay VRF.
    pub vrf: u16,
    pub dscp: Dscp,
    pub sport_min: u16,
    pub sport_span: u32,
    /// Outer IPv4 (TOS, total length and checksum zero), UDP (source port,
    /// length zero) and VXLAN headers.
    pub header: [u8; OUTER4],
    /// Sum of the IPv4 header template (see `vrouter_wire::checksum`).
    pub csum: u32,
}

impl Tunnel {
    /// A tunnel of `vtep` for `vni` towards `remote`, on interface `iface`.
    ///
    /// The outer TTL is one more than configured because the packet enters
    /// the underlay through `ip4-lookup`/`ip4-rewrite`, which decrement it
    /// once (255 stays 255 and leaves as 254). DF is set (the inner MTU
    /// keeps outer packets within the underlay MTU; vrouterd never
    /// fragments), so the IP ID is 0 (RFC 6864). The UDP checksum is 0 over
    /// IPv4, as RFC 7348 §5 allows.
    pub fn new(v: &Vtep, vtep: u16, vni: u32, remote: Ipv4Addr, iface: u16) -> Tunnel {
        let mut h = [0u8; OUTER4];
        h[0] = 0x45;
        if let Dscp::Fixed(d) = v.dscp {
            h[1] = d << 2;
        }
        h[6] = 0x40;
        h[8] = v.ttl.saturating_add(1);
        h[9] = 17;
        h[12..16].copy_from_slice(&v.local.octets());
        h[16..20].copy_from_slice(&remote.octets());
        h[22..24].copy_from_slice(&v.udp_port.to_be_bytes());
        h[28] = vrouter_wire::vxlan::FLAG_I;
        h[32..35].copy_from_slice(&vni.to_be_bytes()[1..]);
        let csum = vrouter_wire::checksum::sum(&h[..20]);
        Tunnel {
            vtep,
            vni,
            remote,
            iface,
            vrf: v.vrf,
            dscp: v.dscp,
            sport_min: v.sport_min,
            sport_span: v.sport_span,
            header: h,
            csum,
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
}

impl VxlanTables {
    /// The VTEP listening on `dst` and UDP port `port`.
    #[inline(always)]
    pub fn vtep_for(&self, dst: u32, port: u16) -> Option<u16> {
        self.vteps
            .iter()
            .position(|v| u32::from(v.local) == dst && v.udp_port == port)
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
