//! Self-checking payloads: seeded noise followed by its SHA-256, so any body read back
//! can be checked on its own (torn, truncated or mixed bodies fail) and identified by its
//! digest without keeping the bytes.

use sha2::{Digest as _, Sha256};

/// Bytes of the trailing checksum; also the smallest payload.
pub const CHECKSUM: usize = 32;

/// A payload's identity: the SHA-256 of its noise.
pub type Digest = [u8; 32];

/// `size` bytes (at least [`CHECKSUM`]) derived from `seed`, ending in their checksum.
pub fn make(seed: u64, size: usize) -> Vec<u8> {
    let size = size.max(CHECKSUM);
    let noise_len = size - CHECKSUM;
    let mut data = Vec::with_capacity(size);
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    if x == 0 {
        x = 1;
    }
    while data.len() < noise_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(noise_len);
    let digest = Sha256::digest(&data);
    data.extend_from_slice(&digest);
    data
}

/// The digest of a whole, self-consistent payload; `None` for anything torn.
pub fn verify(body: &[u8]) -> Option<Digest> {
    if body.len() < CHECKSUM {
        return None;
    }
    let (noise, tail) = body.split_at(body.len() - CHECKSUM);
    let digest: Digest = Sha256::digest(noise).into();
    (digest[..] == tail[..]).then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        for size in [0, 1, 32, 33, 4096, 65_537] {
            let body = make(7, size);
            assert_eq!(body.len(), size.max(CHECKSUM));
            assert!(verify(&body).is_some(), "size {size}");
        }
        let a = make(1, 5000);
        let b = make(2, 5000);
        assert_ne!(verify(&a), verify(&b));
        let mut torn = a[..2500].to_vec();
        torn.extend_from_slice(&b[2500..]);
        assert_eq!(verify(&torn), None);
        assert_eq!(verify(&a[..4096]), None);
        assert_eq!(verify(b"short"), None);
    }
}
