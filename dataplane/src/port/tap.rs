//! A TAP port: a virtual interface of the node's own kernel stack (the host
//! interface of a vRouter node), and a port for tests.
//!
//! vrouterd creates the TAP device (`interface`), sets it up, and exchanges
//! frames with the kernel through it; the device disappears when vrouterd
//! exits. A TAP device has no shared ring: each frame is one `read` or
//! `write`, so this port is for the node's control and management traffic,
//! not for the fast path (use af-xdp or af-packet there).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use vrouter_buf::{FramePool, HEADROOM, MAX_PACKET, PacketBuf};
use vrouter_wire::MacAddr;

use super::{Port, PortError, PortStats, sys};
use crate::pkt::Pkt;

/// See the module doc.
pub struct TapPort {
    index: u16,
    name: String,
    mac: MacAddr,
    fd: OwnedFd,
    stats: Arc<PortStats>,
}

impl TapPort {
    /// Creates (or attaches to) TAP device `interface`. `mac` is the MAC the
    /// router uses on this port (the kernel side has its own).
    pub fn open(index: u16, name: &str, interface: &str, mac: MacAddr) -> Result<Self, PortError> {
        let fd = sys::open_tap(interface).map_err(|source| PortError::Sys {
            port: name.to_string(),
            what: format!("TAP device {interface} (is /dev/net/tun there, are you root?)"),
            source,
        })?;
        Ok(TapPort {
            index,
            name: name.to_string(),
            mac,
            fd,
            stats: Arc::default(),
        })
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize {
        let (mut n, mut bytes) = (0usize, 0u64);
        while n < max {
            let Some(mut buf) = pool.alloc() else { break };
            let _ = buf.set_window(HEADROOM, MAX_PACKET);
            match sys::read_nb(&self.fd, buf.data_mut()) {
                Ok(Some(len)) if len >= 14 => {
                    buf.truncate(len);
                    bytes += len as u64;
                    out.push(Pkt::new(buf, self.index));
                    n += 1;
                }
                Ok(Some(_)) => {
                    PortStats::add(&self.stats.rx_errors, 1);
                    pool.free(buf);
                }
                Ok(None) => {
                    pool.free(buf);
                    break;
                }
                Err(_) => {
                    PortStats::add(&self.stats.rx_errors, 1);
                    pool.free(buf);
                    break;
                }
            }
        }
        PortStats::add(&self.stats.rx_packets, n as u64);
        PortStats::add(&self.stats.rx_bytes, bytes);
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        for b in bufs.drain(..) {
            match sys::write_nb(&self.fd, b.data()) {
                Ok(true) => {
                    sent += 1;
                    bytes += b.len() as u64;
                }
                _ => dropped += 1,
            }
            pool.free(b);
        }
        PortStats::add(&self.stats.tx_packets, sent);
        PortStats::add(&self.stats.tx_bytes, bytes);
        PortStats::add(&self.stats.tx_dropped, dropped);
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }
}
