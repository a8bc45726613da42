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

/// Detaches the XDP program(s) of `ifindex` if they are all libxdp's AF_XDP
/// redirect program (ours, possibly left by a crashed vrouterd). Someone
/// else's program is left alone. Returns true if something was detached.
pub fn detach_xsk_program(ifindex: i32) -> bool {
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
