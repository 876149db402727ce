//! The operator's side of the admin API: what `sluice deploy`, `undeploy`,
//! `list`, `pause`, `resume` and `logs` send, and the errors they print — above
//! all a plain "no host is listening" instead of a socket error.

use std::path::Path;
use std::time::Duration;

use crate::manifest::{Manifest, NameError, TenantName};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no sluice host is listening at {url} (is `sluice serve` running? set --admin): {detail}"
    )]
    NotRunning { url: String, detail: String },
    #[error("{url}: HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {detail}")]
    Http { url: String, detail: String },
    #[error("reading {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("no token: set SLUICE_TOKEN (or --token)")]
    NoToken,
    /// Refused here, before anything is sent.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// A client of one host.
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> Result<AdminClient> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Error::NoToken)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // 4xx/5xx carry a JSON message to show, not an error to raise.
            .http_status_as_error(false)
            // A deploy compiles the module and waits for a checkpoint.
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Uploads `manifest` and the module it names.
    pub fn deploy(&self, manifest_path: &Path) -> Result<serde_json::Value> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Error::Read {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
        };
        let manifest_bytes = read(manifest_path)?;
        let manifest = Manifest::from_path(manifest_path).map_err(|e| Error::Read {
            path: manifest_path.display().to_string(),
            detail: e.to_string(),
        })?;
        let module = read(&manifest.module)?;
        let boundary = format!("sluice-{:016x}", content_tag(&module));
        let body = multipart(&boundary, &manifest_bytes, &module);
        let url = self.url(&format!("/v1/tenants/{}", manifest.tenant));
        let response = self
            .agent
            .put(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..]);
        self.answer(&url, response)
    }

    pub fn undeploy(&self, tenant: &str) -> Result<serde_json::Value> {
        let tenant = TenantName::parse(tenant)?;
        let url = self.url(&format!("/v1/tenants/{tenant}"));
        let response = self
            .agent
            .delete(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        self.answer(&url, response)
    }

    pub fn list(&self) -> Result<serde_json::Value> {
        let url = self.url("/v1/tenants");
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        self.answer(&url, response)
    }

    /// The tenant's log entries numbered above `after` (at most `limit`).
    pub fn logs(&self, tenant: &str, after: u64, limit: usize) -> Result<serde_json::Value> {
        let tenant = TenantName::parse(tenant)?;
        let url = self.url(&format!(
            "/v1/tenants/{tenant}/logs?after={after}&limit={limit}"
        ));
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        self.answer(&url, response)
    }

    /// `action` is `pause` or `resume`.
    pub fn control(&self, tenant: &str, action: &str) -> Result<serde_json::Value> {
        let tenant = TenantName::parse(tenant)?;
        let url = self.url(&format!("/v1/tenants/{tenant}/{action}"));
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_empty();
        self.answer(&url, response)
    }

    fn answer(
        &self,
        url: &str,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value> {
        let mut response = match response {
            Ok(r) => r,
            Err(e @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)) => {
                return Err(Error::NotRunning {
                    url: self.base.clone(),
                    detail: e.to_string(),
                })
            }
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Error::NotRunning {
                    url: self.base.clone(),
                    detail: e.to_string(),
                })
            }
            Err(e) => {
                return Err(Error::Http {
                    url: url.to_owned(),
                    detail: e.to_string(),
                })
            }
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::Http {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| json.to_string());
            Err(Error::Refused {
                url: url.to_owned(),
                status,
                message,
            })
        }
    }
}

/// A boundary that does not occur in the parts is all multipart needs;
/// derived from the content so no random source is needed.
fn content_tag(bytes: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_le_bytes(b)
}

/// `multipart/form-data` with the parts `manifest` and `module`.
pub fn multipart(boundary: &str, manifest: &[u8], module: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(manifest.len() + module.len() + 512);
    for (name, file, ty, bytes) in [
        ("manifest", "sluice.toml", "application/toml", manifest),
        ("module", "module.wasm", "application/wasm", module),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {ty}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}
