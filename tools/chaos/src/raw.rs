//! Raw HTTP/1.1 over TCP, for what a well-behaved client library will not do: stop
//! mid-body, trickle header bytes, hang up at a chosen moment.

use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Connects to `addr` (`host:port`).
pub async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The request line and headers of a PUT announcing `length` body bytes.
pub fn put_head(path: &str, length: usize) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nhost: strata\r\ncontent-type: application/octet-stream\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// The request line and headers of a GET.
pub fn get_head(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: strata\r\n\r\n")
}

/// Writes `bytes` in pieces of `chunk` bytes with `pause` between them.
pub async fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    chunk: usize,
    pause: Duration,
) -> std::io::Result<()> {
    for piece in bytes.chunks(chunk.max(1)) {
        stream.write_all(piece).await?;
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// Reads until the status line is complete and returns the status code.
pub async fn read_status(stream: &mut TcpStream, limit: Duration) -> anyhow::Result<u16> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                return parse_status_line(&buf[..end]);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed before a status line");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .context("no status line in time")?
}

/// `HTTP/1.1 200 OK` → 200.
pub fn parse_status_line(line: &[u8]) -> anyhow::Result<u16> {
    let text = std::str::from_utf8(line).context("status line is not UTF-8")?;
    let mut parts = text.split(' ');
    match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
        _ => bail!("malformed status line {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK").unwrap(), 200);
        assert_eq!(
            parse_status_line(b"HTTP/1.1 429 Too Many Requests").unwrap(),
            429
        );
        assert!(parse_status_line(b"garbage").is_err());
        assert!(put_head("/v1/x", 5).ends_with("content-length: 5\r\n\r\n"));
    }
}
