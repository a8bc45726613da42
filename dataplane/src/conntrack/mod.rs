//! Connection tracking: a fixed-capacity flow table, one per worker.
//!
//! Owns the flows a worker tracks (service NAT and policy-isolated pods) and
//! their protocol-state timeouts. A flow has two keys, the originator's
//! 5-tuple (`fwd`) and the reply as it arrives (`rev`); NAT needs no other
//! field: a forward packet leaves as `rev` reversed, a reply leaves as `fwd`
//! reversed. A NAT flow also keeps, per direction, the RFC 1624 checksum
//! deltas of that translation (computed by `insert`), so a hit updates each
//! checksum with one add.
//!
//! Layout: flows in a preallocated array (one 64-byte cache line each for
//! IPv4, two for IPv6) and an index of 64-byte buckets (8 slots of a 16-bit
//! tag and a flow reference with the key's direction, and an overflow
//! count), both on transparent huge pages where the kernel allows (random
//! access would miss the TLB on almost every packet otherwise). A key goes
//! to its primary bucket when it has room, else to its secondary (counted in
//! the primary; one-level displacement when both are full; no tombstones):
//! a lookup reads the secondary only for an overflowed primary. A vector
//! lookup is staged like DPDK's `rte_hash_lookup_bulk`: hash and prefetch
//! every key's bucket (`prefetch`), then compare the 8 tags of each bucket
//! at once and prefetch the flow of the match (`hint`), then verify the key
//! against that one flow (`lookup_hinted`). At least 4 slots per flow (2
//! keys): 1M flows take 64 MiB of flows + 32 MiB of index + 4 MiB of free
//! list.
//!
//! Per worker, lock-free: both directions of a flow must reach the worker
//! that created it. That holds with one worker, or when a port queue's RSS
//! hash is symmetric and both directions enter through ports of that worker;
//! otherwise a reply is not found (it passes untranslated or is denied by
//! policy). Capacity and per-pod quota are per worker (`max-flows /
//! workers`).
//!
//! Full table: existing flows are never evicted (established flows are
//! protected); a new flow is refused (`ct-table-full`), as is a new flow of a
//! pod at its quota (`ct-pod-quota`). Expired flows are freed lazily (a
//! lookup that finds one) and by an incremental sweep (`sweep`, a bounded
//! number of flows per poll loop).
//!
//! Must never: allocate after `new`, block, or evict a live flow.

use crate::graph::MAX_IFACES;

/// An address family's address as conntrack, services and policy use it:
/// `u32` for IPv4, `u128` for IPv6 (one table per family, so an IPv4 flow
/// stays one cache line).
pub trait Addr:
    Copy + Eq + Ord + Default + std::fmt::Debug + std::hash::Hash + Send + Sync + 'static
{
    /// The largest address.
    const MAX: Self;
    /// Address bits.
    const BITS: u32;
    /// The address as a 128-bit integer (IPv4 in the low bits).
    fn to_u128(self) -> u128;
    /// The low bits of `a` as an address.
    fn from_u128(a: u128) -> Self;
    /// One word mixing both addresses of a key (the hash's first input).
    fn mix(src: Self, dst: Self) -> u64;
    /// True if both address pairs are equal (no branch).
    fn pair_eq(a: (Self, Self), b: (Self, Self)) -> bool;
    /// `self + 1`, saturating.
    fn succ(self) -> Self;
    /// `self - 1`, saturating.
    fn pred(self) -> Self;
}

impl Addr for u32 {
    const MAX: u32 = u32::MAX;
    const BITS: u32 = 32;
    #[inline(always)]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline(always)]
    fn from_u128(a: u128) -> u32 {
        a as u32
    }
    #[inline(always)]
    fn mix(src: u32, dst: u32) -> u64 {
        u64::from(src) | u64::from(dst) << 32
    }
    #[inline(always)]
    fn pair_eq(a: (u32, u32), b: (u32, u32)) -> bool {
        (u64::from(a.0) | u64::from(a.1) << 32) == (u64::from(b.0) | u64::from(b.1) << 32)
    }
    #[inline(always)]
    fn succ(self) -> u32 {
        self.saturating_add(1)
    }
    #[inline(always)]
    fn pred(self) -> u32 {
        self.saturating_sub(1)
    }
}

impl Addr for u128 {
    const MAX: u128 = u128::MAX;
    const BITS: u32 = 128;
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline(always)]
    fn from_u128(a: u128) -> u128 {
        a
    }
    #[inline(always)]
    fn mix(src: u128, dst: u128) -> u64 {
        let s = (src as u64 ^ (src >> 64) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let d = dst as u64 ^ ((dst >> 64) as u64).rotate_left(31);
        s.rotate_left(27) ^ d
    }
    #[inline(always)]
    fn pair_eq(a: (u128, u128), b: (u128, u128)) -> bool {
        ((a.0 ^ b.0) | (a.1 ^ b.1)) == 0
    }
    #[inline(always)]
    fn succ(self) -> u128 {
        self.saturating_add(1)
    }
    #[inline(always)]
    fn pred(self) -> u128 {
        self.saturating_sub(1)
    }
}

/// A 5-tuple in one zone (VRF). ICMP echo uses the identifier as the
/// requester's port (`sport` of a request, `dport` of a reply). `A` is the
/// address family (`u32`: IPv4, `u128`: IPv6).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Key<A = u32> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: u8,
    pub zone: u16,
}

/// An IPv6 key.
pub type Key6 = Key<u128>;

/// Compared as whole words, without a branch per field (the hit path
/// compares every packet's key with its flow's).
impl<A: Addr> PartialEq for Key<A> {
    #[inline(always)]
    fn eq(&self, o: &Key<A>) -> bool {
        A::pair_eq((self.src, self.dst), (o.src, o.dst)) & (self.rest() == o.rest())
    }
}

