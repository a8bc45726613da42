//! Hot restart: the handover protocol between a running vrouterd (the old
//! one) and the one taking over (docs/HOT-RESTART.md).
//!
//! Owns the messages, their framing on the handover Unix socket (a 4-byte
//! length, then JSON; descriptors ride along with `SCM_RIGHTS`), the check
//! that both sides run the same ports, and the errors a failed takeover
//! reports. It never touches packets, workers or tables: `vrouterd` drives
//! the sequence and this module only carries it.
//!
//! ```text
//! new ──Hello{version, ports}──────────────────────────► old   (checks version, ports)
//! new ◄─Offer{snapshot, macs, workers} + fds ─────────── old   (or Refuse{reason})
//!        (new maps pools and rings, applies the snapshot, builds pipelines)
//! new ──Ready──────────────────────────────────────────► old   ← switch-over point
//!        (old stops its workers at a vector boundary, closes its other
//!         ports, control socket and metrics)
//! new ◄─Switch{lent frames per worker}────────────────── old
//!        (new starts its workers, binds the sockets)
//! new ──Done───────────────────────────────────────────► old   (old exits 0)
//! ```
//!
//! Before `Ready` either side may give up and the old one goes on
//! forwarding; after it, the old one has stopped.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Snapshot;
use crate::config::{Config, Driver};
use crate::port::sys;

/// Version of this protocol; both sides must speak the same.
pub const VERSION: u32 = 1;
/// Largest message accepted (a snapshot of about a million routes).
pub const MAX_MESSAGE: usize = 1 << 30;

/// Why a takeover failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// No vrouterd listens on the handover socket.
    #[error(
        "no vrouterd to take over at {path}: {error} (is the old vrouterd running, with this handover socket?)"
    )]
    NotRunning { path: String, error: std::io::Error },
    /// The other side speaks another protocol version.
    #[error(
        "handover protocol version mismatch: this vrouterd speaks {ours}, the other {theirs} ({peer})"
    )]
    Version {
        ours: u32,
        theirs: u32,
        peer: String,
    },
    /// The old vrouterd refused (configuration mismatch, unsupported ports…).
    #[error("the running vrouterd refused the takeover: {0}")]
    Refused(String),
    /// The socket failed or the other side went away.
    #[error("handover {what}: {error}")]
    Io {
        what: &'static str,
        error: std::io::Error,
    },
    /// A message could not be parsed or came out of order.
    #[error("handover protocol: {0}")]
    Protocol(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HandoverError {
    move |error| HandoverError::Io { what, error }
}

/// A port as both sides must agree on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortShape {
    pub name: String,
    pub driver: String,
    pub interface: String,
    pub queues: u16,
    pub ring_size: u32,
}

/// What must be the same in both configurations: the ports (same set, same
/// order, same queues and rings), the workers and their pool size. Tables
/// (routes, bridges, services…) may differ: the new configuration applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub workers: usize,
    pub frames: u32,
    pub ports: Vec<PortShape>,
}

impl Shape {
    pub fn of(cfg: &Config) -> Shape {
        Shape {
            workers: cfg.dataplane.workers,
            frames: cfg.dataplane.frames,
            ports: cfg
                .ports
                .iter()
                .map(|p| PortShape {
                    name: p.name.clone(),
                    driver: driver_name(p.driver).to_string(),
                    interface: p.interface.clone().unwrap_or_else(|| p.name.clone()),
                    queues: p.queues,
                    ring_size: p.ring_size,
                })
                .collect(),
        }
    }

    /// `Err` with every difference, in words, when `other` (the new
    /// vrouterd's) does not match this one (the running one's).
    pub fn check(&self, other: &Shape) -> Result<(), String> {
        let mut d = Vec::new();
        if self.workers != other.workers {
            d.push(format!(
                "workers: running {}, new {}",
                self.workers, other.workers
            ));
        }
        if self.frames != other.frames {
            d.push(format!(
                "frames: running {}, new {}",
                self.frames, other.frames
            ));
        }
        let names = |s: &Shape| s.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        if names(self) != names(other) {
            d.push(format!(
                "ports must be the same set in the same order: running [{}], new [{}]",
                names(self).join(", "),
                names(other).join(", ")
            ));
        } else {
            for (a, b) in self.ports.iter().zip(&other.ports) {
                if a != b {
                    d.push(format!(
                        "port {}: running {} on {} ({} queues, ring {}), new {} on {} ({} queues, ring {})",
                        a.name,
                        a.driver,
                        a.interface,
                        a.queues,
                        a.ring_size,
                        b.driver,
                        b.interface,
                        b.queues,
                        b.ring_size
                    ));
                }
            }
        }
        if d.is_empty() {
            Ok(())
        } else {
            Err(format!("configuration mismatch: {}", d.join("; ")))
        }
    }
}

