//! An AF_XDP port: one socket on one (interface, queue), its UMEM being the
//! worker's frame pool, so received frames are adopted and transmitted
//! frames are lent without a copy in userspace (the kernel copies in copy
//! mode — veth — and nothing copies in zero-copy mode).
//!
//! Set-up (`attach`, once the worker's pool exists): the first AF_XDP socket
//! of a worker registers the pool as UMEM, later ones share it
//! (`XDP_SHARED_UMEM`, each with its own fill and completion rings). Bind
//! asks for zero-copy and falls back to copy mode; `need_wakeup` is always
//! on. libxdp attaches its redirect program (native XDP, generic as a
//! fallback) and this socket is put in its map at the queue's index.
//!
//! Per burst: RX descriptors become buffers (`FramePool::adopt`), the fill
//! ring is topped up from the pool, completions go back to the pool, TX
//! descriptors are lent buffers; one `sendto` kicks TX when the kernel asks
//! for it, one `recvfrom` wakes RX only when the kernel asks and nothing came.
//!
//! On close the socket leaves the map, and the last socket of an interface
//! detaches the program; at open, a redirect program left attached by a
//! crashed vrouterd is detached first.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vrouter_buf::{FRAME_SIZE, FramePool, PacketBuf};
use vrouter_wire::MacAddr;

use super::sys::{self, Mmap};
use super::xdp_ffi;
use super::{AttachCtx, Port, PortError, PortStats};
use crate::pkt::Pkt;

/// Options of an AF_XDP port.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    pub interface: String,
    pub queue: u32,
    /// Descriptors per ring (power of two).
    pub ring_size: u32,
    /// Refuse copy mode (fail instead of falling back).
    pub require_zero_copy: bool,
    pub mac: Option<MacAddr>,
}

/// Descriptors the kernel sends per `sendto` in copy mode (TX_BATCH_SIZE).
const TX_BATCH: u32 = 32;

/// AF_XDP sockets open per interface, to detach the program with the last.
static OPEN: Mutex<Option<HashMap<i32, usize>>> = Mutex::new(None);

fn err(port: &str, what: &str, e: io::Error) -> PortError {
    PortError::Sys {
        port: port.to_string(),
        what: what.to_string(),
        source: e,
    }
}

/// One mapped ring: producer and consumer indices, flags, descriptors.
struct Ring {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    size: u32,
}

// SAFETY: the pointers point into `_map`, owned by the ring; a ring belongs
// to one port, used by one thread at a time.
unsafe impl Send for Ring {}

impl Ring {
    fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        elem: usize,
        pgoff: i64,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + size as usize * elem;
        let map = Mmap::at(fd.as_raw_fd(), len, pgoff)?;
        let base = map.ptr();
        // SAFETY: the kernel reported these offsets for this mapping; each
        // index and the flags word is a 4-byte aligned u32 inside it.
        unsafe {
            Ok(Ring {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                desc: base.add(off.desc as usize),
                mask: size - 1,
                size,
                _map: map,
            })
        }
    }

    #[inline(always)]
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.producer }
    }

    #[inline(always)]
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.consumer }
    }

    #[inline(always)]
    fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    /// Address slot `i` of a fill or completion ring (u64 entries).
    #[inline(always)]
    fn addr(&self, i: u32) -> *mut u64 {
        // SAFETY: `i & mask` < size entries of 8 bytes lie inside the mapping.
        unsafe { self.desc.cast::<u64>().add((i & self.mask) as usize) }
    }

    /// Descriptor slot `i` of an RX or TX ring.
    #[inline(always)]
    fn xdp_desc(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: `i & mask` < size descriptors lie inside the mapping.
        unsafe {
            self.desc
                .cast::<libc::xdp_desc>()
                .add((i & self.mask) as usize)
        }
    }
}

struct Rings {
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
}

/// See the module doc.
pub struct AfXdpPort {
    index: u16,
    name: String,
    mac: MacAddr,
    ifindex: i32,
    cfg: AfXdpConfig,
    fd: OwnedFd,
    rings: Option<Rings>,
    map_fd: i32,
    /// "zero-copy", "copy" or "shared umem", once attached.
    pub mode: &'static str,
    copy_mode: bool,
    stats: Arc<PortStats>,
    polls: u32,
}

