//! A DPDK port (cargo feature `dpdk`): a NIC by PCI address, or a DPDK
//! virtual device (`net_af_xdp0,iface=…`, `net_af_packet0,iface=…`,
//! `net_tap0`, `net_pcap0,rx_pcap=…`, `net_null0`), polled with
//! `rte_eth_rx_burst`/`rte_eth_tx_burst` through the C shim of
//! `vrouter-dpdk-sys`.
//!
//! Buffers are shared, not copied: each worker gives a range of its frame
//! pool to a DPDK mempool created on it as external memory
//! (`rte_pktmbuf_pool_create_extbuf`), so mbuf *k* owns frames *2k* and
//! *2k+1* of that range for the life of the process (two frames, because
//! PMDs such as net_af_packet want more than one frame of data room after
//! DPDK's 128-byte headroom; packets live in the first frame). A received mbuf's frame is adopted as
//! a packet buffer (the mbuf stays allocated); transmitting it hands the same
//! mbuf back with the packet's window; a buffer of that range that is freed
//! anywhere else (a drop, a transmit on another port's completion) frees its
//! mbuf, through the pool's return hook. Only a packet from another port type
//! going out on DPDK is copied, into a fresh mbuf.
//!
//! EAL is initialised once per process from the `[dpdk]` section; without
//! reserved hugepages it runs with `--no-huge` (so it works on any machine).
//!
//! DMA: each worker's frame pool is registered with DPDK as external memory
//! and DMA-mapped for every DPDK device (`rte_extmem_register` +
//! `rte_dev_dma_map`, see [`dma`]), so a PCI NIC behind VFIO can DMA into
//! the lent frames; IOVA is the virtual address. A process whose DPDK ports
//! are all vdevs runs EAL with `--iova-mode=va` (vdevs never DMA); a PCI NIC
//! needs vfio-pci with the IOMMU on, and IOVA as physical addresses is
//! refused with a clear error. The registration is undone (unmap per device,
//! then unregister) when the last port using the pool is dropped, after the
//! device was stopped.

use std::collections::HashMap;
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_void};
use std::sync::{Arc, Mutex, OnceLock};

use vrouter_buf::{FRAME_SIZE, FramePool, PacketBuf};
use vrouter_dpdk_sys as ffi;
use vrouter_wire::MacAddr;

use super::{AttachCtx, Port, PortError, PortStats};
use crate::pkt::Pkt;

mod dma;
pub use dma::{DmaError, RegionInfo, regions as dma_regions};

const BURST: usize = 256;
/// Frames per mbuf.
const STRIDE: u32 = 2;

fn err(port: &str, what: impl Into<String>, code: i32) -> PortError {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string for any error number.
    let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(code.abs())) }
        .to_string_lossy()
        .into_owned();
    PortError::Sys {
        port: port.to_string(),
        what: what.into(),
        source: std::io::Error::other(msg),
    }
}

static EAL: OnceLock<Result<(), String>> = OnceLock::new();

/// True if hugepages are reserved and free and a hugetlbfs is mounted (then
/// EAL uses them).
pub fn hugepages_available() -> bool {
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
    });
    mounted
        && std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("HugePages_Free:"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                    })
            })
            .is_some_and(|n| n > 0)
}

