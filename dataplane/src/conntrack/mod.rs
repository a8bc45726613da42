//! Connection tracking: a fixed-capacity flow table, one per worker.
//!
//! Owns the flows a worker tracks (service NAT and policy-isolated pods) and
//! their protocol-state timeouts. A flow has two keys, the originator's
//! 5-tuple (`fwd`) and the reply as it arrives (`rev`); NAT needs no other
//! field: a forward packet leaves as `rev` reversed, a reply leaves as `fwd`
//! reversed.
//!
//! Layout: flows in a preallocated array (40 bytes each) and an index of
//! 64-byte buckets (7 slots of tag + flow id, and an overflow count), both
//! on transparent huge pages where the kernel allows (random access would
//! miss the TLB on almost every packet otherwise). A key goes to its primary
//! bucket when it has room, else to its secondary (counted in the primary;
//! one-level displacement when both are full; no tombstones): a lookup reads
//! the secondary only for an overflowed primary, so a vector's lookups
//! prefetch one bucket per key, then the flows the tags point at. At least 4
//! slots per flow (2 keys): 1M flows take 40 MiB of flows + 32 MiB of index
//! (+ the free list).
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
/// stays 40 bytes).
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
        u64::from(src) << 32 | u64::from(dst)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
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

impl<A: Addr> Key<A> {
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

    /// A 64-bit hash (multiply-xorshift over the two words of the key).
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let a = A::mix(self.src, self.dst);
        let b = u64::from(self.sport) << 48
            | u64::from(self.dport) << 32
            | u64::from(self.proto) << 16
            | u64::from(self.zone);
        let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.rotate_left(23);
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
    /// A packet was seen in the reply direction.
    pub const SEEN_REPLY: u8 = 2;
}

/// One tracked connection (40 bytes for IPv4, 112 for IPv6).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
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
}

const _: () = assert!(std::mem::size_of::<Flow>() == 40);
const _: () = assert!(std::mem::size_of::<Flow<u128>>() == 112);

/// A flow charged to no pod (not counted against any quota).
pub const NO_OWNER: u16 = u16::MAX;

/// Direction of a packet relative to its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Fwd,
    Rev,
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
        if dir == Dir::Rev {
            self.flags |= flow_flags::SEEN_REPLY;
        }
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

/// Key slots per bucket; the bucket's last word counts the keys whose
/// primary bucket this is but that live in their secondary one.
const SLOTS: usize = 7;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// `tag << 32 | (flow + 1)`; 0 = empty.
    s: [u64; SLOTS],
    overflow: u64,
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

/// See the module doc. `A` is the address family (one table per family).
pub struct ConnTrack<A = u32> {
    flows: Box<[Flow<A>]>,
    index: Box<[Bucket]>,
    mask: usize,
    free: Vec<u32>,
    owners: Box<[u32]>,
    quota: u32,
    cursor: usize,
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

#[inline(always)]
fn tag_of(h: u64) -> u64 {
    (h >> 32) << 32
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

    #[inline(always)]
    fn buckets_of(&self, h: u64) -> (usize, usize) {
        let b1 = h as usize & self.mask;
        let mut b2 = (h >> 32) as usize & self.mask;
        if b2 == b1 {
            b2 = b1 ^ 1;
        }
        (b1, b2)
    }

    /// Prefetches the buckets a key with hash `h` may be in.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        // The secondary bucket is read only after the primary overflowed.
        vrouter_buf::prefetch_slice(&self.index, self.buckets_of(h).0);
    }

    /// The buckets a lookup of hash `h` reads: the primary, and the
    /// secondary only if keys of the primary overflowed into theirs.
    #[inline(always)]
    fn probe(&self, h: u64) -> impl Iterator<Item = &Bucket> {
        let (b1, b2) = self.buckets_of(h);
        let first = self.index.get(b1);
        let second = first
            .filter(|b| b.overflow != 0)
            .and_then(|_| self.index.get(b2));
        first.into_iter().chain(second)
    }

