//! Unpredictable tokens (session ids) from the kernel's random source.
//!
//! Session ids are credentials for as long as they live, so they come from `getrandom(2)`, not from a
//! clock or a counter; no crate is needed for that one call.

use std::io;

/// `bytes` random bytes as lowercase hex (so `token_hex(16)` is 32 characters).
pub fn token_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random number in `[0, 1)` for jitter; falls back to the clock's nanoseconds if the kernel says no.
pub fn unit() -> f64 {
    let mut buf = [0u8; 8];
    if fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        buf[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64
}

fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_hex_of_the_asked_length_and_differ() {
        let (a, b) = (super::token_hex(16).unwrap(), super::token_hex(16).unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