/// Initialises EAL once with `args` (plus `--no-huge` when no hugepages are
/// free, `--no-pci` unless a PCI device is used, `--in-memory` or
/// `--no-shconf`, and the file prefix `vrouterd`). Later calls return the
/// first result.
pub fn eal_init(args: &[String], pci: bool) -> Result<(), String> {
    EAL.get_or_init(|| {
        let mut argv: Vec<String> = vec!["vrouterd".into()];
        argv.extend(args.iter().cloned());
        if !hugepages_available() && !args.iter().any(|a| a == "--no-huge") {
            // Packet memory is the worker pools (external to EAL): EAL itself
            // needs little.
            argv.extend(["--no-huge".into(), "-m".into(), "256".into()]);
        }
        if !pci && !args.iter().any(|a| a == "--no-pci") {
            argv.push("--no-pci".into());
        }
        if !args.iter().any(|a| {
            a == "--in-memory"
                || a == "--no-shconf"
                || a == "--legacy-mem"
                || a.starts_with("--proc-type")
        }) {
            // vrouterd is always a lone primary process: no shared
            // configuration, no multi-process socket, no runtime files left
            // under /var/run/dpdk (EAL refuses --in-memory with --no-huge,
            // whose memory is anonymous anyway).
            let no_huge = argv.iter().any(|a| a == "--no-huge");
            argv.push(
                if no_huge {
                    "--no-shconf"
                } else {
                    "--in-memory"
                }
                .into(),
            );
        }
        if !args.iter().any(|a| a.starts_with("--file-prefix")) {
            argv.push("--file-prefix=vrouterd".into());
        }
        if !pci && !args.iter().any(|a| a.starts_with("--iova-mode")) {
            // Vdevs never DMA, and IOVA as VA is what lets the frame pools
            // be registered page by page (the `dma` module); with hugepages
            // and no IOMMU EAL would pick physical addresses otherwise.
            argv.push("--iova-mode=va".into());
        }
        if !args.iter().any(|a| a == "-l" || a.starts_with("--lcores")) {
            // vrouterd's workers are its own threads; EAL needs one lcore.
            argv.extend(["-l".into(), "0".into()]);
        }
        let cs: Vec<CString> = argv
            .iter()
            .filter_map(|a| CString::new(a.as_str()).ok())
            .collect();
        let mut ptrs: Vec<*mut std::ffi::c_char> =
            cs.iter().map(|c| c.as_ptr().cast_mut()).collect();
        // SAFETY: argc/argv describe live NUL-terminated strings that outlive
        // the call (EAL may reorder the pointer array, which we own).
        let r = unsafe { ffi::rte_eal_init(ptrs.len() as i32, ptrs.as_mut_ptr()) };
        if r < 0 {
            // SAFETY: reads DPDK's per-thread error number.
            let e = unsafe { ffi::vr_errno() };
            // SAFETY: as in `err`.
            let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(e)) }
                .to_string_lossy()
                .into_owned();
            return Err(format!("EAL init ({}): {msg}", argv.join(" ")));
        }
        let memory = if argv.iter().any(|a| a == "--no-huge") {
            "without hugepages (--no-huge)"
        } else {
            "on hugepages"
        };
        tracing::info!("DPDK EAL initialised {memory}: {}", argv.join(" "));
        Ok(())
    })
    .clone()
}

/// Options of a DPDK port (one object per queue).
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// PCI address (`0000:01:00.0`) or vdev string (`net_af_xdp0,iface=eth1`).
    pub device: String,
    pub queue: u16,
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mac: Option<MacAddr>,
}

/// A worker's DPDK mempool over part of its frame pool.
pub struct DpdkPool {
    mp: *mut ffi::rte_mempool,
    /// First frame of the range and the mbuf of each frame in it.
    first: u32,
    mbufs: Arc<Vec<usize>>,
    /// The pool's DMA registration, shared by the ports using the mempool.
    dma: Arc<dma::Region>,
}

// SAFETY: the mempool is used by the worker thread that owns the pool; the
// pointer is only a handle.
unsafe impl Send for DpdkPool {}

/// Ports whose queues are being set up, to start each when its last queue is ready.
static PENDING: Mutex<Option<HashMap<u16, u16>>> = Mutex::new(None);

/// Started ports; the first of a port's queues to be dropped stops it.
static STARTED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn dma_err(port: &str, e: DmaError) -> PortError {
    PortError::Sys {
        port: port.to_string(),
        what: "DMA registration".into(),
        source: std::io::Error::other(e),
    }
}

/// See the module doc.
pub struct DpdkPort {
    index: u16,
    name: String,
    mac: MacAddr,
    port_id: u16,
    cfg: DpdkConfig,
    pool: Option<(usize, u32, Arc<Vec<usize>>)>,
    rx: Vec<*mut ffi::rte_mbuf>,
    /// Per received mbuf: data offset in the pool region, data length.
    rx_addr: Vec<u64>,
    rx_len: Vec<u16>,
    tx: Vec<*mut ffi::rte_mbuf>,
    /// Per mbuf to send: data offset in its buffer, data length.
    tx_off: Vec<u16>,
    tx_len: Vec<u16>,
    stats: Arc<PortStats>,
    /// Keeps the worker pool registered for DMA while the port may use it;
    /// released after `drop` stopped the device.
    dma: Option<Arc<dma::Region>>,
}

// SAFETY: mbuf pointers are handles owned by this port's worker thread.
unsafe impl Send for DpdkPort {}

