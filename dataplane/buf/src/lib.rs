//! Packet buffers and the frame pools they come from.
//!
//! This crate owns the memory packets live in. A [`FramePool`] is one
//! page-aligned region cut into fixed-size frames; a [`PacketBuf`] is an owned
//! handle to one frame plus the window (`off..off+len`) that holds the packet.
//! Every frame starts with [`HEADROOM`] free bytes so encapsulation (VXLAN
//! prepends 50 bytes, 70 over IPv6) never copies the payload.
//!
//! The region is laid out so that an AF_XDP UMEM can be registered on it
//! directly (page aligned, frame size a power of two): frame `i` starts at
//! byte `i * FRAME_SIZE`, and a packet's UMEM address is
//! `i * FRAME_SIZE + off`.
//!
//! What this crate must never do: allocate, lock or make a syscall on the
//! per-packet paths (`alloc`, `free`, the data accessors). Allocation happens
//! once, when a pool is created.
//!
//! It also hosts the two CPU hints the hot path needs, [`prefetch`] and
//! [`cycles`], and [`HugeTable`], the huge-page-backed arrays lookup tables
//! use, so that `unsafe` stays in one audited place.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cpu;
mod huge;
mod pool;

pub use cpu::{cycles, eq_mask_u16x8, prefetch, prefetch_slice};
pub use huge::{HugeTable, huge_slice};
pub use pool::{BufError, FRAME_SIZE, FramePool, HEADROOM, MAX_PACKET, PacketBuf};
