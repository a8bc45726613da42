//! CNI errors: the spec's JSON error object and its codes.

use serde_json::json;

/// Codes from the CNI 1.0.0 spec ("Error") and ours (100 and up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETCONF: u32 = 7;
    /// Try again later (the lock could not be taken in time).
    pub const TRY_AGAIN: u32 = 11;
    /// vrouterd's control socket could not be reached or refused a request.
    pub const CONTROL: u32 = 100;
    /// No free port in the pool.
    pub const NO_FREE_PORT: u32 = 101;
    /// No free address in the subnet.
    pub const ADDRESS_EXHAUSTED: u32 = 102;
    /// An `ip`/`nsenter` command failed.
    pub const NETLINK: u32 = 103;
    /// CHECK found the pod's interface, address, route or endpoint wrong.
    pub const CHECK_FAILED: u32 = 104;
    /// ADD for a container/interface that already has an allocation.
    pub const ALREADY_ADDED: u32 = 105;
}

/// A CNI error: printed as the spec's error JSON on stdout, exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// An error with `code` and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details (the underlying cause).
    pub fn details(mut self, d: impl std::fmt::Display) -> CniError {
        self.details = d.to_string();
        self
    }

    /// The spec's error object.
    pub fn to_json(&self, cni_version: &str) -> String {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
        .to_string()
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, CniError>;
