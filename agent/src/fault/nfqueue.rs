//! `network_delay` without `sch_netem`, and `network_loss`: matching egress
//! packets are sent to an NFQUEUE (iptables `NFQUEUE --queue-bypass`), and a
//! thread of the agent either holds each one for the latency (± uniform
//! jitter) before its ACCEPT verdict, or drops it. A dropped packet was
//! already handed to the queue, so its sender is told nothing, as on a lossy
//! link. With `bypass`, packets pass untouched whenever no program listens
//! on the queue, so a dead agent never blackholes traffic.
//!
//! Why packets pass through the agent (measured on this kernel kind):
//!
//! - Delay: the kernel has no `sch_netem` and nftables has no `queue`
//!   statement here, but the xtables NFQUEUE target works. Held in the agent
//!   for 100 ms, a TCP round trip between two namespaces went from 0.02 ms
//!   to 104 ms.
//! - Loss: a drop on the local output path (an nftables drop, a tc action, a
//!   full qdisc) is reported back to the socket (`NET_XMIT_DROP`), and TCP
//!   re-sends at once without counting a retransmission: a 20 % "loss" that
//!   way acted as a throttle with zero retransmissions. Dropped after the
//!   queue took it, the sender learns nothing, as on a lossy link: a paced
//!   TCP send under 30 % loss retransmitted 433 segments (0 without).
//!
//! Messages are nfnetlink (NETLINK_NETFILTER, subsystem NFQUEUE) built and
//! parsed here (no libnetfilter_queue, no C): `nlmsghdr` (native order),
//! `nfgenmsg`, then attributes whose values are big-endian.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{
    recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

use super::FaultError;

const SUBSYS_QUEUE: u16 = 3;
const MSG_PACKET: u16 = 0;
const MSG_VERDICT: u16 = 1;
const MSG_CONFIG: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const CFG_CMD: u16 = 1;
const CFG_PARAMS: u16 = 2;
const CFG_QUEUE_MAXLEN: u16 = 3;
const CMD_BIND: u8 = 1;
const CMD_UNBIND: u8 = 2;
/// Packet metadata only: the payload is never copied to the agent.
const COPY_META: u8 = 1;
const PACKET_HDR: u16 = 1;
const VERDICT_HDR: u16 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const HDR: usize = 16 + 4;

/// Queue numbers this agent uses for delay faults.
pub(super) const QUEUE_BASE: u16 = 31_000;

/// One nfnetlink message of the queue subsystem.
pub(super) fn message(
    kind: u16,
    flags: u16,
    seq: u32,
    queue: u16,
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut m = vec![0u8; HDR];
    m[4..6].copy_from_slice(&((SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nfgenmsg: family AF_UNSPEC, version 0, resource id (the queue) big-endian.
    m[18..20].copy_from_slice(&queue.to_be_bytes());
    for (t, v) in attrs {
        let len = 4 + v.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&t.to_ne_bytes());
        m.extend_from_slice(v);
        m.resize(m.len() + ((4 - len % 4) % 4), 0);
    }
    let total = m.len() as u32;
    m[0..4].copy_from_slice(&total.to_ne_bytes());
    m
}

/// What one received datagram holds.
#[derive(Debug, PartialEq)]
pub(super) enum Event {
    Packet(u32),
    /// An acknowledgement (0) or an error (negative errno).
    Ack(i32),
}

/// Parses the messages of one datagram.
pub(super) fn parse(buf: &[u8]) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            return Err(format!("bad netlink length {len}"));
        }
        let msg = &buf[off..off + len];
        if kind == NLMSG_ERROR {
            let errno = msg.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            out.push(Event::Ack(errno));
        } else if kind == (SUBSYS_QUEUE << 8) | MSG_PACKET {
            let mut a = HDR;
            while a + 4 <= msg.len() {
                let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
                let atype = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]) & 0x3fff;
                if alen < 4 || a + alen > msg.len() {
                    return Err("bad attribute length".into());
                }
                if atype == PACKET_HDR && alen >= 8 {
                    out.push(Event::Packet(u32::from_be_bytes([
                        msg[a + 4],
                        msg[a + 5],
                        msg[a + 6],
                        msg[a + 7],
                    ])));
                }
                a += (alen + 3) & !3;
            }
        }
        off += (len + 3) & !3;
    }
    Ok(out)
}

