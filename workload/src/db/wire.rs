//! A lean MySQL-protocol client for the OLTP workload's hot path.
//!
//! Server-side prepared statements (binary protocol), results skipped packet
//! by packet without decoding a value, and pipelining: several commands are
//! written at once and their answers read in order afterwards. The classic
//! protocol allows that because a server reads a connection's commands one
//! after another and answers each before it reads the next; the statements,
//! their order and the transaction boundaries stay exactly those of the
//! sequential client, only the client's waiting between them goes.
//!
//! Blocking I/O, like sysbench's threads: each OLTP worker is an OS thread
//! of its own, and a read that sleeps in the kernel costs one system call
//! where a readiness loop costs two or three; while pipelined answers are
//! read, the socket's low-water mark keeps that read asleep until all the
//! bytes expected are in ([`Conn::reads`]). Plain TCP;
//! `mysql_native_password` and `caching_sha2_password` (its fast path, the
//! server's cache being primed by a full login through mysql_async when it
//! asks for one). Everything else the coordinator says to a database goes
//! through mysql_async.
//!
//! Why it is written here rather than taken from mysql_async (measured with
//! `make bench` against sysbench on the same server, same threads):
//!
//! - mysql_async's cost per statement was 2.7× sysbench's user time, and its
//!   twenty round trips per read-write transaction set the kernel time.
//!   Pipelined, the same transaction is two round trips.
//! - A blocking socket on the worker's own thread is one `recv` per answer
//!   where an async readiness loop is `epoll_wait` + `recv`.
//! - seekdb answers with Nagle's algorithm on: without `TCP_QUICKACK` under
//!   pipelining each answer after the first waited for a delayed ACK
//!   (seekdb pipelined TPS 0.39× sysbench; with it 1.7×).
//! - Wake-ups were most of the remaining CPU (about 13 per read-write
//!   transaction on MariaDB): under a receive low-water mark of the bytes
//!   still expected a worker wakes once per batch. Client CPU per
//!   transaction against sysbench's: MariaDB 0.56 → 0.17, seekdb 0.50–0.62
//!   → 0.23; TPS 1.08 → 1.59 and 1.06 → 1.26.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error {code} ({state}): {message}")]
    Server { code: u16, state: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("authentication: {0}")]
    Auth(String),
    /// caching_sha2_password wants the clear password, which this client
    /// does not send without TLS; one mysql_async login fills the cache.
    #[error("authentication: caching_sha2_password asks for a full login")]
    FullAuthRequired,
}

impl Error {
    /// The connection cannot be used any more (as opposed to a statement
    /// the server refused, after which the session goes on).
    pub fn lost(&self) -> bool {
        !matches!(self, Error::Server { .. })
    }

    /// The server's error code, if the server refused a statement.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_RESULTS: u32 = 0x20000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;
const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
/// utf8mb4_general_ci.
const CHARSET: u8 = 45;
const MAX_PAYLOAD: usize = 0xFF_FFFF;
const NATIVE: &str = "mysql_native_password";
/// The pending-command key of a text statement or a prepare.
const TEXT: u32 = u32::MAX;
/// The shortest OK answer: header, 0 rows, no insert id, status, warnings.
const OK_MIN: usize = 4 + 1 + 1 + 1 + 2 + 2;
/// Below this many bytes still to come, a read wakes on any byte.
const MIN_LOWAT: usize = 256;
/// The most bytes one read waits for (the kernel grows the socket's
/// receive buffer to hold them, and `buf` grows with it).
const MAX_LOWAT: usize = 256 * 1024;
/// How long a read under a low-water mark waits before it takes what
/// there is: the bound on the wait when an answer is shorter than its
/// statement's last ones (a timer tick or two in practice).
const LOWAT_WAIT: Duration = Duration::from_millis(2);
const CACHING_SHA2: &str = "caching_sha2_password";

/// A prepared statement of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Stmt {
    id: u32,
    params: u16,
    /// The caller's key, which also indexes the sizes of its answers.
    key: u32,
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    U64(u64),
    Bytes(&'a [u8]),
}

pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A payload longer than one packet, reassembled.
    big: Vec<u8>,
    /// Sequence id of the last packet read.
    seq: u8,
    /// Commands written to `out`.
    out: Vec<u8>,
    /// Commands written or sent and not answered yet, oldest first: each
    /// one's statement key, [`TEXT`] for the others.
    pending: VecDeque<u32>,
    /// The sizes in bytes of each statement key's last two answers.
    sizes: Vec<[u32; 2]>,
    /// Bytes of packets consumed since the connection opened, and where
    /// the answer being read began.
    consumed: u64,
    answer_start: u64,
    /// Reading the answers of pipelined commands ([`Conn::settle`]).
    settling: bool,
    /// The socket's low-water mark; above 1 byte its read timeout is
    /// [`LOWAT_WAIT`], else none.
    lowat: usize,
    /// Reads that returned data, and waits the timeout ended ([`Conn::reads`]).
    reads: u64,
    timeouts: u64,
    /// First statement error among the answers read so far.
    failed: Option<Error>,
    /// When false every command is sent and answered on its own.
    pipeline: bool,
    /// Acknowledge every read at once (see [`Conn::set_quickack`]).
    quickack: bool,
    /// Prepared statements by the caller's key.
    stmts: Vec<Option<Stmt>>,
}

