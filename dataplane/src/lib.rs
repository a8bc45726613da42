//! The vRouter engine: a vector packet pipeline (VPP-style graph of nodes)
//! with MAC-learning bridge domains, IPv4/IPv6 routing per VRF, ARP/ND and
//! ICMP, driven by a control thread through read-copy-update tables.
//!
//! Map of the crate (a packet's path is described in docs/ARCHITECTURE.md):
//!
//! | module | owns |
//! |---|---|
//! | `pkt` | the per-packet record (`Pkt`: buffer + metadata, one cache line) |
//! | `graph` | node ids, vectors, the dispatcher, counters and drop reasons |
//! | `pipeline` | one worker's graph, node state and dispatch |
//! | `ethernet`, `l2`, `ip`, `vxlan`, `output` | the nodes, one folder per feature |
//! | `tables` | the snapshot workers read |
//! | `control` | the authoritative state, publication, events |
//! | `api` | the control socket (mio server, protocol handling, sync scopes) |
//! | `config` | the TOML file and its validation |
//! | `port` | ports (memory, pcap) |
//! | `worker` | the poll loop |
//! | `report` | human-readable counters |
//! | `conntrack`, `service`, `policy` | flow tables (IPv4, IPv6), service load balancing + NAT (`ip4-conntrack`, `ip6-conntrack`), NetworkPolicy classifier, anti-spoofing (`pod-guard`) |
//! | `obs` | packet trace, capture, link state (shared with the control thread) |
//! | `metrics` | the Prometheus text endpoint |
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod ethernet;
pub mod graph;
pub mod handover;
pub mod ip;
pub mod l2;
pub mod metrics;
pub mod obs;
pub mod output;
pub mod pipeline;
pub mod pkt;
pub mod policy;
pub mod port;
pub mod report;
pub mod service;
pub mod tables;
pub mod vxlan;
pub mod worker;
