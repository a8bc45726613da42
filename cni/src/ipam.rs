//! Host-local-style address and port allocation: one file per allocated
//! address in `<dataDir>/<network>/`, all changes under an exclusive
//! `flock` on `<dir>/lock`, so concurrent invocations never hand out one
//! address or one port twice.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::conf::{Subnet, to_u128};
use crate::error::{CniError, Result, code};

/// How long an invocation waits for the lock before answering "try again".
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most candidate addresses one allocation looks at.
const MAX_SCAN: u128 = 1 << 20;

/// What an address file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub ip: IpAddr,
    pub container_id: String,
    pub ifname: String,
    /// Index of the port of the pool the pod holds.
    pub port: u32,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The pod interface's MAC (a static MAC of the bridge domain).
    #[serde(default)]
    pub mac: String,
    /// True if the endpoint was registered (the bridge has a gateway).
    #[serde(default)]
    pub endpoint: bool,
}

/// The allocation directory of one network, locked while this lives.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> CniError {
    CniError::new(code::IO, format!("{what} {}", p.display())).details(e)
}

impl Store {
    /// Opens (creating) `dir` and takes its lock, waiting up to `timeout`.
    pub fn lock(dir: &Path, timeout: Duration) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        let lp = dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(|e| io("opening", &lp, e))?;
        let deadline = Instant::now() + timeout;
        loop {
            match f.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(CniError::new(
                        code::TRY_AGAIN,
                        format!("{} is locked by another invocation", lp.display()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lp, e)),
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: f,
        })
    }

    /// Every allocation recorded (unreadable files are skipped, and logged).
    pub fn all(&self) -> Result<Vec<Allocation>> {
        let mut v = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| io("reading", &self.dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.parse::<IpAddr>().is_err() {
                continue;
            }
            match std::fs::read_to_string(ent.path())
                .map_err(|e| e.to_string())
                .and_then(|s| serde_json::from_str::<Allocation>(&s).map_err(|e| e.to_string()))
            {
                Ok(a) => v.push(a),
                Err(e) => {
                    tracing::warn!(file = %ent.path().display(), error = %e, "skipping an unreadable allocation")
                }
            }
        }
        Ok(v)
    }

    /// The allocation of a container's interface, if any.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Allocation>> {
        Ok(self
            .all()?
            .into_iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname))
    }

    fn path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// A free address of `subnet` (not `gateway`, not allocated), starting
    /// after the last one handed out, like host-local.
    pub fn next_free(&self, subnet: &Subnet, gateway: IpAddr) -> Result<IpAddr> {
        let Some((first, last)) = subnet.host_range() else {
            return Err(CniError::new(
                code::ADDRESS_EXHAUSTED,
                "subnet has no host addresses",
            ));
        };
        let used: std::collections::HashSet<u128> =
            self.all()?.iter().map(|a| to_u128(a.ip)).collect();
        let start = std::fs::read_to_string(self.dir.join("last_reserved_ip"))
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .filter(|ip| subnet.contains(*ip))
            .map(to_u128)
            .filter(|v| *v >= first && *v < last)
            .map_or(first, |v| v + 1);
        let span = last - first + 1;
        let mut cand = start;
        for _ in 0..span.min(MAX_SCAN) {
            if cand != to_u128(gateway) && !used.contains(&cand) {
                return Ok(subnet.ip(cand));
            }
            cand = if cand == last { first } else { cand + 1 };
        }
        Err(CniError::new(
            code::ADDRESS_EXHAUSTED,
            format!(
                "no free address in {}/{} ({} allocated)",
                subnet.addr,
                subnet.len,
                used.len()
            ),
        ))
    }

    /// Records an allocation (fails if its address is taken).
    pub fn put(&self, a: &Allocation) -> Result<()> {
        let p = self.path(a.ip);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| io("creating", &p, e))?;
        let body = serde_json::to_string(a).unwrap_or_default();
        f.write_all(body.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io("writing", &p, e))?;
        let lp = self.dir.join("last_reserved_ip");
        std::fs::write(&lp, a.ip.to_string()).map_err(|e| io("writing", &lp, e))?;
        Ok(())
    }

    /// Forgets an allocation (absent is fine).
    pub fn release(&self, ip: IpAddr) -> Result<()> {
        let p = self.path(ip);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vrouter-cni-ut-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn alloc(ip: IpAddr, c: &str, port: u32) -> Allocation {
        Allocation {
            ip,
            container_id: c.into(),
            ifname: "eth0".into(),
            port,
            pod_namespace: "ns".into(),
            pod_name: c.into(),
            mac: String::new(),
            endpoint: false,
        }
    }

    #[test]
    fn allocates_skipping_gateway_and_used_then_exhausts() {
        let d = tmp("seq");
        let s = Store::lock(&d, LOCK_TIMEOUT).unwrap();
        let net = Subnet::parse("198.18.0.0/29").unwrap();
        let gw: IpAddr = "198.18.0.1".parse().unwrap();
        let mut got = Vec::new();
        for k in 0..5 {
            let ip = s.next_free(&net, gw).unwrap();
            s.put(&alloc(ip, &format!("c{k}"), k)).unwrap();
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            [
                "198.18.0.2",
                "198.18.0.3",
                "198.18.0.4",
                "198.18.0.5",
                "198.18.0.6"
            ]
        );
        let e = s.next_free(&net, gw).unwrap_err();
        assert_eq!(e.code, code::ADDRESS_EXHAUSTED);
        // Released addresses come back, after the last one handed out.
        s.release("198.18.0.3".parse().unwrap()).unwrap();
        s.release("198.18.0.3".parse().unwrap()).unwrap();
        assert_eq!(s.next_free(&net, gw).unwrap().to_string(), "198.18.0.3");
        assert_eq!(s.find("c4", "eth0").unwrap().unwrap().port, 4);
        assert!(s.find("c1", "eth0").unwrap().is_none());
        // An address file cannot be written twice.
        assert!(
            s.put(&alloc("198.18.0.2".parse().unwrap(), "x", 9))
                .is_err()
        );
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ipv6_and_second_lock_waits() {
        let d = tmp("v6");
        let s = Store::lock(&d, LOCK_TIMEOUT).unwrap();
        let net = Subnet::parse("2001:db8:1::/64").unwrap();
        let gw: IpAddr = "2001:db8:1::1".parse().unwrap();
        assert_eq!(s.next_free(&net, gw).unwrap().to_string(), "2001:db8:1::2");
        let e = Store::lock(&d, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN);
        drop(s);
        assert!(Store::lock(&d, Duration::from_millis(50)).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
