//! Payloads as backends hand them out, in the form that is cheapest to serve.
//!
//! Why not always a stream: a payload already in memory can go out as one complete body,
//! and a payload in a file can be served from any offset by seeking, so a `Range` near the
//! end of a large object does not read everything before it.

use std::io::{self, Seek, SeekFrom};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

use super::PayloadStream;

/// Chunk size when streaming from a file.
const FILE_CHUNK: usize = 64 * 1024;

/// A stored payload on its way out of a backend.
pub enum Payload {
    /// The whole payload, in memory.
    Bytes(Bytes),
    /// `len` bytes of `file` starting at `offset`.
    File {
        /// An open file holding the payload.
        file: std::fs::File,
        /// Where the payload starts in the file.
        offset: u64,
        /// Payload length in bytes.
        len: u64,
    },
    /// Any other source.
    Stream(PayloadStream),
    /// A remote payload already requested whole, plus a way to request any byte range
    /// of the same version instead, so a range far into it skips what comes before.
    Remote {
        /// The whole payload, already requested.
        stream: PayloadStream,
        /// Opens `take` bytes starting `skip` bytes in.
        reopen: Box<dyn FnOnce(u64, u64) -> PayloadStream + Send>,
    },
}

/// Ranges starting beyond this many bytes into a remote payload are requested afresh
/// rather than read and dropped from the whole stream.
pub const REOPEN_AFTER: u64 = 1024 * 1024;

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "Payload::Bytes({} bytes)", bytes.len()),
            Self::File { offset, len, .. } => write!(f, "Payload::File({len} bytes at {offset})"),
            Self::Stream(_) => f.write_str("Payload::Stream"),
            Self::Remote { .. } => f.write_str("Payload::Remote"),
        }
    }
}

impl Payload {
    /// The whole payload, chunk by chunk.
    pub fn into_stream(self) -> PayloadStream {
        match self {
            Self::Bytes(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
            Self::File { file, offset, len } => file_stream(file, offset, len),
            Self::Stream(stream) | Self::Remote { stream, .. } => stream,
        }
    }

    /// `take` bytes starting `skip` bytes into the payload. Memory is sliced and files
    /// are sought; only an opaque stream reads (and drops) what it skips.
    pub fn slice(self, skip: u64, take: u64) -> PayloadStream {
        match self {
            Self::Bytes(bytes) => {
                let start = (skip as usize).min(bytes.len());
                let end = (skip.saturating_add(take) as usize).min(bytes.len());
                Payload::Bytes(bytes.slice(start..end)).into_stream()
            }
            Self::File { file, offset, len } => {
                let skip = skip.min(len);
                file_stream(file, offset + skip, take.min(len - skip))
            }
            Self::Stream(stream) => slice_stream(stream, skip, take),
            Self::Remote { stream, .. } if skip <= REOPEN_AFTER => slice_stream(stream, skip, take),
            Self::Remote { stream, reopen } => {
                drop(stream);
                reopen(skip, take)
            }
        }
    }
}

/// Streams `len` bytes of `file` from `offset`.
fn file_stream(mut file: std::fs::File, offset: u64, len: u64) -> PayloadStream {
    // A seek only moves the file position; it never waits for the disk.
    if let Err(err) = file.seek(SeekFrom::Start(offset)) {
        return futures::stream::once(async move { Err::<Bytes, io::Error>(err) }).boxed();
    }
    let reader = tokio::fs::File::from_std(file).take(len);
    tokio_util::io::ReaderStream::with_capacity(reader, FILE_CHUNK).boxed()
}

/// Skips `skip` bytes of a stream and yields the next `take` bytes, then stops reading.
fn slice_stream(payload: PayloadStream, skip: u64, take: u64) -> PayloadStream {
    let end = skip.saturating_add(take);
    payload
        .scan(0u64, move |offset, chunk| {
            let item = match chunk {
                Err(err) => Some(Some(Err(err))),
                // The range is complete: end the stream instead of reading the rest.
                Ok(_) if *offset >= end => None,
                Ok(chunk) => {
                    let len = chunk.len() as u64;
                    let chunk_start = *offset;
                    *offset += len;
                    let from = skip.saturating_sub(chunk_start).min(len);
                    let to = end.saturating_sub(chunk_start).min(len);
                    Some((from < to).then(|| Ok(chunk.slice(from as usize..to as usize))))
                }
            };
            futures::future::ready(item)
        })
        .filter_map(futures::future::ready)
        .boxed()
}

/// Collects a payload stream (for tests and small internal reads).
pub async fn collect(stream: PayloadStream) -> io::Result<Vec<u8>> {
    stream
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn chunks(parts: &[&'static [u8]]) -> Payload {
        let parts: Vec<&'static [u8]> = parts.to_vec();
        Payload::Stream(
            futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed(),
        )
    }

    fn file_payload(contents: &[u8], offset: u64) -> Payload {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(contents).unwrap();
        Payload::File {
            file,
            offset,
            len: contents.len() as u64 - offset,
        }
    }

    #[tokio::test]
    async fn streams_slice_across_chunk_boundaries() {
        let s = chunks(&[b"abc", b"def", b"ghi"]).slice(2, 5);
        assert_eq!(collect(s).await.unwrap(), b"cdefg");
        let s = chunks(&[b"abc", b"def"]).slice(0, 6);
        assert_eq!(collect(s).await.unwrap(), b"abcdef");
        let s = chunks(&[b"abc", b"def"]).slice(5, 1);
        assert_eq!(collect(s).await.unwrap(), b"f");
    }

    #[tokio::test]
    async fn a_stream_stops_being_read_once_the_range_is_complete() {
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        let endless = futures::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(Bytes::from_static(b"0123456789"))
        })
        .boxed();
        let s = Payload::Stream(endless).slice(12, 5);
        assert_eq!(collect(s).await.unwrap(), b"23456");
        assert!(read.load(Ordering::Relaxed) <= 3);
    }

