//! The vRouter control socket: a Unix domain socket carrying
//! newline-delimited JSON (`docs/control-protocol.md`).
//!
//! `proto` holds the wire types shared by the daemon and every client (the
//! agent, `vrouterctl`, scripts); `client` a small blocking client. This
//! crate knows nothing of the dataplane and never touches packets.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod naming;
pub mod proto;

pub use client::{Client, ClientError};
pub use proto::*;