fn driver_name(d: Driver) -> &'static str {
    match d {
        Driver::Pcap => "pcap",
        Driver::Memory => "memory",
        Driver::AfPacket => "af-packet",
        Driver::AfXdp => "af-xdp",
        Driver::Tap => "tap",
        Driver::Dpdk => "dpdk",
    }
}

/// Why a configuration cannot be handed over at all, if it cannot.
pub fn unsupported(cfg: &Config) -> Option<String> {
    cfg.ports
        .iter()
        .find(|p| p.driver == Driver::Dpdk)
        .map(|p| {
            format!(
                "port {}: DPDK ports cannot be handed over (the EAL and the device belong to one process); restart instead",
                p.name
            )
        })
}

/// One worker of an [`Msg::Offer`]: its pool and which of its ports come
/// with descriptors (positions among the worker's ports, in the order the
/// configuration opens them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerOffer {
    pub frames: u32,
    pub ports: Vec<usize>,
}

/// The messages, in the order of the module doc.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum Msg {
    Hello {
        version: u32,
        daemon: String,
        pid: u32,
        shape: Shape,
    },
    Refuse {
        reason: String,
    },
    /// Descriptors: per worker, its pool's memfd, then (socket, XSKMAP)
    /// for each port listed.
    Offer {
        version: u32,
        daemon: String,
        pid: u32,
        snapshot: Snapshot,
        /// MAC address of each configured port.
        macs: Vec<String>,
        workers: Vec<WorkerOffer>,
    },
    Ready,
    /// Per worker, the frames in kernel rings at the switch-over.
    Switch {
        lent: Vec<Vec<u32>>,
    },
    Done {
        pid: u32,
    },
}

impl Msg {
    fn name(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Refuse { .. } => "refuse",
            Msg::Offer { .. } => "offer",
            Msg::Ready => "ready",
            Msg::Switch { .. } => "switch",
            Msg::Done { .. } => "done",
        }
    }
}

/// One end of the handover socket.
pub struct Channel {
    stream: UnixStream,
}

impl Channel {
    /// Connects to the running vrouterd's handover socket.
    pub fn connect(path: &Path) -> Result<Channel, HandoverError> {
        let stream = UnixStream::connect(path).map_err(|error| HandoverError::NotRunning {
            path: path.display().to_string(),
            error,
        })?;
        Ok(Channel { stream })
    }

    /// Wraps an accepted connection (made blocking).
    pub fn accepted(stream: UnixStream) -> Result<Channel, HandoverError> {
        stream.set_nonblocking(false).map_err(io("socket"))?;
        Ok(Channel { stream })
    }

    /// The peer's (pid, uid, gid).
    pub fn peer(&self) -> std::io::Result<(i32, u32, u32)> {
        sys::peer_cred(self.stream.as_raw_fd())
    }

    /// Sends `msg` with `fds` attached.
    pub fn send(&mut self, msg: &Msg, fds: &[RawFd]) -> Result<(), HandoverError> {
        let body = serde_json::to_vec(msg).map_err(|e| HandoverError::Protocol(e.to_string()))?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&l| (l as usize) <= MAX_MESSAGE)
            .ok_or_else(|| HandoverError::Protocol(format!("{} too large", msg.name())))?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(io("socket"))?;
        let sent = if fds.is_empty() {
            0
        } else {
            // The descriptors go with the first bytes of the frame.
            sys::send_fds(self.stream.as_raw_fd(), &frame, fds).map_err(io("sending"))?
        };
        self.stream
            .write_all(&frame[sent..])
            .map_err(io("sending"))?;
        Ok(())
    }

    /// Receives one message and the descriptors that came with it, waiting
    /// at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<(Msg, Vec<OwnedFd>), HandoverError> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(io("socket"))?;
        let mut hdr = [0u8; 4];
        let (mut got, mut fds) =
            sys::recv_fds(self.stream.as_raw_fd(), &mut hdr).map_err(io("receiving"))?;
        if got == 0 {
            return Err(HandoverError::Io {
                what: "receiving",
                error: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the other vrouterd closed the connection",
                ),
            });
        }
        while got < 4 {
            let (n, more) =
                sys::recv_fds(self.stream.as_raw_fd(), &mut hdr[got..]).map_err(io("receiving"))?;
            if n == 0 {
                return Err(HandoverError::Protocol("truncated message".into()));
            }
            got += n;
            fds.extend(more);
        }
        let len = u32::from_be_bytes(hdr) as usize;
        if len > MAX_MESSAGE {
            return Err(HandoverError::Protocol(format!(
                "message of {len} bytes is over the limit"
            )));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).map_err(io("receiving"))?;
        let msg = serde_json::from_slice(&body)
            .map_err(|e| HandoverError::Protocol(format!("bad message: {e}")))?;
        Ok((msg, fds))
    }
}

