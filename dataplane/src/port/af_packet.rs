//! An AF_PACKET port: works on any Linux interface (the fallback when
//! AF_XDP or DPDK cannot be used), with memory-mapped rings so a burst costs
//! no syscall on RX and one on TX.
//!
//! RX uses a TPACKET_V3 ring (variable-size frames packed in blocks; a block
//! is handed back to the kernel when all its frames are consumed, or after
//! `retire-blk-tov` if traffic is light). TX uses a TPACKET_V2 ring on a
//! second socket with `PACKET_QDISC_BYPASS`, kicked once per burst. The RX
//! socket ignores outgoing frames (`PACKET_IGNORE_OUTGOING`) and puts the
//! interface in promiscuous mode for as long as it is open (bridging needs
//! every frame). Several workers on one interface join a fanout group
//! (`PACKET_FANOUT_HASH`), so each flow stays on one worker.
//!
//! Frames are copied between the rings and the worker's pool (AF_PACKET has
//! no zero-copy mode). Two things the kernel does to frames before a packet
//! socket sees them are undone here: a VLAN tag stripped into the frame's
//! metadata is put back, and a TCP/UDP checksum the sender left for offload
//! (`TP_STATUS_CSUMNOTREADY`, common on veth) is computed. Large offload
//! segments (GSO/GRO) cannot be forwarded: disable them on the peers.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use vrouter_buf::{FramePool, HEADROOM, MAX_PACKET, PacketBuf};
use vrouter_wire::MacAddr;

use super::sys::{self, Mmap};
use super::{Port, PortError, PortStats, csum};
use crate::pkt::Pkt;

const RX_BLOCK: usize = 1 << 16;
const RX_BLOCKS: usize = 64;
const FRAME: usize = 2048;
const TX_BLOCK: usize = 1 << 16;
const TX_BLOCKS: usize = 16;
const TX_FRAMES: usize = TX_BLOCK / FRAME * TX_BLOCKS;
/// Where a TPACKET_V2 TX frame's data starts: the aligned header size.
const TX_DATA: usize = (std::mem::size_of::<libc::tpacket2_hdr>() + 15) & !15;
const ETH_P_ALL: u16 = 0x0003;

/// Options of an AF_PACKET port.
#[derive(Debug, Clone)]
pub struct AfPacketConfig {
    /// Kernel interface name.
    pub interface: String,
    /// Fanout group id when several workers share the interface (None: alone).
    pub fanout: Option<u16>,
    /// Block retire timeout in ms (latency at low rates).
    pub block_timeout_ms: u32,
    /// MAC the router uses on this port (default: the interface's).
    pub mac: Option<MacAddr>,
}

/// See the module doc.
pub struct AfPacketPort {
    index: u16,
    name: String,
    mac: MacAddr,
    rx_fd: OwnedFd,
    tx_fd: OwnedFd,
    rx_ring: Mmap,
    tx_ring: Mmap,
    rx_block: usize,
    rx_left: u32,
    rx_off: usize,
    tx_head: usize,
    stats: Arc<PortStats>,
    /// Checksums completed for offloaded frames.
    pub csum_completed: u64,
}

fn err(port: &str, what: &str, e: io::Error) -> PortError {
    PortError::Sys {
        port: port.to_string(),
        what: what.to_string(),
        source: e,
    }
}

