//! vrouter-cni: the vRouter CNI plugin (CNI spec 1.0.0).
//!
//! A pod gets one port of a pool that vrouterd polls: a veth pair per
//! port, provisioned before vrouterd starts, whose host end is a vrouterd
//! `af-packet`/`af-xdp` port bridged into a bridge domain and whose other
//! end waits in the node's namespace. ADD moves that end into the pod's
//! namespace (renamed `CNI_IFNAME`), gives it an address from the node's
//! pod CIDR (host-local-style files under a `flock`), a default route via
//! the gateway, and registers the endpoint with vrouterd (`endpoint.add`).
//! DEL moves the end back and frees the address. See docs/cni.md.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod conf;
pub mod error;
pub mod ipam;
pub mod link;
pub mod plugin;

pub use error::{CniError, code};
pub use plugin::run;
