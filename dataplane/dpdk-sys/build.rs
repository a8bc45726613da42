//! Builds the bindings against the distribution's libdpdk (pkg-config) and
//! compiles the C shim. Needs libdpdk-dev and clang (libclang) at build time.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!("libdpdk (>= 22.11) not found by pkg-config: {e}; install libdpdk-dev")
        });
    // DPDK's pkg-config flags (e.g. -include rte_config.h, -march) apply to
    // both the shim and the bindings.
    let cflags = pkg_config::get_variable("libdpdk", "cflags").unwrap_or_default();
    let cflags: Vec<String> = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|_| cflags.split_whitespace().map(str::to_string).collect());

    let mut cc = cc::Build::new();
    cc.file("shim.c").include(".").warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("vrouter_dpdk_shim");

    let mut clang: Vec<String> = cflags
        .iter()
        .filter(|f| !f.starts_with("-march"))
        .cloned()
        .collect();
    clang.push("-I.".into());
    for p in &lib.include_paths {
        clang.push(format!("-I{}", p.display()));
    }
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(clang)
        .allowlist_function("rte_eal_(init|cleanup)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_eth_(dev_configure|dev_start|dev_stop|dev_close|dev_info_get|rx_queue_setup|tx_queue_setup|promiscuous_enable|macaddr_get|stats_get|dev_get_port_by_name|dev_socket_id|dev_count_avail|link_get_nowait)")
        .allowlist_function("rte_pktmbuf_pool_create_extbuf")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_extmem_(register|unregister)")
        .allowlist_function("rte_dev_dma_(map|unmap)")
        .allowlist_function("rte_dev_(bus|name)")
        .allowlist_function("rte_bus_name")
        .allowlist_function("rte_eal_iova_mode")
        .allowlist_function("rte_mem_virt2memseg(_list)?")
        .allowlist_function("vr_.*")
        .allowlist_type("rte_pktmbuf_extmem")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_iova_mode")
        .allowlist_type("rte_memseg")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("generating DPDK bindings");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings");
}