impl AfPacketPort {
    /// Opens the port on `cfg.interface`.
    pub fn open(index: u16, name: &str, cfg: &AfPacketConfig) -> Result<Self, PortError> {
        let ifindex = sys::ifindex(&cfg.interface).map_err(|e| err(name, "interface", e))?;
        let mac = match cfg.mac {
            Some(m) => m,
            None => {
                sys::if_mac(&cfg.interface).map_err(|e| err(name, "reading the MAC address", e))?
            }
        };

        // RX: TPACKET_V3 ring.
        let rx_fd = sys::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ALL.to_be()),
        )
        .map_err(|e| err(name, "AF_PACKET socket (are you root?)", e))?;
        let v3 = libc::tpacket_versions::TPACKET_V3 as i32;
        sys::setsockopt(&rx_fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v3)
            .map_err(|e| err(name, "PACKET_VERSION", e))?;
        let req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK as u32,
            tp_block_nr: RX_BLOCKS as u32,
            tp_frame_size: FRAME as u32,
            tp_frame_nr: (RX_BLOCK / FRAME * RX_BLOCKS) as u32,
            tp_retire_blk_tov: cfg.block_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(&rx_fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|e| err(name, "PACKET_RX_RING", e))?;
        let one: i32 = 1;
        sys::setsockopt(&rx_fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(|e| err(name, "PACKET_IGNORE_OUTGOING", e))?;
        let rx_ring = Mmap::new(rx_fd.as_raw_fd(), RX_BLOCK * RX_BLOCKS)
            .map_err(|e| err(name, "mapping the RX ring", e))?;
        sys::bind_ll(&rx_fd, ifindex, ETH_P_ALL).map_err(|e| err(name, "bind", e))?;
        // SAFETY: packet_mreq is plain data; all-zero is valid.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        sys::setsockopt(&rx_fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| err(name, "promiscuous mode", e))?;
        if let Some(group) = cfg.fanout {
            let arg: u32 = u32::from(group) | (libc::PACKET_FANOUT_HASH << 16);
            sys::setsockopt(&rx_fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
                .map_err(|e| err(name, "PACKET_FANOUT", e))?;
        }

        // TX: TPACKET_V2 ring on a socket that receives nothing (protocol 0).
        let tx_fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(|e| err(name, "AF_PACKET socket", e))?;
        let v2 = libc::tpacket_versions::TPACKET_V2 as i32;
        sys::setsockopt(&tx_fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v2)
            .map_err(|e| err(name, "PACKET_VERSION", e))?;
        sys::setsockopt(&tx_fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(|e| err(name, "PACKET_QDISC_BYPASS", e))?;
        let treq = libc::tpacket_req {
            tp_block_size: TX_BLOCK as u32,
            tp_block_nr: TX_BLOCKS as u32,
            tp_frame_size: FRAME as u32,
            tp_frame_nr: TX_FRAMES as u32,
        };
        sys::setsockopt(&tx_fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &treq)
            .map_err(|e| err(name, "PACKET_TX_RING", e))?;
        let tx_ring = Mmap::new(tx_fd.as_raw_fd(), TX_BLOCK * TX_BLOCKS)
            .map_err(|e| err(name, "mapping the TX ring", e))?;
        sys::bind_ll(&tx_fd, ifindex, 0).map_err(|e| err(name, "bind", e))?;

        Ok(AfPacketPort {
            index,
            name: name.to_string(),
            mac,
            rx_fd,
            tx_fd,
            rx_ring,
            tx_ring,
            rx_block: 0,
            rx_left: 0,
            rx_off: 0,
            tx_head: 0,
            stats: Arc::default(),
            csum_completed: 0,
        })
    }

    /// The status word of an RX block, shared with the kernel.
    #[inline(always)]
    fn block_status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the block starts inside the mapping (block < RX_BLOCKS) and
        // its descriptor begins with version, offset_to_priv, then the
        // 4-byte-aligned block_status the kernel and we hand over with
        // acquire/release. The mapping lives as long as `self`.
        unsafe { AtomicU32::from_ptr(self.rx_ring.ptr().add(block * RX_BLOCK + 8).cast()) }
    }

    #[inline(always)]
    fn block_u32(&self, block: usize, off: usize) -> u32 {
        // SAFETY: `off` < 64 is inside the block descriptor of a block we own
        // (status USER), which the kernel does not write until we release it.
        unsafe {
            self.rx_ring
                .ptr()
                .add(block * RX_BLOCK + off)
                .cast::<u32>()
                .read_unaligned()
        }
    }

    /// The TX frame `i`'s status word, shared with the kernel.
    #[inline(always)]
    fn tx_status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: frame i < TX_FRAMES lies inside the mapping; tp_status is
        // its first, aligned field.
        unsafe { AtomicU32::from_ptr(self.tx_ring.ptr().add(i * FRAME).cast()) }
    }
}

