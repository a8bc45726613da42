//! The tables workers read, published by the control thread.
//!
//! A [`Tables`] value is an immutable snapshot of the configuration-sized
//! state (ports, interfaces, bridge domains, VRFs, next hops). The control
//! thread builds a new one for every change and swaps it in atomically; a
//! worker loads the current snapshot once per poll loop and uses it for the
//! whole burst, so it never sees half of a change. The two big tables are not
//! copied per change: the MAC tables and the FIBs are shared (`Arc`) between
//! snapshots and updated in place with single-word atomic writes designed for
//! concurrent readers (see `l2::mactable` and the `vrouter-fib` crate).
//!
//! Ordering rule the control thread follows (see `control::Router`): a next
//! hop is published in a snapshot, and every worker has moved to that
//! snapshot, before a FIB entry points to it; a next-hop id is reused only
//! after every worker has moved past the snapshot that still used it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use vrouter_wire::MacAddr;

use crate::ip::fib::{Fib4Table, Fib6Table};
use crate::l2::mactable::MacTable;
use crate::pkt::NO_IFACE;

/// How an interface takes part in forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceMode {
    /// A member of bridge domain `bd`.
    Bridged { bd: u16 },
    /// A routed (L3) interface in `vrf`.
    Routed { vrf: u16 },
    /// The routed interface of bridge domain `bd` (BVI/IRB) in `vrf`.
    Bvi { bd: u16, vrf: u16 },
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ip4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ip4Net {
    /// Network mask.
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len.min(32))
        }
    }

    /// True if `a` is in this subnet.
    #[inline]
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) ^ u32::from(self.addr)) & self.mask() == 0
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
}

/// An IPv6 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ip6Net {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Ip6Net {
    /// Network mask.
    pub fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - self.len.min(128))
        }
    }

    /// True if `a` is in this subnet.
    #[inline]
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (u128::from(a) ^ u128::from(self.addr)) & self.mask() == 0
    }

    /// The network address.
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }
}

/// A logical interface: a port (optionally one VLAN of it) or a BVI.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    /// Port it sends and receives on (`u16::MAX` for a BVI).
    pub port: u16,
    /// 802.1Q VLAN id, 0 for untagged.
    pub vlan: u16,
    pub mode: IfaceMode,
    pub mac: MacAddr,
    /// L3 MTU (bytes of IP packet) for routed interfaces and BVIs; largest
    /// frame payload for bridged ones.
    pub mtu: u16,
    /// Split-horizon group (bridged interfaces); 0 = none.
    pub shg: u8,
    pub ip4: Vec<Ip4Net>,
    pub ip6: Vec<Ip6Net>,
    /// IPv6 link-local address (routed interfaces and BVIs).
    pub ll6: Option<Ipv6Addr>,
    /// The VXLAN tunnel (index into `Tables::tunnels`) this interface sends
    /// into, for the interfaces vrouterd makes per VNI and remote VTEP;
    /// such an interface has no port.
    pub tunnel: Option<u16>,
}

impl Iface {
    /// True if `a` is one of this interface's IPv4 addresses.
    #[inline]
    pub fn has_ip4(&self, a: Ipv4Addr) -> bool {
        self.ip4.iter().any(|n| n.addr == a)
    }

    /// True if `a` is one of this interface's IPv6 addresses (or its link-local).
    #[inline]
    pub fn has_ip6(&self, a: Ipv6Addr) -> bool {
        self.ll6 == Some(a) || self.ip6.iter().any(|n| n.addr == a)
    }

    /// The address to use as source towards `dst`: one in the same subnet,
    /// else the first.
    pub fn src_ip4_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.ip4
            .iter()
            .find(|n| n.contains(dst))
            .or(self.ip4.first())
            .map(|n| n.addr)
    }

    /// The IPv6 source towards `dst`: link-local for link-local peers, else
    /// a global in the same subnet, else the first global, else link-local.
    pub fn src_ip6_for(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        if dst.is_unicast_link_local() {
            return self.ll6.or(self.ip6.first().map(|n| n.addr));
        }
        self.ip6
            .iter()
            .find(|n| n.contains(dst))
            .or(self.ip6.first())
            .map(|n| n.addr)
            .or(self.ll6)
    }

    /// The VRF of a routed interface or BVI.
    #[inline]
    pub fn vrf(&self) -> Option<u16> {
        match self.mode {
            IfaceMode::Routed { vrf } | IfaceMode::Bvi { vrf, .. } => Some(vrf),
            IfaceMode::Bridged { .. } => None,
        }
    }
}

