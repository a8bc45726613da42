//! Longest-prefix-match forwarding tables (FIBs) for IPv4 and IPv6, built for
//! the vRouter's vector pipeline: one control thread writes, any number of
//! worker threads read at the same time, and the read side takes no lock.
//!
//! # What lives here
//!
//! | module | owns | never does |
//! |---|---|---|
//! | [`v4`] | [`Fib4`] (writer + RIB) and [`Fib4Table`] (DIR-24-8 lookup) | allocate or lock on lookup |
//! | [`v6`] | [`Fib6`] (writer + RIB) and [`Fib6Table`] (multibit trie lookup) | allocate or lock on lookup |
//! | `groups` | the chunked 256-entry group store and its retire/reclaim allocator | reuse a retired group before [`Fib4::reclaim`] / [`Fib6::reclaim`] |
//! | `engine` | the generic writer: which table entries a route change must touch | read the RIB on the data path |
//! | `rib` | the authoritative prefix → next-hop map (a Patricia trie) | be shared with readers |
//! | [`dump`] | parsing `dpdk-test-fib` route and address dumps | anything else |
//!
//! # Entries
//!
//! Every table slot is an `AtomicU32`. Bit 31 set: the low 31 bits index a
//! 256-entry *group* (the next 8 address bits select the entry). Bit 31 clear:
//! the value is the next hop, where [`NO_ROUTE`] (0) means "no route". Next-hop
//! ids are therefore `1..=`[`MAX_NH`].
//!
//! # Concurrency contract
//!
//! * One writer ([`Fib4`] / [`Fib6`], `&mut self`) changes the table in place;
//!   readers hold an `Arc<Fib4Table>` / `Arc<Fib6Table>` and call `lookup` or
//!   `lookup_batch` with `&self`.
//! * During a change, a lookup of an address whose route changes returns the
//!   old or the new next hop; a lookup of any other address returns its
//!   unchanged next hop. Never a half-built group: a new group is filled
//!   completely before the entry pointing at it is published with a `Release`
//!   store, and readers load entries with `Acquire` (a plain `mov` on x86-64).
//! * Groups the writer unlinks are *retired*, not freed, because a reader may
//!   still be inside one. They become reusable only through a grace period:
//!
//! ```
//! # use vrouter_fib::{Fib4, Fib4Config};
//! # use std::net::Ipv4Addr;
//! let mut fib = Fib4::new(Fib4Config::default())?;
//! let readers = fib.table().clone(); // hand clones of this Arc to workers
//! fib.insert(Ipv4Addr::new(198, 18, 0, 128), 25, 7)?; // splits 198.18.0.0/24 into a group
//! fib.remove(Ipv4Addr::new(198, 18, 0, 128), 25)?; // collapses it: the group is retired
//! let token = fib.retire_barrier();
//! // ... wait until every worker has passed a quiescent point (finished the
//! // lookups it had started) *after* retire_barrier() returned ...
//! let reusable = fib.reclaim(token);
//! assert_eq!(reusable, 1);
//! # drop(readers);
//! # Ok::<(), vrouter_fib::FibError>(())
//! ```
//!
//! A worker reports quiescence between bursts with a `SeqCst` store (or after
//! a `SeqCst` fence), and the engine reads it with a `SeqCst` load before it
//! calls `reclaim`; [`Fib4::retire_barrier`] issues the writer's `SeqCst` fence.
//! A writer with no readers at all (its `Arc` is unshared) may call
//! [`Fib4::reclaim_unshared`] instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dump;
mod engine;
mod groups;
mod key;
mod rib;
pub mod v4;
pub mod v6;

use std::net::IpAddr;

pub use dump::{DumpError, DumpRoute, parse_addr_dump, parse_route_dump};
pub use groups::{GroupStats, RetireToken};
pub use v4::{Fib4, Fib4Config, Fib4Table};
pub use v6::{Fib6, Fib6Config, Fib6Table};

/// The next hop a lookup returns when no route covers the address.
pub const NO_ROUTE: u32 = 0;

/// The largest next-hop id (ids are `1..=MAX_NH`; bit 31 tags group links).
pub const MAX_NH: u32 = (1 << 31) - 1;

/// The most addresses [`Fib4Table::lookup_batch`] and [`Fib6Table::lookup_batch`]
/// work on at once (longer slices are processed in runs of this size).
pub const BATCH: usize = 256;

/// Why a FIB operation was refused. A refused operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    /// The prefix length exceeds the address width.
    #[error("prefix length /{len} exceeds the maximum /{max}")]
    PrefixLength {
        /// The length asked for.
        len: u8,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The prefix has bits set beyond its length.
    #[error("prefix {prefix}/{len} has host bits set (the network is {network}/{len})")]
    HostBits {
        /// The prefix as given.
        prefix: IpAddr,
        /// Its length.
        len: u8,
        /// The prefix with the host bits cleared.
        network: IpAddr,
    },
    /// The next hop is `NO_ROUTE` or above `MAX_NH`.
    #[error("next hop {nh} out of range: next-hop ids are 1..={MAX_NH} (0 is NO_ROUTE)")]
    NextHop {
        /// The next hop given.
        nh: u32,
    },
    /// The change needs more groups than are free.
    #[error(
        "no room for {prefix}/{len}: it needs {needed} more groups, {available} of max {max} are free \
         (reclaim retired groups or raise max_groups)"
    )]
    GroupsExhausted {
        /// The prefix being changed.
        prefix: IpAddr,
        /// Its length.
        len: u8,
        /// Groups the change would allocate (an upper bound).
        needed: usize,
        /// Groups free now (retired groups count only once reclaimed).
        available: usize,
        /// The configured maximum.
        max: u32,
    },
    /// The configuration is out of range.
    #[error("invalid FIB configuration: {0}")]
    Config(&'static str),
}
