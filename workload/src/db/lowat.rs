//! The project's one exception to `unsafe_code = "deny"`: the receive
//! low-water mark (`SO_RCVLOWAT`), which neither std nor rustix sets. It
//! lets the OLTP client sleep until the bytes it expects of a pipeline's answers are
//! all in instead of waking once per answer ([`super::wire`]).
#![allow(unsafe_code)]

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Sets `SO_RCVLOWAT`: a blocking read of the socket then returns only once
/// `bytes` are buffered (or its read timeout passes, or the peer closes).
///
/// A read under the mark needs a timeout: one that has already taken some
/// of what it waits for (bytes buffered when it began) is woken only when a
/// whole mark's worth more arrives, so it sleeps out its timeout even when
/// the rest is in, and without one it can sleep for good (Linux 6.18: a
/// mark of 10, 5 bytes buffered before the read and 5 more 150 ms later:
/// the read returned all 10 after its 1 s timeout; a test without a
/// timeout hung so under load). The wire client always sets one
/// ([`super::wire`]'s `LOWAT_WAIT`, 2 ms).
pub(crate) fn set_rcvlowat(stream: &TcpStream, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is the open socket `stream` borrows for the
    // whole call; the option value points to a live c_int of `len` bytes
    // that the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn a_read_waits_for_the_low_water_mark_until_its_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // Half of what the mark waits for is in before the read begins:
        // without the mark the read returns it at once; with it the read
        // waits for the rest, and with a timeout it gives up and returns
        // what is there. (No read here runs without a timeout: see
        // `set_rcvlowat` for why one could then sleep for good.)
        set_rcvlowat(&client, 10).unwrap();
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        server.write_all(b"12345").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"12345");
        assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
        // All of the mark in one write: the read returns it without waiting
        // out the timeout.
        server.write_all(b"6789012345").unwrap();
        let t0 = Instant::now();
        let n = client.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"6789012345");
        assert!(t0.elapsed() < Duration::from_millis(250), "{:?}", t0.elapsed());
        // Back to a mark of one byte: a read returns whatever is there.
        set_rcvlowat(&client, 1).unwrap();
        server.write_all(b"abc").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        let n = client.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc");
        assert!(t0.elapsed() < Duration::from_millis(250), "{:?}", t0.elapsed());
    }
}
