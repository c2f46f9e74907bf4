//! S3's own multipart upload behind [`NativeMultipart`]: the upload is created on the
//! object's path with its metadata (so completion publishes the object as a plain `put`
//! would), parts stream to `UploadPart` and completion lists them by number.
//!
//! object_store buffers a part's whole body and numbers completed parts 1…n, while API
//! parts may be gigabytes and sparsely numbered, so `UploadPart` and
//! `CompleteMultipartUpload` are sent to URLs object_store signs (SigV4 query
//! signatures, unsigned payload), with the body streamed and the part numbers kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::Method;
use object_store::multipart::MultipartStore;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::PutMultipartOptions;

use super::native::{NativeMultipart, NativeUpload, PartLimits, S3_LIMITS};
use super::s3::{attributes_for, path_of, unavailable, S3Backend};
use super::{BackendError, PayloadStream};
use crate::object::{Metadata, ObjectId};

const NAME: &str = "s3compatible";
/// How long a signed URL stays valid; S3 checks it when a request starts.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Error codes that mean S3 failed, not the request.
const RETRYABLE_CODES: [&str; 3] = ["InternalError", "ServiceUnavailable", "SlowDown"];
/// Attempts of `CompleteMultipartUpload` (its small body can be sent again, unlike a
/// part's).
const COMPLETE_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; it doubles before each further one.
const COMPLETE_BACKOFF: Duration = Duration::from_millis(250);

