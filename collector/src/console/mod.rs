//! The web console: server-rendered pages over the same store and the
//! same functions as the API (`/` fleet, `/machines/{id}`, `/findings`,
//! `/campaigns`), in French or English, light (no script, no font, inline
//! CSS and SVG), with plain HTML forms for the few writes, each behind
//! [`access::Admin`]. Routed from `http/mod.rs`.

pub mod access;
pub mod campaigns;
pub mod chart;
pub mod findings;
pub mod fmt;
pub mod layout;
pub mod login;
pub mod machine;
pub mod overview;

use crate::campaign::CampaignError;
use crate::store::StoreError;
use axum::extract::Query;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use layout::{Ctx, Nav};
use serde::de::DeserializeOwned;

/// Why a console page or action could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Refused: another site's form, or not allowed (see [`access`]).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) | ConsoleError::Campaign(CampaignError::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            ConsoleError::BadRequest(_) | ConsoleError::Campaign(CampaignError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            ConsoleError::Campaign(
                CampaignError::Exists(_) | CampaignError::BadTransition { .. },
            ) => StatusCode::CONFLICT,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Store(_)
            | ConsoleError::Campaign(CampaignError::Store(_))
            | ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error shown as a page in the reader's language.
#[derive(Debug)]
pub struct PageError(pub Ctx, pub ConsoleError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let PageError(ctx, e) = self;
        let status = e.status();
        if status.is_server_error() {
            tracing::error!(error = %e, path = %ctx.here(), "console page failed");
        } else {
            tracing::info!(error = %e, status = status.as_u16(), "console request refused");
        }
        let title = match status {
            StatusCode::NOT_FOUND => ctx.t("Introuvable", "Not found"),
            StatusCode::FORBIDDEN => ctx.t("Refusé", "Refused"),
            s if s.is_server_error() => ctx.t("Erreur du collecteur", "Collector error"),
            _ => ctx.t("Impossible", "Not possible"),
        };
        let main = format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">{}</a></p>",
            title,
            fmt::esc(&e.to_string()),
            fmt::esc(&ctx.href("/")),
            ctx.t("Retour au parc", "Back to the fleet")
        );
        layout::respond(status, layout::shell(&ctx, title, Nav::None, &main))
    }
}

pub type PageResult = Result<Response, PageError>;

/// Runs store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsoleError> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?
}

/// Decodes an `application/x-www-form-urlencoded` body. Such a body is a
/// URL query string, so axum's query decoder reads it (the workspace
/// builds axum without its `form` feature).
pub(crate) fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T, ConsoleError> {
    let bad = |e: String| ConsoleError::BadRequest(format!("the form could not be read: {e}"));
    let text = std::str::from_utf8(body).map_err(|e| bad(e.to_string()))?;
    if text.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(bad("not URL-encoded".into()));
    }
    let uri: Uri = format!("/?{text}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| bad(e.to_string()))?;
    Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| bad(e.body_text()))
}

/// `back` if it is a path of this collector, for a redirect: one leading
/// `/`, not `//`, then visible ASCII only and no `\\`. A tab, space or
/// other control character is dropped by browsers, so `/\t/evil` would
/// become `//evil`, another site (issue #21); non-ASCII is refused too
/// (the console's own links are percent-encoded).
pub(crate) fn local_path(back: Option<&str>) -> Option<&str> {
    back.filter(|b| {
        b.starts_with('/')
            && !b.starts_with("//")
            && b.bytes().all(|c| c.is_ascii_graphic() && c != b'\\')
    })
}

/// After a form: back to `back` (a path on this site only, never another
/// site) with `done` saying what happened, as 303 See Other.
pub(crate) fn see_other(ctx: &Ctx, back: Option<&str>, fallback: &str, done: &str) -> Response {
    let back = local_path(back).unwrap_or(fallback);
    let (back, fragment) = back.split_once('#').unwrap_or((back, ""));
    // `back` may carry an old `done` and `lang`: drop them.
    let (path, query) = back.split_once('?').unwrap_or((back, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("done=") && !p.starts_with("lang="))
        .collect();
    let done = format!("done={}", fmt::urlenc(done));
    pairs.push(&done);
    let mut to = ctx.href(&format!("{path}?{}", pairs.join("&")));
    if !fragment.is_empty() {
        to = format!("{to}#{fragment}");
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// The confirmation a page shows after a form sent the reader back to it.
pub(crate) fn done_notice(ctx: &Ctx, done: Option<&str>) -> String {
    let text = match done {
        Some("acknowledged") => ctx.t("Constat pris en compte.", "Finding acknowledged."),
        Some("snoozed") => ctx.t("Constat mis en veille.", "Finding snoozed."),
        Some("created") => ctx.t("Campagne créée.", "Campaign created."),
        Some("started") => ctx.t("Campagne démarrée.", "Campaign started."),
        Some("ended") => ctx.t("Campagne terminée.", "Campaign ended."),
        Some("archived") => ctx.t("Campagne archivée.", "Campaign archived."),
        _ => return String::new(),
    };
    format!("<p class=\"status\" role=\"status\">{text}</p>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct F {
        name: String,
        days: Option<u32>,
    }

    #[test]
    fn form_bodies_decode_like_queries() {
        let f: F = form(b"name=Clean+Up+Day+%C3%A9t%C3%A9&days=7").expect("form");
        assert_eq!(
            f,
            F {
                name: "Clean Up Day été".into(),
                days: Some(7)
            }
        );
        assert!(matches!(
            form::<F>(b"days=7"),
            Err(ConsoleError::BadRequest(_))
        ));
        assert!(matches!(
            form::<F>(b"name=a b"),
            Err(ConsoleError::BadRequest(_))
        ));
    }

    #[test]
    fn forms_send_back_to_this_site_only() {
        let ctx = Ctx::new("/x", vec![("lang".into(), "en".into())], None);
        let loc = |r: Response| {
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            r.headers()[header::LOCATION]
                .to_str()
                .expect("ASCII location")
                .to_owned()
        };
        assert_eq!(
            loc(see_other(
                &ctx,
                Some("/findings?kind=bloat&done=snoozed&lang=fr"),
                "/",
                "acknowledged"
            )),
            "/findings?kind=bloat&done=acknowledged&lang=en"
        );
        assert_eq!(
            loc(see_other(&ctx, Some("/campaigns#c-x"), "/", "started")),
            "/campaigns?done=started&lang=en#c-x"
        );
        for evil in ["//evil.example/", "https://evil.example/", "/\\evil"] {
            assert_eq!(
                loc(see_other(&ctx, Some(evil), "/findings", "snoozed")),
                "/findings?done=snoozed&lang=en"
            );
        }
    }
}
