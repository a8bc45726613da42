//! Frame pools and packet buffer handles.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// Size of one frame. A power of two, so a frame can be an AF_XDP UMEM chunk.
pub const FRAME_SIZE: usize = 2048;
/// Free bytes in front of a freshly received packet (room for encapsulation).
/// Equal to the kernel's `XDP_PACKET_HEADROOM`.
pub const HEADROOM: usize = 256;
/// Largest packet a frame holds when it starts at [`HEADROOM`].
pub const MAX_PACKET: usize = FRAME_SIZE - HEADROOM;

const PAGE: usize = 4096;

/// Errors of buffer operations. None of them leaves a buffer modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// A frame pool of this many frames could not be allocated.
    #[error("cannot allocate a frame pool of {0} frames")]
    Alloc(u32),
    /// A prepend asked for more bytes than the headroom holds.
    #[error("not enough headroom: need {need} bytes, have {have}")]
    NoHeadroom { need: usize, have: usize },
    /// An append asked for more bytes than the tailroom holds.
    #[error("not enough tailroom: need {need} bytes, have {have}")]
    NoTailroom { need: usize, have: usize },
    /// A strip or window asked for bytes the packet or frame does not have.
    #[error("window {off}+{len} does not fit in the frame or packet")]
    BadWindow { off: usize, len: usize },
    /// An address handed back (by a kernel ring) is not a lent frame of this pool.
    #[error("address {0:#x} is not a lent frame of this pool")]
    BadAddress(u64),
    /// A buffer was returned to a pool it does not belong to.
    #[error("buffer does not belong to this pool")]
    ForeignBuffer,
    /// A shared (memfd) region could not be created or mapped.
    #[error("shared frame pool of {frames} frames: {what} (os error {errno})")]
    Shared {
        frames: u32,
        what: &'static str,
        errno: i32,
    },
}

/// An owned handle to one frame and the packet window in it.
///
/// Not `Clone`: a frame has exactly one owner, which is what makes the data
/// accessors sound. Dropping a `PacketBuf` without returning it to its pool
/// leaks the frame (the pool then never frees its memory); ports and the
/// pipeline always return buffers with [`FramePool::free`].
pub struct PacketBuf {
    frame: NonNull<u8>,
    index: u32,
    off: u16,
    len: u16,
}

// SAFETY: a PacketBuf is the unique owner of its frame's bytes (see the pool
// invariants below); moving it to another thread moves that ownership. The pool
// memory is never freed while a buffer is outstanding.
unsafe impl Send for PacketBuf {}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("frame", &self.index)
            .field("off", &self.off)
            .field("len", &self.len)
            .finish()
    }
}

