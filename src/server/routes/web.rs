//! `GET /`: the web view of the host (docs/api.md, "The web view"), one page embedded in the
//! binary. It holds nothing secret and needs no token to load: the person enters a token once,
//! the tab keeps it in session storage, and every call the page makes is an API route with the
//! token in its `Authorization` header (events too: the page reads them with `fetch`, not
//! `EventSource`, which cannot send a header), so no token is ever in a URL or a server log.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page: markup, style and script in one file, no build step and nothing from elsewhere.
pub const PAGE: &str = include_str!("../web/index.html");

pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Only this page's own inline code, and calls to this host.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}