fn verdict(queue: u16, id: u32, seq: u32, accept: bool) -> Vec<u8> {
    let mut v = [0u8; 8];
    v[0..4].copy_from_slice(&(if accept { NF_ACCEPT } else { NF_DROP }).to_be_bytes());
    v[4..8].copy_from_slice(&id.to_be_bytes());
    message(MSG_VERDICT, NLM_F_REQUEST, seq, queue, &[(VERDICT_HDR, &v)])
}

fn io(e: impl std::fmt::Display) -> FaultError {
    FaultError::Spawn(format!("nfqueue: {e}"))
}

/// Sends a config command and waits for its acknowledgement.
fn configure(fd: &OwnedFd, queue: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Result<(), FaultError> {
    let kernel = SocketAddrNetlink::new(0, 0);
    sendto(
        fd,
        &message(MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, attrs),
        SendFlags::empty(),
        &kernel,
    )
    .map_err(io)?;
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        let (_, n) = recv(fd, &mut buf[..], RecvFlags::empty()).map_err(io)?;
        for e in parse(&buf[..n.min(buf.len())]).map_err(io)? {
            if let Event::Ack(errno) = e {
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(io(format!("queue {queue}: kernel error {errno}")))
                };
            }
        }
    }
    Err(io("no acknowledgement"))
}

fn bind(queue: u16) -> Result<OwnedFd, FaultError> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::NETFILTER),
    )
    .map_err(io)?;
    configure(&fd, queue, 1, &[(CFG_CMD, &[CMD_BIND, 0, 0, 0])])?;
    let mut params = [0u8; 5];
    params[4] = COPY_META;
    configure(&fd, queue, 2, &[(CFG_PARAMS, &params)])?;
    configure(&fd, queue, 3, &[(CFG_QUEUE_MAXLEN, &16_384u32.to_be_bytes())])?;
    Ok(fd)
}

/// Whether this kernel serves NFQUEUE to this process (binds and unbinds a queue).
pub(super) fn available() -> bool {
    bind(QUEUE_BASE + 999)
        .and_then(|fd| configure(&fd, QUEUE_BASE + 999, 9, &[(CFG_CMD, &[CMD_UNBIND, 0, 0, 0])]))
        .is_ok()
}

/// What the queue's thread does with each packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Action {
    /// Accept it after the latency ± uniform jitter.
    Hold { latency: Duration, jitter: Duration },
    /// Drop it (the rules chose which packets reach the queue).
    Drop,
}

