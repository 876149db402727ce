//! Bearer tokens: the operator's token may do everything; a tenant's token
//! may only see, pause and resume that tenant. Failures say no more than
//! "missing" (401) or "forbidden" (403): which tenants exist, and whether a
//! token belongs to anyone, is not told.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::serve::HostConfig;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

/// What a call needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// Deploy, undeploy, `/metrics`.
    Operator,
    /// See, pause or resume this tenant.
    Tenant(&'a str),
}

/// The caller named by the `Authorization: Bearer …` header: 401 when it
/// is missing or malformed, 403 when the token is nobody's.
pub fn caller(headers: &HeaderMap, config: &HostConfig) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    if same(token, &config.operator_token) {
        return Ok(Caller::Operator);
    }
    // Every token is compared, so the time taken does not tell which one
    // came close.
    let mut found = None;
    for (tenant, expected) in &config.tenant_tokens {
        if same(token, expected) {
            found = Some(tenant.clone());
        }
    }
    found.map(Caller::Tenant).ok_or(ApiError::Forbidden)
}

/// 403 unless `caller` may do what `need` says.
pub fn allow(caller: &Caller, need: Need<'_>) -> Result<(), ApiError> {
    match (caller, need) {
        (Caller::Operator, _) => Ok(()),
        (Caller::Tenant(own), Need::Tenant(tenant)) if own == tenant => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

/// Constant-time comparison of the tokens' hashes.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> HostConfig {
        HostConfig::parse(
            "operator_token = \"operator-secret-0123456789\"\nstate_dir = \"s\"\n\
             [tenant_tokens]\na = \"tenant-a-secret-0123456789\"\nb = \"tenant-b-secret-0123456789\"\n",
            Path::new("host.toml"),
            None,
        )
        .expect("valid config")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        h
    }

    #[test]
    fn tokens_map_to_callers_and_tenants_see_only_their_own() {
        let c = config();
        assert!(matches!(
            caller(&HeaderMap::new(), &c),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            caller(&bearer("nobody's-token"), &c),
            Err(ApiError::Forbidden)
        ));
        assert_eq!(
            caller(&bearer("operator-secret-0123456789"), &c).ok(),
            Some(Caller::Operator)
        );
        let a = caller(&bearer("tenant-a-secret-0123456789"), &c).expect("tenant a");
        assert_eq!(a, Caller::Tenant("a".into()));
        assert!(allow(&a, Need::Tenant("a")).is_ok());
        assert!(allow(&a, Need::Tenant("b")).is_err());
        assert!(allow(&a, Need::Operator).is_err());
        assert!(allow(&Caller::Operator, Need::Operator).is_ok());
    }
}
