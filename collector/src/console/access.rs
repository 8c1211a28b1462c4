//! Who may change things from the console: every state-changing console
//! route (POST) takes the [`Admin`] extractor, which refuses forms posted
//! from another site (cross-site request forgery) and then asks
//! [`require_admin`].

use super::layout::Ctx;
use super::{ConsoleError, PageError};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// Proof that a request may change state: same origin and admin. Take it
/// as an argument of every console handler that writes.
#[derive(Debug)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let ctx = match Ctx::from_request_parts(parts, state).await {
            Ok(c) => c,
            Err(never) => match never {},
        };
        same_origin(&parts.headers, ctx.fr).map_err(|e| PageError(ctx.clone(), e))?;
        require_admin(parts).map_err(|e| PageError(ctx, e))?;
        Ok(Admin)
    }
}

/// Whether this request may change state (acknowledge, snooze, create,
/// start, end, archive): it carries the admin token (the sign-in cookie or
/// a bearer header), as the HTTP layer found (`http/auth.rs`, which has
/// already refused any other POST; this is the second line, so a console
/// route can never be left open by a routing mistake).
pub fn require_admin(parts: &Parts) -> Result<(), ConsoleError> {
    match parts.extensions.get::<crate::http::auth::Role>() {
        Some(crate::http::auth::Role::Admin) => Ok(()),
        _ => Err(ConsoleError::Forbidden(
            "this needs the admin token: sign in at /login".into(),
        )),
    }
}

/// Refuses a request another site made the browser send
/// (`http::origin::cross_site`), with a page that says why.
pub fn same_origin(h: &HeaderMap, fr: bool) -> Result<(), ConsoleError> {
    let Some(why) = crate::http::origin::cross_site(h) else {
        return Ok(());
    };
    tracing::warn!(reason = %why, "cross-site console form refused");
    Err(ConsoleError::Forbidden(if fr {
        format!(
            "Refusé : ce formulaire ne vient pas de la console de ce collecteur ({why}). \
             Ouvrez la console à son adresse et recommencez."
        )
    } else {
        format!(
            "Refused: this form does not come from this collector's console ({why}). \
             Open the console at its address and try again."
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn forms_from_this_collector_pass() {
        let ok = |p: &[(&'static str, &str)]| same_origin(&headers(p), true).is_ok();
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]));
        assert!(ok(&[
            ("host", "sobre.ville.fr"),
            ("origin", "https://sobre.ville.fr")
        ]));
        assert!(ok(&[("host", "127.0.0.1:8080")]), "no browser, no forgery");
    }

    #[test]
    fn forms_from_elsewhere_are_refused_with_the_reason() {
        let refused = |p: &[(&'static str, &str)]| match same_origin(&headers(p), false) {
            Err(ConsoleError::Forbidden(m)) => m,
            other => panic!("{p:?} passed: {other:?}"),
        };
        let m = refused(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(m.contains("Origin: http://evil.example"), "{m}");
        refused(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        refused(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8081"),
        ]);
        refused(&[("origin", "http://127.0.0.1:8080")]);
        let m = refused(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(m.contains("Sec-Fetch-Site: cross-site"), "{m}");
        refused(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]);
    }
}
