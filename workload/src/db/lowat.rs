//! The project's one exception to `unsafe_code = "deny"`: the receive
//! low-water mark (`SO_RCVLOWAT`), which neither std nor rustix sets. It
//! lets the OLTP client sleep until the bytes it expects of a pipeline's answers are
//! all in instead of waking once per answer ([`super::wire`]).
#![allow(unsafe_code)]

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Sets `SO_RCVLOWAT`: a blocking read of the socket then returns only once
/// `bytes` are buffered (or its read timeout passes, or the peer closes).
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
    fn a_read_waits_for_the_low_water_mark() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        set_rcvlowat(&client, 10).unwrap();
        let writer = std::thread::spawn(move || {
            server.write_all(b"12345").unwrap();
            std::thread::sleep(Duration::from_millis(150));
            server.write_all(b"67890").unwrap();
            server
        });
        let t0 = Instant::now();
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).unwrap();
        // Without the mark the first five bytes would come back at once.
        assert_eq!(&buf[..n], b"1234567890");
        assert!(t0.elapsed() >= Duration::from_millis(100), "{:?}", t0.elapsed());
        // With a read timeout the mark gives up and returns what is there.
        let mut server = writer.join().unwrap();
        set_rcvlowat(&client, 1000).unwrap();
        client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        server.write_all(b"abc").unwrap();
        let n = client.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc");
    }
}