extern "C" fn collect(arg: *mut c_void, m: *mut ffi::rte_mbuf) {
    // SAFETY: `arg` is the `(base, Vec<(usize, usize)>)` passed by
    // `make_pool` for the duration of the iteration; `m` a live mbuf.
    let (base, out) = unsafe { &mut *arg.cast::<(usize, Vec<(usize, usize)>)>() };
    // SAFETY: `m` is a valid mbuf of the pool being iterated.
    let addr = unsafe { ffi::vr_mbuf_buf_addr(m) } as usize;
    out.push(((addr - *base) / FRAME_SIZE, m as usize));
}

impl DpdkPort {
    /// Finds (probing a vdev if needed) and configures the device; queues
    /// are set up in `attach`.
    pub fn open(index: u16, name: &str, cfg: &DpdkConfig) -> Result<Self, PortError> {
        let dev_name = cfg
            .device
            .split(',')
            .next()
            .unwrap_or(&cfg.device)
            .to_string();
        let cname = CString::new(dev_name.as_str()).map_err(|_| err(name, "device name", 22))?;
        let mut port_id: u16 = 0;
        // SAFETY: valid C string and out-pointer for the call.
        let mut found =
            unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut port_id) } == 0;
        if !found && cfg.device.starts_with("net_") {
            let devargs = CString::new(cfg.device.as_str()).map_err(|_| err(name, "device", 22))?;
            // SAFETY: valid C string; probing creates the vdev.
            let r = unsafe { ffi::rte_dev_probe(devargs.as_ptr()) };
            if r < 0 {
                return Err(err(name, format!("probing {}", cfg.device), r));
            }
            // SAFETY: as above.
            found = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut port_id) } == 0;
        }
        if !found {
            return Err(err(name, format!("no DPDK device {}", cfg.device), 19));
        }
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: a valid port id and out-pointer.
        let r = unsafe { ffi::rte_eth_dev_info_get(port_id, &mut info) };
        if r < 0 {
            return Err(err(name, "reading the device information", r));
        }
        dma::add_device(info.device).map_err(|e| dma_err(name, e))?;
        if cfg.queue == 0 {
            let conf = ffi::rte_eth_conf::default();
            // SAFETY: a valid port id and a default configuration.
            let r = unsafe { ffi::rte_eth_dev_configure(port_id, cfg.queues, cfg.queues, &conf) };
            if r < 0 {
                return Err(err(name, "configuring the device", r));
            }
            let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            p.get_or_insert_with(HashMap::new)
                .insert(port_id, cfg.queues);
        }
        let mac = match cfg.mac {
            Some(m) => m,
            None => {
                let mut a = ffi::rte_ether_addr::default();
                // SAFETY: valid port id and out-pointer.
                unsafe { ffi::rte_eth_macaddr_get(port_id, &mut a) };
                MacAddr(a.addr_bytes)
            }
        };
        Ok(DpdkPort {
            index,
            name: name.to_string(),
            mac,
            port_id,
            cfg: cfg.clone(),
            pool: None,
            rx: vec![std::ptr::null_mut(); BURST],
            rx_addr: vec![0; BURST],
            rx_len: vec![0; BURST],
            tx: vec![std::ptr::null_mut(); crate::graph::ARENA],
            tx_off: vec![0; crate::graph::ARENA],
            tx_len: vec![0; crate::graph::ARENA],
            stats: Arc::default(),
            dma: None,
        })
    }

    /// Creates a worker's mempool on `count` frames of its pool.
    fn make_pool(pool: &mut FramePool, count: u32, name: &str) -> Result<DpdkPool, PortError> {
        let first = pool
            .lend_range(count)
            .map_err(|e| err(name, format!("reserving frames: {e}"), 12))?;
        let (base, len) = pool.region();
        let dma = dma::Region::register(base, len).map_err(|e| dma_err(name, e))?;
        let elt = STRIDE as usize * FRAME_SIZE;
        let ext = ffi::rte_pktmbuf_extmem {
            buf_ptr: base.wrapping_add(first as usize * FRAME_SIZE).cast(),
            buf_iova: base as u64 + first as u64 * FRAME_SIZE as u64,
            buf_len: count as usize * FRAME_SIZE,
            elt_size: elt as u16,
        };
        let n_mbufs = count / STRIDE;
        // A per-lcore cache (LIFO) keeps the worker on a few hot mbufs; DPDK
        // wants the cache at most n / 1.5.
        let cache = (n_mbufs / 2).min(512);
        let mp_name = CString::new(format!("vr{}_{}", std::process::id() % 10000, first))
            .map_err(|_| err(name, "pool name", 22))?;
        // SAFETY: `ext` describes memory of the worker pool that stays
        // allocated and lent (never handed out by the pool) for the life of
        // the mempool; the name is a valid C string.
        let mp = unsafe {
            ffi::rte_pktmbuf_pool_create_extbuf(
                mp_name.as_ptr(),
                n_mbufs,
                cache,
                0,
                elt as u16,
                -1,
                &ext,
                1,
            )
        };
        if mp.is_null() {
            // SAFETY: reads DPDK's per-thread error number.
            return Err(err(name, "creating the mbuf pool", unsafe {
                ffi::vr_errno()
            }));
        }
        let mut arg: (usize, Vec<(usize, usize)>) =
            (base as usize, Vec::with_capacity(count as usize));
        // SAFETY: `collect` matches the callback type and `arg` outlives the call.
        unsafe {
            ffi::vr_mempool_mbufs(
                mp,
                Some(collect),
                (&mut arg as *mut (usize, Vec<(usize, usize)>)).cast(),
            )
        };
        let mut mbufs = vec![0usize; count as usize];
        for (frame, m) in arg.1 {
            if let Some(slot) = frame
                .checked_sub(first as usize)
                .and_then(|k| mbufs.get_mut(k))
            {
                *slot = m;
            }
        }
        let mbufs = Arc::new(mbufs);
        let hook_mbufs = mbufs.clone();
        pool.set_return_hook(Box::new(move |frame: u32| {
            if let Some(&m) = frame
                .checked_sub(first)
                .and_then(|k| hook_mbufs.get(k as usize))
                && m != 0
            {
                // SAFETY: `m` is the mbuf that owns this frame; the frame's
                // last user just gave it up, so the mbuf goes back to DPDK.
                unsafe { ffi::vr_pktmbuf_free(m as *mut ffi::rte_mbuf) };
            }
        }));
        Ok(DpdkPool {
            mp,
            first,
            mbufs,
            dma,
        })
    }
}

