//! Links libxdp and libbpf (AF_XDP ports) from the distribution, found with
//! pkg-config (Debian: libxdp-dev, libbpf-dev).

fn main() {
    for lib in ["libxdp", "libbpf"] {
        if let Err(e) = pkg_config::Config::new().probe(lib) {
            println!(
                "cargo:warning={lib} not found by pkg-config ({e}); install libxdp-dev and libbpf-dev (scripts/deps.sh)"
            );
        }
    }
}