/// The handover socket of a configuration: `[control] handover-socket`, or
/// next to the control socket (`vrouterd.sock` → `vrouterd.handover.sock`);
/// `None` when both are disabled.
pub fn socket_path(cfg: &Config) -> Option<PathBuf> {
    if !cfg.control.handover_socket.is_empty() {
        return Some(PathBuf::from(&cfg.control.handover_socket));
    }
    if cfg.control.socket.is_empty() {
        return None;
    }
    let ctl = Path::new(&cfg.control.socket);
    let stem = ctl.file_stem()?.to_string_lossy().into_owned();
    Some(ctl.with_file_name(format!("{stem}.handover.sock")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[[port]]\nname = \"a\"\ndriver = \"af-xdp\"\n[[port]]\nname = \"b\"\ndriver = \"af-packet\"\ninterface = \"eth9\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn the_shape_names_every_difference() {
        let a = Shape::of(&cfg(""));
        assert_eq!(a.check(&Shape::of(&cfg(""))), Ok(()));
        let mut b = a.clone();
        b.ports[1].interface = "eth8".into();
        b.workers = 2;
        let e = a.check(&b).unwrap_err();
        assert!(e.contains("workers: running 1, new 2"), "{e}");
        assert!(e.contains("port b: running af-packet on eth9"), "{e}");
        let mut c = a.clone();
        c.ports.pop();
        let e = a.check(&c).unwrap_err();
        assert!(e.contains("same set"), "{e}");
    }

    #[test]
    fn the_handover_socket_sits_next_to_the_control_socket() {
        let mut c = cfg("[control]\nsocket = \"/run/x/vrouterd.sock\"\n");
        assert_eq!(
            socket_path(&c),
            Some(PathBuf::from("/run/x/vrouterd.handover.sock"))
        );
        c.control.handover_socket = "/tmp/h.sock".into();
        assert_eq!(socket_path(&c), Some(PathBuf::from("/tmp/h.sock")));
        c.control.handover_socket.clear();
        c.control.socket.clear();
        assert_eq!(socket_path(&c), None);
    }

    #[test]
    fn messages_carry_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel { stream: a }, Channel { stream: b });
        let mut f = tempfile();
        f.write_all(b"pool").unwrap();
        a.send(
            &Msg::Switch {
                lent: vec![vec![1, 2, 3]],
            },
            &[f.as_raw_fd()],
        )
        .unwrap();
        a.send(&Msg::Ready, &[]).unwrap();
        let (m, fds) = b.recv(Duration::from_secs(1)).unwrap();
        assert!(matches!(m, Msg::Switch { ref lent } if lent == &vec![vec![1, 2, 3]]));
        assert_eq!(fds.len(), 1);
        let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "pool", "the descriptor is the same open file");
        let (m, fds) = b.recv(Duration::from_secs(1)).unwrap();
        assert!(matches!(m, Msg::Ready) && fds.is_empty());
        drop(a);
        let e = b.recv(Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("closed the connection"), "{e}");
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut b = Channel { stream: b };
        a.write_all(&5u32.to_be_bytes()).unwrap();
        a.write_all(b"nope!").unwrap();
        assert!(matches!(
            b.recv(Duration::from_secs(1)),
            Err(HandoverError::Protocol(_))
        ));
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            b.recv(Duration::from_secs(1)),
            Err(HandoverError::Protocol(_))
        ));
    }

    fn tempfile() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("vrouter-handover-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }
}