impl Port for DpdkPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn thread_start(&mut self) {
        // SAFETY: reads the calling thread's EAL lcore id.
        if unsafe { ffi::vr_lcore_id() } != u32::MAX {
            return;
        }
        // Without an lcore id the mempool's per-lcore cache is bypassed and
        // every mbuf comes from the FIFO ring: the worker then cycles through
        // its whole pool, and a large pool costs a cache and TLB miss per
        // packet (a 2× drop in the floor benchmark).
        // SAFETY: EAL is initialised (this port exists); registers the
        // calling thread.
        if unsafe { ffi::rte_thread_register() } != 0 {
            // SAFETY: reads DPDK's per-thread error number.
            let errno = unsafe { ffi::vr_errno() };
            tracing::warn!(
                port = %self.name,
                errno,
                "could not register the worker thread with DPDK; the mbuf cache is off"
            );
        }
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn attach(&mut self, pool: &mut FramePool, ctx: &mut AttachCtx) -> Result<(), PortError> {
        if ctx.dpdk.is_none() {
            let count = (pool.frames() / 2).max(2048);
            ctx.dpdk = Some(Self::make_pool(pool, count, &self.name)?);
        }
        let Some(dp) = &ctx.dpdk else { return Ok(()) };
        let (port, q, name) = (self.port_id, self.cfg.queue, self.name.clone());
        // SAFETY: valid port, queue within the configured count, a live
        // mempool; default queue configuration (null).
        let r = unsafe {
            ffi::rte_eth_rx_queue_setup(port, q, self.cfg.rx_desc, 0, std::ptr::null(), dp.mp)
        };
        if r < 0 {
            return Err(err(&name, "RX queue set-up", r));
        }
        // SAFETY: as above.
        let r =
            unsafe { ffi::rte_eth_tx_queue_setup(port, q, self.cfg.tx_desc, 0, std::ptr::null()) };
        if r < 0 {
            return Err(err(&name, "TX queue set-up", r));
        }
        let start = {
            let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            let m = p.get_or_insert_with(HashMap::new);
            match m.get_mut(&port) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    m.remove(&port);
                    true
                }
            }
        };
        if start {
            // SAFETY: every queue of the port is set up.
            let r = unsafe { ffi::rte_eth_dev_start(port) };
            if r < 0 {
                return Err(err(&name, "starting the device", r));
            }
            // SAFETY: a started port.
            unsafe { ffi::rte_eth_promiscuous_enable(port) };
            let mut s = STARTED.lock().unwrap_or_else(|e| e.into_inner());
            s.get_or_insert_with(HashSet::new).insert(port);
        }
        self.pool = Some((dp.mp as usize, dp.first, dp.mbufs.clone()));
        self.dma = Some(dp.dma.clone());
        tracing::info!(port = %self.name, device = %self.cfg.device, queue = q, "DPDK port ready");
        Ok(())
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize {
        let n = max.min(BURST) as u16;
        let (base, _) = pool.region();
        // SAFETY: `rx`, `rx_addr` and `rx_len` have room for BURST entries;
        // the shim writes one of each per received mbuf.
        let got = unsafe {
            ffi::vr_rx_burst_info(
                self.port_id,
                self.cfg.queue,
                self.rx.as_mut_ptr(),
                n,
                base as usize,
                self.rx_addr.as_mut_ptr(),
                self.rx_len.as_mut_ptr(),
            )
        } as usize;
        let got = got.min(self.rx.len());
        let (mut k, mut bytes, mut bad) = (0usize, 0u64, 0u64);
        let meta = Pkt::new_meta(self.index);
        let start = out.len();
        out.reserve(got);
        let spare = out.spare_capacity_mut();
        let infos = self.rx_addr.iter().zip(&self.rx_len);
        for (&m, (&addr, &len)) in self.rx[..got].iter().zip(infos) {
            // Multi-segment mbufs come with addr = u64::MAX, which adopt refuses.
            match pool.adopt(addr, usize::from(len)) {
                Ok(buf) => match spare.get_mut(k) {
                    Some(slot) => {
                        bytes += u64::from(len);
                        slot.write(Pkt { buf, meta });
                        k += 1;
                    }
                    // Not reached (room for `got` was reserved); frees the mbuf.
                    None => pool.free(buf),
                },
                Err(_) => {
                    bad += 1;
                    // SAFETY: not adopted: the mbuf is still ours to free.
                    unsafe { ffi::vr_pktmbuf_free(m) };
                }
            }
        }
        // SAFETY: the loop initialised the first `k` spare slots (each
        // increment of `k` follows the write of slot `k`), so the first
        // `start + k` elements are initialised.
        unsafe { out.set_len(start + k) };
        PortStats::add(&self.stats.rx_packets, k as u64);
        PortStats::add(&self.stats.rx_bytes, bytes);
        PortStats::add(&self.stats.rx_errors, bad);
        k
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let Some((mp, first, mbufs)) = &self.pool else {
            for b in bufs.drain(..) {
                pool.free(b);
            }
            return;
        };
        let (mut bytes, mut dropped) = (0u64, 0u64);
        if self.tx.len() < bufs.len() {
            // Batches are at most a graph arena; grows once, if ever.
            self.tx.resize(bufs.len(), std::ptr::null_mut());
            self.tx_off.resize(bufs.len(), 0);
            self.tx_len.resize(bufs.len(), 0);
        }
        let (first, mbufs) = (*first, &mbufs[..]);
        let mut n = 0usize;
        for b in bufs.drain(..) {
            let (off, len) = (b.offset() as u16, b.len() as u16);
            let own = b
                .frame_index()
                .checked_sub(first)
                .and_then(|k| mbufs.get(k as usize))
                .copied()
                .unwrap_or(0);
            let m = if own != 0 {
                // A frame of our mempool: its own mbuf carries it out.
                if pool.lend(b).is_err() {
                    dropped += 1;
                    continue;
                }
                own as *mut ffi::rte_mbuf
            } else {
                // SAFETY: a live mempool.
                let m = unsafe { ffi::vr_pktmbuf_alloc(*mp as *mut ffi::rte_mempool) };
                if m.is_null() {
                    dropped += 1;
                    pool.free(b);
                    continue;
                }
                // SAFETY: a fresh mbuf owns FRAME_SIZE bytes at buf_addr;
                // the packet fits (off + len <= FRAME_SIZE by PacketBuf).
                unsafe {
                    let dst = ffi::vr_mbuf_buf_addr(m).cast::<u8>().add(usize::from(off));
                    std::ptr::copy_nonoverlapping(b.data().as_ptr(), dst, usize::from(len));
                }
                pool.free(b);
                m
            };
            match (
                self.tx.get_mut(n),
                self.tx_off.get_mut(n),
                self.tx_len.get_mut(n),
            ) {
                (Some(t), Some(o), Some(l)) => {
                    (*t, *o, *l) = (m, off, len);
                    bytes += u64::from(len);
                    n += 1;
                }
                _ => {
                    // Not reached (sized for the batch above).
                    // SAFETY: an mbuf we own and do not send.
                    unsafe { ffi::vr_pktmbuf_free(m) };
                    dropped += 1;
                }
            }
        }
        // SAFETY: `tx` holds owned mbufs whose buffers hold the packets at
        // `tx_off`/`tx_len` (same length); the PMD takes those it sends.
        let sent = unsafe {
            ffi::vr_tx_burst_set(
                self.port_id,
                self.cfg.queue,
                self.tx.as_mut_ptr(),
                n as u16,
                self.tx_off.as_ptr(),
                self.tx_len.as_ptr(),
            )
        } as usize;
        for &m in self.tx.get(sent..n).unwrap_or(&[]) {
            // SAFETY: not taken by the PMD: still ours. Freeing returns it
            // to the mempool (its frame stays lent to DPDK).
            unsafe { ffi::vr_pktmbuf_free(m) };
            dropped += 1;
        }
        PortStats::add(&self.stats.tx_packets, sent as u64);
        PortStats::add(&self.stats.tx_bytes, bytes);
        PortStats::add(&self.stats.tx_dropped, dropped);
        PortStats::add(&self.stats.tx_ring_full, n.saturating_sub(sent) as u64);
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        // Stopped by whichever of its queues goes first, so that no queue
        // still DMAs into a pool whose registration `self.dma` releases.
        let started = STARTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_some_and(|s| s.remove(&self.port_id));
        if started {
            // SAFETY: a started port; stopping drains its queues.
            unsafe {
                ffi::rte_eth_dev_stop(self.port_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vdev port's attach registers the worker pool with DPDK (DPDK finds
    /// the region, with IOVA = VA, mapped for the device), and dropping the
    /// port unregisters it again.
    #[test]
    fn lent_frames_are_registered_for_dma_and_released() {
        // SAFETY: geteuid has no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: DPDK's EAL needs root");
            return;
        }
        let args = ["--no-huge", "-m", "64", "--no-shconf"].map(String::from);
        eal_init(&args, false).expect("EAL init");
        // SAFETY: EAL is initialised.
        let mode = unsafe { ffi::rte_eal_iova_mode() };
        assert_eq!(
            mode,
            ffi::rte_iova_mode_RTE_IOVA_VA,
            "vdev-only EAL runs IOVA as VA"
        );
        let cfg = DpdkConfig {
            device: "net_null0".into(),
            queue: 0,
            queues: 1,
            rx_desc: 256,
            tx_desc: 256,
            mac: None,
        };
        let mut port = DpdkPort::open(0, "n0", &cfg).expect("net_null0");
        let mut pool = FramePool::new(8192).expect("pool");
        let (base, len) = pool.region();
        // SAFETY: a lookup of an address; DPDK only reads its tables.
        let before = unsafe { ffi::rte_mem_virt2memseg_list(base.cast()) };
        assert!(
            before.is_null(),
            "the pool is not DPDK memory before attach"
        );
        let mut ctx = AttachCtx::default();
        port.attach(&mut pool, &mut ctx).expect("attach");
        drop(ctx);

        let last = base.wrapping_add(len - 1);
        // SAFETY: as above.
        let msl = unsafe { ffi::rte_mem_virt2memseg_list(last.cast()) };
        assert!(!msl.is_null(), "DPDK does not know the registered pool");
        // SAFETY: `msl` is the list that holds `last`.
        let ms = unsafe { ffi::rte_mem_virt2memseg(last.cast(), msl) };
        assert!(!ms.is_null());
        // SAFETY: a memseg of a live list.
        let iova = unsafe { (*ms).iova };
        let page = (last as usize) & !4095;
        assert_eq!(iova, page as u64, "the page's IOVA is its virtual address");
        let regions = dma_regions();
        assert_eq!(regions.len(), 1, "{regions:?}");
        assert_eq!((regions[0].addr, regions[0].len), (base as usize, len));
        assert_eq!(regions[0].iova, base as u64);
        // net_null's bus (vdev) accepts the mapping without doing anything.
        assert_eq!(regions[0].mapped, vec!["net_null0".to_string()]);

        drop(port);
        // SAFETY: as above.
        let after = unsafe { ffi::rte_mem_virt2memseg_list(base.cast()) };
        assert!(
            after.is_null(),
            "the pool is still registered after the port went"
        );
        assert!(dma_regions().is_empty());
    }
}