    #[tokio::test]
    async fn remote_payloads_request_far_ranges_afresh() {
        let whole: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        let remote = |whole: &Vec<u8>, reopened: Arc<AtomicUsize>| {
            let copy = whole.clone();
            Payload::Remote {
                stream: futures::stream::iter(
                    whole
                        .chunks(65_536)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>(),
                )
                .boxed(),
                reopen: Box::new(move |skip, take| {
                    reopened.fetch_add(1, Ordering::Relaxed);
                    let part = copy[skip as usize..(skip + take) as usize].to_vec();
                    futures::stream::once(async move { Ok(Bytes::from(part)) }).boxed()
                }),
            }
        };
        for (skip, take, reopens) in [(0, 10, 0), (REOPEN_AFTER, 5, 0), (2 << 20, 1000, 1)] {
            let reopened = Arc::new(AtomicUsize::new(0));
            let got = collect(remote(&whole, reopened.clone()).slice(skip, take))
                .await
                .unwrap();
            assert_eq!(got, &whole[skip as usize..(skip + take) as usize]);
            assert_eq!(reopened.load(Ordering::Relaxed), reopens, "{skip}+{take}");
        }
        let all = collect(remote(&whole, Arc::default()).into_stream())
            .await
            .unwrap();
        assert!(all == whole);
    }

    #[tokio::test]
    async fn bytes_and_files_slice_to_the_same_answers_as_streams() {
        let contents: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let header = 37;
        let mut stored = vec![9u8; header];
        stored.extend_from_slice(&contents);
        for (skip, take) in [
            (0, 200_000),
            (1, 1),
            (65_535, 2),
            (150_000, 50_000),
            (199_999, 1),
        ] {
            let want = &contents[skip as usize..(skip + take) as usize];
            let bytes = Payload::Bytes(Bytes::from(contents.clone())).slice(skip, take);
            assert_eq!(collect(bytes).await.unwrap(), want, "bytes {skip}+{take}");
            let file = file_payload(&stored, header as u64).slice(skip, take);
            assert_eq!(collect(file).await.unwrap(), want, "file {skip}+{take}");
        }
        let whole = file_payload(&stored, header as u64).into_stream();
        assert_eq!(collect(whole).await.unwrap(), contents);
    }
}
