//! DMA registration of the frame memory vrouterd lends to DPDK.
//!
//! Owns: registering each worker's frame pool with DPDK as external memory
//! (`rte_extmem_register`, one IOVA per page), DMA-mapping it for every
//! DPDK device of the process (`rte_dev_dma_map`, whichever of the two comes
//! first), and undoing both in reverse order (`rte_dev_dma_unmap` per device,
//! then `rte_extmem_unregister`) when the pool's last DPDK user is dropped.
//!
//! IOVA: with EAL in IOVA-as-VA mode (vfio-pci behind an IOMMU, and every
//! vdev-only process, see `eal_init`) a page's IOVA is its virtual address.
//! With IOVA as physical addresses a device that DMAs cannot use the pool:
//! it is ordinary 4 KiB-page memory, not pinned, physically scattered, while
//! the mempool built on it wants one contiguous IOVA range. That case fails
//! with [`DmaError::PhysicalIova`] instead of handing a NIC wrong addresses.
//!
//! Buses that do no DMA (vdevs: net_af_xdp, net_af_packet, net_pcap,
//! net_null, net_tap) accept or refuse the mapping (`ENOTSUP`/`EINVAL`);
//! a refusal means "not needed" and is logged at debug level. The
//! registration itself always happens, so vdev runs exercise it.
//!
//! Must never: run on the datapath (it locks and allocates), or register
//! memory that is not a live frame pool.

use std::ffi::CStr;
use std::sync::{Arc, Mutex, Weak};

use vrouter_dpdk_sys as ffi;

/// A DMA registration step that failed (the message says which and why).
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    /// `rte_extmem_register` refused the frame pool.
    #[error(
        "registering the frame pool ({len} bytes at {addr:#x}, {pages} pages of {page_size}) \
         with DPDK (rte_extmem_register): {msg} (rte_errno {errno})"
    )]
    Register {
        addr: usize,
        len: usize,
        pages: usize,
        page_size: usize,
        errno: i32,
        msg: String,
    },
    /// `rte_dev_dma_map` failed for a device that needs DMA.
    #[error(
        "DMA-mapping the frame pool ({len} bytes at {addr:#x}) for device {device} \
         (rte_dev_dma_map): {msg} (rte_errno {errno})"
    )]
    Map {
        device: String,
        addr: usize,
        len: usize,
        errno: i32,
        msg: String,
    },
    /// EAL runs with IOVA as physical addresses and a device needs DMA.
    #[error(
        "device {device} (bus {bus}) needs DMA but DPDK runs with IOVA as physical addresses: \
         vrouterd's frame pools are ordinary, unpinned, physically scattered memory and cannot \
         be given to a NIC that way; bind the NIC to vfio-pci with the IOMMU enabled and run EAL \
         with IOVA as VA ([dpdk] eal-args = [\"--iova-mode=va\"])"
    )]
    PhysicalIova { device: String, bus: String },
}

/// What [`regions`] reports of one registered frame pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub addr: usize,
    pub len: usize,
    pub page_size: usize,
    /// IOVA of the first page (the others follow it in IOVA-as-VA mode).
    pub iova: u64,
    /// Devices the region is DMA-mapped for, in mapping order.
    pub mapped: Vec<String>,
}

#[derive(Clone)]
struct Device {
    ptr: usize,
    name: String,
    bus: String,
}

/// A frame pool registered with DPDK; unregistered when dropped.
pub struct Region {
    addr: usize,
    len: usize,
    page_size: usize,
    iova: u64,
    /// Devices mapped, in order (unmapped in reverse).
    mapped: Mutex<Vec<Device>>,
}

