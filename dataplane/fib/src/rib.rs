//! The RIB: the control side's authoritative map of prefix → next hop, as a
//! path-compressed binary (Patricia) trie in an index arena.
//!
//! It owns the route set and answers the questions the table writer asks:
//! exact get/insert/remove, the next hop of the longest *shorter* prefix that
//! covers a prefix (what a deleted prefix falls back to), and the maximal
//! more-specific routes inside a prefix (the sub-ranges a write must skip).
//!
//! It must never be touched by the data path: it is plain single-threaded data
//! owned by the writer.
//!
//! Invariants: every node either carries a route (`nh != NO_ROUTE`) or is a
//! glue node with exactly two children; a child's prefix lies inside its
//! parent's and is longer.

use crate::NO_ROUTE;
use crate::key::Key;

/// "No node" link.
const NIL: u32 = u32::MAX;
/// log2 of the nodes per arena chunk. The arena grows by fixed chunks rather
/// than by doubling one vector, so 1M routes do not hold 2M nodes of capacity.
const CHUNK_SHIFT: u32 = 14;
const CHUNK: usize = 1 << CHUNK_SHIFT;

#[derive(Clone, Copy, Debug)]
struct Node<K> {
    key: K,
    nh: u32,
    child: [u32; 2],
    len: u8,
}

/// Where a node hangs: the root link or a parent's child slot.
#[derive(Clone, Copy)]
enum Link {
    Root,
    Child(u32, usize),
}

/// Patricia trie of routes keyed by `K` (`u32` or `u128`).
#[derive(Debug)]
pub(crate) struct Rib<K> {
    /// Node `i` is `nodes[i / CHUNK][i % CHUNK]`; every chunk but the last is full.
    nodes: Vec<Vec<Node<K>>>,
    /// Nodes ever created (the next fresh index).
    count: usize,
    free: Vec<u32>,
    root: u32,
    routes: usize,
}

impl<K: Key> Rib<K> {
    pub(crate) fn new() -> Self {
        Self {
            nodes: Vec::new(),
            count: 0,
            free: Vec::new(),
            root: NIL,
            routes: 0,
        }
    }

    /// Number of routes.
    pub(crate) fn len(&self) -> usize {
        self.routes
    }