/// An S3 error document.
#[derive(Debug, serde::Deserialize)]
struct ErrorDocument {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

/// The body of `CompleteMultipartUpload`.
#[derive(serde::Serialize)]
#[serde(rename = "CompleteMultipartUpload")]
struct CompleteDocument {
    #[serde(rename = "Part")]
    parts: Vec<CompletePart>,
}

#[derive(serde::Serialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

/// The error an S3 answer stands for: refusals (4xx, or an error document in a 200,
/// which `CompleteMultipartUpload` may send) keep S3's code; anything else is the
/// service being unavailable.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> Option<BackendError> {
    let text = String::from_utf8_lossy(body);
    let document = quick_xml::de::from_str::<ErrorDocument>(&text).ok();
    match document {
        // S3's own trouble, even inside a 200: worth another try.
        Some(doc) if RETRYABLE_CODES.contains(&doc.code.as_str()) => Some(unavailable(format!(
            "S3 answered {status} with {}: {}",
            doc.code, doc.message
        ))),
        Some(doc) if !status.is_server_error() => Some(BackendError::Rejected {
            backend: NAME,
            code: doc.code,
            message: doc.message,
        }),
        _ if status.is_success() => None,
        _ if status.is_client_error() => Some(BackendError::Rejected {
            backend: NAME,
            code: status.as_str().to_owned(),
            message: text.chars().take(200).collect(),
        }),
        _ => Some(unavailable(format!(
            "S3 answered {status}: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

/// A failed request to a signed URL, without the URL: its query holds the access key
/// id and a signature that is valid for an hour.
fn http_error(err: reqwest::Error) -> BackendError {
    unavailable(err.without_url())
}

/// An `UploadPart` request streaming `body` with `Content-Length` framing: S3 refuses
/// chunked part uploads, so the declared length must reach the wire.
fn part_request(
    http: &reqwest::Client,
    url: reqwest::Url,
    length: u64,
    content_md5: Option<[u8; 16]>,
    body: PayloadStream,
) -> reqwest::RequestBuilder {
    let request = http
        .put(url)
        .header(http::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(body));
    match content_md5 {
        Some(md5) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(md5);
            request.header("content-md5", encoded)
        }
        None => request,
    }
}

/// Runs `attempt` up to `attempts` times while it fails with [`BackendError::Unavailable`],
/// pausing `backoff` before the second try and twice as long before each further one.
async fn retried<F, Fut>(attempts: u32, backoff: Duration, attempt: F) -> Result<(), BackendError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), BackendError>>,
{
    let mut pause = backoff;
    for tried in 1.. {
        match attempt().await {
            Err(err @ BackendError::Unavailable { .. }) if tried < attempts => {
                tracing::warn!(%err, tried, "S3 request failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
}

impl S3Backend {
    async fn signed(
        &self,
        method: Method,
        upload: &NativeUpload,
        query: Vec<(&'static str, String)>,
    ) -> Result<reqwest::Url, BackendError> {
        let options = SignedUrlOptions::default().with_query(query);
        self.s3
            .signed_url_opts(method, &path_of(&upload.target), SIGNED_FOR, &options)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl NativeMultipart for S3Backend {
    fn part_limits(&self) -> PartLimits {
        S3_LIMITS
    }

    async fn create(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
    ) -> Result<NativeUpload, BackendError> {
        let options = PutMultipartOptions {
            attributes: attributes_for(metadata),
            ..PutMultipartOptions::default()
        };
        let upload_id = self
            .s3
            .create_multipart_opts(&path_of(id), options)
            .await
            .map_err(unavailable)?;
        Ok(NativeUpload {
            target: id.clone(),
            upload_id,
        })
    }

    async fn upload_part(
        &self,
        upload: &NativeUpload,
        number: u32,
        length: u64,
        content_md5: Option<[u8; 16]>,
        body: PayloadStream,
    ) -> Result<String, BackendError> {
        let query = vec![
            ("partNumber", number.to_string()),
            ("uploadId", upload.upload_id.clone()),
        ];
        let url = self.signed(Method::PUT, upload, query).await?;
        // A failing body is the client's doing; keep its error to report it as such.
        let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let body = body.map_err({
            let failed = failed.clone();
            move |err| {
                let shown = std::io::Error::new(err.kind(), err.to_string());
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                shown
            }
        });
        let sent = part_request(&self.http, url, length, content_md5, body.boxed())
            .send()
            .await;
        if let Some(err) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(BackendError::Payload(err));
        }
        let response = sent.map_err(http_error)?;
        let status = response.status();
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body: Bytes = response.bytes().await.map_err(http_error)?;
        if let Some(err) = refusal(status, &body) {
            return Err(err);
        }
        etag.ok_or_else(|| unavailable("UploadPart answered without an ETag"))
    }

    async fn complete(
        &self,
        _id: &ObjectId,
        _metadata: &Metadata,
        upload: &NativeUpload,
        parts: Vec<(u32, String)>,
        _size: u64,
    ) -> Result<(), BackendError> {
        let document = CompleteDocument {
            parts: parts
                .into_iter()
                .map(|(number, etag)| CompletePart { number, etag })
                .collect(),
        };
        let xml = quick_xml::se::to_string(&document)
            .map_err(|err| unavailable(format!("CompleteMultipartUpload body: {err}")))?;
        let url = self
            .signed(
                Method::POST,
                upload,
                vec![("uploadId", upload.upload_id.clone())],
            )
            .await?;
        // S3 may fail a completion, even inside a 200, and asks for it to be sent again.
        retried(COMPLETE_ATTEMPTS, COMPLETE_BACKOFF, || async {
            let response = self
                .http
                .post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/xml")
                .body(xml.clone())
                .send()
                .await
                .map_err(http_error)?;
            let status = response.status();
            let body = response.bytes().await.map_err(http_error)?;
            refusal(status, &body).map_or(Ok(()), Err)
        })
        .await
    }

    async fn abort(&self, upload: &NativeUpload) -> Result<(), BackendError> {
        match self
            .s3
            .abort_multipart(&path_of(&upload.target), &upload.upload_id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_refusals_with_s3_codes_or_unavailability() {
        let small = b"<Error><Code>EntityTooSmall</Code><Message>too small</Message></Error>";
        for status in [200, 400] {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            match refusal(status, small) {
                Some(BackendError::Rejected { code, message, .. }) => {
                    assert_eq!(
                        (code.as_str(), message.as_str()),
                        ("EntityTooSmall", "too small")
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        let busy = b"<Error><Code>InternalError</Code><Message>try again</Message></Error>";
        assert!(
            matches!(
                refusal(reqwest::StatusCode::OK, busy),
                Some(BackendError::Unavailable { .. })
            ),
            "S3's own failure inside a 200 is retried, not reported as the client's"
        );
        let done =
            b"<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>";
        assert!(refusal(reqwest::StatusCode::OK, done).is_none());
        assert!(refusal(reqwest::StatusCode::OK, b"").is_none());
        assert!(matches!(
            refusal(reqwest::StatusCode::SERVICE_UNAVAILABLE, small),
            Some(BackendError::Unavailable { .. })
        ));
        assert!(matches!(
            refusal(reqwest::StatusCode::NOT_FOUND, b"gone"),
            Some(BackendError::Rejected { code, .. }) if code == "404"
        ));
    }

    #[tokio::test]
    async fn a_streamed_part_goes_out_with_its_length_not_chunked() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!(
            "http://{}/b/k?partNumber=1",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // The end of a length-framed body, or of a chunked one.
            while !(seen.ends_with(b"helloworld") || seen.ends_with(b"\r\n0\r\n\r\n")) {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\netag: \"e\"\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(seen).unwrap().to_ascii_lowercase()
        });
        let chunks = ["hello", "world"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        let body = futures::stream::iter(chunks).boxed();
        let response = part_request(&reqwest::Client::new(), url, 10, Some([0; 16]), body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let request = server.await.unwrap();
        assert!(request.contains("\r\ncontent-length: 10\r\n"), "{request}");
        assert!(
            request.contains("\r\ncontent-md5: aaaaaaaaaaaaaaaaaaaaaa==\r\n"),
            "{request}"
        );
        assert!(!request.contains("transfer-encoding"), "{request}");
    }

    #[tokio::test]
    async fn only_unavailability_is_retried_and_only_so_often() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let count = || calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let pause = Duration::from_millis(1);
        let flaky = retried(3, pause, || async {
            match count() {
                1 => Err(unavailable("busy")),
                _ => Ok(()),
            }
        });
        assert!(flaky.await.is_ok());
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 2);
        let down = retried(3, pause, || async {
            count();
            Err(unavailable("down"))
        });
        assert!(matches!(down.await, Err(BackendError::Unavailable { .. })));
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 3);
        let refused = retried(3, pause, || async {
            count();
            Err(BackendError::Rejected {
                backend: NAME,
                code: "InvalidPart".into(),
                message: String::new(),
            })
        });
        assert!(matches!(refused.await, Err(BackendError::Rejected { .. })));
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "refusals are final"
        );
    }

    #[test]
    fn the_completion_document_lists_parts_by_their_own_numbers() {
        let document = CompleteDocument {
            parts: vec![
                CompletePart {
                    number: 1,
                    etag: "\"a\"".into(),
                },
                CompletePart {
                    number: 7,
                    etag: "\"b\"".into(),
                },
            ],
        };
        assert_eq!(
            quick_xml::se::to_string(&document).unwrap(),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>7</PartNumber><ETag>\"b\"</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