/// Login parameters.
pub struct Login<'a> {
    pub addr: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub database: Option<&'a str>,
    pub timeout: Duration,
}

impl Conn {
    /// Connects and logs in, blocking the calling thread (at most about
    /// `timeout` per address and for the login).
    pub fn connect(l: &Login<'_>) -> Result<Conn, Error> {
        let mut last = None;
        let mut stream = None;
        for addr in l.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, l.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(Error::Io(e)),
            (None, None) => {
                return Err(Error::Protocol(format!("{} resolves to no address", l.addr)))
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(l.timeout))?;
        stream.set_write_timeout(Some(l.timeout))?;
        let mut c = Conn {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            big: Vec::new(),
            seq: 0,
            out: Vec::with_capacity(4096),
            pending: VecDeque::new(),
            sizes: Vec::new(),
            consumed: 0,
            answer_start: 0,
            settling: false,
            lowat: 1,
            reads: 0,
            timeouts: 0,
            failed: None,
            pipeline: true,
            quickack: false,
            stmts: Vec::new(),
        };
        c.handshake(l).map_err(|e| match e {
            Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no login answer within {} ms", l.timeout.as_millis()),
                ))
            }
            e => e,
        })?;
        // Statements wait as long as the server makes them (lock waits end
        // by the server's own timeouts), as sysbench's do.
        c.stream.set_read_timeout(None)?;
        c.stream.set_write_timeout(None)?;
        Ok(c)
    }

    /// Sequential (false) or pipelined (true, the default) commands.
    pub fn set_pipeline(&mut self, on: bool) {
        self.pipeline = on;
    }

    /// Acknowledges every read at once. For servers that leave Nagle's
    /// algorithm on (seekdb does): they hold each pipelined answer after
    /// the first until the one before is acknowledged, and a delayed ACK
    /// stalls the pipeline for milliseconds. Costs an extra packet per read
    /// elsewhere.
    pub fn set_quickack(&mut self, on: bool) {
        self.quickack = on;
    }

    fn handshake(&mut self, l: &Login<'_>) -> Result<(), Error> {
        let p = self.packet()?.to_vec();
        if p.first() == Some(&0xFF) {
            return Err(server_error(&p));
        }
        let hs = Handshake::parse(&p)?;
        let mut want = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH;
        if l.database.is_some() {
            want |= CLIENT_CONNECT_WITH_DB;
        }
        let caps = want & hs.caps;
        for (flag, name) in
            [(CLIENT_PROTOCOL_41, "4.1 protocol"), (CLIENT_SECURE_CONNECTION, "secure connection")]
        {
            if caps & flag == 0 {
                return Err(Error::Protocol(format!("the server does not speak the {name}")));
            }
        }
        if l.database.is_some() && caps & CLIENT_CONNECT_WITH_DB == 0 {
            return Err(Error::Protocol("the server cannot select a database at login".into()));
        }
        let password = l.password.unwrap_or("").as_bytes();
        // A plugin this client does not know gets a native answer: the
        // server then names the account's plugin in an auth switch.
        let plugin = if hs.plugin == CACHING_SHA2 { CACHING_SHA2 } else { NATIVE };
        let answer = scramble(plugin, password, &hs.scramble);
        let mut r = Vec::with_capacity(128);
        r.extend_from_slice(&caps.to_le_bytes());
        r.extend_from_slice(&(MAX_PAYLOAD as u32).to_le_bytes());
        r.push(CHARSET);
        r.extend_from_slice(&[0; 23]);
        r.extend_from_slice(l.user.as_bytes());
        r.push(0);
        r.push(answer.len() as u8);
        r.extend_from_slice(&answer);
        if let Some(db) = l.database {
            r.extend_from_slice(db.as_bytes());
            r.push(0);
        }
        if caps & CLIENT_PLUGIN_AUTH != 0 {
            r.extend_from_slice(plugin.as_bytes());
            r.push(0);
        }
        self.send_packet(self.seq.wrapping_add(1), &r)?;
        let mut plugin = plugin;
        let mut switched = false;
        loop {
            let p = self.packet()?.to_vec();
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_error(&p)),
                Some(0xFE) if !switched => {
                    switched = true;
                    let body = &p[1..];
                    let nul = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let name = String::from_utf8_lossy(&body[..nul]).into_owned();
                    let data = body.get(nul + 1..).unwrap_or(&[]);
                    let salt = data.strip_suffix(&[0]).unwrap_or(data);
                    plugin = match name.as_str() {
                        NATIVE => NATIVE,
                        CACHING_SHA2 => CACHING_SHA2,
                        other => return Err(Error::Auth(format!("the account uses the {other} plugin; the OLTP client speaks {NATIVE} and {CACHING_SHA2}"))),
                    };
                    let answer = scramble(plugin, password, salt);
                    self.send_packet(self.seq.wrapping_add(1), &answer)?;
                }
                Some(0x01) if plugin == CACHING_SHA2 => match p.get(1) {
                    Some(0x03) => {} // fast login accepted; the OK follows
                    Some(0x04) => return Err(Error::FullAuthRequired),
                    _ => {
                        return Err(Error::Protocol(format!(
                            "unexpected {CACHING_SHA2} packet {:02x?}",
                            &p[..p.len().min(8)]
                        )))
                    }
                },
                _ => {
                    return Err(Error::Protocol(format!(
                        "unexpected login answer {:02x?}",
                        &p[..p.len().min(8)]
                    )))
                }
            }
        }
    }

    /// Prepares `sql` once per connection under `key` (small dense numbers).
    pub fn stmt(&mut self, key: usize, sql: &str) -> Result<Stmt, Error> {
        if let Some(Some(s)) = self.stmts.get(key) {
            return Ok(*s);
        }
        // The prepare's answer carries the id the executes need, so it
        // cannot wait in the pipeline behind them.
        self.settle()?;
        self.command(COM_STMT_PREPARE, sql.as_bytes(), TEXT)?;
        self.flush()?;
        self.pending.pop_back();
        let p = self.packet()?;
        if p.first() == Some(&0xFF) {
            return Err(server_error(p));
        }
        if p.first() != Some(&0x00) || p.len() < 9 {
            return Err(Error::Protocol(format!(
                "unexpected prepare answer {:02x?}",
                &p[..p.len().min(12)]
            )));
        }
        let id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
        let columns = u16::from_le_bytes([p[5], p[6]]);
        let params = u16::from_le_bytes([p[7], p[8]]);
        // Parameter and column definitions, each list closed by an EOF.
        for n in [params, columns] {
            if n > 0 {
                for _ in 0..=n {
                    self.packet()?;
                }
            }
        }
        let s = Stmt {
            id,
            params,
            key: u32::try_from(key)
                .map_err(|_| Error::Protocol(format!("statement key {key} is too large")))?,
        };
        if self.stmts.len() <= key {
            self.stmts.resize(key + 1, None);
            self.sizes.resize(key + 1, [0; 2]);
        }
        self.stmts[key] = Some(s);
        Ok(s)
    }

    /// Queues a text statement (sent now unless pipelining).
    pub fn query(&mut self, sql: &str) -> Result<(), Error> {
        self.command(COM_QUERY, sql.as_bytes(), TEXT)?;
        self.step()
    }

    /// Queues an execution of a prepared statement (sent now unless pipelining).
    pub fn execute(&mut self, s: Stmt, params: &[Param<'_>]) -> Result<(), Error> {
        if params.len() != usize::from(s.params) {
            return Err(Error::Protocol(format!(
                "statement {} takes {} parameters, got {}",
                s.id,
                s.params,
                params.len()
            )));
        }
        let mut b = Vec::with_capacity(16 + params.len() * 12);
        b.extend_from_slice(&s.id.to_le_bytes());
        b.push(0); // no cursor
        b.extend_from_slice(&1u32.to_le_bytes());
        if !params.is_empty() {
            b.resize(b.len() + params.len().div_ceil(8), 0); // no NULLs
            b.push(1); // types follow
            for p in params {
                b.extend_from_slice(match p {
                    Param::U64(_) => &[0x08, 0x80],   // LONGLONG, unsigned
                    Param::Bytes(_) => &[0xFE, 0x00], // STRING
                });
            }
            for p in params {
                match p {
                    Param::U64(v) => b.extend_from_slice(&v.to_le_bytes()),
                    Param::Bytes(v) => {
                        put_lenenc(&mut b, v.len() as u64);
                        b.extend_from_slice(v);
                    }
                }
            }
        }
        self.command(COM_STMT_EXECUTE, &b, s.key)?;
        self.step()
    }

    /// Sends what is queued, reads every answer and returns the first
    /// statement error among them (the session stays usable after one).
    pub fn finish(&mut self) -> Result<(), Error> {
        self.settle()?;
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends the session politely.
    pub fn close(mut self) {
        let _ = self.finish();
        if self.command(COM_QUIT, &[], TEXT).is_ok() {
            let _ = self.flush();
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn step(&mut self) -> Result<(), Error> {
        if self.pipeline {
            return Ok(());
        }
        self.finish()
    }

    fn command(&mut self, code: u8, body: &[u8], key: u32) -> Result<(), Error> {
        let len = body.len() + 1;
        if len >= MAX_PAYLOAD {
            return Err(Error::Protocol(format!("a {len}-byte command does not fit one packet")));
        }
        self.out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.out.push(0);
        self.out.push(code);
        self.out.extend_from_slice(body);
        if code != COM_QUIT {
            self.pending.push_back(key);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends what is queued and reads every pending answer; statement
    /// errors are kept in `failed`, a broken connection returns at once.
    fn settle(&mut self) -> Result<(), Error> {
        self.flush()?;
        self.settling = self.pipeline;
        let r = self.read_answers();
        self.settling = false;
        r
    }

    fn read_answers(&mut self) -> Result<(), Error> {
        while let Some(&key) = self.pending.front() {
            self.answer_start = self.consumed;
            let r = self.skip_answer();
            self.pending.pop_front();
            match r {
                Ok(()) => self.note_size(key, self.consumed - self.answer_start),
                Err(e) if e.lost() => return Err(e),
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
        Ok(())
    }

    /// Reads that returned data, and reads whose low-water mark gave up
    /// after [`LOWAT_WAIT`] (the server slower than that, or an answer
    /// shorter than its statement's last ones), since the connection opened.
    pub fn reads(&self) -> (u64, u64) {
        (self.reads, self.timeouts)
    }

    /// Bytes of the pending answers still to come, as far as their
    /// statements' last answers tell (the smaller of the last two; the
    /// shortest OK for text commands), less what the current one has
    /// delivered.
    fn expected_rest(&self) -> usize {
        let size = |k: u32| self.sizes.get(k as usize).map_or(OK_MIN, |s| s[0].min(s[1]) as usize);
        let mut keys = self.pending.iter();
        let Some(&head) = keys.next() else { return 0 };
        let done = usize::try_from(self.consumed - self.answer_start).unwrap_or(usize::MAX);
        size(head).saturating_sub(done) + keys.map(|&k| size(k)).sum::<usize>()
    }

    fn note_size(&mut self, key: u32, bytes: u64) {
        if let Some(s) = self.sizes.get_mut(key as usize) {
            *s = [s[1], u32::try_from(bytes).unwrap_or(u32::MAX)];
        }
    }

    /// Before a read that will block: while pipelined answers are read,
    /// the socket's low-water mark is the bytes still expected, so the
    /// thread sleeps until they are all in instead of waking on each
    /// answer the server sends (the server answers one at a time; most of
    /// a client's time per transaction is otherwise these wake-ups). The
    /// read timeout bounds the wait when fewer bytes come; the mark and
    /// the timeout go back to 1 byte and none for every other read. Makes
    /// room in `buf` for the bytes waited for.
    fn set_lowat(&mut self) -> Result<(), Error> {
        let want = if self.settling {
            self.expected_rest().saturating_sub(self.end - self.start)
        } else {
            0
        };
        let lowat = if want >= MIN_LOWAT { want.min(MAX_LOWAT) } else { 1 };
        self.make_room(self.end - self.start + lowat);
        if lowat != self.lowat {
            super::lowat::set_rcvlowat(&self.stream, lowat)?;
            if (lowat > 1) != (self.lowat > 1) {
                self.stream.set_read_timeout((lowat > 1).then_some(LOWAT_WAIT))?;
            }
            self.lowat = lowat;
        }
        Ok(())
    }

    /// Makes `buf` hold `n` bytes from `start`: moves the unread bytes to
    /// its front and grows it if that is not enough.
    fn make_room(&mut self, n: usize) {
        if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if n > self.buf.len() {
                self.buf.resize(n.next_power_of_two(), 0);
            }
        }
    }

    /// Reads one command's answer: OK, error, or result sets skipped row by row.
    fn skip_answer(&mut self) -> Result<(), Error> {
        loop {
            let p = self.packet()?;
            let status = match p.first() {
                Some(0x00) => ok_status(p),
                Some(0xFF) => return Err(server_error(p)),
                Some(0xFB) => {
                    return Err(Error::Protocol("the server asked for a local file".into()))
                }
                Some(_) => {
                    let columns =
                        lenenc(p).ok_or_else(|| Error::Protocol("bad column count".into()))?;
                    // Column definitions and their EOF.
                    for _ in 0..=columns {
                        self.packet()?;
                    }
                    loop {
                        let p = self.packet()?;
                        match p.first() {
                            Some(0xFE) if p.len() < 9 => break eof_status(p),
                            Some(0xFF) => return Err(server_error(p)),
                            _ => {}
                        }
                    }
                }
                None => return Err(Error::Protocol("empty answer".into())),
            };
            if status & SERVER_MORE_RESULTS_EXISTS == 0 {
                return Ok(());
            }
        }
    }

    fn send_packet(&mut self, seq: u8, payload: &[u8]) -> Result<(), Error> {
        let mut b = Vec::with_capacity(payload.len() + 4);
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        b.push(seq);
        b.extend_from_slice(payload);
        self.stream.write_all(&b)?;
        Ok(())
    }

    /// Makes `n` unread bytes available in `buf[start..]`.
    fn fill(&mut self, n: usize) -> Result<(), Error> {
        while self.end - self.start < n {
            self.make_room(n);
            self.set_lowat()?;
            let got = match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Nothing at all within the wait: the server is busy.
                Err(e)
                    if self.lowat > 1
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    self.timeouts += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.reads += 1;
            if got < self.lowat {
                // Cut short by the wait (or the end of the stream).
                self.timeouts += 1;
            }
            if got == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.end += got;
            if self.quickack {
                let _ = rustix::net::sockopt::set_tcp_quickack(&self.stream, true);
            }
        }
        Ok(())
    }

    /// The next packet's payload (valid until the next read).
    fn packet(&mut self) -> Result<&[u8], Error> {
        let (start, len) = self.chunk()?;
        if len < MAX_PAYLOAD {
            return Ok(&self.buf[start..start + len]);
        }
        // A payload of 16 MiB or more comes in several packets.
        self.big.clear();
        self.big.extend_from_slice(&self.buf[start..start + len]);
        loop {
            let (start, len) = self.chunk()?;
            self.big.extend_from_slice(&self.buf[start..start + len]);
            if len < MAX_PAYLOAD {
                return Ok(&self.big);
            }
        }
    }

    fn chunk(&mut self) -> Result<(usize, usize), Error> {
        self.fill(4)?;
        let h = &self.buf[self.start..self.start + 4];
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        self.seq = h[3];
        self.fill(4 + len)?;
        let start = self.start + 4;
        self.start += 4 + len;
        self.consumed += 4 + len as u64;
        Ok((start, len))
    }
}

struct Handshake {
    caps: u32,
    scramble: Vec<u8>,
    plugin: String,
}

impl Handshake {
    fn parse(p: &[u8]) -> Result<Handshake, Error> {
        let bad = || Error::Protocol("short or malformed server greeting".into());
        if p.first() != Some(&10) {
            return Err(Error::Protocol(format!(
                "server greeting version {:?}, expected 10",
                p.first()
            )));
        }
        let version_end = 1 + p[1..].iter().position(|&b| b == 0).ok_or_else(bad)?;
        let mut i = version_end + 1 + 4; // NUL, connection id
        let part1 = p.get(i..i + 8).ok_or_else(bad)?.to_vec();
        i += 8 + 1;
        let lo = p.get(i..i + 2).ok_or_else(bad)?;
        let mut caps = u32::from(u16::from_le_bytes([lo[0], lo[1]]));
        i += 2;
        let mut scramble = part1;
        let mut plugin = String::new();
        if p.len() > i {
            i += 1 + 2; // charset, status
            let hi = p.get(i..i + 2).ok_or_else(bad)?;
            caps |= u32::from(u16::from_le_bytes([hi[0], hi[1]])) << 16;
            i += 2;
            let auth_len = usize::from(*p.get(i).ok_or_else(bad)?);
            i += 1 + 10;
            if caps & CLIENT_SECURE_CONNECTION != 0 {
                let n = auth_len.saturating_sub(8).max(13);
                let part2 = p.get(i..(i + n).min(p.len())).ok_or_else(bad)?;
                scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
                i += n;
            }
            if caps & CLIENT_PLUGIN_AUTH != 0 && i < p.len() {
                let rest = &p[i..];
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                plugin = String::from_utf8_lossy(&rest[..end]).into_owned();
            }
        }
        Ok(Handshake { caps, scramble, plugin })
    }
}

/// The login answer of `plugin` for `password` and the server's salt.
fn scramble(plugin: &str, password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    if plugin == CACHING_SHA2 {
        // SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + salt)
        xor_scramble::<Sha256>(password, salt, false)
    } else {
        // SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))
        xor_scramble::<Sha1>(password, salt, true)
    }
}

/// H(pw) XOR H(salt + H(H(pw))), or with the salt after H(H(pw)).
fn xor_scramble<D: Digest>(password: &[u8], salt: &[u8], salt_first: bool) -> Vec<u8> {
    let h1 = D::digest(password);
    let h2 = D::digest(&h1);
    let mut d = D::new();
    if salt_first {
        d.update(salt);
        d.update(&h2);
    } else {
        d.update(&h2);
        d.update(salt);
    }
    let h3 = d.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn put_lenenc(b: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => b.push(v as u8),
        251..=0xFFFF => {
            b.push(0xFC);
            b.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            b.push(0xFD);
            b.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            b.push(0xFE);
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A length-encoded integer at the start of `p` and its size.
fn lenenc_at(p: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let s = p.get(1..1 + n)?;
        Some(s.iter().rev().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
    };
    match *p.first()? {
        v @ 0..=250 => Some((u64::from(v), 1)),
        0xFC => Some((le(2)?, 3)),
        0xFD => Some((le(3)?, 4)),
        0xFE => Some((le(8)?, 9)),
        _ => None,
    }
}

fn lenenc(p: &[u8]) -> Option<u64> {
    lenenc_at(p).map(|(v, _)| v)
}

/// Status flags of an OK packet (header, affected rows, insert id, status).
fn ok_status(p: &[u8]) -> u16 {
    let Some((_, a)) = lenenc_at(&p[1..]) else { return 0 };
    let Some((_, b)) = lenenc_at(&p[1 + a..]) else { return 0 };
    let i = 1 + a + b;
    p.get(i..i + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Status flags of an EOF packet (header, warnings, status).
fn eof_status(p: &[u8]) -> u16 {
    p.get(3..5).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn server_error(p: &[u8]) -> Error {
    let code = p.get(1..3).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
    let rest = p.get(3..).unwrap_or(&[]);
    let (state, message) = match rest.strip_prefix(b"#") {
        Some(r) if r.len() >= 5 => (
            String::from_utf8_lossy(&r[..5]).into_owned(),
            String::from_utf8_lossy(&r[5..]).into_owned(),
        ),
        _ => (String::new(), String::from_utf8_lossy(rest).into_owned()),
    };
    Error::Server { code, state, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trips_every_width() {
        for v in [0u64, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut b = Vec::new();
            put_lenenc(&mut b, v);
            assert_eq!(lenenc_at(&b), Some((v, b.len())), "{v}");
        }
        assert_eq!(lenenc_at(&[0xFF]), None);
        assert_eq!(lenenc_at(&[0xFC, 1]), None, "truncated");
    }

    #[test]
    fn native_password_answer_verifies_as_the_server_checks() {
        let salt = b"01234567890123456789";
        let got = scramble(NATIVE, b"password", salt);
        // SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))), spelt out step by step.
        let h1 = Sha1::digest(b"password");
        let stage2 = Sha1::digest(h1);
        let mut cat = salt.to_vec();
        cat.extend_from_slice(&stage2);
        let h3 = Sha1::digest(&cat);
        let want: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(got, want);
        // XOR-ing the answer with SHA1(salt + stored hash) gives back SHA1(pw),
        // whose SHA1 is the stored hash: what the server checks.
        let back: Vec<u8> = got.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&back)[..], stage2[..]);
        assert!(scramble(NATIVE, b"", salt).is_empty(), "an empty password answers with nothing");
        assert_eq!(scramble(CACHING_SHA2, b"pw", salt).len(), 32);
    }

    #[test]
    fn greeting_parses_caps_salt_and_plugin() {
        let mut p = vec![10];
        p.extend_from_slice(b"10.11.6-MariaDB\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh");
        p.push(0);
        let caps: u32 = CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_WITH_DB;
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let h = Handshake::parse(&p).unwrap();
        assert_eq!(h.caps, caps);
        assert_eq!(h.scramble, b"abcdefghijklmnopqrst");
        assert_eq!(h.plugin, NATIVE);
        assert!(Handshake::parse(&p[..20]).is_err(), "truncated greeting");
    }

    #[test]
    fn error_and_status_packets_decode() {
        let mut e = vec![0xFF];
        e.extend_from_slice(&1213u16.to_le_bytes());
        e.extend_from_slice(b"#40001Deadlock found");
        match server_error(&e) {
            Error::Server { code, state, message } => assert_eq!(
                (code, state.as_str(), message.as_str()),
                (1213, "40001", "Deadlock found")
            ),
            other => panic!("{other:?}"),
        }
        assert!(!server_error(&e).lost());
        // OK: header, 1 affected row, insert id 300 (2-byte lenenc), status 0x0008.
        assert_eq!(
            ok_status(&[0x00, 1, 0xFC, 0x2C, 0x01, 0x08, 0x00, 0, 0]),
            SERVER_MORE_RESULTS_EXISTS
        );
        assert_eq!(eof_status(&[0xFE, 0, 0, 0x02, 0x00]), 2);
    }
}