    /// Heap bytes held (arena and free list capacity).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.nodes
            .iter()
            .map(|c| c.capacity() * size_of::<Node<K>>())
            .sum::<usize>()
            + self.nodes.capacity() * size_of::<Vec<Node<K>>>()
            + self.free.capacity() * size_of::<u32>()
    }

    fn node(&self, i: u32) -> Option<&Node<K>> {
        self.nodes
            .get((i >> CHUNK_SHIFT) as usize)?
            .get(i as usize & (CHUNK - 1))
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node<K>> {
        self.nodes
            .get_mut((i >> CHUNK_SHIFT) as usize)?
            .get_mut(i as usize & (CHUNK - 1))
    }

    fn new_node(&mut self, key: K, len: u8, nh: u32) -> u32 {
        let n = Node {
            key,
            nh,
            child: [NIL; 2],
            len,
        };
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.node_mut(i) {
                *slot = n;
            }
            i
        } else {
            // The arena never holds more than 2^32 - 1 nodes (2 per route).
            let i = u32::try_from(self.count).unwrap_or(NIL);
            match self.nodes.last_mut() {
                Some(c) if c.len() < CHUNK => c.push(n),
                _ => {
                    let mut c = Vec::with_capacity(CHUNK);
                    c.push(n);
                    self.nodes.push(c);
                }
            }
            self.count += 1;
            i
        }
    }

    fn set_link(&mut self, link: Link, to: u32) {
        match link {
            Link::Root => self.root = to,
            Link::Child(p, side) => {
                if let Some(n) = self.node_mut(p) {
                    n.child[side] = to;
                }
            }
        }
    }

    /// The node holding exactly `key/len` (route or glue) and the link to it.
    fn find(&self, key: K, len: u8) -> Option<(u32, Link)> {
        let mut link = Link::Root;
        let mut cur = self.root;
        while let Some(n) = self.node(cur) {
            if n.len > len || (key & K::mask(n.len)) != n.key {
                return None;
            }
            if n.len == len {
                return Some((cur, link));
            }
            let side = key.bit(n.len);
            link = Link::Child(cur, side);
            cur = n.child[side];
        }
        None
    }

    /// The next hop of route `key/len`, if present.
    pub(crate) fn get(&self, key: K, len: u8) -> Option<u32> {
        let (i, _) = self.find(key, len)?;
        self.node(i).map(|n| n.nh).filter(|&nh| nh != NO_ROUTE)
    }

    /// Inserts or replaces route `key/len` (host bits clear, `nh != NO_ROUTE`);
    /// returns the previous next hop.
    pub(crate) fn insert(&mut self, key: K, len: u8, nh: u32) -> Option<u32> {
        let mut link = Link::Root;
        let mut cur = self.root;
        loop {
            let Some(n) = self.node(cur).copied() else {
                let leaf = self.new_node(key, len, nh);
                self.set_link(link, leaf);
                self.routes += 1;
                return None;
            };
            let cl = key.common_len(n.key).min(n.len).min(len);
            if cl == n.len && n.len == len {
                let old = n.nh;
                if let Some(m) = self.node_mut(cur) {
                    m.nh = nh;
                }
                if old == NO_ROUTE {
                    self.routes += 1;
                    return None;
                }
                return Some(old);
            }
            if cl == n.len {
                // `n` is a proper prefix of the new route: descend.
                let side = key.bit(n.len);
                link = Link::Child(cur, side);
                cur = n.child[side];
                continue;
            }
            let new = self.new_node(key, len, nh);
            self.routes += 1;
            if cl == len {
                // The new route is a proper prefix of `n`: it becomes n's parent.
                if let Some(m) = self.node_mut(new) {
                    m.child[n.key.bit(len)] = cur;
                }
                self.set_link(link, new);
            } else {
                // They diverge at bit `cl`: a glue node holds both.
                let glue = self.new_node(key & K::mask(cl), cl, NO_ROUTE);
                if let Some(g) = self.node_mut(glue) {
                    g.child[key.bit(cl)] = new;
                    g.child[n.key.bit(cl)] = cur;
                }
                self.set_link(link, glue);
            }
            return None;
        }
    }

    /// Removes route `key/len`; returns its next hop if it was present.
    pub(crate) fn remove(&mut self, key: K, len: u8) -> Option<u32> {
        // Walk down remembering the parent's link, so that empty glue can be spliced out.
        let mut parent: Option<(u32, Link)> = None;
        let mut link = Link::Root;
        let mut cur = self.root;
        let target = loop {
            let n = *self.node(cur)?;
            if n.len > len || (key & K::mask(n.len)) != n.key {
                return None;
            }
            if n.len == len {
                break n;
            }
            parent = Some((cur, link));
            let side = key.bit(n.len);
            link = Link::Child(cur, side);
            cur = n.child[side];
        };
        let old = target.nh;
        if old == NO_ROUTE {
            return None;
        }
        self.routes -= 1;
        let kids = target.child;
        match (kids[0] != NIL, kids[1] != NIL) {
            (true, true) => {
                // Still needed as glue.
                if let Some(m) = self.node_mut(cur) {
                    m.nh = NO_ROUTE;
                }
            }
            (true, false) | (false, true) => {
                let only = if kids[0] != NIL { kids[0] } else { kids[1] };
                self.set_link(link, only);
                self.free.push(cur);
            }
            (false, false) => {
                self.set_link(link, NIL);
                self.free.push(cur);
                // A glue parent left with one child is spliced out too.
                if let Some((p, plink)) = parent
                    && let Some(pn) = self.node(p).copied()
                    && pn.nh == NO_ROUTE
                {
                    let only = if pn.child[0] != NIL {
                        pn.child[0]
                    } else {
                        pn.child[1]
                    };
                    self.set_link(plink, only);
                    self.free.push(p);
                }
            }
        }
        Some(old)
    }

    /// Next hop of the longest route strictly shorter than `len` that covers
    /// `key/len`, or `NO_ROUTE`.
    pub(crate) fn parent_nh(&self, key: K, len: u8) -> u32 {
        let mut best = NO_ROUTE;
        let mut cur = self.root;
        while let Some(n) = self.node(cur) {
            if n.len >= len || (key & K::mask(n.len)) != n.key {
                break;
            }
            if n.nh != NO_ROUTE {
                best = n.nh;
            }
            cur = n.child[key.bit(n.len)];
        }
        best
    }

    /// Longest-prefix match of a full address (the reference the tables are
    /// checked against in tests).
    #[cfg(test)]
    pub(crate) fn lpm(&self, addr: K) -> u32 {
        let mut best = NO_ROUTE;
        let mut cur = self.root;
        while let Some(n) = self.node(cur) {
            if (addr & K::mask(n.len)) != n.key {
                break;
            }
            if n.nh != NO_ROUTE {
                best = n.nh;
            }
            if n.len == K::BITS {
                break;
            }
            cur = n.child[addr.bit(n.len)];
        }
        best
    }

    /// Appends to `out`, in address order, the maximal routes strictly inside
    /// `key/len` (longer than `len`, not inside another such route).
    pub(crate) fn maximal_subroutes(&self, key: K, len: u8, out: &mut Vec<(K, u8)>) {
        let mut cur = self.root;
        let top = loop {
            let Some(n) = self.node(cur) else { return };
            if n.len >= len {
                if (n.key & K::mask(len)) != key {
                    return;
                }
                break cur;
            }
            if (key & K::mask(n.len)) != n.key {
                return;
            }
            cur = n.child[key.bit(n.len)];
        };
        let mut stack: Vec<u32> = Vec::new();
        match self.node(top) {
            Some(n) if n.len == len => {
                stack.extend([n.child[1], n.child[0]].into_iter().filter(|&c| c != NIL));
            }
            Some(_) => stack.push(top),
            None => return,
        }
        while let Some(c) = stack.pop() {
            let Some(n) = self.node(c) else { continue };
            if n.nh != NO_ROUTE {
                out.push((n.key, n.len));
            } else {
                stack.extend([n.child[1], n.child[0]].into_iter().filter(|&c| c != NIL));
            }
        }
    }

    /// Whether any route longer than `len` lies inside `key/len`.
    #[cfg(test)]
    pub(crate) fn has_subroutes(&self, key: K, len: u8) -> bool {
        let mut v = Vec::new();
        self.maximal_subroutes(key, len, &mut v);
        !v.is_empty()
    }

    /// Routes in address order, shorter prefixes before the longer ones they cover.
    pub(crate) fn iter(&self) -> RibIter<'_, K> {
        let mut stack = Vec::new();
        if self.root != NIL {
            stack.push(self.root);
        }
        RibIter { rib: self, stack }
    }
}

