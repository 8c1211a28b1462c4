//! Signing in to the console: a form that takes an API token (admin or
//! read-only) and keeps it in an HttpOnly, SameSite=Strict cookie, which
//! the HTTP layer (`http/auth.rs`) reads like a bearer token; and signing
//! out. A browser cannot add an `Authorization` header to a plain form.

use super::access::same_origin;
use super::fmt::esc;
use super::layout::{self, Ctx, Nav};
use super::{PageError, PageResult, form};
use crate::http::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The cookie the HTTP layer reads the token from.
pub const COOKIE: &str = "sobre_token";

/// Where to go after signing in: a path of this collector only.
fn safe_back(back: Option<&str>) -> &str {
    super::local_path(back).unwrap_or("/")
}

fn form_html(ctx: &Ctx, back: &str, error: Option<&str>) -> String {
    format!(
        "<h1>{h}</h1>{err}<p>{p}</p>\
         <form method=\"post\" action=\"{action}\"><p><label for=\"token\">{l}</label><br>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required \
         size=\"40\"></p><input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <p><button type=\"submit\">{b}</button></p></form>",
        h = ctx.t("Se connecter", "Sign in"),
        err = error
            .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
            .unwrap_or_default(),
        p = ctx.t(
            "Les actions (constats, campagnes) demandent le jeton d'administration : le \
             démarrage rapide l'affiche, et le collecteur le garde dans le fichier admin.token \
             de son dossier de données. Un jeton en lecture seule permet de consulter.",
            "Actions (findings, campaigns) need the admin token: the quick start prints it, and \
             the collector keeps it in admin.token in its data folder. A read-only token lets \
             you look."
        ),
        action = esc(&ctx.href("/login")),
        l = ctx.t("Jeton", "Token"),
        back = esc(back),
        b = ctx.t("Se connecter", "Sign in"),
    )
}

#[derive(Debug, Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// `GET /login`.
pub async fn page(ctx: Ctx, q: axum::extract::Query<Back>) -> Response {
    let back = safe_back(q.back.as_deref()).to_owned();
    layout::page(
        &ctx,
        ctx.t("Se connecter", "Sign in"),
        Nav::None,
        &form_html(&ctx, &back, None),
    )
}

#[derive(Debug, Deserialize)]
struct Login {
    token: String,
    back: Option<String>,
}

fn cookie(value: &str, max_age_s: u32, secure: bool) -> HeaderValue {
    // A token is hex: always a valid header value.
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sobre_token=; Path=/; Max-Age=0"))
}

/// `POST /login`: a valid token becomes the cookie (12 hours).
pub async fn submit(
    State(s): State<AppState>,
    ctx: Ctx,
    sign_in: crate::limits::auth::SignIn,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> PageResult {
    same_origin(&headers, ctx.fr).map_err(|e| PageError(ctx.clone(), e))?;
    let f: Login = form(&body).map_err(|e| PageError(ctx.clone(), e))?;
    let back = safe_back(f.back.as_deref()).to_owned();
    let token = f.token.trim();
    // A source that failed too often is not even compared (limits::auth).
    let blocked = sign_in.check().is_err();
    if blocked || s.tokens.role_of(token).is_none() {
        let (status, msg) = if blocked {
            let msg = ctx.t(
                "Trop d'essais manqués depuis cette adresse : réessayez dans une minute.",
                "Too many failed sign-ins from this address: try again in a minute.",
            );
            (StatusCode::TOO_MANY_REQUESTS, msg)
        } else {
            sign_in.failed();
            s.metrics.http_refused("bad_token");
            let now = std::time::Instant::now();
            if let Some(more) = crate::limits::logs().due(("http", "bad_login"), now) {
                tracing::warn!("console sign-in with a token that is not valid{more}");
            }
            let msg = ctx.t("Ce jeton n'est pas valide.", "This token is not valid.");
            (StatusCode::UNAUTHORIZED, msg)
        };
        return Ok(layout::respond(
            status,
            layout::shell(
                &ctx,
                ctx.t("Se connecter", "Sign in"),
                Nav::None,
                &form_html(&ctx, &back, Some(msg)),
            ),
        ));
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, ctx.href(&back))]).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(token, 12 * 3600, s.https));
    Ok(r)
}

/// `POST /logout`: forgets the cookie.
pub async fn logout(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
) -> PageResult {
    same_origin(&headers, ctx.fr).map_err(|e| PageError(ctx.clone(), e))?;
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, ctx.href("/"))]).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, s.https));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_sends_back_to_this_site_only() {
        assert_eq!(
            safe_back(Some("/findings?kind=bloat")),
            "/findings?kind=bloat"
        );
        assert_eq!(safe_back(Some("//evil.example/")), "/");
        assert_eq!(safe_back(Some("https://evil.example/")), "/");
        assert_eq!(safe_back(None), "/");
    }

    #[test]
    fn a_tab_after_the_slash_no_longer_redirects_to_another_site() {
        // `back=/%09/evil.example`, decoded: browsers drop the tab.
        for evil in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\\evil.example",
            "/\u{7f}/evil.example",
            "/\u{3000}/evil.example",
            "/%2F/evil.example?x=1 ",
        ] {
            assert_eq!(safe_back(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(
            safe_back(Some("/machines/ws-1?x=%2F")),
            "/machines/ws-1?x=%2F"
        );
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = cookie("abc", 60, false);
        let c = c.to_str().expect("ascii");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=60")
        );
        assert!(!c.contains("Secure"));
        let s = cookie("abc", 60, true);
        assert!(
            s.to_str().expect("ascii").ends_with("; Secure"),
            "over HTTPS"
        );
    }
}
