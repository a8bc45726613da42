//! The few libxdp/libbpf functions the AF_XDP port calls, declared by hand
//! (seven prototypes from the distribution's `<xdp/libxdp.h>`, `<xdp/xsk.h>`
//! and `<bpf/bpf.h>`; the build links libxdp and libbpf through pkg-config).
//! libxdp supplies and attaches the redirect program (`xsk_def_prog`, native
//! mode with a fallback to generic) and its socket map; the AF_XDP socket
//! and rings themselves are set up with plain syscalls in `af_xdp.rs`.

use std::ffi::{CStr, c_char, c_int, c_long, c_void};

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