impl<A: Addr> Eq for Key<A> {}

impl<A: Addr> std::hash::Hash for Key<A> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.src.hash(state);
        self.dst.hash(state);
        self.rest().hash(state);
    }
}

impl<A: Addr> Key<A> {
    /// Ports, protocol and zone as one word.
    #[inline(always)]
    fn rest(&self) -> u64 {
        u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.proto) << 32
            | u64::from(self._pad) << 40
            | u64::from(self.zone) << 48
    }

    /// A key.
    #[inline(always)]
    pub fn new(zone: u16, proto: u8, src: A, dst: A, sport: u16, dport: u16) -> Key<A> {
        Key {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad: 0,
            zone,
        }
    }

    /// The same flow seen from the other end.
    #[inline(always)]
    pub fn reverse(&self) -> Key<A> {
        Key::new(
            self.zone, self.proto, self.dst, self.src, self.dport, self.sport,
        )
    }

    /// A 64-bit hash (multiply-xorshift over the two words of the key; the
    /// second is the key's own bytes, so a parsed key hashes from the
    /// registers it is stored from).
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let a = A::mix(self.src, self.dst);
        let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.rest().rotate_left(23);
        h = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^ (h >> 32)
    }
}

/// Protocol state of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum State {
    /// Free slot.
    #[default]
    Free,
    /// TCP: SYN seen, no reply yet.
    SynSent,
    /// TCP: the other side answered; UDP/ICMP: a reply was seen.
    Established,
    /// TCP: FIN seen.
    Closing,
    /// TCP: RST seen.
    Closed,
    /// UDP/ICMP: one direction only so far.
    New,
}

impl State {
    /// Lower-case name (`show conntrack`).
    pub fn name(self) -> &'static str {
        match self {
            State::Free => "free",
            State::SynSent => "syn-sent",
            State::Established => "established",
            State::Closing => "closing",
            State::Closed => "closed",
            State::New => "new",
        }
    }
}

/// Flow flags.
pub mod flow_flags {
    /// Addresses or ports are translated.
    pub const NAT: u8 = 1;
    /// A packet was seen in the reply direction (`Dir::Rev as u8` shifted
    /// left once).
    pub const SEEN_REPLY: u8 = 2;
}

/// The checksum changes of one direction's translation, as RFC 1624
/// deltas (`Σ ~old + Σ new` over the changed 16-bit words, folded): `ip`
/// over the addresses (the IPv4 header checksum), `l4` over the addresses
/// and ports (the TCP/UDP checksum, whose pseudo-header holds the
/// addresses). Kept in wire byte order (the two bytes as a packet holds
/// them, read natively): one's-complement sums do not depend on byte order
/// (RFC 1071), so a hit updates a checksum without swapping bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsumDelta {
    pub ip: u16,
    pub l4: u16,
}

/// One tracked connection (one 64-byte cache line for IPv4, two for IPv6).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Flow<A = u32> {
    /// The originator's packet as it arrives.
    pub fwd: Key<A>,
    /// The reply as it arrives (after NAT of the forward direction).
    pub rev: Key<A>,
    /// Expiry, in seconds of the data-path clock.
    pub expires: u32,
    pub state: State,
    pub flags: u8,
    /// The pod interface charged for this flow (per-pod quota), or
    /// [`NO_OWNER`].
    pub owner: u16,
    /// A NAT flow's checksum deltas, indexed by [`Dir`] (`Fwd`: `fwd` to
    /// `rev` reversed; `Rev`: `rev` to `fwd` reversed). Set by
    /// [`ConnTrack::insert`].
    pub csum: [CsumDelta; 2],
}

const _: () = assert!(std::mem::size_of::<Flow>() == 64);
const _: () = assert!((Dir::Rev as u8) << 1 == flow_flags::SEEN_REPLY);
const _: () = assert!(std::mem::size_of::<Flow<u128>>() == 128);

/// A flow charged to no pod (not counted against any quota).
pub const NO_OWNER: u16 = u16::MAX;

/// Direction of a packet relative to its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Dir {
    Fwd = 0,
    Rev = 1,
}

impl Dir {
    /// The opposite direction.
    #[inline(always)]
    pub fn other(self) -> Dir {
        match self {
            Dir::Fwd => Dir::Rev,
            Dir::Rev => Dir::Fwd,
        }
    }
}

/// Timeouts in seconds (`[conntrack]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub tcp_closed: u32,
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 60,
            tcp_established: 86400,
            tcp_closing: 120,
            tcp_closed: 10,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
        }
    }
}

/// TCP flag bits.
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

impl<A: Addr> Flow<A> {
    /// Advances the state for a packet in `dir` with TCP flags `tf` (0 for
    /// other protocols) and sets the expiry.
    #[inline]
    pub fn update(&mut self, dir: Dir, tf: u8, now_s: u32, t: &Timeouts) {
        // Dir::Rev is 1, SEEN_REPLY is 2.
        self.flags |= (dir as u8) << 1;
        let timeout = match self.fwd.proto {
            6 => {
                if tf & tcp::RST != 0 {
                    self.state = State::Closed;
                } else if tf & tcp::FIN != 0 && self.state != State::Closed {
                    self.state = State::Closing;
                } else if dir == Dir::Rev && self.state == State::SynSent {
                    self.state = State::Established;
                }
                match self.state {
                    State::SynSent => t.tcp_syn,
                    State::Closing => t.tcp_closing,
                    State::Closed => t.tcp_closed,
                    _ => t.tcp_established,
                }
            }
            17 => {
                if self.flags & flow_flags::SEEN_REPLY != 0 {
                    self.state = State::Established;
                    t.udp_stream
                } else {
                    t.udp
                }
            }
            _ => {
                if self.flags & flow_flags::SEEN_REPLY != 0 {
                    self.state = State::Established;
                }
                t.icmp
            }
        };
        self.expires = now_s.saturating_add(timeout);
    }
}