impl AfXdpPort {
    /// Opens the socket (set-up completes in `attach`).
    pub fn open(index: u16, name: &str, cfg: &AfXdpConfig) -> Result<Self, PortError> {
        if !cfg.ring_size.is_power_of_two() || cfg.ring_size < 64 {
            return Err(err(
                name,
                "ring-size",
                io::Error::new(io::ErrorKind::InvalidInput, "must be a power of two ≥ 64"),
            ));
        }
        let ifindex = sys::ifindex(&cfg.interface).map_err(|e| err(name, "interface", e))?;
        let mac = match cfg.mac {
            Some(m) => m,
            None => {
                sys::if_mac(&cfg.interface).map_err(|e| err(name, "reading the MAC address", e))?
            }
        };
        let first = {
            let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
            let n = open
                .get_or_insert_with(HashMap::new)
                .entry(ifindex)
                .or_insert(0);
            *n += 1;
            *n == 1
        };
        if first && xdp_ffi::detach_xsk_program(ifindex) {
            tracing::warn!(port = name, interface = %cfg.interface, "detached a stale AF_XDP program (left by a crash?)");
        }
        let fd = match sys::socket(libc::AF_XDP, libc::SOCK_RAW, 0) {
            Ok(fd) => fd,
            Err(e) => {
                Self::release(ifindex);
                return Err(err(name, "AF_XDP socket (are you root?)", e));
            }
        };
        Ok(AfXdpPort {
            index,
            name: name.to_string(),
            mac,
            ifindex,
            cfg: cfg.clone(),
            fd,
            rings: None,
            map_fd: -1,
            mode: "unattached",
            copy_mode: true,
            stats: Arc::default(),
            polls: 0,
        })
    }