    /// Prefetches the flows whose tags match hash `h` (call after
    /// [`ConnTrack::prefetch`] had time to bring the buckets in).
    #[inline(always)]
    pub fn prefetch_flows(&self, h: u64) {
        let tag = tag_of(h);
        for bucket in self.probe(h) {
            for &s in &bucket.s {
                if s != 0 && s & !0xffff_ffff == tag {
                    let id = (s as u32).wrapping_sub(1);
                    if let Some(f) = self.flows.get(id as usize) {
                        // A 40-byte flow straddles two cache lines in 3
                        // cases out of 8 (an IPv6 one spans 2 or 3).
                        vrouter_buf::prefetch(f);
                        vrouter_buf::prefetch(&f.rev);
                        vrouter_buf::prefetch(&f.owner);
                    }
                }
            }
        }
    }

    /// The live flow `key` (hash `h`) belongs to and the packet's direction.
    /// An expired flow found here is freed and reported as a miss.
    #[inline]
    pub fn lookup(&mut self, key: &Key<A>, h: u64, now_s: u32) -> Option<(u32, Dir)> {
        let (id, dir) = self.find(key, h)?;
        if self.flows.get(id as usize)?.expires <= now_s {
            self.remove(id);
            return None;
        }
        Some((id, dir))
    }

    #[inline(always)]
    fn find(&self, key: &Key<A>, h: u64) -> Option<(u32, Dir)> {
        let tag = tag_of(h);
        for bucket in self.probe(h) {
            for &s in &bucket.s {
                if s != 0 && s & !0xffff_ffff == tag {
                    let id = (s as u32).wrapping_sub(1);
                    if let Some(f) = self.flows.get(id as usize) {
                        if f.fwd == *key {
                            return Some((id, Dir::Fwd));
                        }
                        if f.rev == *key {
                            return Some((id, Dir::Rev));
                        }
                    }
                }
            }
        }
        None
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

    fn slot_put(&mut self, h: u64, id: u32) -> bool {
        let v = tag_of(h) | u64::from(id + 1);
        let (b1, b2) = self.buckets_of(h);
        // The primary bucket if it has room (lookups read only it), else
        // the secondary, counted in the primary.
        if let Some(s) = self.index[b1].s.iter_mut().find(|s| **s == 0) {
            *s = v;
            return true;
        }
        if let Some(s) = self.index[b2].s.iter_mut().find(|s| **s == 0) {
            *s = v;
            self.index[b1].overflow += 1;
            return true;
        }
        // Both full: move one key that lives in its primary `b1` to its own
        // secondary (known from its tag) to make room. Keys whose tag cannot
        // tell primary from secondary residence are left alone.
        for k in 0..SLOTS {
            let s = self.index[b1].s[k];
            let alt = (s >> 32) as usize & self.mask;
            if s == 0 || alt == b1 || alt == b1 ^ 1 {
                continue;
            }
            if let Some(j) = self.index[alt].s.iter().position(|&x| x == 0) {
                self.index[alt].s[j] = s;
                self.index[b1].overflow += 1;
                self.index[b1].s[k] = v;
                return true;
            }
        }
        false
    }

    fn slot_clear(&mut self, h: u64, id: u32) {
        let v = tag_of(h) | u64::from(id + 1);
        let (b1, b2) = self.buckets_of(h);
        if let Some(s) = self.index[b1].s.iter_mut().find(|s| **s == v) {
            *s = 0;
        } else if let Some(s) = self.index[b2].s.iter_mut().find(|s| **s == v) {
            *s = 0;
            self.index[b1].overflow = self.index[b1].overflow.saturating_sub(1);
        }
    }

    /// Tracks `flow` (its `fwd` and `rev` keys, `owner`, state and expiry
    /// set by the caller). Frees up to 8 expired flows first if the table
    /// is full.
    pub fn insert(&mut self, flow: Flow<A>, now_s: u32) -> Result<u32, InsertError> {
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
        self.flows[id as usize] = flow;
        if !self.slot_put(hf, id) {
            self.flows[id as usize].state = State::Free;
            self.free.push(id);
            return Err(InsertError::Full);
        }
        if flow.rev != flow.fwd && !self.slot_put(hr, id) {
            self.slot_clear(hf, id);
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
        self.slot_clear(f.fwd.hash(), id);
        if f.rev != f.fwd {
            self.slot_clear(f.rev.hash(), id);
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
                .all(|b| b.overflow == 0 && b.s.iter().all(|&s| s == 0)),
            "index back to empty"
        );
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
