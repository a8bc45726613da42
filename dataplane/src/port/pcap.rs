//! A port on capture files, so vrouterd runs with no NIC: RX replays a pcap
//! or pcapng file once, TX appends to a pcap file that tshark and tcpdump read.
//!
//! The whole input is read when the port is opened (offline use, bounded by
//! the file); TX writes through a buffered writer and is flushed on shutdown.
//! Frames larger than a buffer are counted as `rx_dropped`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use vrouter_buf::{FramePool, MAX_PACKET, PacketBuf};
use vrouter_wire::MacAddr;

use super::{Port, PortError, PortStats};
use crate::pkt::Pkt;

/// See the module doc.
pub struct PcapPort {
    index: u16,
    name: String,
    mac: MacAddr,
    input: Vec<Vec<u8>>,
    next: usize,
    output: Option<(String, PcapWriter<BufWriter<File>>)>,
    stats: Arc<PortStats>,
}

/// Reads every Ethernet frame of a pcap or pcapng file.
pub fn read_frames(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|e| format!("cannot read header: {e}"))?;
    drop(file);
    let file = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    let mut frames = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(file).map_err(|e| e.to_string())?;
        while let Some(block) = r.next_block() {
            match block.map_err(|e| e.to_string())? {
                Block::EnhancedPacket(p) => frames.push(p.data.into_owned()),
                Block::SimplePacket(p) => frames.push(p.data.into_owned()),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(file).map_err(|e| e.to_string())?;
        while let Some(p) = r.next_packet() {
            frames.push(p.map_err(|e| e.to_string())?.data.into_owned());
        }
    }
    Ok(frames)
}

impl PcapPort {
    /// Opens a port reading `rx` (if any) and writing `tx` (if any).
    pub fn open(
        index: u16,
        name: &str,
        mac: MacAddr,
        rx: Option<&str>,
        tx: Option<&str>,
    ) -> Result<Self, PortError> {
        let input = match rx {
            Some(path) => read_frames(path).map_err(|reason| PortError::Pcap {
                port: name.to_string(),
                path: path.to_string(),
                reason,
            })?,
            None => Vec::new(),
        };
        let output = match tx {
            Some(path) => {
                let file = File::create(path).map_err(|source| PortError::File {
                    port: name.to_string(),
                    path: path.to_string(),
                    source,
                })?;
                let w = PcapWriter::new(BufWriter::new(file)).map_err(|e| PortError::Pcap {
                    port: name.to_string(),
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
                Some((path.to_string(), w))
            }
            None => None,
        };
        Ok(PcapPort {
            index,
            name: name.to_string(),
            mac,
            input,
            next: 0,
            output,
            stats: Arc::default(),
        })
    }
}

impl Port for PcapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut Vec<Pkt>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(frame) = self.input.get(self.next) else {
                break;
            };
            if frame.len() > MAX_PACKET {
                PortStats::add(&self.stats.rx_dropped, 1);
                self.next += 1;
                continue;
            }
            let Some(mut buf) = pool.alloc() else { break };
            // Cannot fail: the length was checked against MAX_PACKET.
            let _ = buf.write(frame);
            PortStats::add(&self.stats.rx_packets, 1);
            PortStats::add(&self.stats.rx_bytes, frame.len() as u64);
            out.push(Pkt::new(buf, self.index));
            self.next += 1;
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, pool: &mut FramePool, bufs: &mut Vec<PacketBuf>) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for b in bufs.drain(..) {
            let ok = match &mut self.output {
                Some((_, w)) => {
                    let p = PcapPacket::new(ts, b.len() as u32, b.data());
                    w.write_packet(&p).is_ok()
                }
                None => false,
            };
            if ok {
                PortStats::add(&self.stats.tx_packets, 1);
                PortStats::add(&self.stats.tx_bytes, b.len() as u64);
            } else {
                PortStats::add(&self.stats.tx_dropped, 1);
            }
            pool.free(b);
        }
    }

    fn stats(&self) -> &Arc<PortStats> {
        &self.stats
    }

    fn rx_done(&self) -> bool {
        self.next >= self.input.len()
    }

    fn flush(&mut self) -> Result<(), PortError> {
        use std::io::Write;
        // Flushing ends the output: the writer is taken apart to reach the file.
        if let Some((path, w)) = self.output.take() {
            w.into_writer().flush().map_err(|source| PortError::File {
                port: self.name.clone(),
                path,
                source,
            })?;
        }
        Ok(())
    }
}
