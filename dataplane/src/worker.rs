//! A worker: one thread that polls its ports and runs the pipeline, run to
//! completion, sharing nothing with other workers but the published tables.
//!
//! Each poll loop loads the current tables once, reports its generation to
//! the control thread (`WorkerLink::seen`: the quiescent point RCU needs),
//! receives a burst from each port, runs the graph, and hands each port its
//! transmit batch. Busy and idle polls and their cycles are counted so an
//! operator can tell load from a busy-polling 100% CPU (as OVS pmd-stats).
//!
//! Must never: lock, allocate or make a syscall per packet (ports batch
//! their syscalls per burst).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vrouter_buf::{FramePool, PacketBuf};

use crate::config::PollMode;
use crate::control::{Shared, WorkerLink};
use crate::graph::BURST;
use crate::obs::{CaptureMode, DIR_RX, TRACE_MARK_MAX, WorkerObs};
use crate::pipeline::{Ctx, Pipeline};
use crate::port::Port;

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Its buffer pool could not be allocated.
    #[error(transparent)]
    Pool(#[from] vrouter_buf::BufError),
    /// A port could not be attached to the pool.
    #[error(transparent)]
    Port(#[from] crate::port::PortError),
}

/// Descriptors of one worker for a hot restart (see [`Worker::takeover_fds`]).
#[derive(Debug)]
pub struct TakeoverFds {
    pub memfd: std::os::fd::OwnedFd,
    pub frames: u32,
    /// (position among the worker's ports, socket, XSKMAP).
    pub ports: Vec<(usize, std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
}

/// See the module doc.
pub struct Worker {
    pub link: Arc<WorkerLink>,
    shared: Arc<Shared>,
    pub ports: Vec<Box<dyn Port>>,
    /// Global port index → position in `ports`.
    slot: Vec<Option<usize>>,
    tx: Vec<Vec<PacketBuf>>,
    pub pool: FramePool,
    pub pipeline: Pipeline,
    poll: PollMode,
    idle_sleep: Duration,
}

impl Worker {
    /// A worker owning `ports`, with a pool of `frames` frames. The pool is
    /// shared memory (a memfd) when the system allows it, so a new vrouterd
    /// can take it over (docs/HOT-RESTART.md).
    pub fn new(
        shared: Arc<Shared>,
        ports: Vec<Box<dyn Port>>,
        frames: u32,
        poll: PollMode,
        idle_sleep: Duration,
    ) -> Result<Self, WorkerError> {
        let pool = match FramePool::new_shared(frames) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%e, "frame pool in private memory: this vrouterd cannot hand over its AF_XDP ports");
                FramePool::new(frames)?
            }
        };
        Self::with_pool(shared, ports, pool, poll, idle_sleep)
    }

    /// A worker owning `ports` and `pool` (a pool taken over from another
    /// vrouterd, whose adopted ports are set up already).
    pub fn with_pool(
        shared: Arc<Shared>,
        ports: Vec<Box<dyn Port>>,
        pool: FramePool,
        poll: PollMode,
        idle_sleep: Duration,
    ) -> Result<Self, WorkerError> {
        let link = shared.add_worker();
        let n = ports
            .iter()
            .map(|p| p.index() as usize + 1)
            .max()
            .unwrap_or(0);
        let mut slot = vec![None; n];
        for (k, p) in ports.iter().enumerate() {
            slot[p.index() as usize] = Some(k);
        }
        let tx = ports
            .iter()
            .map(|_| Vec::with_capacity(crate::graph::ARENA))
            .collect();
        let mut pool = pool;
        let mut ports = ports;
        let mut ctx = crate::port::AttachCtx::default();
        for p in ports.iter_mut() {
            p.attach(&mut pool, &mut ctx)?;
        }
        link.stats.frames.set(u64::from(pool.frames()));
        link.stats.frames_available.set(pool.available() as u64);
        Ok(Worker {
            link,
            shared,
            ports,
            slot,
            tx,
            pool,
            pipeline: Pipeline::new(),
            poll,
            idle_sleep,
        })
    }

    /// One poll loop; returns the number of packets received.
    pub fn poll_once(&mut self) -> usize {
        let t0 = vrouter_buf::cycles();
        let tables = self.shared.tables.load();
        self.link.seen.store(tables.generation, Ordering::SeqCst);
        let stats = &self.link.stats;
        let mut n = 0;
        for port in self.ports.iter_mut() {
            let room = self.pipeline.rx_room();
            if room == 0 {
                break;
            }
            n += port.rx_burst(&mut self.pool, &mut self.pipeline.pkts, room.min(BURST));
        }
        if n == 0 && self.pipeline.held() == 0 {
            stats.frames_available.set(self.pool.available() as u64);
            stats.idle_polls.add(1);
            stats
                .idle_cycles
                .add(vrouter_buf::cycles().wrapping_sub(t0));
            return 0;
        }
        let now = self.shared.now();
        let obs = &self.link.obs;
        let capture = obs.capture_mode.load(Ordering::Relaxed);
        if n > 0 {
            observe_rx(&self.link.obs, &mut self.pipeline, capture, now);
        }
        let mut cx = Ctx {
            t: &tables,
            pool: &mut self.pool,
            stats,
            now,
            now_s: (now / 1_000_000_000) as u32,
            events: &self.shared.events,
        };
        self.pipeline.run(&mut cx);
        if self.pipeline.tracing() {
            let obs = &self.link.obs;
            self.pipeline.finish_trace(now, |t| obs.push_trace(t));
        }
        if capture != CaptureMode::Off as u8 {
            self.link
                .obs
                .capture_after_run(capture, &self.pipeline.pkts, now);
        }
        self.pipeline
            .drain(&mut self.pool, stats, &self.slot, &mut self.tx);
        for (k, port) in self.ports.iter_mut().enumerate() {
            if !self.tx[k].is_empty() {
                port.tx_burst(&mut self.pool, &mut self.tx[k]);
            }
        }
        if n > 0 {
            stats.busy_polls.add(1);
            stats
                .busy_cycles
                .add(vrouter_buf::cycles().wrapping_sub(t0));
        } else {
            stats.idle_polls.add(1);
            stats
                .idle_cycles
                .add(vrouter_buf::cycles().wrapping_sub(t0));
        }
        stats.frames_available.set(self.pool.available() as u64);
        n
    }

    /// What a new vrouterd needs to take this worker's pool and AF_XDP
    /// ports over: duplicates of the pool's memfd and of each adoptable
    /// port's (socket, XSKMAP) descriptors, with the port's position.
    /// `None` if the pool is private memory.
    pub fn takeover_fds(&self) -> std::io::Result<Option<TakeoverFds>> {
        let Some(memfd) = self.pool.memfd() else {
            return Ok(None);
        };
        let mut ports = Vec::new();
        for (k, p) in self.ports.iter().enumerate() {
            if let Some((sock, map)) = p.takeover_fds() {
                // SAFETY: both descriptors are open for as long as the port
                // lives, and the port outlives this call.
                let (sock, map) = unsafe {
                    (
                        std::os::fd::BorrowedFd::borrow_raw(sock).try_clone_to_owned()?,
                        std::os::fd::BorrowedFd::borrow_raw(map).try_clone_to_owned()?,
                    )
                };
                ports.push((k, sock, map));
            }
        }
        Ok(Some(TakeoverFds {
            memfd: memfd.try_clone_to_owned()?,
            frames: self.pool.frames(),
            ports,
        }))
    }

    /// Prepares a stopped worker for the switch-over of a hot restart: its
    /// adoptable ports will leave their kernel objects alone when dropped,
    /// the other ports are closed now (the new vrouterd opens them again),
    /// and the frames lent to kernel rings are returned — with no buffer
    /// owned after `run` ended, every other frame is free. The worker itself
    /// (its memory) may be dropped later, off the critical path.
    pub fn hand_over(&mut self) -> Vec<u32> {
        for p in self.ports.iter_mut() {
            if p.takeover_fds().is_some() {
                p.set_keep_on_drop(true);
            }
        }
        self.ports.retain(|p| p.takeover_fds().is_some());
        if self.pool.owned() != 0 {
            tracing::warn!(
                owned = self.pool.owned(),
                "buffers still owned at the switch-over: their frames count as free"
            );
        }
        self.pool.lent_frames()
    }

    /// True when every port's input is exhausted and nothing is held.
    pub fn offline_done(&self) -> bool {
        self.ports.iter().all(|p| p.rx_done()) && self.pipeline.held() == 0
    }

    /// Polls until `shared.stop` is set (or, with `until_done`, until the
    /// offline input is exhausted), then releases held packets and flushes
    /// the ports.
    pub fn run(&mut self, until_done: bool) {
        for p in self.ports.iter_mut() {
            p.thread_start();
        }
        let mut idle = 0u32;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.poll_once() > 0 {
                idle = 0;
                continue;
            }
            if until_done && self.offline_done() {
                break;
            }
            idle = idle.saturating_add(1);
            if self.poll == PollMode::Adaptive && idle > 100 {
                std::thread::sleep(self.idle_sleep);
            } else if self.pipeline.held() > 0 && self.ports.iter().all(|p| p.rx_done()) {
                // Offline and waiting for neighbour timeouts: don't spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.shutdown();
    }

    /// Frees held packets and flushes ports.
    pub fn shutdown(&mut self) {
        self.pipeline.release_held(&mut self.pool, &self.link.stats);
        for p in self.ports.iter_mut() {
            if let Err(e) = p.flush() {
                tracing::error!(%e, "flushing port");
            }
        }
        self.link.running.store(false, Ordering::SeqCst);
    }
}

/// Marks received packets for tracing while the budget lasts, and captures
/// them when a port capture is armed. One atomic load each when off.
#[inline]
fn observe_rx(obs: &WorkerObs, pipeline: &mut Pipeline, capture: u8, now: u64) {
    if obs.trace_budget.load(Ordering::Relaxed) > 0 {
        // The arena holds only this loop's packets (drained last loop).
        let n = pipeline.pkts.len() as u32;
        let k = obs.take_budget(TRACE_MARK_MAX.min(n));
        pipeline.mark_traced(0, k);
    }
    if capture == CaptureMode::Port as u8 {
        let port = obs.capture_port.load(Ordering::Relaxed);
        for p in pipeline.pkts.iter() {
            if p.meta.rx_port == port {
                obs.capture(p, DIR_RX, port, now);
            }
        }
    }
}