impl Flow {
    /// The state a new flow starts in, for its first packet.
    pub fn initial_state(proto: u8, tf: u8) -> State {
        initial_state(proto, tf)
    }
}

/// The state a new flow starts in, for its first packet.
pub fn initial_state(proto: u8, tf: u8) -> State {
    match proto {
        6 if tf & tcp::SYN != 0 && tf & tcp::ACK == 0 => State::SynSent,
        // Loose pick-up of a connection already under way.
        6 => State::Established,
        _ => State::New,
    }
}

/// Why a flow could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// No free flow, or both buckets of a key are full.
    Full,
    /// The owner is at its quota.
    Quota,
    /// One of the keys is already tracked.
    Exists,
}

/// `Σ ~old + Σ new` over the 16-bit words of two addresses.
fn addr_delta<A: Addr>(old: A, new: A) -> u32 {
    let (o, n) = (old.to_u128(), new.to_u128());
    (0..A::BITS / 16)
        .map(|w| u32::from(!(o >> (16 * w)) as u16) + u32::from((n >> (16 * w)) as u16))
        .sum()
}

/// A one's-complement sum folded to 16 bits.
fn fold16(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The checksum deltas of rewriting a packet of tuple `old` to `new`.
fn csum_delta<A: Addr>(old: &Key<A>, new: &Key<A>) -> CsumDelta {
    let addrs = addr_delta(old.src, new.src) + addr_delta(old.dst, new.dst);
    let ports =
        u32::from(!old.sport) + u32::from(new.sport) + u32::from(!old.dport) + u32::from(new.dport);
    let wire = |d: u16| u16::from_ne_bytes(d.to_be_bytes());
    CsumDelta {
        ip: wire(fold16(addrs)),
        l4: wire(fold16(addrs + ports)),
    }
}

impl<A: Addr> Flow<A> {
    /// The checksum deltas of this flow's translation, per direction.
    pub fn nat_deltas(&self) -> [CsumDelta; 2] {
        [
            csum_delta(&self.fwd, &self.rev.reverse()),
            csum_delta(&self.rev, &self.fwd.reverse()),
        ]
    }

    /// The key a packet in `dir` matched.
    #[inline(always)]
    pub fn key(&self, dir: Dir) -> &Key<A> {
        match dir {
            Dir::Fwd => &self.fwd,
            Dir::Rev => &self.rev,
        }
    }
}

/// Key slots per bucket.
const SLOTS: usize = 8;

/// One cache line of the index.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// The slots' 16-bit tags (from the key's hash, never 0); 0 = empty.
    tags: [u16; SLOTS],
    /// Per slot: `flow << 1 | dir` (1: the flow's `rev` key).
    refs: [u32; SLOTS],
    /// Keys whose primary bucket this is but that live in their secondary.
    overflow: u32,
    _pad: [u32; 3],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// The slots of `tags` holding `tag`: bit `2 * slot` set per match (the
/// 8 tags compared at once).
#[inline(always)]
fn tag_matches(tags: &[u16; SLOTS], tag: u16) -> u32 {
    vrouter_buf::eq_mask_u16x8(tags, tag)
}

/// Sizes derived from a flow capacity.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub flows: usize,
    pub buckets: usize,
}

impl Geometry {
    /// The geometry for `flows` flows: 4 index slots per flow, rounded up
    /// to a power of two of buckets.
    pub fn for_flows(flows: usize) -> Geometry {
        let flows = flows.clamp(16, 1 << 30);
        let buckets = (flows * 4 / SLOTS).next_power_of_two().max(2);
        Geometry { flows, buckets }
    }

    /// Bytes this geometry allocates for IPv4 flows.
    pub fn bytes(&self) -> usize {
        self.bytes_for::<u32>()
    }

    /// Bytes this geometry allocates for flows of family `A`.
    pub fn bytes_for<A: Addr>(&self) -> usize {
        self.flows * (std::mem::size_of::<Flow<A>>() + 4)
            + self.buckets * std::mem::size_of::<Bucket>()
            + MAX_IFACES * 4
    }
}

/// What [`ConnTrack::hint`] learnt from a key's primary bucket, for
/// [`ConnTrack::lookup_hinted`]: no tag matches and no overflow (a sure
/// miss), the first matching slot, or "search" (anything else).
pub type Hint = u32;
/// A sure miss.
pub const HINT_MISS: Hint = 0;
/// The full search is needed (or the table changed since the hint).
pub const HINT_SEARCH: Hint = u32::MAX;

/// See the module doc. `A` is the address family (one table per family).
pub struct ConnTrack<A = u32> {
    flows: Box<[Flow<A>]>,
    index: Box<[Bucket]>,
    mask: usize,
    free: Vec<u32>,
    owners: Box<[u32]>,
    quota: u32,
    cursor: usize,
    /// Bumped by every insert and removal: hints taken before are stale.
    generation: u32,
    pub timeouts: Timeouts,
}

impl<A: Addr> std::fmt::Debug for ConnTrack<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTrack")
            .field("capacity", &self.capacity())
            .field("used", &self.len())
            .finish()
    }
}

/// A key's 16-bit tag: the hash's top bits, never 0 (an empty slot).
#[inline(always)]
fn tag_of(h: u64) -> u16 {
    ((h >> 48) as u16).max(1)
}

