//! The CNI netconf parser: arbitrary text as the network configuration on
//! the plugin's stdin (`NetConf::parse`, `version_of`), and its lines as
//! `KEY=VALUE` environment variables (`Env::parse`). A valid netconf's
//! subnet arithmetic is exercised too. Errors are CNI errors, never panics.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use vrouter_cni::conf::{Env, NetConf, check_ifname};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vrouter_cni::conf::version_of(&text);
    if let Ok(c) = NetConf::parse(&text) {
        assert!(!c.ports.is_empty());
        assert!(c.subnet.contains(c.gateway));
        if let Some((first, last)) = c.subnet.host_range() {
            assert!(first <= last);
            assert!(c.subnet.contains(c.subnet.ip(first)));
            assert!(c.subnet.contains(c.subnet.ip(last)));
        }
        for s in &c.ports {
            assert!(check_ifname(&s.device).is_ok());
        }
    }
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(env) = Env::parse(&vars) {
        let _ = check_ifname(&env.ifname);
    }
});