impl PacketBuf {
    /// The packet bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: `frame` points to FRAME_SIZE bytes owned by this handle alone
        // (pool invariant 1), and every mutator keeps off + len <= FRAME_SIZE
        // (invariant 2), so the range is in bounds and not aliased mutably.
        unsafe {
            std::slice::from_raw_parts(
                self.frame.as_ptr().add(self.off as usize),
                self.len as usize,
            )
        }
    }

    /// The packet bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` guarantees exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.frame.as_ptr().add(self.off as usize),
                self.len as usize,
            )
        }
    }

    /// Packet length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for a zero-length packet.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index of the frame in its pool.
    #[inline(always)]
    pub fn frame_index(&self) -> u32 {
        self.index
    }

    /// Offset of the first packet byte from the start of the frame.
    #[inline(always)]
    pub fn offset(&self) -> usize {
        self.off as usize
    }

    /// Free bytes in front of the packet.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.off as usize
    }

    /// Free bytes after the packet.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        FRAME_SIZE - self.off as usize - self.len as usize
    }

    /// Grows the packet at the front by `n` bytes (taken from the headroom) and
    /// returns the new leading bytes. Their content is unspecified.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.off as usize {
            return Err(BufError::NoHeadroom {
                need: n,
                have: self.off as usize,
            });
        }
        // off >= n and len + n <= FRAME_SIZE, both fit u16 (FRAME_SIZE < 65536).
        self.off -= n as u16;
        self.len += n as u16;
        Ok(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front of the packet (they become headroom).
    #[inline]
    pub fn advance(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len as usize {
            return Err(BufError::BadWindow {
                off: self.off as usize + n,
                len: 0,
            });
        }
        self.off += n as u16;
        self.len -= n as u16;
        Ok(())
    }

    /// Grows the packet at the end by `n` bytes (taken from the tailroom) and
    /// returns the new trailing bytes. Their content is unspecified.
    #[inline]
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let have = self.tailroom();
        if n > have {
            return Err(BufError::NoTailroom { need: n, have });
        }
        let old = self.len as usize;
        self.len += n as u16;
        Ok(&mut self.data_mut()[old..])
    }

    /// Shortens the packet to `len` bytes; a longer `len` is ignored.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < self.len as usize {
            self.len = len as u16;
        }
    }

    /// Places the packet window at `off..off + len` of the frame. The bytes
    /// there are whatever the frame held (a port's DMA or ring copy).
    #[inline]
    pub fn set_window(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        if off.checked_add(len).is_none_or(|end| end > FRAME_SIZE) {
            return Err(BufError::BadWindow { off, len });
        }
        self.off = off as u16;
        self.len = len as u16;
        Ok(())
    }

    /// Replaces the packet with the first `len` bytes of `padded`, starting at
    /// [`HEADROOM`], copying whole 64-byte chunks (`padded.len()` must be a
    /// multiple of 64 and at least `len`): fixed-size copies the compiler
    /// inlines, for ports that copy small frames at line rate.
    #[inline(always)]
    pub fn write_padded(&mut self, padded: &[u8], len: usize) -> Result<(), BufError> {
        let n = padded.len();
        if !n.is_multiple_of(64) || len > n || HEADROOM + n > FRAME_SIZE {
            return Err(BufError::BadWindow {
                off: HEADROOM,
                len: n,
            });
        }
        self.off = HEADROOM as u16;
        self.len = n as u16;
        let dst = self.data_mut();
        if let (Ok(d), Ok(s)) = (
            <&mut [u8; 64]>::try_from(&mut *dst),
            <&[u8; 64]>::try_from(padded),
        ) {
            // The common case (frames up to 64 bytes): one fixed-size copy.
            *d = *s;
        } else {
            for (d, s) in dst.chunks_exact_mut(64).zip(padded.chunks_exact(64)) {
                let s: &[u8; 64] = s.try_into().unwrap_or(&[0; 64]);
                d.copy_from_slice(s);
            }
        }
        self.len = len as u16;
        Ok(())
    }

    /// Replaces the packet with a copy of `bytes`, starting at [`HEADROOM`].
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        self.set_window(HEADROOM, bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

/// Gives up a buffer without returning its frame (a foreign buffer is not
/// ours to recycle). `PacketBuf` has no destructor, so this only ends the
/// handle; the frame stays counted as outstanding and its pool leaks its
/// region rather than free memory still in use.
fn leak(buf: PacketBuf) {
    let _ = buf;
}

const NOT_LENT: u8 = 0;
const LENT: u8 = 1;

/// A region of `frames` frames of [`FRAME_SIZE`] bytes and the list of free ones.
///
/// Invariants that make [`PacketBuf`] sound:
/// 1. A frame is in exactly one state: free (on the free list), owned (by
///    exactly one `PacketBuf`), or lent (its address handed to a kernel ring
///    with [`FramePool::lend`] / [`FramePool::lend_free`]). Only owned frames are
///    reachable from safe code. The `lent` flags record only the third state:
///    `alloc`/`free` move frames between the list and a buffer by value, so
///    they need no flag, and `adopt`/`reclaim` accept only flagged frames, so
///    no address can turn a free or owned frame into a second buffer.
/// 2. A `PacketBuf` window always lies inside its frame.
/// 3. The region is freed only when every frame is free again; a pool dropped
///    with frames outstanding leaks its region rather than free memory that a
///    buffer or a kernel ring may still use.
pub struct FramePool {
    base: NonNull<u8>,
    frames: u32,
    layout: Layout,
    free: Vec<u32>,
    state: Vec<u8>,
    /// Frames `ext_first..ext_end` belong to an external allocator (a DPDK
    /// mempool built on them): never on the free list; a buffer of one of
    /// them goes back through `ext_return` instead.
    ext_first: u32,
    ext_end: u32,
    ext_return: Option<Box<dyn FnMut(u32) + Send>>,
    /// The memfd behind a shared region (mapped `MAP_SHARED`, unmapped on
    /// drop); `None` for a heap region.
    shm: Option<OwnedFd>,
}

// SAFETY: the pool owns its region; the raw base pointer is only a handle to
// that allocation. Buffers handed out are tracked by state, not by pointer
// sharing, so moving the pool between threads is sound.
unsafe impl Send for FramePool {}

impl std::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePool")
            .field("frames", &self.frames)
            .field("free", &self.free.len())
            .finish()
    }
}

