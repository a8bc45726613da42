//! NetworkPolicy, compiled: which pods are isolated in which direction, and
//! the rules that allow traffic to or from them.
//!
//! Owns the classifier workers consult for the first packet of a connection
//! to or from an isolated pod (later packets and replies ride the conntrack
//! entry, so the classifier is stateless). Kubernetes semantics: a pod
//! selected by a policy whose types include a direction is isolated in that
//! direction; a connection is allowed if any rule of any policy selecting
//! the pod for that direction matches; egress from the source and ingress to
//! the destination must both allow it. A rule matches when the peer is in
//! its address set (pods and namespaces resolved to IPs by the control
//! plane, ipBlocks minus their `except`) — no peers means any — and the
//! destination port is in one of its port ranges — no ports means any.
//!
//! Compiled form: per pod IP, per direction, a [`RuleSet`]: the rules'
//! peer sets merged into disjoint address segments (binary search), each
//! with the (protocol, first port, last port) entries of the rules covering
//! it, in rule order (first match counts). Counters per rule (allowed) and per
//! policy (denied) are atomics in the snapshot; they survive recompiles by
//! policy name.
//!
//! Must never: allocate or lock in `allow` (it runs on workers).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::conntrack::Addr;
use crate::service::FastHasher;

/// A set of addresses of one family (`u32`: IPv4, `u128`: IPv6) as sorted,
/// disjoint, inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet<T = u32> {
    iv: Vec<(T, T)>,
}

impl<T: Addr> IpSet<T> {
    /// Builds the set from included and excluded intervals.
    pub fn new(mut incl: Vec<(T, T)>, mut excl: Vec<(T, T)>) -> IpSet<T> {
        incl.sort_unstable();
        excl.sort_unstable();
        let mut merged: Vec<(T, T)> = Vec::new();
        for (lo, hi) in incl {
            match merged.last_mut() {
                Some(last) if lo <= last.1.succ() => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let mut out = Vec::new();
        for (mut lo, hi) in merged {
            let mut alive = true;
            for &(elo, ehi) in &excl {
                if ehi < lo || elo > hi {
                    continue;
                }
                if elo > lo {
                    out.push((lo, elo.pred()));
                }
                if ehi >= hi {
                    alive = false;
                    break;
                }
                lo = ehi.succ();
            }
            if alive {
                out.push((lo, hi));
            }
        }
        IpSet { iv: out }
    }

    /// True if `a` is in the set.
    #[inline]
    pub fn contains(&self, a: T) -> bool {
        let i = self.iv.partition_point(|&(lo, _)| lo <= a);
        i > 0 && self.iv.get(i - 1).is_some_and(|&(_, hi)| a <= hi)
    }

    /// The intervals.
    pub fn iter(&self) -> impl Iterator<Item = (T, T)> + '_ {
        self.iv.iter().copied()
    }

    /// Number of intervals.
    pub fn intervals(&self) -> usize {
        self.iv.len()
    }
}

/// The interval of a prefix.
pub fn prefix_range<T: Addr>(addr: T, len: u8) -> (T, T) {
    let bits = T::BITS;
    let len = u32::from(len).min(bits);
    let full = T::MAX.to_u128();
    let mask = if len == 0 {
        0
    } else {
        (full << (bits - len)) & full
    };
    let a = addr.to_u128();
    (
        T::from_u128(a & mask),
        T::from_u128((a & mask) | (!mask & full)),
    )
}

/// A compiled rule (peers of one address family).
#[derive(Debug, Clone)]
pub struct Rule<T = u32> {
    /// Index of the policy in `PolicyTable::policies`.
    pub policy: u32,
    /// Index of the rule's counter.
    pub counter: u32,
    /// Peers; `None` = any.
    pub peers: Option<IpSet<T>>,
    /// (protocol, first, last); empty = any.
    pub ports: Vec<(u8, u16, u16)>,
}

/// A port range of a rule inside a [`RuleSet`] segment; protocol 0 = any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortEntry {
    proto: u8,
    lo: u16,
    hi: u16,
    counter: u32,
}

/// One direction of one pod: its rules merged into disjoint peer segments,
/// each holding the port ranges of the rules that cover it (in rule
/// order). A lookup is one binary search and a scan of a short list.
#[derive(Debug, Clone, Default)]
pub struct RuleSet<T = u32> {
    /// Segment `i` covers `starts[i]..starts[i + 1]`; `starts[0]` is 0.
    starts: Vec<T>,
    /// Per segment: (offset, length) in `ports`.
    spans: Vec<(u32, u32)>,
    ports: Vec<PortEntry>,
    rules: usize,
}

