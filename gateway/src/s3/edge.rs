//! The S3 port's first look at a request, before s3s parses, authenticates or buffers anything:
//! refuses what this gateway does not accept at all, cheaply and with the error AWS gives.
//!
//! - Browser form uploads (`POST` with `multipart/form-data`): s3s would read the whole file
//!   into memory before any access check. Refused until they can be streamed.
//! - Signature Version 2: refused unless the operator enables it, and then only with a date
//!   within the allowed skew and presigned expiries within a week (s3s checks neither).
//! - Presigned SigV4 URLs valid for more than a week (`X-Amz-Expires` > 604800), which AWS refuses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest validity of a presigned URL: seven days, as AWS allows.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 604_800;
/// Largest difference between a request's date and the gateway's clock, as AWS allows.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// What the edge accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeOptions {
    /// Accept Signature Version 2 requests (deprecated by AWS; off by default).
    pub allow_sigv2: bool,
}

/// A request refused at the edge: the S3 error to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The S3 XML error body, with `request_id`.
    pub fn xml(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
            self.code,
            escape(&self.message)
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The query's parameters, names and values as sent (not decoded: the names looked at here
/// never need it, and the values are digits).
fn query_params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Screens a request by its method, query and headers, at the current time.
pub fn screen(
    method: &http::Method,
    query: Option<&str>,
    headers: &http::HeaderMap,
    options: EdgeOptions,
) -> Result<(), Refusal> {
    screen_at(unix_now(), method, query, headers, options)
}

/// [`screen`] at `now` (Unix seconds).
pub fn screen_at(
    now: u64,
    method: &http::Method,
    query: Option<&str>,
    headers: &http::HeaderMap,
    options: EdgeOptions,
) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if method == http::Method::POST
        && header("content-type").is_some_and(|c| {
            c.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
    {
        return Err(Refusal::new(
            501,
            "NotImplemented",
            "Browser-based uploads (POST Object with a form) are not supported",
        ));
    }
    let query = query.unwrap_or("");
    let mut presigned_v2 = false;
    let mut v2_expires = None;
    for (name, value) in query_params(query) {
        match name {
            "X-Amz-Expires" => {
                let secs: u64 = value.parse().map_err(|_| {
                    Refusal::new(
                        400,
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires should be a number",
                    )
                })?;
                if secs > MAX_PRESIGNED_EXPIRY_SECS {
                    return Err(Refusal::new(
                        400,
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires must be less than a week (in seconds) that is; 604800",
                    ));
                }
            }
            "AWSAccessKeyId" => presigned_v2 = true,
            "Expires" => v2_expires = Some(value),
            _ => {}
        }
    }
    let header_v2 = header("authorization").is_some_and(|a| a.starts_with("AWS "));
    if !(presigned_v2 || header_v2) {
        return Ok(());
    }
    if !options.allow_sigv2 {
        return Err(Refusal::new(
            400,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        ));
    }
    if presigned_v2 {
        let expires: u64 = v2_expires.and_then(|e| e.parse().ok()).ok_or_else(|| {
            Refusal::new(
                400,
                "AuthorizationQueryParametersError",
                "Expires must be a number of seconds since the epoch",
            )
        })?;
        if expires > now + MAX_PRESIGNED_EXPIRY_SECS {
            return Err(Refusal::new(
                400,
                "AuthorizationQueryParametersError",
                "Expires must be less than a week from now",
            ));
        }
        return Ok(());
    }
    // Header-signed SigV2 names its time in `x-amz-date` (which wins) or `Date`.
    let date = header("x-amz-date")
        .or_else(|| header("date"))
        .and_then(httpdate_secs)
        .ok_or_else(|| {
            Refusal::new(
                403,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header",
            )
        })?;
    if date.abs_diff(now) > MAX_SKEW_SECS {
        return Err(Refusal::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    Ok(())
}

/// Unix seconds of an RFC 7231 date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_secs(s: &str) -> Option<u64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s.trim(), &format).ok()?;
    u64::try_from(t.assume_utc().unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    const NOW: u64 = 1_700_000_000;

    fn check(
        method: http::Method,
        query: &str,
        headers: &[(&'static str, &str)],
        v2: bool,
    ) -> Result<(), Refusal> {
        screen_at(
            NOW,
            &method,
            Some(query),
            &h(headers),
            EdgeOptions { allow_sigv2: v2 },
        )
    }

    #[test]
    fn presigned_urls_live_a_week_at_most() {
        let ok = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800&X-Amz-Signature=ab";
        assert!(check(http::Method::GET, ok, &[], false).is_ok());
        let long = "X-Amz-Expires=315360000&X-Amz-Signature=ab";
        let r = check(http::Method::GET, long, &[], false).unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (400, "AuthorizationQueryParametersError")
        );
        let junk = check(http::Method::GET, "X-Amz-Expires=x", &[], false).unwrap_err();
        assert_eq!(junk.code, "AuthorizationQueryParametersError");
    }

    #[test]
    fn sigv2_is_refused_unless_enabled_and_then_checked_for_time() {
        let auth = [("authorization", "AWS AKID:c2ln")];
        let r = check(http::Method::GET, "", &auth, false).unwrap_err();
        assert_eq!((r.status, r.code), (400, "InvalidRequest"));
        let presigned = "AWSAccessKeyId=AKID&Expires=1700000100&Signature=x";
        assert!(check(http::Method::GET, presigned, &[], false).is_err());
        // Enabled: a date within the skew passes, one from 2001 does not.
        let now_date = "Tue, 14 Nov 2023 22:13:20 GMT";
        let dated = [("authorization", "AWS AKID:c2ln"), ("date", now_date)];
        assert!(check(http::Method::GET, "", &dated, true).is_ok());
        let old = [
            ("authorization", "AWS AKID:c2ln"),
            ("date", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ];
        let r = check(http::Method::GET, "", &old, true).unwrap_err();
        assert_eq!((r.status, r.code), (403, "RequestTimeTooSkewed"));
        let undated = check(http::Method::GET, "", &auth, true).unwrap_err();
        assert_eq!(undated.code, "AccessDenied");
        assert!(check(http::Method::GET, presigned, &[], true).is_ok());
        let ten_years = "AWSAccessKeyId=AKID&Expires=2015360000&Signature=x";
        assert!(check(http::Method::GET, ten_years, &[], true).is_err());
        // SigV4 is not SigV2.
        let v4 = [("authorization", "AWS4-HMAC-SHA256 Credential=x")];
        assert!(check(http::Method::GET, "", &v4, false).is_ok());
    }

    #[test]
    fn form_posts_are_refused_before_anything_is_read() {
        let form = [("content-type", "multipart/form-data; boundary=x")];
        let r = check(http::Method::POST, "", &form, false).unwrap_err();
        assert_eq!((r.status, r.code), (501, "NotImplemented"));
        // Other POSTs (DeleteObjects, multipart uploads) pass.
        let xml = [("content-type", "application/xml")];
        assert!(check(http::Method::POST, "delete", &xml, false).is_ok());
        assert!(
            Refusal::new(400, "X", "a<b")
                .xml("R1")
                .contains("<Message>a&lt;b</Message><RequestId>R1</RequestId>")
        );
    }

    proptest::proptest! {
        /// Any query and header bytes: never a panic.
        #[test]
        fn arbitrary_requests_never_panic(query in ".{0,200}", auth in "[ -~]{0,100}", date in "[ -~]{0,40}") {
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = auth.parse() { headers.insert("authorization", v); }
            if let Ok(v) = date.parse() { headers.insert("date", v); }
            for v2 in [false, true] {
                let _ = screen_at(NOW, &http::Method::GET, Some(&query), &headers, EdgeOptions { allow_sigv2: v2 });
            }
        }
    }
}
