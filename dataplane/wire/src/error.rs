//! The crate's single error type.

use thiserror::Error;

/// Why a buffer could not be viewed or parsed as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum WireError {
    /// buffer too short for the header or for a length it declares
    #[error("buffer too short for the header or for a length it declares")]
    Truncated,
    /// a length, version or type field holds an invalid value
    #[error("a length, version or type field holds an invalid value")]
    Malformed,
    /// well-formed but not supported (e.g. ARP for a non Ethernet/IPv4 pair)
    #[error("well-formed but not supported (e.g. ARP for a non Ethernet/IPv4 pair)")]
    Unsupported,
    /// not a MAC address string (expected aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff)
    #[error("not a MAC address string (expected aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff)")]
    BadMacAddr,
}

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, WireError>;