impl<T: Addr> RuleSet<T> {
    /// Compiles `rules` (control thread).
    pub fn new(rules: &[Rule<T>]) -> RuleSet<T> {
        let ivs = |r: &Rule<T>| -> Vec<(T, T)> {
            match &r.peers {
                None => vec![(T::default(), T::MAX)],
                Some(s) => s.iter().collect(),
            }
        };
        let mut starts = vec![T::default()];
        for r in rules {
            for (lo, hi) in ivs(r) {
                starts.push(lo);
                if hi < T::MAX {
                    starts.push(hi.succ());
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut cover: Vec<Vec<u32>> = vec![Vec::new(); starts.len()];
        for (ri, r) in rules.iter().enumerate() {
            for (lo, hi) in ivs(r) {
                let first = starts.partition_point(|&s| s < lo);
                let end = if hi == T::MAX {
                    starts.len()
                } else {
                    starts.partition_point(|&s| s <= hi)
                };
                for c in cover.iter_mut().take(end).skip(first) {
                    if c.last() != Some(&(ri as u32)) {
                        c.push(ri as u32);
                    }
                }
            }
        }
        let mut spans = Vec::with_capacity(starts.len());
        let mut ports = Vec::new();
        for c in &cover {
            let off = ports.len() as u32;
            for &ri in c {
                let r = &rules[ri as usize];
                if r.ports.is_empty() {
                    ports.push(PortEntry {
                        proto: 0,
                        lo: 0,
                        hi: u16::MAX,
                        counter: r.counter,
                    });
                }
                for &(proto, lo, hi) in &r.ports {
                    ports.push(PortEntry {
                        proto,
                        lo,
                        hi,
                        counter: r.counter,
                    });
                }
            }
            spans.push((off, ports.len() as u32 - off));
        }
        RuleSet {
            starts,
            spans,
            ports,
            rules: rules.len(),
        }
    }

    /// Number of rules compiled in.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// The counter of the first rule that matches, if any.
    #[inline]
    pub fn matches(&self, peer: T, proto: u8, port: u16) -> Option<u32> {
        let seg = self.starts.partition_point(|&s| s <= peer).checked_sub(1)?;
        let &(off, len) = self.spans.get(seg)?;
        self.ports
            .get(off as usize..(off + len) as usize)?
            .iter()
            .find(|e| (e.proto == 0 || e.proto == proto) && port >= e.lo && port <= e.hi)
            .map(|e| e.counter)
    }
}

/// What applies to one pod.
#[derive(Debug, Clone, Default)]
pub struct PodRules<T = u32> {
    /// `Some` if isolated for ingress (the rules may be empty: deny all).
    pub ingress: Option<Arc<RuleSet<T>>>,
    pub egress: Option<Arc<RuleSet<T>>>,
    /// Policies isolating this pod per direction (denied counters).
    pub ingress_policy: u32,
    pub egress_policy: u32,
}

/// A policy's name and counters (`show policies`).
#[derive(Debug)]
pub struct PolicyInfo {
    pub name: String,
    /// Per rule: ingress rules first, then egress rules.
    pub rule_names: Vec<String>,
    pub first_counter: u32,
    pub denied: AtomicU64,
}

/// The compiled policies of one snapshot.
#[derive(Debug, Default)]
pub struct PolicyTable {
    pub pods: HashMap<u32, PodRules, BuildHasherDefault<FastHasher>>,
    /// IPv6 pods.
    pub pods6: HashMap<u128, PodRules<u128>, BuildHasherDefault<FastHasher>>,
    pub policies: Vec<PolicyInfo>,
    pub counters: Box<[AtomicU64]>,
}

/// A classifier verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Neither end is isolated: no policy applies (no tracking needed).
    NotIsolated,
    Allow,
    /// Denied by the isolation of the source (egress) or destination (ingress).
    DenyEgress,
    DenyIngress,
}

/// An address family the policy table holds pods of.
pub trait PolicyAddr: Addr {
    /// The isolated pods of this family.
    fn pods(t: &PolicyTable) -> &HashMap<Self, PodRules<Self>, BuildHasherDefault<FastHasher>>;
}

impl PolicyAddr for u32 {
    #[inline(always)]
    fn pods(t: &PolicyTable) -> &HashMap<u32, PodRules, BuildHasherDefault<FastHasher>> {
        &t.pods
    }
}

impl PolicyAddr for u128 {
    #[inline(always)]
    fn pods(t: &PolicyTable) -> &HashMap<u128, PodRules<u128>, BuildHasherDefault<FastHasher>> {
        &t.pods6
    }
}

impl PolicyTable {
    /// True if no pod is isolated.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.pods6.is_empty()
    }

    /// True if `ip` is an isolated pod.
    #[inline]
    pub fn isolated<T: PolicyAddr>(&self, ip: T) -> bool {
        let pods = T::pods(self);
        !pods.is_empty() && pods.contains_key(&ip)
    }

    #[inline]
    fn check<T: Addr>(&self, rules: &RuleSet<T>, peer: T, proto: u8, port: u16) -> bool {
        match rules.matches(peer, proto, port) {
            Some(counter) => {
                if let Some(c) = self.counters.get(counter as usize) {
                    c.fetch_add(1, Relaxed);
                }
                true
            }
            None => false,
        }
    }

    /// The verdict for a new connection `src → dst:port` over `proto`
    /// (addresses after service translation). Counts the rule that allowed
    /// it, or the policy that denied it.
    #[inline]
    pub fn allow<T: PolicyAddr>(&self, src: T, dst: T, proto: u8, port: u16) -> Verdict {
        let pods = T::pods(self);
        if pods.is_empty() {
            return Verdict::NotIsolated;
        }
        let (s, d) = (pods.get(&src), pods.get(&dst));
        if s.is_none() && d.is_none() {
            return Verdict::NotIsolated;
        }
        if let Some(s) = s
            && let Some(rules) = &s.egress
            && !self.check(rules, dst, proto, port)
        {
            self.denied(s.egress_policy);
            return Verdict::DenyEgress;
        }
        if let Some(d) = d
            && let Some(rules) = &d.ingress
            && !self.check(rules, src, proto, port)
        {
            self.denied(d.ingress_policy);
            return Verdict::DenyIngress;
        }
        Verdict::Allow
    }

    fn denied(&self, policy: u32) {
        if let Some(p) = self.policies.get(policy as usize) {
            p.denied.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn ipset_with_except() {
        let s = IpSet::new(
            vec![prefix_range(ip("198.18.0.0"), 16)],
            vec![
                prefix_range(ip("198.18.5.0"), 24),
                prefix_range(ip("198.18.255.0"), 24),
            ],
        );
        assert!(s.contains(ip("198.18.0.0")));
        assert!(s.contains(ip("198.18.4.255")));
        assert!(!s.contains(ip("198.18.5.7")));
        assert!(s.contains(ip("198.18.6.0")));
        assert!(!s.contains(ip("198.18.255.1")));
        assert!(!s.contains(ip("198.19.0.1")));
        assert_eq!(s.intervals(), 2);
        let pods = IpSet::<u32>::new(vec![(5, 5), (7, 7), (6, 6), (1, 1)], vec![]);
        assert_eq!(pods.intervals(), 2);
        assert!(pods.contains(6) && !pods.contains(4));
        let all = IpSet::new(vec![(0, u32::MAX)], vec![(0, 0), (u32::MAX, u32::MAX)]);
        assert!(all.contains(1) && !all.contains(0) && !all.contains(u32::MAX));
    }

    #[test]
    fn ipv6_prefixes_and_sets() {
        let a = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            prefix_range(a("2001:db8:1::5"), 64),
            (a("2001:db8:1::"), a("2001:db8:1:0:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(prefix_range(a("2001:db8::1"), 0), (0, u128::MAX));
        assert_eq!(
            prefix_range(a("2001:db8::1"), 128),
            (a("2001:db8::1"), a("2001:db8::1"))
        );
        assert_eq!(prefix_range(0xc612_0102u32, 24), (0xc612_0100, 0xc612_01ff));
        let s = IpSet::new(
            vec![prefix_range(a("2001:db8::"), 32)],
            vec![prefix_range(a("2001:db8:1::"), 64)],
        );
        assert!(s.contains(a("2001:db8::1")) && s.contains(a("2001:db8:2::2")));
        assert!(!s.contains(a("2001:db8:1::2")) && !s.contains(a("2001:db9::1")));
        let rules = [Rule {
            policy: 0,
            counter: 0,
            peers: Some(s),
            ports: vec![(6, 80, 80)],
        }];
        let set = RuleSet::new(&rules);
        assert_eq!(set.matches(a("2001:db8:2::2"), 6, 80), Some(0));
        assert_eq!(set.matches(a("2001:db8:1::2"), 6, 80), None);
        assert_eq!(set.matches(u128::MAX, 6, 80), None);
    }

    /// The merged segments answer exactly like evaluating the rules one by
    /// one, first match wins.
    #[test]
    fn ruleset_matches_naive_evaluation() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..50 {
            let rules: Vec<Rule> = (0..rng.gen_range(0..40))
                .map(|k| Rule {
                    policy: 0,
                    counter: k,
                    peers: if rng.gen_bool(0.2) {
                        None
                    } else {
                        let incl = (0..rng.gen_range(0..5))
                            .map(|_| {
                                prefix_range(rng.gen_range(0..256) << 8, rng.gen_range(20..=32))
                            })
                            .collect();
                        let excl = (0..rng.gen_range(0..3))
                            .map(|_| {
                                prefix_range(rng.gen_range(0..256) << 8, rng.gen_range(24..=32))
                            })
                            .collect();
                        Some(IpSet::new(incl, excl))
                    },
                    ports: (0..rng.gen_range(0..3))
                        .map(|_| {
                            let lo = rng.gen_range(0..100);
                            (
                                if rng.gen_bool(0.5) { 6 } else { 17 },
                                lo,
                                lo + rng.gen_range(0..10),
                            )
                        })
                        .collect(),
                })
                .collect();
            let set = RuleSet::new(&rules);
            for n in 0..2000 {
                // The ends of the address space, then mostly in the rules'
                // range (many segments).
                let peer = match n {
                    0 => 0,
                    1 => u32::MAX,
                    _ if rng.gen_bool(0.9) => rng.gen_range(0..0x1_0000),
                    _ => rng.r#gen(),
                };
                let proto = if rng.gen_bool(0.5) { 6 } else { 17 };
                let port = rng.gen_range(0..120);
                let naive = rules
                    .iter()
                    .find(|r| {
                        r.peers.as_ref().is_none_or(|s| s.contains(peer))
                            && (r.ports.is_empty()
                                || r.ports
                                    .iter()
                                    .any(|&(p, lo, hi)| p == proto && port >= lo && port <= hi))
                    })
                    .map(|r| r.counter);
                assert_eq!(
                    set.matches(peer, proto, port),
                    naive,
                    "{peer:#x} {proto} {port}"
                );
            }
        }
    }

    #[test]
    fn isolation_and_rules() {
        let mut t = PolicyTable {
            counters: (0..2).map(|_| AtomicU64::new(0)).collect(),
            ..PolicyTable::default()
        };
        t.policies.push(PolicyInfo {
            name: "p".into(),
            rule_names: vec!["ingress 0".into(), "egress 0".into()],
            first_counter: 0,
            denied: AtomicU64::new(0),
        });
        t.pods.insert(
            ip("198.18.1.2"),
            PodRules {
                ingress: Some(Arc::new(RuleSet::new(&[Rule {
                    policy: 0,
                    counter: 0,
                    peers: Some(IpSet::new(
                        vec![(ip("198.18.2.2"), ip("198.18.2.2"))],
                        vec![],
                    )),
                    ports: vec![(6, 80, 80)],
                }]))),
                egress: Some(Arc::new(RuleSet::new(&[Rule {
                    policy: 0,
                    counter: 1,
                    peers: None,
                    ports: vec![(6, 5000, 5010)],
                }]))),
                ..PodRules::default()
            },
        );
        let a = ip("198.18.1.2");
        assert_eq!(t.allow(ip("198.18.2.2"), a, 6, 80), Verdict::Allow);
        assert_eq!(t.allow(ip("198.18.2.2"), a, 6, 81), Verdict::DenyIngress);
        assert_eq!(t.allow(ip("198.18.2.3"), a, 6, 80), Verdict::DenyIngress);
        assert_eq!(t.allow(ip("198.18.2.3"), a, 17, 80), Verdict::DenyIngress);
        assert_eq!(t.allow(a, ip("198.18.9.9"), 6, 5010), Verdict::Allow);
        assert_eq!(t.allow(a, ip("198.18.9.9"), 6, 5011), Verdict::DenyEgress);
        assert_eq!(
            t.allow(ip("198.18.7.7"), ip("198.18.9.9"), 6, 1),
            Verdict::NotIsolated
        );
        assert_eq!(t.counters[0].load(Relaxed), 1);
        assert_eq!(t.counters[1].load(Relaxed), 1);
        assert_eq!(t.policies[0].denied.load(Relaxed), 4);
    }
}
