//! The few libxdp/libbpf functions the AF_XDP port calls, declared by hand
//! (the prototypes, from the distribution's `<xdp/libxdp.h>`, `<xdp/xsk.h>`
//! and `<bpf/bpf.h>`; the build links libxdp and libbpf through pkg-config).
//! libxdp supplies and attaches the redirect program (`xsk_def_prog`, native
//! mode with a fallback to generic) and its socket map; the AF_XDP socket
//! and rings themselves are set up with plain syscalls in `af_xdp.rs`.

use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_void};

#[repr(C)]
pub struct XdpMultiprog {
    _private: [u8; 0],
}

#[repr(C)]
pub struct XdpProgram {
    _private: [u8; 0],
}

#[link(name = "xdp")]
unsafe extern "C" {
    pub fn xsk_setup_xdp_prog(ifindex: c_int, xsks_map_fd: *mut c_int) -> c_int;
    pub fn xdp_multiprog__get_from_ifindex(ifindex: c_int) -> *mut XdpMultiprog;
    pub fn xdp_multiprog__next_prog(
        prog: *const XdpProgram,
        mp: *const XdpMultiprog,
    ) -> *mut XdpProgram;
    pub fn xdp_multiprog__main_prog(mp: *const XdpMultiprog) -> *mut XdpProgram;
    pub fn xdp_multiprog__is_legacy(mp: *const XdpMultiprog) -> bool;
    pub fn xdp_multiprog__detach(mp: *mut XdpMultiprog) -> c_int;
    pub fn xdp_multiprog__close(mp: *mut XdpMultiprog);
    pub fn xdp_program__name(prog: *const XdpProgram) -> *const c_char;
    pub fn libxdp_get_error(ptr: *const c_void) -> c_long;
    pub fn xdp_program__find_file(
        filename: *const c_char,
        section_name: *const c_char,
        opts: *mut c_void,
    ) -> *mut XdpProgram;
    pub fn xdp_program__attach(
        prog: *mut XdpProgram,
        ifindex: c_int,
        mode: c_int,
        flags: c_uint,
    ) -> c_int;
    pub fn xdp_program__bpf_obj(prog: *mut XdpProgram) -> *mut BpfObject;
    pub fn xdp_program__close(prog: *mut XdpProgram);
}

#[repr(C)]
pub struct BpfObject {
    _private: [u8; 0],
}

#[repr(C)]
pub struct BpfMap {
    _private: [u8; 0],
}

#[link(name = "bpf")]
unsafe extern "C" {
    pub fn bpf_map_update_elem(
        fd: c_int,
        key: *const c_void,
        value: *const c_void,
        flags: u64,
    ) -> c_int;
    pub fn bpf_map_delete_elem(fd: c_int, key: *const c_void) -> c_int;
    pub fn bpf_xdp_query(ifindex: c_int, flags: c_int, opts: *mut XdpQueryOpts) -> c_int;
    pub fn bpf_xdp_detach(ifindex: c_int, flags: u32, opts: *const c_void) -> c_int;
    pub fn bpf_prog_get_fd_by_id(id: u32) -> c_int;
    pub fn bpf_obj_get_info_by_fd(fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int;
    pub fn bpf_object__find_map_by_name(obj: *const BpfObject, name: *const c_char) -> *mut BpfMap;
    pub fn bpf_map__set_max_entries(map: *mut BpfMap, max_entries: u32) -> c_int;
}

/// libxdp's `enum xdp_attach_mode`.
const XDP_MODE_NATIVE: c_int = 1;
const XDP_MODE_SKB: c_int = 2;

/// Attaches libxdp's AF_XDP redirect program (`xsk_def_xdp_prog.o`, from
/// libxdp's object path) to `ifindex` in native or generic mode, with a
/// socket map for 64 queues (vrouterd's limit per port). Nothing is done if
/// it is already attached (another queue of the port).
pub fn attach_xsk_program(ifindex: i32, generic: bool) -> std::io::Result<()> {
    if attached_programs(ifindex).iter().any(|n| n == XSK_PROG) {
        return Ok(());
    }
    let mode = if generic {
        XDP_MODE_SKB
    } else {
        XDP_MODE_NATIVE
    };
    // SAFETY: the file and map names are NUL-terminated literals; libxdp
    // returns an owned program handle or an error pointer (checked), the
    // object and map pointers are borrowed from that handle and not used
    // after it is closed, which happens exactly once.
    unsafe {
        let prog = xdp_program__find_file(
            c"xsk_def_xdp_prog.o".as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut(),
        );
        let e = libxdp_get_error(prog.cast());
        if prog.is_null() || e != 0 {
            let code = if e < 0 { -e as i32 } else { libc::ENOENT };
            return Err(std::io::Error::from_raw_os_error(code));
        }
        let map = bpf_object__find_map_by_name(xdp_program__bpf_obj(prog), c"xsks_map".as_ptr());
        if !map.is_null() {
            bpf_map__set_max_entries(map, 64);
        }
        let r = xdp_program__attach(prog, ifindex, mode, 0);
        xdp_program__close(prog);
        if r < 0 {
            return Err(std::io::Error::from_raw_os_error(-r));
        }
    }
    Ok(())
}

/// libbpf's `struct bpf_xdp_query_opts` as of libbpf 1.1 (`sz` says which
/// version the caller knows; later fields are left alone). The tail padding
/// is a field so that it is zero: libbpf refuses options whose bytes past
/// the last field it knows are not (`OPTS_VALID`).
#[repr(C)]
#[derive(Default)]
pub struct XdpQueryOpts {
    pub sz: usize,
    pub prog_id: u32,
    pub drv_prog_id: u32,
    pub hw_prog_id: u32,
    pub skb_prog_id: u32,
    pub attach_mode: u8,
    pub _pad: [u8; 7],
}

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// Offset and length of `name` in the kernel's `struct bpf_prog_info`.
const PROG_INFO_NAME: std::ops::Range<usize> = 64..80;

/// `struct bpf_prog_info`, zeroed (no array is asked for), room to spare.
#[repr(C, align(8))]
struct ProgInfo([u8; 256]);

/// Name of libxdp's AF_XDP redirect program.
pub const XSK_PROG: &str = "xsk_def_prog";

/// Names of the XDP programs attached to `ifindex` (empty if none).
pub fn attached_programs(ifindex: i32) -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: libxdp returns an owned multiprog handle or an error pointer
    // (checked with libxdp_get_error); the handle is closed below and the
    // program pointers borrowed from it are not used after that. Names are
    // NUL-terminated strings owned by the handle, copied before closing.
    unsafe {
        let mp = xdp_multiprog__get_from_ifindex(ifindex);
        if mp.is_null() || libxdp_get_error(mp.cast()) != 0 {
            return names;
        }
        let name = |p: *const XdpProgram| {
            let n = xdp_program__name(p);
            if n.is_null() {
                String::new()
            } else {
                CStr::from_ptr(n).to_string_lossy().into_owned()
            }
        };
        if xdp_multiprog__is_legacy(mp) {
            let p = xdp_multiprog__main_prog(mp);
            if !p.is_null() {
                names.push(name(p));
            }
        } else {
            let mut p = xdp_multiprog__next_prog(std::ptr::null(), mp);
            while !p.is_null() {
                names.push(name(p));
                p = xdp_multiprog__next_prog(p, mp);
            }
        }
        xdp_multiprog__close(mp);
    }
    names
}