/// A running queue: bound before [`Queue::start`] returns.
pub(super) struct Queue {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Queue {
    /// Starts on the first of `candidates` (at most 32 tried) that binds:
    /// one another program holds fails to bind. Returns the queue number.
    pub(super) fn start_first_free(
        candidates: impl Iterator<Item = u16>,
        action: Action,
    ) -> Result<(Self, u16), FaultError> {
        let mut last = FaultError::Refused("no free queue number for delay and loss faults".into());
        for n in candidates.take(32) {
            match Queue::start(n, action) {
                Ok(q) => return Ok((q, n)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start(queue: u16, action: Action) -> Result<Self, FaultError> {
        let fd = bind(queue)?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(2)),
        )
        .map_err(io)?;
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 4 << 20);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (name, run): (String, Box<dyn FnOnce() + Send>) = match action {
            Action::Hold { latency, jitter } => {
                (format!("delay-q{queue}"), Box::new(move || hold(fd, queue, latency, jitter, &s)))
            }
            Action::Drop => (format!("loss-q{queue}"), Box::new(move || drop_all(fd, queue, &s))),
        };
        let thread = std::thread::Builder::new().name(name).spawn(run).map_err(io)?;
        Ok(Queue { stop, thread: Some(thread) })
    }
}

impl Drop for Queue {
    /// Releases every held packet at once and closes the queue.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hold(fd: OwnedFd, queue: u16, latency: Duration, jitter: Duration, stop: &AtomicBool) {
    let kernel = SocketAddrNetlink::new(0, 0);
    let mut due: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut seq = 10u32;
    let release = |id: u32, seq: &mut u32| {
        *seq = seq.wrapping_add(1);
        let _ = sendto(&fd, &verdict(queue, id, *seq, true), SendFlags::empty(), &kernel);
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            while let Some(Reverse((_, id))) = due.pop() {
                release(id, &mut seq);
            }
            return;
        }
        if let Ok((_, n)) = recv(&fd, &mut buf[..], RecvFlags::empty()) {
            let now = Instant::now();
            for e in parse(&buf[..n.min(buf.len())]).unwrap_or_default() {
                if let Event::Packet(id) = e {
                    let spread =
                        if jitter.is_zero() { 0.0 } else { rand::random::<f64>() * 2.0 - 1.0 };
                    let delay = if spread >= 0.0 {
                        latency + jitter.mul_f64(spread)
                    } else {
                        latency.saturating_sub(jitter.mul_f64(-spread))
                    };
                    due.push(Reverse((now + delay, id)));
                }
            }
        }
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, id))) = due.pop() {
                release(id, &mut seq);
            }
        }
    }
}

/// Drops every packet the queue receives until `stop`.
fn drop_all(fd: OwnedFd, queue: u16, stop: &AtomicBool) {
    let kernel = SocketAddrNetlink::new(0, 0);
    let mut buf = vec![0u8; 64 * 1024];
    let mut seq = 10u32;
    while !stop.load(Ordering::Relaxed) {
        if let Ok((_, n)) = recv(&fd, &mut buf[..], RecvFlags::empty()) {
            for e in parse(&buf[..n.min(buf.len())]).unwrap_or_default() {
                if let Event::Packet(id) = e {
                    seq = seq.wrapping_add(1);
                    let _ =
                        sendto(&fd, &verdict(queue, id, seq, false), SendFlags::empty(), &kernel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_queue_messages() {
        let m = message(
            MSG_CONFIG,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            31_000,
            &[(CFG_PARAMS, &[0, 0, 0, 0, COPY_META])],
        );
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(m.len() % 4, 0);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), (3 << 8) | 2);
        assert_eq!(&m[18..20], &31_000u16.to_be_bytes());
        assert_eq!(
            u16::from_ne_bytes(m[20..22].try_into().unwrap()),
            9,
            "attribute length is 4 + payload"
        );
        // A packet message with a packet header attribute (id 0x01020304) and another attribute.
        let pkt = message(
            MSG_PACKET,
            0,
            0,
            31_000,
            &[(PACKET_HDR, &[1, 2, 3, 4, 8, 0, 3]), (5, &[9, 9, 9, 9])],
        );
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        let mut dgram = pkt.clone();
        dgram.extend(&err);
        assert_eq!(parse(&dgram).unwrap(), vec![Event::Packet(0x0102_0304), Event::Ack(-1)]);
        let mut bad = pkt;
        bad[0] = 250;
        assert!(parse(&bad).is_err());
        let v = verdict(31_000, 5, 1, true);
        assert_eq!(&v[24..28], &NF_ACCEPT.to_be_bytes());
        assert_eq!(&v[28..32], &5u32.to_be_bytes());
        assert_eq!(&verdict(31_000, 5, 1, false)[24..28], &NF_DROP.to_be_bytes());
    }
}