struct Registry {
    devices: Vec<Device>,
    regions: Vec<Weak<Region>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    devices: Vec::new(),
    regions: Vec::new(),
});

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno_msg() -> (i32, String) {
    // SAFETY: reads DPDK's per-thread error number.
    let errno = unsafe { ffi::vr_errno() };
    // SAFETY: rte_strerror returns a NUL-terminated string for any number.
    let msg = unsafe { CStr::from_ptr(ffi::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned();
    (errno, msg)
}

fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: DPDK returns NUL-terminated names that live as long as the
    // device or bus.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn iova_as_va() -> bool {
    // SAFETY: reads EAL's IOVA mode (EAL is initialised before any port).
    unsafe { ffi::rte_eal_iova_mode() == ffi::rte_iova_mode_RTE_IOVA_VA }
}

/// The system page size (the frame pools are ordinary pages).
fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// What to do for a device on `bus` in the EAL's IOVA mode.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// `rte_dev_dma_map` (the bus may still answer "not needed").
    Map,
    /// IOVA as PA on a vdev: nothing to map.
    Skip,
    /// IOVA as PA on a device that DMAs: refused.
    Refuse,
}

fn plan(iova_as_va: bool, bus: &str) -> Plan {
    if iova_as_va {
        Plan::Map
    } else if bus == "vdev" {
        Plan::Skip
    } else {
        Plan::Refuse
    }
}

impl Region {
    /// Registers `len` bytes at `addr` (a frame pool: page-aligned) with
    /// DPDK and maps them for every device known so far.
    pub fn register(addr: *mut u8, len: usize) -> Result<Arc<Region>, DmaError> {
        let page_size = page_size();
        let len = len.div_ceil(page_size) * page_size;
        let pages = len / page_size;
        let addr = addr as usize;
        let iovas: Vec<u64> = (0..pages).map(|k| (addr + k * page_size) as u64).collect();
        let va = iova_as_va();
        let mut reg = lock(&REGISTRY);
        // SAFETY: `addr..addr + len` is a live frame pool (page-aligned,
        // rounded up to whole pages) that outlives the returned Region,
        // which unregisters it; `iovas` has one entry per page. DPDK only
        // records the range; it does not access the memory.
        let r = unsafe {
            ffi::rte_extmem_register(
                addr as *mut std::ffi::c_void,
                len,
                if va {
                    iovas.as_ptr().cast_mut()
                } else {
                    std::ptr::null_mut()
                },
                pages as u32,
                page_size,
            )
        };
        if r != 0 {
            let (errno, msg) = errno_msg();
            return Err(DmaError::Register {
                addr,
                len,
                pages,
                page_size,
                errno,
                msg,
            });
        }
        let region = Arc::new(Region {
            addr,
            len,
            page_size,
            iova: if va { addr as u64 } else { u64::MAX },
            mapped: Mutex::new(Vec::new()),
        });
        // On a failed map, dropping `region` undoes what was done.
        for d in reg.devices.clone() {
            region.map(&d)?;
        }
        reg.regions.retain(|w| w.strong_count() > 0);
        reg.regions.push(Arc::downgrade(&region));
        tracing::info!(
            addr = format_args!("{addr:#x}"),
            len,
            pages,
            page_size,
            iova_as_va = va,
            mapped = ?lock(&region.mapped).iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            "frame pool registered with DPDK for DMA"
        );
        Ok(region)
    }