impl FramePool {
    /// Allocates a zeroed, page-aligned pool of `frames` frames.
    pub fn new(frames: u32) -> Result<Self, BufError> {
        let size = (frames as usize)
            .checked_mul(FRAME_SIZE)
            .filter(|&s| s > 0)
            .ok_or(BufError::Alloc(frames))?;
        let layout = Layout::from_size_align(size, PAGE).map_err(|_| BufError::Alloc(frames))?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).ok_or(BufError::Alloc(frames))?;
        Ok(FramePool {
            base,
            frames,
            layout,
            // Pop order: frame 0 first, which keeps tests readable.
            free: (0..frames).rev().collect(),
            state: vec![NOT_LENT; frames as usize],
            ext_first: 0,
            ext_end: 0,
            ext_return: None,
            shm: None,
        })
    }

    /// Like [`FramePool::new`], but the region is a memfd mapped
    /// `MAP_SHARED`, so another process can map the same frames
    /// ([`FramePool::memfd`], [`FramePool::from_shared`]): what a hot
    /// restart hands over with an AF_XDP UMEM.
    pub fn new_shared(frames: u32) -> Result<Self, BufError> {
        let size = (frames as usize)
            .checked_mul(FRAME_SIZE)
            .filter(|&s| s > 0)
            .ok_or(BufError::Alloc(frames))?;
        let shared = |what| BufError::Shared {
            frames,
            what,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        };
        // SAFETY: a NUL-terminated name; memfd_create has no other inputs.
        let fd = unsafe { libc::memfd_create(c"vrouter-frames".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(shared("memfd_create"));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned here.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ftruncate on the owned memfd; a new memfd reads as zeros.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(shared("ftruncate"));
        }
        Self::from_shared(fd, frames, &[])
    }

    /// Maps the memfd `fd` of a shared pool of `frames` frames (made by
    /// [`FramePool::new_shared`], maybe in another process) with no free
    /// frame: every frame starts lent.
    fn map_shared(fd: OwnedFd, frames: u32) -> Result<Self, BufError> {
        let size = (frames as usize)
            .checked_mul(FRAME_SIZE)
            .filter(|&s| s > 0)
            .ok_or(BufError::Alloc(frames))?;
        let layout = Layout::from_size_align(size, PAGE).map_err(|_| BufError::Alloc(frames))?;
        let shared = |what, errno| BufError::Shared {
            frames,
            what,
            errno,
        };
        // SAFETY: fstat fills a plain-data struct for an fd we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `st` is a valid out-pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || (st.st_size as usize) < size {
            return Err(shared("the region is smaller than the pool", 0));
        }
        // SAFETY: a fresh shared mapping of `size` bytes of a file at least
        // that long; no existing memory is affected. MAP_FAILED is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(shared(
                "mmap",
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(BufError::Alloc(frames))?;
        Ok(FramePool {
            base,
            frames,
            layout,
            free: Vec::with_capacity(frames as usize),
            state: vec![LENT; frames as usize],
            ext_first: 0,
            ext_end: 0,
            ext_return: None,
            shm: Some(fd),
        })
    }

    /// Maps a shared pool handed over by another process: frames in `lent`
    /// stay lent (they sit in kernel rings), every other frame is free.
    /// The other process must own no buffer of the region any more.
    pub fn from_shared(fd: OwnedFd, frames: u32, lent: &[u32]) -> Result<Self, BufError> {
        let mut pool = Self::map_shared(fd, frames)?;
        pool.state.fill(NOT_LENT);
        for &f in lent {
            let Some(s) = pool.state.get_mut(f as usize) else {
                return Err(BufError::Shared {
                    frames,
                    what: "a lent frame is outside the pool",
                    errno: 0,
                });
            };
            *s = LENT;
        }
        pool.free = (0..frames)
            .rev()
            .filter(|&f| pool.state[f as usize] == NOT_LENT)
            .collect();
        Ok(pool)
    }

    /// The memfd of a shared pool (see [`FramePool::new_shared`]).
    pub fn memfd(&self) -> Option<BorrowedFd<'_>> {
        self.shm.as_ref().map(|f| f.as_fd())
    }

    /// Frames lent to kernel rings. With no buffer outstanding, every other
    /// frame is free: this list is the pool's whole ownership state.
    pub fn lent_frames(&self) -> Vec<u32> {
        (0..self.frames)
            .filter(|&f| {
                self.state[f as usize] == LENT && (f < self.ext_first || f >= self.ext_end)
            })
            .collect()
    }

    /// Frames owned by buffers (neither free nor lent).
    pub fn owned(&self) -> usize {
        let lent = self.state.iter().filter(|&&s| s == LENT).count();
        (self.frames as usize).saturating_sub(self.free.len() + lent)
    }

    /// Gives the last `count` frames of the pool (all of which must be
    /// free) for good to an external allocator: they are marked lent, and a
    /// buffer of one of them that is freed or reclaimed later is handed to
    /// the hook set with [`FramePool::set_return_hook`] (it returns the frame
    /// to its allocator) instead of the free list. Returns the first frame.
    pub fn lend_range(&mut self, count: u32) -> Result<u32, BufError> {
        if self.ext_end != 0 || count == 0 || count > self.frames {
            return Err(BufError::Alloc(count));
        }
        let first = self.frames - count;
        if self.free.iter().filter(|&&f| f >= first).count() != count as usize {
            // Some of them are in use or lent.
            return Err(BufError::Alloc(count));
        }
        self.free.retain(|&f| f < first);
        for f in first..self.frames {
            self.state[f as usize] = LENT;
        }
        self.ext_first = first;
        self.ext_end = self.frames;
        Ok(first)
    }

    /// The hook that takes back frames of the range given with
    /// [`FramePool::lend_range`].
    pub fn set_return_hook(&mut self, hook: Box<dyn FnMut(u32) + Send>) {
        self.ext_return = Some(hook);
    }

    /// Hands frame `index` of the external range back to its allocator.
    #[cold]
    fn ext_give_back(&mut self, index: u32) {
        self.state[index as usize] = LENT;
        if let Some(h) = self.ext_return.as_mut() {
            h(index);
        }
    }

    /// Number of frames in the pool.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Number of free frames.
    #[inline]
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Frames owned by buffers or lent to rings.
    pub fn outstanding(&self) -> usize {
        self.frames as usize - self.free.len()
    }

    /// Start and length of the region, for registering it as an AF_XDP UMEM.
    /// The caller must only hand lent frames' addresses to the kernel.
    pub fn region(&self) -> (*mut u8, usize) {
        (self.base.as_ptr(), self.layout.size())
    }

    #[inline(always)]
    fn make(&self, index: u32, off: usize, len: usize) -> PacketBuf {
        // SAFETY: index < frames, so the frame lies inside the region.
        let frame = unsafe { self.base.add(index as usize * FRAME_SIZE) };
        PacketBuf {
            frame,
            index,
            off: off as u16,
            len: len as u16,
        }
    }

    /// Takes a free frame; the packet window is empty at [`HEADROOM`].
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        let index = self.free.pop()?;
        Some(self.make(index, HEADROOM, 0))
    }

    /// Takes a free frame and fills it with the first `len` bytes of the
    /// 64-byte chunks `chunks`, starting at [`HEADROOM`]: whole chunks are
    /// copied (fixed-size copies the compiler inlines), for ports that copy
    /// small frames at line rate. `None` if no frame is free or if `len` is
    /// not within the chunks (or they do not fit a frame).
    #[inline(always)]
    pub fn alloc_copy(&mut self, chunks: &[[u8; 64]], len: usize) -> Option<PacketBuf> {
        let n = chunks.len() * 64;
        if len > n || n > MAX_PACKET {
            return None;
        }
        let index = self.free.pop()?;
        let buf = self.make(index, HEADROOM, len);
        // SAFETY: the frame was just taken off the free list, so this handle
        // is its only owner (invariant 1); HEADROOM + n <= FRAME_SIZE was
        // checked above, so the n bytes written lie inside the frame; the
        // source is a separate allocation borrowed immutably, so the ranges
        // do not overlap.
        unsafe {
            let dst = buf.frame.as_ptr().add(HEADROOM);
            if let [one] = chunks {
                dst.cast::<[u8; 64]>().write_unaligned(*one);
            } else {
                std::ptr::copy_nonoverlapping(chunks.as_ptr().cast::<u8>(), dst, n);
            }
        }
        Some(buf)
    }

    /// [`FramePool::alloc_copy`] of a frame that fits one chunk.
    #[inline(always)]
    pub fn alloc_copy64(&mut self, chunk: &[u8; 64], len: u16) -> Option<PacketBuf> {
        let index = self.free.pop()?;
        let buf = self.make(index, HEADROOM, usize::from(len.min(64)));
        // SAFETY: the frame was just taken off the free list, so this handle
        // is its only owner (invariant 1); HEADROOM + 64 <= FRAME_SIZE, so
        // the bytes written lie inside the frame.
        unsafe {
            buf.frame
                .as_ptr()
                .add(HEADROOM)
                .cast::<[u8; 64]>()
                .write_unaligned(*chunk);
        }
        Some(buf)
    }

    /// Returns every buffer of `bufs` to the free list (emptying it) and
    /// gives the sum of their lengths.
    #[inline]
    pub fn free_all(&mut self, bufs: &mut Vec<PacketBuf>) -> u64 {
        let mut bytes = 0u64;
        self.free.reserve(bufs.len());
        for buf in bufs.drain(..) {
            bytes += u64::from(buf.len);
            self.free(buf);
        }
        bytes
    }

    /// Returns a buffer's frame to the free list.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        if buf.index >= self.ext_first && buf.index < self.ext_end && self.owns(&buf) {
            let index = buf.index;
            leak(buf);
            self.ext_give_back(index);
        } else if self.owns(&buf) {
            self.free.push(buf.index);
        } else {
            // A foreign buffer: not ours to recycle. Leaking it is safe; a
            // debug build stops here because it is a bug in the caller.
            debug_assert!(false, "buffer returned to a foreign pool");
            leak(buf);
        }
    }

    /// True if `buf` is a frame of this pool.
    #[inline]
    pub fn owns(&self, buf: &PacketBuf) -> bool {
        buf.index < self.frames
            && std::ptr::eq(
                buf.frame.as_ptr(),
                self.base
                    .as_ptr()
                    .wrapping_add(buf.index as usize * FRAME_SIZE),
            )
    }

    /// Copies `buf` into a new frame at the same offset (for flooding).
    #[inline]
    pub fn copy(&mut self, buf: &PacketBuf) -> Option<PacketBuf> {
        let mut c = self.alloc()?;
        c.off = buf.off;
        c.len = buf.len;
        c.data_mut().copy_from_slice(buf.data());
        Some(c)
    }

    /// Address (offset in the region) of the packet's first byte.
    #[inline]
    pub fn addr_of(buf: &PacketBuf) -> u64 {
        buf.index as u64 * FRAME_SIZE as u64 + buf.off as u64
    }

    /// Gives a buffer's frame to a kernel ring (AF_XDP TX) and returns the
    /// packet's address in the region. The frame comes back with
    /// [`FramePool::reclaim`] (completion ring) or [`FramePool::adopt`].
    #[inline]
    pub fn lend(&mut self, buf: PacketBuf) -> Result<u64, BufError> {
        if !self.owns(&buf) {
            leak(buf);
            return Err(BufError::ForeignBuffer);
        }
        let addr = Self::addr_of(&buf);
        self.state[buf.index as usize] = LENT;
        // The handle ends here; the frame now belongs to the kernel ring.
        let _ = buf;
        Ok(addr)
    }

    /// Takes a free frame and lends it (AF_XDP fill ring); returns the
    /// address of the frame's start.
    #[inline]
    pub fn lend_free(&mut self) -> Option<u64> {
        let index = self.free.pop()?;
        self.state[index as usize] = LENT;
        Some(index as u64 * FRAME_SIZE as u64)
    }

    #[inline]
    fn lent_index(&self, addr: u64) -> Result<u32, BufError> {
        let index = addr / FRAME_SIZE as u64;
        if index >= self.frames as u64 || self.state[index as usize] != LENT {
            return Err(BufError::BadAddress(addr));
        }
        Ok(index as u32)
    }

    /// Takes back a lent frame holding a packet of `len` bytes at `addr`
    /// (AF_XDP RX descriptor) as an owned buffer.
    #[inline]
    pub fn adopt(&mut self, addr: u64, len: usize) -> Result<PacketBuf, BufError> {
        let index = self.lent_index(addr)?;
        let off = (addr % FRAME_SIZE as u64) as usize;
        if off + len > FRAME_SIZE {
            return Err(BufError::BadWindow { off, len });
        }
        self.state[index as usize] = NOT_LENT;
        Ok(self.make(index, off, len))
    }

    /// Returns a lent frame to the free list (AF_XDP completion ring).
    #[inline]
    pub fn reclaim(&mut self, addr: u64) -> Result<(), BufError> {
        let index = self.lent_index(addr)?;
        if index >= self.ext_first && index < self.ext_end {
            self.ext_give_back(index);
            return Ok(());
        }
        self.state[index as usize] = NOT_LENT;
        self.free.push(index);
        Ok(())
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        if self.shm.is_some() {
            // The memory stays in the memfd (and in any other process or
            // kernel ring using it): unmapping only removes this view. With
            // a buffer still owned it stays mapped (invariant 3).
            if self.free.len() + self.lent_frames().len() == self.frames as usize {
                // SAFETY: mapped in `map_shared` with this size; no
                // PacketBuf of this pool exists any more (counted above).
                unsafe { libc::munmap(self.base.as_ptr().cast(), self.layout.size()) };
            }
        } else if self.free.len() == self.frames as usize {
            // SAFETY: allocated in `new` with this layout; every frame is free,
            // so no PacketBuf or kernel ring refers to the region any more.
            unsafe { dealloc(self.base.as_ptr(), self.layout) };
        }
        // Otherwise leak: see invariant 3.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_pool_is_taken_over_with_its_lent_frames() {
        let mut a = FramePool::new_shared(16).unwrap();
        // Frame 0 goes to a "fill ring", frame 1 carries a packet to "TX".
        let fill = a.lend_free().unwrap();
        let mut b = a.alloc().unwrap();
        b.write(b"hello").unwrap();
        let tx = a.lend(b).unwrap();
        assert_eq!(a.owned(), 0);
        let lent = a.lent_frames();
        assert_eq!(lent, vec![0, 1]);
        let fd = a.memfd().unwrap().try_clone_to_owned().unwrap();
        let mut n = FramePool::from_shared(fd, 16, &lent).unwrap();
        assert_eq!(n.available(), 14);
        // The new pool sees the bytes the old one wrote, and the frames in
        // the rings come back to it, not to the old pool.
        let got = n.adopt(tx, 5).unwrap();
        assert_eq!(got.data(), b"hello");
        n.free(got);
        n.reclaim(fill).unwrap();
        assert_eq!(n.available(), 16);
        assert!(n.reclaim(fill).is_err(), "a frame comes back once");
        // Never handed out twice: no free frame of the new pool is lent.
        let mut seen = std::collections::HashSet::new();
        while let Some(b) = n.alloc() {
            assert!(seen.insert(b.frame_index()));
        }
        assert_eq!(seen.len(), 16);
        assert!(
            FramePool::from_shared(a.memfd().unwrap().try_clone_to_owned().unwrap(), 16, &[16])
                .is_err()
        );
        assert!(
            FramePool::from_shared(a.memfd().unwrap().try_clone_to_owned().unwrap(), 32, &[])
                .is_err(),
            "region too small"
        );
    }

    #[test]
    fn lent_range_goes_back_through_its_hook() {
        use std::sync::{Arc, Mutex};
        let mut p = FramePool::new(8).unwrap();
        let first = p.lend_range(4).unwrap();
        assert_eq!(first, 4);
        assert_eq!(p.available(), 4);
        let returned = Arc::new(Mutex::new(Vec::new()));
        let r = returned.clone();
        p.set_return_hook(Box::new(move |f| r.lock().unwrap().push(f)));
        // The external allocator delivers frame 5 (e.g. an RX mbuf).
        let b = p.adopt(5 * FRAME_SIZE as u64 + 128, 60).unwrap();
        p.free(b);
        assert_eq!(
            *returned.lock().unwrap(),
            vec![5],
            "freed into the hook, not the free list"
        );
        assert_eq!(p.available(), 4);
        // Lent again and reclaimed (e.g. after another port transmitted it).
        let b = p.adopt(5 * FRAME_SIZE as u64 + 128, 60).unwrap();
        let a = p.lend(b).unwrap();
        p.reclaim(a).unwrap();
        assert_eq!(*returned.lock().unwrap(), vec![5, 5]);
        // Frames of the range are never handed out by alloc.
        let mut got = Vec::new();
        while let Some(b) = p.alloc() {
            assert!(b.frame_index() < 4);
            got.push(b);
        }
        assert_eq!(got.len(), 4);
        assert!(p.lend_range(2).is_err(), "one range per pool");
        for b in got {
            p.free(b);
        }
        let mut q = FramePool::new(4).unwrap();
        let held = q.alloc().unwrap(); // frame 0
        let held2 = q.alloc().unwrap(); // frame 1
        let held3 = q.alloc().unwrap(); // frame 2
        let held4 = q.alloc().unwrap(); // frame 3
        assert!(
            q.lend_range(2).is_err(),
            "frames in use cannot be given away"
        );
        for b in [held, held2, held3, held4] {
            q.free(b);
        }
        assert_eq!(q.available(), 4);
    }

    #[test]
    fn alloc_write_free() {
        let mut p = FramePool::new(4).unwrap();
        let mut b = p.alloc().unwrap();
        assert_eq!(b.headroom(), HEADROOM);
        b.write(&[1, 2, 3]).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert_eq!(p.available(), 3);
        p.free(b);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut p = FramePool::new(2).unwrap();
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert!(p.alloc().is_none());
        p.free(a);
        p.free(b);
    }

    #[test]
    fn prepend_and_advance_keep_window_in_frame() {
        let mut p = FramePool::new(1).unwrap();
        let mut b = p.alloc().unwrap();
        b.write(&[9; 64]).unwrap();
        b.prepend(50).unwrap().copy_from_slice(&[7; 50]);
        assert_eq!(b.len(), 114);
        assert_eq!(&b.data()[..50], &[7; 50]);
        assert_eq!(&b.data()[50..], &[9; 64]);
        assert!(matches!(
            b.prepend(HEADROOM),
            Err(BufError::NoHeadroom {
                need: HEADROOM,
                have: 206
            })
        ));
        b.advance(50).unwrap();
        assert_eq!(b.data(), &[9; 64]);
        assert!(b.advance(65).is_err());
        assert_eq!(b.len(), 64);
        p.free(b);
    }

    #[test]
    fn append_respects_tailroom() {
        let mut p = FramePool::new(1).unwrap();
        let mut b = p.alloc().unwrap();
        assert_eq!(b.tailroom(), MAX_PACKET);
        b.append(MAX_PACKET).unwrap();
        assert!(b.append(1).is_err());
        b.truncate(10);
        assert_eq!(b.len(), 10);
        assert!(b.write(&vec![0; MAX_PACKET + 1]).is_err());
        p.free(b);
    }

    #[test]
    fn write_padded_copies_the_window_only() {
        let mut p = FramePool::new(1).unwrap();
        let mut b = p.alloc().unwrap();
        let mut src = [0u8; 128];
        src[..70].copy_from_slice(&[5; 70]);
        b.write_padded(&src, 70).unwrap();
        assert_eq!(b.data(), &[5; 70]);
        assert!(
            b.write_padded(&src[..100], 70).is_err(),
            "not a multiple of 64"
        );
        assert!(b.write_padded(&src, 129).is_err());
        p.free(b);
    }

    #[test]
    fn copy_is_independent() {
        let mut p = FramePool::new(2).unwrap();
        let mut a = p.alloc().unwrap();
        a.write(&[1, 2, 3, 4]).unwrap();
        let mut c = p.copy(&a).unwrap();
        c.data_mut()[0] = 42;
        assert_eq!(a.data(), &[1, 2, 3, 4]);
        assert_eq!(c.data(), &[42, 2, 3, 4]);
        assert_ne!(a.frame_index(), c.frame_index());
        p.free(a);
        p.free(c);
    }

    #[test]
    fn lend_adopt_reclaim_cycle() {
        let mut p = FramePool::new(2).unwrap();
        let fill = p.lend_free().unwrap();
        // Kernel wrote a packet at the headroom offset of that frame.
        let mut b = p.adopt(fill + HEADROOM as u64, 60).unwrap();
        assert_eq!(b.len(), 60);
        b.data_mut()[0] = 1;
        // Adopting the same frame twice is refused: it is owned now.
        assert_eq!(
            p.adopt(fill + HEADROOM as u64, 60).unwrap_err(),
            BufError::BadAddress(fill + 256)
        );
        let tx = p.lend(b).unwrap();
        assert_eq!(tx, fill + HEADROOM as u64);
        p.reclaim(tx).unwrap();
        assert_eq!(p.available(), 2);
        assert!(p.reclaim(tx).is_err(), "double completion is refused");
        assert!(p.adopt(1 << 40, 10).is_err());
    }

    #[test]
    fn foreign_buffer_is_refused_by_lend() {
        let mut a = FramePool::new(1).unwrap();
        let mut b = FramePool::new(1).unwrap();
        let buf = a.alloc().unwrap();
        assert!(!b.owns(&buf));
        assert_eq!(b.lend(buf), Err(BufError::ForeignBuffer));
        // `buf` was leaked by the refusal; pool `a` now leaks its region on drop.
        assert_eq!(a.outstanding(), 1);
    }
}