impl Port for AfPacketPort {
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
        let (mut n, mut bytes, mut dropped) = (0usize, 0u64, 0u64);
        while n < max {
            if self.rx_left == 0 {
                if self.block_status(self.rx_block).load(Ordering::Acquire) & libc::TP_STATUS_USER
                    == 0
                {
                    break;
                }
                self.rx_left = self.block_u32(self.rx_block, 12);
                self.rx_off = self.block_u32(self.rx_block, 16) as usize;
                if self.rx_left == 0 {
                    self.block_status(self.rx_block)
                        .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                    self.rx_block = (self.rx_block + 1) % RX_BLOCKS;
                    continue;
                }
            }
            let Some(mut buf) = pool.alloc() else { break };
            let base = self.rx_block * RX_BLOCK;
            let off = self.rx_off;
            if off + std::mem::size_of::<libc::tpacket3_hdr>() > RX_BLOCK {
                // A corrupt block: give it back whole.
                pool.free(buf);
                self.rx_left = 1;
            } else {
                // SAFETY: the header lies inside a block we own (checked above).
                let h: libc::tpacket3_hdr = unsafe {
                    self.rx_ring
                        .ptr()
                        .add(base + off)
                        .cast::<libc::tpacket3_hdr>()
                        .read_unaligned()
                };
                let (mac, snap) = (h.tp_mac as usize, h.tp_snaplen as usize);
                let vlan = h.tp_status & libc::TP_STATUS_VLAN_VALID != 0;
                let total = snap + if vlan { 4 } else { 0 };
                if off + mac + snap > RX_BLOCK || total > MAX_PACKET || snap < 14 {
                    dropped += 1;
                    pool.free(buf);
                } else {
                    // SAFETY: the frame bytes lie inside a block we own (checked).
                    let src = unsafe {
                        std::slice::from_raw_parts(self.rx_ring.ptr().add(base + off + mac), snap)
                    };
                    let _ = buf.set_window(HEADROOM, total);
                    let d = buf.data_mut();
                    if vlan {
                        let tpid = if h.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            h.hv1.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        d[..12].copy_from_slice(&src[..12]);
                        d[12..14].copy_from_slice(&tpid.to_be_bytes());
                        d[14..16].copy_from_slice(&(h.hv1.tp_vlan_tci as u16).to_be_bytes());
                        d[16..].copy_from_slice(&src[12..]);
                    } else {
                        d.copy_from_slice(src);
                    }
                    if h.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0 && csum::complete(d) {
                        self.csum_completed += 1;
                    }
                    bytes += total as u64;
                    out.push(Pkt::new(buf, self.index));
                    n += 1;
                }
                self.rx_off += h.tp_next_offset as usize;
            }
            self.rx_left -= 1;
            if self.rx_left == 0 {
                self.block_status(self.rx_block)
                    .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.rx_block = (self.rx_block + 1) % RX_BLOCKS;
            }
        }
        PortStats::add(&self.stats.rx_packets, n as u64);
        PortStats::add(&self.stats.rx_bytes, bytes);
        PortStats::add(&self.stats.rx_dropped, dropped);
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        for b in bufs.drain(..) {
            let st = self.tx_status(self.tx_head);
            let s = st.load(Ordering::Acquire);
            if s & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0
                || b.len() > FRAME - TX_DATA
            {
                dropped += 1;
                pool.free(b);
                continue;
            }
            let frame = self.tx_head * FRAME;
            // SAFETY: the frame is available (status checked: the kernel is
            // not reading it) and lies inside the mapping; the data fits
            // (length checked against FRAME - TX_DATA).
            unsafe {
                let p = self.tx_ring.ptr().add(frame);
                std::ptr::copy_nonoverlapping(b.data().as_ptr(), p.add(TX_DATA), b.len());
                // tp_len and tp_snaplen follow tp_status.
                p.add(4).cast::<u32>().write_unaligned(b.len() as u32);
                p.add(8).cast::<u32>().write_unaligned(b.len() as u32);
            }
            st.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_head = (self.tx_head + 1) % TX_FRAMES;
            sent += 1;
            bytes += b.len() as u64;
            pool.free(b);
        }
        if sent > 0 && sys::kick_tx(&self.tx_fd).is_err() {
            PortStats::add(&self.stats.tx_errors, 1);
        }
        PortStats::add(&self.stats.tx_packets, sent);
        PortStats::add(&self.stats.tx_bytes, bytes);
        PortStats::add(&self.stats.tx_dropped, dropped);
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }
}

impl Drop for AfPacketPort {
    fn drop(&mut self) {
        // Let queued frames leave before the ring is unmapped.
        let _ = sys::kick_tx(&self.tx_fd);
        let _ = &self.rx_fd;
    }
}