/// How received frames on a port map to interfaces.
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    pub name: String,
    /// Interface for untagged frames, or `NO_IFACE`.
    pub untagged: u16,
    /// (VLAN id, interface) for tagged frames.
    pub vlans: Vec<(u16, u16)>,
}

impl PortMap {
    /// The interface of a frame with VLAN `vid` (0 = untagged).
    #[inline]
    pub fn iface(&self, vid: u16) -> u16 {
        if vid == 0 {
            return self.untagged;
        }
        self.vlans
            .iter()
            .find(|(v, _)| *v == vid)
            .map_or(NO_IFACE, |(_, i)| *i)
    }
}

/// A bridge domain.
#[derive(Debug, Clone)]
pub struct BridgeDomain {
    pub name: String,
    /// Member interfaces (the BVI included, if any).
    pub members: Vec<u16>,
    pub bvi: Option<u16>,
    pub macs: Arc<MacTable>,
    pub learning: bool,
    /// Flood unknown unicast (broadcast and multicast always flood).
    pub flood_unknown: bool,
    /// MAC age in seconds; 0 = never.
    pub mac_age: u32,
}

/// A routing table.
#[derive(Debug, Clone)]
pub struct Vrf {
    pub name: String,
    pub fib4: Arc<Fib4Table>,
    pub fib6: Arc<Fib6Table>,
}

/// What a route's next hop does with a packet. Indexed by the next-hop id a
/// FIB lookup returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Drop silently (blackhole route).
    Drop,
    /// Drop and answer ICMP unreachable (also: no route).
    Unreachable,
    /// One of our own addresses.
    Local { iface: u16 },
    /// A connected subnet: resolve the packet's own destination.
    Glean { iface: u16 },
    /// A gateway whose MAC is not known yet: resolve `addr`.
    Resolve { iface: u16, addr: IpAddr },
    /// A resolved neighbour: rewrite and send.
    Rewrite { iface: u16, mac: MacAddr },
    /// Equal-cost group: members are `ecmp[base..base + len]`, each a
    /// `Resolve` or `Rewrite` next hop.
    Ecmp { base: u32, len: u16 },
}

/// Next-hop id 0: what a FIB miss returns.
pub const NH_NO_ROUTE: u32 = 0;

/// Data-path parameters (from the `[dataplane]` config section).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// ICMP errors per second per worker (token bucket rate), and burst.
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    /// Packets a worker holds while resolving neighbours.
    pub glean_hold: u16,
    /// How long a held packet waits for resolution.
    pub glean_timeout_ns: u64,
    /// Interval between ARP/ND retries for one target.
    pub glean_retry_ns: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            icmp_rate: 1000,
            icmp_burst: 100,
            glean_hold: 256,
            glean_timeout_ns: 1_000_000_000,
            glean_retry_ns: 250_000_000,
        }
    }
}

/// One published snapshot. Workers read it; only the control thread makes one.
#[derive(Debug, Clone)]
pub struct Tables {
    pub generation: u64,
    pub ports: Vec<PortMap>,
    pub ifaces: Vec<Iface>,
    pub bds: Vec<BridgeDomain>,
    pub vrfs: Vec<Vrf>,
    pub nexthops: Arc<Vec<NextHop>>,
    pub ecmp: Arc<Vec<u32>>,
    pub params: Params,
    /// VXLAN: local VTEPs, VNI bindings (sorted by VTEP, VNI) and tunnels.
    pub vxlan: Arc<crate::vxlan::VxlanTables>,
    /// Services, policies and pod bindings (`service` module).
    pub services: Arc<crate::service::ServiceTables>,
}

impl Tables {
    /// Tables with nothing configured.
    pub fn empty() -> Self {
        Tables {
            generation: 0,
            ports: Vec::new(),
            ifaces: Vec::new(),
            bds: Vec::new(),
            vrfs: Vec::new(),
            nexthops: Arc::new(vec![NextHop::Unreachable]),
            ecmp: Arc::new(Vec::new()),
            params: Params::default(),
            vxlan: Arc::default(),
            services: Arc::default(),
        }
    }

    /// An interface by index.
    #[inline(always)]
    pub fn iface(&self, i: u16) -> Option<&Iface> {
        self.ifaces.get(i as usize)
    }

    /// A next hop by id.
    #[inline(always)]
    pub fn nexthop(&self, id: u32) -> Option<&NextHop> {
        self.nexthops.get(id as usize)
    }
}