/// The program attached directly to `ifindex` (native, else generic mode),
/// its name, and the flag that detaches it; through libbpf, every
/// descriptor closed here (libxdp's multiprog handle, in this legacy case,
/// kept one program descriptor per call: two per interface each time a
/// vrouterd started after a crash, found by scripts/soak.sh).
fn attached_direct(ifindex: i32) -> Option<(String, u32)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut q = XdpQueryOpts {
        sz: std::mem::size_of::<XdpQueryOpts>(),
        ..XdpQueryOpts::default()
    };
    // SAFETY: q is a live, sized bpf_xdp_query_opts that libbpf fills.
    if unsafe { bpf_xdp_query(ifindex, 0, &mut q) } != 0 {
        return None;
    }
    let (id, flag) = match (q.drv_prog_id, q.skb_prog_id) {
        (0, 0) => return None,
        (0, skb) => (skb, XDP_FLAGS_SKB_MODE),
        (drv, _) => (drv, XDP_FLAGS_DRV_MODE),
    };
    // SAFETY: a plain syscall wrapper; a non-negative result is a new
    // descriptor that we own (closed when `fd` drops).
    let raw = unsafe { bpf_prog_get_fd_by_id(id) };
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a descriptor just opened for us and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut info = ProgInfo([0; 256]);
    let mut len = info.0.len() as u32;
    // SAFETY: info is zeroed (the kernel writes no arrays), aligned and
    // `len` bytes long; the kernel fills at most that.
    if unsafe { bpf_obj_get_info_by_fd(fd.as_raw_fd(), info.0.as_mut_ptr().cast(), &mut len) } != 0
    {
        return None;
    }
    let name = info.0.get(PROG_INFO_NAME)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some((String::from_utf8_lossy(&name[..end]).into_owned(), flag))
}

/// Detaches the XDP program(s) of `ifindex` if they are all libxdp's AF_XDP
/// redirect program (ours, possibly left by a crashed vrouterd). Someone
/// else's program is left alone. Returns true if something was detached.
pub fn detach_xsk_program(ifindex: i32) -> bool {
    // Without bpffs (as in `ip netns exec`) libxdp attaches the program
    // directly: detach it through libbpf. A dispatcher is libxdp's.
    if let Some((name, flag)) = attached_direct(ifindex)
        && name == XSK_PROG
    {
        // SAFETY: a plain syscall wrapper; no options.
        return unsafe { bpf_xdp_detach(ifindex, flag, std::ptr::null()) } == 0;
    }
    let names = attached_programs(ifindex);
    if names.is_empty() || names.iter().any(|n| n != XSK_PROG) {
        return false;
    }
    // SAFETY: as in `attached_programs`; detach acts on the handle's
    // interface, and the handle is closed afterwards.
    unsafe {
        let mp = xdp_multiprog__get_from_ifindex(ifindex);
        if mp.is_null() || libxdp_get_error(mp.cast()) != 0 {
            return false;
        }
        let r = xdp_multiprog__detach(mp);
        xdp_multiprog__close(mp);
        r == 0
    }
}

#[cfg(test)]
mod tests {
    use super::XdpQueryOpts;

    /// The layout libbpf 1.1 expects (`sizeof`, `offsetof(attach_mode)` in C).
    #[test]
    fn query_opts_match_libbpf() {
        assert_eq!(std::mem::size_of::<XdpQueryOpts>(), 32);
        assert_eq!(std::mem::offset_of!(XdpQueryOpts, attach_mode), 24);
        let o = XdpQueryOpts::default();
        assert_eq!(o._pad, [0; 7]);
    }
}
