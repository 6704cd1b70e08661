//! The one checksum bosun compares files by (controller and hosts agree through `sha256sum`).

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `data`, as `sha256sum` prints it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