    fn map(&self, d: &Device) -> Result<(), DmaError> {
        match plan(iova_as_va(), &d.bus) {
            Plan::Map => {}
            Plan::Skip => {
                tracing::debug!(device = %d.name, "IOVA as PA: a vdev needs no DMA mapping");
                return Ok(());
            }
            Plan::Refuse => {
                return Err(DmaError::PhysicalIova {
                    device: d.name.clone(),
                    bus: d.bus.clone(),
                });
            }
        }
        // SAFETY: `d.ptr` is a probed device (devices are never closed while
        // vrouterd runs); the range is registered extmem (see `register`).
        let r = unsafe {
            ffi::rte_dev_dma_map(
                d.ptr as *mut ffi::rte_device,
                self.addr as *mut std::ffi::c_void,
                self.iova,
                self.len,
            )
        };
        if r == 0 {
            lock(&self.mapped).push(d.clone());
            return Ok(());
        }
        let (errno, msg) = errno_msg();
        if r > 0 || errno == libc::ENOTSUP || errno == libc::EINVAL {
            tracing::debug!(device = %d.name, bus = %d.bus, errno, "DMA mapping not needed");
            return Ok(());
        }
        Err(DmaError::Map {
            device: d.name.clone(),
            addr: self.addr,
            len: self.len,
            errno,
            msg,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // Not under REGISTRY: `add_device` may drop the last reference while
        // holding it; the registry forgets dead regions lazily.
        let mapped = std::mem::take(&mut *lock(&self.mapped));
        for d in mapped.iter().rev() {
            // SAFETY: undoes a successful rte_dev_dma_map of this range for
            // this device.
            let r = unsafe {
                ffi::rte_dev_dma_unmap(
                    d.ptr as *mut ffi::rte_device,
                    self.addr as *mut std::ffi::c_void,
                    self.iova,
                    self.len,
                )
            };
            if r != 0 {
                let (errno, msg) = errno_msg();
                tracing::warn!(device = %d.name, errno, "DMA unmap of a frame pool: {msg}");
            }
        }
        // SAFETY: the exact range registered in `register`, no longer mapped
        // for any device.
        if unsafe { ffi::rte_extmem_unregister(self.addr as *mut std::ffi::c_void, self.len) } != 0
        {
            let (errno, msg) = errno_msg();
            tracing::warn!(
                addr = format_args!("{:#x}", self.addr),
                errno,
                "unregistering a frame pool from DPDK: {msg}"
            );
        }
        tracing::debug!(
            addr = format_args!("{:#x}", self.addr),
            "frame pool unregistered from DPDK"
        );
    }
}

/// Records the device of a DPDK port (once per device) and maps every
/// registered frame pool for it.
pub fn add_device(dev: *mut ffi::rte_device) -> Result<(), DmaError> {
    if dev.is_null() {
        return Ok(());
    }
    let mut reg = lock(&REGISTRY);
    if reg.devices.iter().any(|d| d.ptr == dev as usize) {
        return Ok(());
    }
    // SAFETY: a probed device; DPDK returns its name and its bus.
    let (name, bus) = unsafe {
        (
            c_str(ffi::rte_dev_name(dev)),
            c_str(ffi::rte_bus_name(ffi::rte_dev_bus(dev))),
        )
    };
    let d = Device {
        ptr: dev as usize,
        name,
        bus,
    };
    for r in reg.regions.iter().filter_map(Weak::upgrade) {
        r.map(&d)?;
    }
    reg.devices.push(d);
    Ok(())
}

/// The frame pools registered now, oldest first.
pub fn regions() -> Vec<RegionInfo> {
    let reg = lock(&REGISTRY);
    reg.regions
        .iter()
        .filter_map(Weak::upgrade)
        .map(|r| RegionInfo {
            addr: r.addr,
            len: r.len,
            page_size: r.page_size,
            iova: r.iova,
            mapped: lock(&r.mapped).iter().map(|d| d.name.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_iova_is_refused_only_for_devices_that_dma() {
        assert_eq!(plan(true, "pci"), Plan::Map);
        assert_eq!(plan(true, "vdev"), Plan::Map);
        assert_eq!(plan(false, "vdev"), Plan::Skip);
        assert_eq!(plan(false, "pci"), Plan::Refuse);
        let e = DmaError::PhysicalIova {
            device: "0000:01:00.0".into(),
            bus: "pci".into(),
        }
        .to_string();
        assert!(e.contains("0000:01:00.0"), "{e}");
        assert!(e.contains("vfio-pci"), "{e}");
        assert!(e.contains("--iova-mode=va"), "{e}");
    }
}
