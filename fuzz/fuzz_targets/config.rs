//! The config parser: arbitrary text as vrouterd's TOML file, parsed and
//! validated (`Config::parse`), then, for one valid input in 16, built into
//! a router (`Router::from_config`: the checks that need the whole
//! configuration, such as routes through unknown neighbours or services
//! with port 0). Any
//! outcome but a panic is fine: a bad file is a list of errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrouter_dataplane::config::Config;
use vrouter_dataplane::control::Router;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse("fuzz.toml", text) {
        // Building a router touches 64 MiB per VRF (the FIB), about a
        // second: only one valid input in 16, chosen by content, pays it.
        Ok(cfg) if data.iter().fold(0u8, |a, b| a.wrapping_add(*b)) % 16 == 0 => {
            let macs = vec![None; cfg.ports.len()];
            if let Err(e) = Router::from_config(&cfg, &macs, "fuzz.toml") {
                assert!(!e.to_string().is_empty());
            }
        }
        Ok(_) => {}
        Err(errs) => assert!(!errs.0.is_empty(), "an error without a reason"),
    }
});