/// Iterator over the routes of a [`Rib`]: `(key, len, nh)`.
#[derive(Debug)]
pub(crate) struct RibIter<'a, K> {
    rib: &'a Rib<K>,
    stack: Vec<u32>,
}

impl<K: Key> Iterator for RibIter<'_, K> {
    type Item = (K, u8, u32);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(c) = self.stack.pop() {
            let Some(n) = self.rib.node(c) else { continue };
            self.stack
                .extend([n.child[1], n.child[0]].into_iter().filter(|&c| c != NIL));
            if n.nh != NO_ROUTE {
                return Some((n.key, n.len, n.nh));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Rib;
    use crate::NO_ROUTE;

    #[test]
    fn insert_get_remove_lpm() {
        let mut r: Rib<u32> = Rib::new();
        assert_eq!(r.insert(0x0a00_0000, 8, 1), None);
        assert_eq!(r.insert(0x0a01_0000, 16, 2), None);
        assert_eq!(r.insert(0x0a02_0000, 16, 3), None);
        assert_eq!(r.insert(0, 0, 4), None);
        assert_eq!(r.insert(0x0a01_0000, 16, 5), Some(2));
        assert_eq!(r.len(), 4);
        assert_eq!(r.get(0x0a01_0000, 16), Some(5));
        assert_eq!(r.get(0x0a00_0000, 9), None);
        assert_eq!(r.lpm(0x0a01_0203), 5);
        assert_eq!(r.lpm(0x0a03_0203), 1);
        assert_eq!(r.lpm(0x0b03_0203), 4);
        assert_eq!(r.parent_nh(0x0a01_0000, 16), 1);
        assert_eq!(r.parent_nh(0x0a00_0000, 8), 4);
        assert_eq!(r.parent_nh(0, 0), NO_ROUTE);
        let mut subs = Vec::new();
        r.maximal_subroutes(0x0a00_0000, 8, &mut subs);
        assert_eq!(subs, vec![(0x0a01_0000, 16), (0x0a02_0000, 16)]);
        subs.clear();
        r.maximal_subroutes(0, 0, &mut subs);
        assert_eq!(subs, vec![(0x0a00_0000, 8)]);
        assert_eq!(r.remove(0x0a00_0000, 8), Some(1));
        assert_eq!(r.remove(0x0a00_0000, 8), None);
        subs.clear();
        r.maximal_subroutes(0, 0, &mut subs);
        assert_eq!(subs, vec![(0x0a01_0000, 16), (0x0a02_0000, 16)]);
        assert_eq!(r.lpm(0x0a03_0203), 4);
        let all: Vec<_> = r.iter().collect();
        assert_eq!(
            all,
            vec![(0, 0, 4), (0x0a01_0000, 16, 5), (0x0a02_0000, 16, 3)]
        );
        for (k, l, _) in all {
            assert!(r.remove(k, l).is_some());
        }
        assert_eq!(r.len(), 0);
        assert!(r.iter().next().is_none());
        assert!(!r.has_subroutes(0, 0));
    }
}
