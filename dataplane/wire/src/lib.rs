//! Typed, zero-copy views over packet headers, smoltcp `wire` style.
//!
//! Each header has its own module with two types:
//!
//! - a view `Xxx<T: AsRef<[u8]>>` over a byte buffer: `new_unchecked`, `check_len`,
//!   `new_checked`, `into_inner`, `#[inline]` getters for any buffer and setters only
//!   where `T: AsMut<[u8]>`. These are what the datapath uses, at line rate;
//! - a `XxxRepr` holding only valid, parsed values, with `parse`, `emit` and
//!   `buffer_len`. These are for the control and slow paths (ARP replies, ICMP
//!   errors, encapsulation templates) and for tests.
//!
//! # Contract
//!
//! Once a view's `check_len` has passed (or `new_checked` returned `Ok`), no getter
//! of that view panics, whatever the bytes are: `check_len` validates every length
//! field the getters rely on. Setters and `emit` may panic on a buffer shorter than
//! the header being written; they are driven by our own code, never by a packet.
//!
//! The crate never allocates, never logs and contains no `unsafe`. It does not
//! verify checksums implicitly: `Repr::parse` checks structure, and callers call
//! `verify_checksum*` where the protocol requires it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arp;
mod bytes;
pub mod checksum;
mod error;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod mac;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

#[cfg(test)]
mod fuzz_tests;

/// For the cargo-fuzz targets (fuzz/): runs every checked constructor, every
/// getter and every `Repr::parse` of each view over the same bytes.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api {
    /// Reads `bytes` as each header in turn; panics only on a broken contract.
    pub fn read_all(bytes: &[u8]) {
        crate::ethernet::read_all(bytes);
        crate::vlan::read_all(bytes);
        crate::arp::read_all(bytes);
        crate::ipv4::read_all(bytes);
        crate::ipv6::read_all(bytes);
        crate::icmpv4::read_all(bytes);
        crate::icmpv6::read_all(bytes);
        crate::udp::read_all(bytes);
        crate::tcp::read_all(bytes);
        crate::vxlan::read_all(bytes);
    }
}

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use error::{Result, WireError};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, Icmpv4Type};
pub use icmpv6::{
    Icmpv6Packet, Icmpv6Repr, Icmpv6Type, NdOption, NdOptionsIter, NeighborAdvert, NeighborSolicit,
    solicited_node_multicast,
};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtHeaders, Ipv6FragmentInfo, Ipv6Packet, Ipv6Repr, skip_extension_headers};
pub use mac::MacAddr;
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};
pub use vlan::{VlanRepr, VlanTag};
pub use vxlan::{VxlanHeader, VxlanRepr};