    fn release(ifindex: i32) {
        let last = {
            let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
            let m = open.get_or_insert_with(HashMap::new);
            match m.get_mut(&ifindex) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    m.remove(&ifindex);
                    true
                }
            }
        };
        if last {
            xdp_ffi::detach_xsk_program(ifindex);
        }
    }

    fn setup(&mut self, pool: &mut FramePool, shared_umem: &mut Option<i32>) -> io::Result<()> {
        let fd = &self.fd;
        let size = self.cfg.ring_size;
        let mut bind_flags = libc::XDP_USE_NEED_WAKEUP;
        let mut shared_fd = 0;
        match *shared_umem {
            None => {
                let (addr, len) = pool.region();
                // SAFETY: xdp_umem_reg is plain data; all-zero is valid.
                let mut reg: libc::xdp_umem_reg = unsafe { std::mem::zeroed() };
                reg.addr = addr as u64;
                reg.len = len as u64;
                reg.chunk_size = FRAME_SIZE as u32;
                reg.headroom = 0;
                sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)?;
            }
            Some(owner) => {
                // A socket sharing a UMEM inherits copy/zero-copy and
                // need_wakeup from its owner; the kernel refuses them here.
                bind_flags = libc::XDP_SHARED_UMEM;
                shared_fd = owner as u32;
            }
        }
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &size)?;
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_UMEM_COMPLETION_RING, &size)?;
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_RX_RING, &size)?;
        sys::setsockopt(fd, libc::SOL_XDP, libc::XDP_TX_RING, &size)?;
        // SAFETY: xdp_mmap_offsets is plain data; all-zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        sys::getsockopt(fd, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS, &mut off)?;
        let desc = std::mem::size_of::<libc::xdp_desc>();
        let rings = Rings {
            rx: Ring::map(fd, &off.rx, size, desc, libc::XDP_PGOFF_RX_RING)?,
            tx: Ring::map(fd, &off.tx, size, desc, libc::XDP_PGOFF_TX_RING)?,
            fill: Ring::map(fd, &off.fr, size, 8, libc::XDP_UMEM_PGOFF_FILL_RING as i64)?,
            comp: Ring::map(
                fd,
                &off.cr,
                size,
                8,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
            )?,
        };
        let mut sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags,
            sxdp_ifindex: self.ifindex as u32,
            sxdp_queue_id: self.cfg.queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        if shared_umem.is_some() {
            sys::bind_xdp(fd, &sa)?;
            self.mode = "shared umem";
        } else {
            sa.sxdp_flags = bind_flags | libc::XDP_ZEROCOPY;
            self.mode = "zero-copy";
            if let Err(e) = sys::bind_xdp(fd, &sa) {
                if self.cfg.require_zero_copy {
                    return Err(e);
                }
                sa.sxdp_flags = bind_flags | libc::XDP_COPY;
                sys::bind_xdp(fd, &sa)?;
                self.mode = "copy";
            }
        }
        let mut map_fd: i32 = -1;
        // SAFETY: `map_fd` is a valid out-pointer for the call.
        let r = unsafe { xdp_ffi::xsk_setup_xdp_prog(self.ifindex, &mut map_fd) };
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        let (key, val) = (self.cfg.queue, fd.as_raw_fd());
        // SAFETY: key and value are live u32/i32 matching the XSKMAP's sizes.
        let r = unsafe {
            xdp_ffi::bpf_map_update_elem(
                map_fd,
                (&key as *const u32).cast(),
                (&val as *const i32).cast(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        self.map_fd = map_fd;
        // A shared UMEM's mode is its owner's; kicking is always safe.
        self.copy_mode = self.mode != "zero-copy";
        if shared_umem.is_none() {
            *shared_umem = Some(fd.as_raw_fd());
        }
        self.rings = Some(rings);
        self.refill(pool);
        Ok(())
    }

    /// Tops the fill ring up with free frames.
    fn refill(&mut self, pool: &mut FramePool) {
        let Some(r) = &self.rings else { return };
        let fill = &r.fill;
        let prod = fill.prod().load(Ordering::Relaxed);
        let cons = fill.cons().load(Ordering::Acquire);
        let room = fill.size - prod.wrapping_sub(cons);
        // Keep a reserve in the pool for flooding, generated packets and
        // other ports: lend at most what leaves a quarter of the pool free.
        let reserve = pool.frames() as usize / 4;
        let mut n = 0;
        while n < room && pool.available() > reserve {
            let Some(addr) = pool.lend_free() else { break };
            // SAFETY: slot prod+n is ours to write (between cons and prod+room).
            unsafe { fill.addr(prod.wrapping_add(n)).write(addr) };
            n += 1;
        }
        if n > 0 {
            fill.prod().store(prod.wrapping_add(n), Ordering::Release);
        }
    }

    /// Takes back the frames the kernel has finished transmitting.
    fn complete(&mut self, pool: &mut FramePool) {
        let Some(r) = &self.rings else { return };
        let comp = &r.comp;
        let cons = comp.cons().load(Ordering::Relaxed);
        let prod = comp.prod().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        for i in 0..n {
            // SAFETY: slots cons..prod were published by the kernel.
            let addr = unsafe { comp.addr(cons.wrapping_add(i)).read() };
            if pool.reclaim(addr).is_err() {
                PortStats::add(&self.stats.tx_errors, 1);
            }
        }
        if n > 0 {
            comp.cons().store(prod, Ordering::Release);
        }
    }

    /// Copy mode sends at most a small batch (32 in Linux) per `sendto`:
    /// kick again while descriptors are still waiting in the TX ring, or
    /// they would sit there until the next burst to this port.
    #[inline]
    fn flush_tx(&self) {
        let Some(r) = &self.rings else { return };
        let tx = &r.tx;
        let pending = tx
            .prod()
            .load(Ordering::Relaxed)
            .wrapping_sub(tx.cons().load(Ordering::Acquire));
        if pending > 0 && (self.copy_mode || tx.needs_wakeup()) {
            self.kick(pending);
        }
    }

    /// Kicks TX for `pending` descriptors. In copy mode the kernel takes at
    /// most 32 per `sendto` (TX_BATCH_SIZE), so one kick per 32, stopping
    /// once the ring is empty: a single kick per burst let bursts larger
    /// than that pile up until the ring was full (`tx-ring-full` drops after
    /// the worker had been descheduled). One syscall per 32 frames.
    fn kick(&self, pending: u32) {
        let Some(r) = &self.rings else { return };
        let tx = &r.tx;
        let kicks = if self.copy_mode {
            pending.div_ceil(TX_BATCH) + 1
        } else {
            1
        };
        for _ in 0..kicks {
            if sys::kick_tx(&self.fd).is_err() {
                PortStats::add(&self.stats.tx_errors, 1);
                return;
            }
            if tx.prod().load(Ordering::Relaxed) == tx.cons().load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Reads the kernel's drop counters into the port stats.
    fn read_kernel_stats(&self) {
        // SAFETY: xdp_statistics is plain data; all-zero is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        if sys::getsockopt(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS, &mut st).is_ok() {
            use std::sync::atomic::Ordering::Relaxed;
            self.stats
                .rx_dropped
                .store(st.rx_dropped + st.rx_ring_full, Relaxed);
            self.stats
                .rx_fill_empty
                .store(st.rx_fill_ring_empty_descs, Relaxed);
        }
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn attach(&mut self, pool: &mut FramePool, ctx: &mut AttachCtx) -> Result<(), PortError> {
        let name = self.name.clone();
        self.setup(pool, &mut ctx.umem_fd)
            .map_err(|e| err(&name, "AF_XDP set-up", e))?;
        tracing::info!(port = %self.name, interface = %self.cfg.interface, queue = self.cfg.queue, mode = self.mode, "AF_XDP port ready");
        Ok(())
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize {
        self.polls = self.polls.wrapping_add(1);
        if self.polls & 0xffff == 0 {
            self.read_kernel_stats();
        }
        let Some(r) = &self.rings else { return 0 };
        let rx = &r.rx;
        let cons = rx.cons().load(Ordering::Relaxed);
        let prod = rx.prod().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons).min(max as u32);
        let mut bytes = 0u64;
        let mut got = 0usize;
        for i in 0..n {
            // SAFETY: descriptors cons..prod were published by the kernel.
            let d = unsafe { rx.xdp_desc(cons.wrapping_add(i)).read() };
            match pool.adopt(d.addr, d.len as usize) {
                Ok(buf) => {
                    bytes += u64::from(d.len);
                    out.push(Pkt::new(buf, self.index));
                    got += 1;
                }
                Err(_) => PortStats::add(&self.stats.rx_errors, 1),
            }
        }
        if n > 0 {
            rx.cons().store(cons.wrapping_add(n), Ordering::Release);
        }
        let wake = n == 0 && r.fill.needs_wakeup();
        self.complete(pool);
        self.refill(pool);
        if wake {
            sys::kick_rx(&self.fd);
        }
        self.flush_tx();
        PortStats::add(&self.stats.rx_packets, got as u64);
        PortStats::add(&self.stats.rx_bytes, bytes);
        got
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        self.complete(pool);
        let Some(r) = &self.rings else {
            for b in bufs.drain(..) {
                pool.free(b);
            }
            return;
        };
        let tx = &r.tx;
        let prod = tx.prod().load(Ordering::Relaxed);
        let cons = tx.cons().load(Ordering::Acquire);
        let room = tx.size - prod.wrapping_sub(cons);
        let (mut n, mut bytes, mut full) = (0u32, 0u64, 0u64);
        for b in bufs.drain(..) {
            if n >= room {
                full += 1;
                pool.free(b);
                continue;
            }
            let len = b.len() as u32;
            match pool.lend(b) {
                Ok(addr) => {
                    let d = libc::xdp_desc {
                        addr,
                        len,
                        options: 0,
                    };
                    // SAFETY: slot prod+n is between the kernel's consumer
                    // and our producer + room: ours to write.
                    unsafe { tx.xdp_desc(prod.wrapping_add(n)).write(d) };
                    n += 1;
                    bytes += u64::from(len);
                }
                Err(_) => PortStats::add(&self.stats.tx_errors, 1),
            }
        }
        if n > 0 {
            tx.prod().store(prod.wrapping_add(n), Ordering::Release);
            // Copy mode transmits only inside sendto(); zero-copy drivers
            // say when they need a kick.
            if self.copy_mode || tx.needs_wakeup() {
                self.kick(prod.wrapping_add(n).wrapping_sub(cons));
            }
        }
        PortStats::add(&self.stats.tx_packets, u64::from(n));
        PortStats::add(&self.stats.tx_bytes, bytes);
        PortStats::add(&self.stats.tx_dropped, full);
        PortStats::add(&self.stats.tx_ring_full, full);
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        if self.map_fd >= 0 {
            let key = self.cfg.queue;
            // SAFETY: key is a live u32 matching the map's key size.
            unsafe { xdp_ffi::bpf_map_delete_elem(self.map_fd, (&key as *const u32).cast()) };
            // SAFETY: map_fd was returned to us by libxdp and is closed once.
            unsafe { libc::close(self.map_fd) };
        }
        Self::release(self.ifindex);
    }
}