/// The slot reference of a flow's key.
#[inline(always)]
fn slot_ref(id: u32, dir: Dir) -> u32 {
    id << 1 | dir as u32
}

#[inline(always)]
fn dir_of(r: u32) -> Dir {
    if r & 1 == 0 { Dir::Fwd } else { Dir::Rev }
}

/// The IPv6 flow table.
pub type ConnTrack6 = ConnTrack<u128>;

impl<A: Addr> ConnTrack<A> {
    /// A table for `flows` flows, each owner allowed `quota` of them (0 = no
    /// quota). Everything is allocated here.
    pub fn new(flows: usize, quota: u32, timeouts: Timeouts) -> ConnTrack<A> {
        let g = Geometry::for_flows(flows);
        let free: Vec<u32> = (0..g.flows as u32).rev().collect();
        ConnTrack {
            flows: vrouter_buf::huge_slice(g.flows, Flow::default()),
            index: vrouter_buf::huge_slice(g.buckets, Bucket::default()),
            mask: g.buckets - 1,
            free,
            owners: vec![0; MAX_IFACES].into_boxed_slice(),
            quota: if quota == 0 { u32::MAX } else { quota },
            cursor: 0,
            generation: 0,
            timeouts,
        }
    }

    /// Flows the table can hold.
    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    /// Flows in use (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// True if no flow is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows charged to `owner`.
    pub fn owner_count(&self, owner: u16) -> u32 {
        self.owners
            .get(usize::from(owner).min(MAX_IFACES - 1))
            .copied()
            .unwrap_or(0)
    }

    /// Changes with every insert and removal (hints taken under another
    /// generation must not be used).
    #[inline(always)]
    pub fn generation(&self) -> u32 {
        self.generation
    }

    #[inline(always)]
    fn buckets_of(&self, h: u64) -> (usize, usize) {
        let b1 = h as usize & self.mask;
        let mut b2 = (h >> 24) as usize & self.mask;
        if b2 == b1 {
            b2 = b1 ^ 1;
        }
        (b1, b2)
    }

