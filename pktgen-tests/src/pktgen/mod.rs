//! vrouter-pktgen: a traffic generator and receiver on AF_XDP (AF_PACKET as
//! a fallback), built on vrouterd's own ports (`vrouter_dataplane::port`)
//! and frame pool, so it carries no `unsafe` of its own.
//!
//! - [`template`]: frames precomputed per flow and size, the stamp
//!   (sequence number, timestamp) patched into each copy.
//! - [`rxstats`]: loss, reordering, duplicates and latency from the stamps.
//! - [`engine`]: opening ports (also in other network namespaces), the
//!   paced send/receive loop, and the RFC 2544 throughput search.

pub mod engine;
pub mod rxstats;
pub mod template;

/// Errors of the generator library.
#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    /// A bad option or a template that cannot be built.
    #[error("{0}")]
    Config(String),
    /// A port could not be opened or set up.
    #[error("{iface}{ns}: {err}")]
    Port {
        iface: String,
        ns: String,
        err: vrouter_dataplane::port::PortError,
    },
    /// A system call (network namespaces, interface queries) failed.
    #[error("{what}: {err}")]
    Sys { what: String, err: std::io::Error },
}
