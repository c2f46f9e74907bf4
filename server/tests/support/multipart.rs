//! Raw-HTTP multipart calls (api §2.7) shared by the upload suites: each asserts what
//! every well-formed call answers and hands back what the test goes on with.

use strata_server::app::RunningServer;

/// The multipart routes of one server under one `usecase/scopes` path.
pub struct Multipart<'a> {
    http: &'a reqwest::Client,
    addr: std::net::SocketAddr,
    path: &'a str,
}

impl<'a> Multipart<'a> {
    /// Calls `server` for objects under `path` (e.g. `up/org=1`).
    pub fn new(http: &'a reqwest::Client, server: &RunningServer, path: &'a str) -> Self {
        Self {
            http,
            addr: server.addr(),
            path,
        }
    }

    /// The URL of `route` for `key`, with `query` (`?…` or empty) appended.
    fn url(&self, route: &str, key: &str, query: &str) -> String {
        format!("http://{}/v1/{route}/{}/{key}{query}", self.addr, self.path)
    }

    /// M1 with `headers` (content type, metadata); asserts 200 and returns the body.
    pub async fn initiate(&self, key: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let request = headers.iter().fold(
            self.http.put(self.url("objects:multipart", key, "")),
            |request, (name, value)| request.header(*name, *value),
        );
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// M3; asserts 200 and returns the part's etag.
    pub async fn part(
        &self,
        key: &str,
        upload: &str,
        n: u32,
        body: impl Into<reqwest::Body>,
    ) -> String {
        let query = format!("?upload_id={upload}&part_number={n}");
        let r = self
            .http
            .put(self.url("objects:multipart:parts", key, &query))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        body["etag"].as_str().unwrap().to_owned()
    }

    /// M5 listing `parts` (number, etag); the response as it came.
    pub async fn complete(
        &self,
        key: &str,
        upload: &str,
        parts: &[(u32, &str)],
    ) -> reqwest::Response {
        let parts: Vec<serde_json::Value> = parts
            .iter()
            .map(|(n, e)| serde_json::json!({"part_number": n, "etag": e}))
            .collect();
        let query = format!("?upload_id={upload}");
        self.http
            .post(self.url("objects:multipart:complete", key, &query))
            .json(&serde_json::json!({ "parts": parts }))
            .send()
            .await
            .unwrap()
    }
}