    /// Prefetches the bucket a key with hash `h` is looked up in first
    /// (stage 1 of a vector lookup).
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        // The secondary bucket is read only after the primary overflowed.
        vrouter_buf::prefetch_slice(&self.index, h as usize & self.mask);
    }

    /// Stage 2 of a vector lookup, once [`ConnTrack::prefetch`] brought the
    /// bucket in: compares the tags of the primary bucket, prefetches the
    /// flow of the first match and says what stage 3
    /// ([`ConnTrack::lookup_hinted`]) has to do.
    #[inline(always)]
    pub fn hint(&self, h: u64) -> Hint {
        let Some(b) = self.index.get(h as usize & self.mask) else {
            return HINT_SEARCH;
        };
        let m = tag_matches(&b.tags, tag_of(h));
        if m == 0 {
            return if b.overflow == 0 {
                HINT_MISS
            } else {
                HINT_SEARCH
            };
        }
        let r = b.refs[(m.trailing_zeros() / 2) as usize % SLOTS];
        if let Some(f) = self.flows.get((r >> 1) as usize) {
            vrouter_buf::prefetch(f);
            if std::mem::size_of::<Flow<A>>() > 64 {
                vrouter_buf::prefetch(&f.expires);
            }
        }
        // A reference is below 2^31: neither MISS nor SEARCH.
        r + 1
    }

    /// The live flow `key` (hash `h`) belongs to and the packet's direction,
    /// given the [`ConnTrack::hint`] taken in this generation. An expired
    /// flow found here is freed and reported as a miss.
    #[inline(always)]
    pub fn lookup_hinted(
        &mut self,
        key: &Key<A>,
        h: u64,
        hint: Hint,
        now_s: u32,
    ) -> Option<(u32, Dir)> {
        let (id, dir) = match hint {
            HINT_MISS => return None,
            HINT_SEARCH => self.find(key, h)?,
            r => {
                let (id, dir) = ((r - 1) >> 1, dir_of(r - 1));
                match self.flows.get(id as usize) {
                    Some(f) if f.key(dir) == key => (id, dir),
                    // A tag collision, or the key matches a later slot.
                    _ => self.find(key, h)?,
                }
            }
        };
        self.live_or_free(id, dir, now_s)
    }

    #[inline(always)]
    fn live_or_free(&mut self, id: u32, dir: Dir, now_s: u32) -> Option<(u32, Dir)> {
        if self.flows.get(id as usize)?.expires <= now_s {
            self.remove(id);
            return None;
        }
        Some((id, dir))
    }

    /// The live flow `key` (hash `h`) belongs to and the packet's direction.
    /// An expired flow found here is freed and reported as a miss.
    #[inline]
    pub fn lookup(&mut self, key: &Key<A>, h: u64, now_s: u32) -> Option<(u32, Dir)> {
        let (id, dir) = self.find(key, h)?;
        self.live_or_free(id, dir, now_s)
    }

    /// The slot of bucket `b` holding `key` (tag `tag`).
    #[inline(always)]
    fn find_in(&self, b: &Bucket, key: &Key<A>, tag: u16) -> Option<(u32, Dir)> {
        let mut m = tag_matches(&b.tags, tag);
        while m != 0 {
            let r = b.refs[(m.trailing_zeros() / 2) as usize % SLOTS];
            m &= m - 1;
            let (id, dir) = (r >> 1, dir_of(r));
            if self
                .flows
                .get(id as usize)
                .is_some_and(|f| f.key(dir) == key)
            {
                return Some((id, dir));
            }
        }
        None
    }

    #[inline(never)]
    fn find(&self, key: &Key<A>, h: u64) -> Option<(u32, Dir)> {
        let (b1, b2) = self.buckets_of(h);
        let tag = tag_of(h);
        let first = self.index.get(b1)?;
        if let Some(hit) = self.find_in(first, key, tag) {
            return Some(hit);
        }
        if first.overflow == 0 {
            return None;
        }
        self.find_in(self.index.get(b2)?, key, tag)
    }

    /// True if `key` is tracked by a live flow.
    pub fn contains(&self, key: &Key<A>, now_s: u32) -> bool {
        self.find(key, key.hash())
            .and_then(|(id, _)| self.flows.get(id as usize))
            .is_some_and(|f| f.expires > now_s)
    }

    /// A flow by id.
    #[inline(always)]
    pub fn flow(&self, id: u32) -> Option<&Flow<A>> {
        self.flows.get(id as usize)
    }

    /// A flow by id, writable.
    #[inline(always)]
    pub fn flow_mut(&mut self, id: u32) -> Option<&mut Flow<A>> {
        self.flows.get_mut(id as usize)
    }

    /// An empty slot of bucket `b`.
    fn empty_slot(&self, b: usize) -> Option<usize> {
        self.index[b].tags.iter().position(|&t| t == 0)
    }

    fn slot_put(&mut self, h: u64, r: u32) -> bool {
        let tag = tag_of(h);
        let (b1, b2) = self.buckets_of(h);
        // The primary bucket if it has room (lookups read only it), else
        // the secondary, counted in the primary.
        if let Some(k) = self.empty_slot(b1) {
            self.index[b1].tags[k] = tag;
            self.index[b1].refs[k] = r;
            return true;
        }
        if let Some(k) = self.empty_slot(b2) {
            self.index[b2].tags[k] = tag;
            self.index[b2].refs[k] = r;
            self.index[b1].overflow += 1;
            return true;
        }
        // Both full: move one key that lives in its primary `b1` to its own
        // secondary (found by hashing the key again) to make room.
        for k in 0..SLOTS {
            let (t, old) = (self.index[b1].tags[k], self.index[b1].refs[k]);
            let Some(f) = self.flows.get((old >> 1) as usize) else {
                continue;
            };
            let (p, alt) = self.buckets_of(f.key(dir_of(old)).hash());
            if p != b1 {
                continue;
            }
            if let Some(j) = self.empty_slot(alt) {
                self.index[alt].tags[j] = t;
                self.index[alt].refs[j] = old;
                self.index[b1].overflow += 1;
                self.index[b1].tags[k] = tag;
                self.index[b1].refs[k] = r;
                return true;
            }
        }
        false
    }

    fn slot_clear(&mut self, h: u64, r: u32) {
        let tag = tag_of(h);
        let (b1, b2) = self.buckets_of(h);
        let at = |b: &Bucket| (0..SLOTS).find(|&k| b.tags[k] == tag && b.refs[k] == r);
        if let Some(k) = at(&self.index[b1]) {
            self.index[b1].tags[k] = 0;
            self.index[b1].refs[k] = 0;
        } else if let Some(k) = at(&self.index[b2]) {
            self.index[b2].tags[k] = 0;
            self.index[b2].refs[k] = 0;
            self.index[b1].overflow = self.index[b1].overflow.saturating_sub(1);
        }
    }

    /// Tracks `flow` (its `fwd` and `rev` keys, `owner`, state and expiry
    /// set by the caller; the checksum deltas are computed here). Frees up
    /// to 64 expired flows first if the table is full.
    pub fn insert(&mut self, mut flow: Flow<A>, now_s: u32) -> Result<u32, InsertError> {
        let owner = usize::from(flow.owner).min(MAX_IFACES - 1);
        if flow.owner != NO_OWNER && self.owners[owner] >= self.quota {
            return Err(InsertError::Quota);
        }
        if self.free.is_empty() {
            self.sweep(now_s, 64);
        }
        let (hf, hr) = (flow.fwd.hash(), flow.rev.hash());
        if self.find(&flow.fwd, hf).is_some() || self.find(&flow.rev, hr).is_some() {
            return Err(InsertError::Exists);
        }
        let Some(id) = self.free.pop() else {
            return Err(InsertError::Full);
        };
        flow.csum = if flow.flags & flow_flags::NAT != 0 {
            flow.nat_deltas()
        } else {
            [CsumDelta::default(); 2]
        };
        self.flows[id as usize] = flow;
        self.generation = self.generation.wrapping_add(1);
        if !self.slot_put(hf, slot_ref(id, Dir::Fwd)) {
            self.flows[id as usize].state = State::Free;
            self.free.push(id);
            return Err(InsertError::Full);
        }
        if flow.rev != flow.fwd && !self.slot_put(hr, slot_ref(id, Dir::Rev)) {
            self.slot_clear(hf, slot_ref(id, Dir::Fwd));
            self.flows[id as usize].state = State::Free;
            self.free.push(id);
            return Err(InsertError::Full);
        }
        if flow.owner != NO_OWNER {
            self.owners[owner] += 1;
        }
        Ok(id)
    }

    /// Stops tracking flow `id`.
    pub fn remove(&mut self, id: u32) {
        let Some(f) = self.flows.get(id as usize).copied() else {
            return;
        };
        if f.state == State::Free {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.slot_clear(f.fwd.hash(), slot_ref(id, Dir::Fwd));
        if f.rev != f.fwd {
            self.slot_clear(f.rev.hash(), slot_ref(id, Dir::Rev));
        }
        self.flows[id as usize].state = State::Free;
        if f.owner != NO_OWNER {
            let o = usize::from(f.owner).min(MAX_IFACES - 1);
            self.owners[o] = self.owners[o].saturating_sub(1);
        }
        self.free.push(id);
    }

    /// Checks the next `n` flows of the array and frees the expired ones;
    /// returns how many were freed.
    pub fn sweep(&mut self, now_s: u32, n: usize) -> usize {
        let mut freed = 0;
        for _ in 0..n.min(self.flows.len()) {
            self.cursor += 1;
            if self.cursor >= self.flows.len() {
                self.cursor = 0;
            }
            let f = &self.flows[self.cursor];
            if f.state != State::Free && f.expires <= now_s {
                self.remove(self.cursor as u32);
                freed += 1;
            }
        }
        freed
    }

    /// Live flows, for `show conntrack` (control thread; allocates).
    pub fn live(&self, now_s: u32) -> impl Iterator<Item = &Flow<A>> {
        self.flows
            .iter()
            .filter(move |f| f.state != State::Free && f.expires > now_s)
    }

    /// Forgets every flow.
    pub fn clear(&mut self) {
        for b in self.index.iter_mut() {
            *b = Bucket::default();
        }
        for f in self.flows.iter_mut() {
            f.state = State::Free;
        }
        self.free.clear();
        self.free.extend((0..self.flows.len() as u32).rev());
        self.owners.iter_mut().for_each(|o| *o = 0);
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(i: u32, owner: u16) -> Flow {
        let fwd = Key::new(0, 6, 0xc612_0000 + i, 0xc613_0001, 40000, 80);
        let rev = Key::new(0, 6, 0xc613_0102, 0xc612_0000 + i, 8080, 40000);
        Flow {
            fwd,
            rev,
            expires: 100,
            state: State::SynSent,
            flags: flow_flags::NAT,
            owner,
            ..Flow::default()
        }
    }

    #[test]
    fn both_directions_find_the_flow() {
        let mut ct = ConnTrack::new(1024, 0, Timeouts::default());
        let f = flow(1, 3);
        let id = ct.insert(f, 0).unwrap();
        assert_eq!(ct.lookup(&f.fwd, f.fwd.hash(), 1), Some((id, Dir::Fwd)));
        assert_eq!(ct.lookup(&f.rev, f.rev.hash(), 1), Some((id, Dir::Rev)));
        assert_eq!(ct.lookup(&f.fwd.reverse(), f.fwd.reverse().hash(), 1), None);
        assert_eq!(ct.insert(f, 0), Err(InsertError::Exists));
        assert_eq!(ct.owner_count(3), 1);
        ct.remove(id);
        assert_eq!(ct.lookup(&f.fwd, f.fwd.hash(), 1), None);
        assert_eq!(ct.owner_count(3), 0);
        assert!(ct.is_empty());
    }

    #[test]
    fn ipv6_flows_in_their_own_table() {
        let mut ct = ConnTrack6::new(1024, 2, Timeouts::default());
        let a = 0x2001_0db8_0001u128 << 80;
        let mk = |i: u128| {
            let fwd = Key::new(0, 6, a | i, a | 0x99_0000, 40000, 80);
            Flow {
                fwd,
                rev: Key::new(0, 6, a | 0x10_0002, a | i, 8080, 40000),
                expires: 100,
                state: State::SynSent,
                flags: flow_flags::NAT,
                owner: 3,
                ..Flow::default()
            }
        };
        let f = mk(2);
        let id = ct.insert(f, 0).unwrap();
        assert_eq!(ct.lookup(&f.fwd, f.fwd.hash(), 1), Some((id, Dir::Fwd)));
        assert_eq!(ct.lookup(&f.rev, f.rev.hash(), 1), Some((id, Dir::Rev)));
        // Keys that differ only in the high 64 bits are distinct flows.
        let mut g = f;
        g.fwd.src ^= 1 << 100;
        g.rev.dst ^= 1 << 100;
        assert_ne!(g.fwd.hash(), f.fwd.hash());
        assert!(ct.lookup(&g.fwd, g.fwd.hash(), 1).is_none());
        ct.insert(g, 0).unwrap();
        assert_eq!(
            ct.insert(mk(3), 0),
            Err(InsertError::Quota),
            "quota per pod"
        );
        assert!(Geometry::for_flows(1 << 18).bytes_for::<u128>() < 48 << 20);
    }

    #[test]
    fn tcp_timeouts_follow_state() {
        let t = Timeouts::default();
        let mut f = flow(1, 0);
        f.state = Flow::initial_state(6, tcp::SYN);
        assert_eq!(f.state, State::SynSent);
        f.update(Dir::Fwd, tcp::SYN, 10, &t);
        assert_eq!(f.expires, 10 + t.tcp_syn);
        f.update(Dir::Rev, tcp::SYN | tcp::ACK, 11, &t);
        assert_eq!(f.state, State::Established);
        assert_eq!(f.expires, 11 + t.tcp_established);
        f.update(Dir::Fwd, tcp::FIN | tcp::ACK, 12, &t);
        assert_eq!((f.state, f.expires), (State::Closing, 12 + t.tcp_closing));
        f.update(Dir::Rev, tcp::RST, 13, &t);
        assert_eq!((f.state, f.expires), (State::Closed, 13 + t.tcp_closed));
        let mut u = flow(2, 0);
        u.fwd.proto = 17;
        u.state = Flow::initial_state(17, 0);
        u.update(Dir::Fwd, 0, 5, &t);
        assert_eq!((u.state, u.expires), (State::New, 5 + t.udp));
        u.update(Dir::Rev, 0, 6, &t);
        assert_eq!((u.state, u.expires), (State::Established, 6 + t.udp_stream));
    }

    #[test]
    fn expired_flows_are_misses_and_swept() {
        let mut ct = ConnTrack::new(64, 0, Timeouts::default());
        let f = flow(1, 0);
        ct.insert(f, 0).unwrap();
        assert!(ct.lookup(&f.fwd, f.fwd.hash(), 99).is_some());
        assert!(ct.lookup(&f.fwd, f.fwd.hash(), 100).is_none(), "expired");
        assert!(ct.is_empty(), "the lookup freed it");
        for i in 0..10 {
            ct.insert(flow(i, 0), 0).unwrap();
        }
        assert_eq!(ct.sweep(50, 1000), 0);
        assert_eq!(ct.sweep(100, ct.capacity()), 10);
        assert!(ct.is_empty());
    }

    #[test]
    fn quota_refuses_one_owner_only() {
        let mut ct = ConnTrack::new(1024, 5, Timeouts::default());
        for i in 0..5 {
            ct.insert(flow(i, 7), 0).unwrap();
        }
        assert_eq!(ct.insert(flow(5, 7), 0), Err(InsertError::Quota));
        assert!(
            ct.insert(flow(6, 8), 0).is_ok(),
            "another pod is not affected"
        );
        for i in 10..20 {
            ct.insert(flow(i, NO_OWNER), 0).unwrap();
        }
        assert_eq!(ct.owner_count(NO_OWNER), 0, "no quota without a pod");
    }

    #[test]
    fn full_table_keeps_live_flows_and_refuses_new() {
        let mut ct = ConnTrack::new(16, 0, Timeouts::default());
        let cap = ct.capacity() as u32;
        for i in 0..cap {
            ct.insert(flow(i, 0), 0).unwrap();
        }
        assert_eq!(ct.insert(flow(cap, 0), 1), Err(InsertError::Full));
        for i in 0..cap {
            let f = flow(i, 0);
            assert!(
                ct.lookup(&f.fwd, f.fwd.hash(), 1).is_some(),
                "flow {i} kept"
            );
        }
        // Once flows expire, a new one gets room without a sweep call.
        assert!(ct.insert(flow(cap, 0), 200).is_ok());
    }

    #[test]
    fn overflowed_keys_are_found_and_accounted() {
        let mut ct = ConnTrack::new(2048, 0, Timeouts::default());
        // A crowded index (84% of the slots for 3000 keys) forces overflow.
        ct.index = vec![Bucket::default(); 512].into_boxed_slice();
        ct.mask = 511;
        let mut ids = Vec::new();
        for i in 0..1500 {
            if let Ok(id) = ct.insert(flow(i, 0), 0) {
                ids.push((i, id));
            }
        }
        assert!(ct.index.iter().any(|b| b.overflow > 0), "overflow happened");
        assert!(ids.len() > 1000, "{}", ids.len());
        for &(i, id) in &ids {
            let f = flow(i, 0);
            assert_eq!(ct.lookup(&f.fwd, f.fwd.hash(), 1), Some((id, Dir::Fwd)));
            assert_eq!(ct.lookup(&f.rev, f.rev.hash(), 1), Some((id, Dir::Rev)));
        }
        for &(_, id) in &ids {
            ct.remove(id);
        }
        assert!(ct.is_empty());
        assert!(
            ct.index
                .iter()
                .all(|b| b.overflow == 0 && b.tags.iter().all(|&t| t == 0)),
            "index back to empty"
        );
    }

    /// The index's invariants: every live flow's keys are in their primary
    /// or (counted there) secondary bucket, and nothing else is.
    fn check_index(ct: &ConnTrack) {
        let mut want = vec![0u32; ct.index.len()];
        let mut slots = 0;
        for (id, f) in ct.flows.iter().enumerate() {
            if f.state == State::Free {
                continue;
            }
            let mut keys = vec![(f.fwd, Dir::Fwd)];
            if f.rev != f.fwd {
                keys.push((f.rev, Dir::Rev));
            }
            for (k, dir) in keys {
                let h = k.hash();
                let (b1, b2) = ct.buckets_of(h);
                let r = slot_ref(id as u32, dir);
                let has = |b: usize| {
                    (0..SLOTS).any(|s| ct.index[b].tags[s] == tag_of(h) && ct.index[b].refs[s] == r)
                };
                if !has(b1) {
                    assert!(has(b2), "flow {id} {dir:?} indexed");
                    want[b1] += 1;
                }
                slots += 1;
            }
        }
        let used: usize = ct
            .index
            .iter()
            .map(|b| b.tags.iter().filter(|&&t| t != 0).count())
            .sum();
        assert_eq!(used, slots, "no stale slots");
        for (b, w) in ct.index.iter().zip(&want) {
            assert_eq!(b.overflow, *w, "overflow count");
        }
    }

    /// The staged lookup (`hint`, then `lookup_hinted`) against the plain
    /// one.
    fn staged(ct: &mut ConnTrack, k: &Key, now: u32) -> Option<(u32, Dir)> {
        let h = k.hash();
        ct.prefetch(h);
        let hint = ct.hint(h);
        ct.lookup_hinted(k, h, hint, now)
    }

    #[test]
    fn tags_compare_eight_slots_at_once() {
        let tags = [0, 7, 9, 7, 0, 1, 7, 0xffff];
        assert_eq!(tag_matches(&tags, 7), 1 << 2 | 1 << 6 | 1 << 12);
        assert_eq!(tag_matches(&tags, 0xffff), 1 << 14);
        assert_eq!(tag_matches(&tags, 3), 0);
        assert_eq!(tag_matches(&tags, 0), 1 | 1 << 8, "empty slots");
        assert_eq!(tag_of(0), 1, "a tag is never the empty mark");
    }

    #[test]
    fn a_tag_collision_falls_back_to_the_search() {
        let mut ct = ConnTrack::new(64, 0, Timeouts::default());
        let (a, b) = (flow(1, 0), flow(2, 0));
        let ida = ct.insert(a, 0).unwrap();
        let idb = ct.insert(b, 0).unwrap();
        // Make b's forward slot look like a's (same tag, first in a's bucket).
        let h = a.fwd.hash();
        let b1 = h as usize & ct.mask;
        let bucket = &mut ct.index[b1];
        let real = (0..SLOTS)
            .find(|&s| bucket.refs[s] == slot_ref(ida, Dir::Fwd))
            .unwrap();
        let free = (0..SLOTS).find(|&s| bucket.tags[s] == 0).unwrap();
        bucket.tags[free] = bucket.tags[real];
        bucket.refs[free] = bucket.refs[real];
        bucket.tags[real] = 0;
        let first = free.min(real);
        bucket.tags[first] = tag_of(h);
        bucket.refs[first] = slot_ref(idb, Dir::Fwd);
        let second = free.max(real);
        bucket.tags[second] = tag_of(h);
        bucket.refs[second] = slot_ref(ida, Dir::Fwd);
        assert_eq!(ct.hint(h), slot_ref(idb, Dir::Fwd) + 1, "b's slot first");
        assert_eq!(staged(&mut ct, &a.fwd, 1), Some((ida, Dir::Fwd)));
        assert_eq!(ct.lookup(&a.fwd, h, 1), Some((ida, Dir::Fwd)));
    }

    #[test]
    fn staged_lookup_finds_both_directions_and_frees_expired_flows() {
        let mut ct = ConnTrack::new(1024, 0, Timeouts::default());
        let f = flow(1, 0);
        let miss = f.fwd.reverse();
        assert_eq!(ct.hint(miss.hash()), HINT_MISS);
        let id = ct.insert(f, 0).unwrap();
        assert_eq!(staged(&mut ct, &f.fwd, 1), Some((id, Dir::Fwd)));
        assert_eq!(staged(&mut ct, &f.rev, 1), Some((id, Dir::Rev)));
        assert_eq!(staged(&mut ct, &miss, 1), None);
        let g = ct.generation();
        assert_eq!(staged(&mut ct, &f.rev, 100), None, "expired");
        assert_ne!(ct.generation(), g, "the removal makes older hints stale");
        assert!(ct.is_empty());
        assert_eq!(ct.hint(f.fwd.hash()), HINT_MISS);
    }

    #[test]
    fn nat_flows_get_their_checksum_deltas_on_insert() {
        let mut ct = ConnTrack::new(64, 0, Timeouts::default());
        let f = flow(1, 0);
        let id = ct.insert(f, 0).unwrap();
        let stored = ct.flow(id).unwrap().csum;
        assert_eq!(stored, f.nat_deltas());
        assert_ne!(stored, [CsumDelta::default(); 2]);
        let mut plain = flow(2, 0);
        plain.flags = 0;
        plain.csum = [CsumDelta { ip: 1, l4: 2 }; 2];
        let id = ct.insert(plain, 0).unwrap();
        assert_eq!(ct.flow(id).unwrap().csum, [CsumDelta::default(); 2]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random inserts, removals and lookups in a crowded table (so that
        /// keys overflow to their secondary bucket and get displaced) agree
        /// with a map, through both lookups, and keep the index consistent.
        #[test]
        fn table_agrees_with_a_map(
            ops in proptest::collection::vec((0u8..3, 0u32..300), 1..400),
        ) {
            let mut ct = ConnTrack::new(256, 0, Timeouts::default());
            ct.index = vec![Bucket::default(); 64].into_boxed_slice();
            ct.mask = 63;
            let mut model: std::collections::HashMap<u32, u32> = Default::default();
            for (op, i) in ops {
                let f = flow(i, 0);
                match op {
                    0 => match ct.insert(f, 0) {
                        Ok(id) => {
                            proptest::prop_assert!(!model.contains_key(&i));
                            model.insert(i, id);
                        }
                        Err(InsertError::Exists) => proptest::prop_assert!(model.contains_key(&i)),
                        Err(InsertError::Full) => proptest::prop_assert!(!model.contains_key(&i)),
                        Err(InsertError::Quota) => {
                            return Err(proptest::test_runner::TestCaseError::fail("no quota"));
                        }
                    },
                    1 => {
                        if let Some(id) = model.remove(&i) {
                            ct.remove(id);
                        }
                    }
                    _ => {}
                }
                let want = model.get(&i).copied();
                proptest::prop_assert_eq!(staged(&mut ct, &f.fwd, 1), want.map(|id| (id, Dir::Fwd)));
                proptest::prop_assert_eq!(staged(&mut ct, &f.rev, 1), want.map(|id| (id, Dir::Rev)));
                proptest::prop_assert_eq!(ct.lookup(&f.rev, f.rev.hash(), 1), want.map(|id| (id, Dir::Rev)));
            }
            check_index(&ct);
            proptest::prop_assert_eq!(ct.len(), model.len());
            for (&i, &id) in &model {
                let f = flow(i, 0);
                proptest::prop_assert_eq!(staged(&mut ct, &f.fwd, 1), Some((id, Dir::Fwd)));
            }
        }
    }

    #[test]
    fn million_flows_fit_and_stay_findable() {
        let n = 1 << 20;
        let g = Geometry::for_flows(n);
        assert!(g.bytes() <= 256 << 20, "{} bytes", g.bytes());
        let mut ct = ConnTrack::new(n, 0, Timeouts::default());
        let mut refused = 0;
        for i in 0..n as u32 {
            if ct.insert(flow(i, 0), 0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 0, "two-choice buckets at 50% load never overflow");
        for i in (0..n as u32).step_by(997) {
            let f = flow(i, 0);
            assert!(ct.lookup(&f.rev, f.rev.hash(), 1).is_some());
        }
    }
}
