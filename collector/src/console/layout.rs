//! What every console page shares: the reader's language (`?lang=`, else
//! `Accept-Language`, else French), links that keep an explicit language,
//! the page shell (inline CSS, navigation, language switch, footer) and
//! the security headers every page is sent with.

use super::fmt::{esc, urlenc};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;

/// The request as pages need it: language, where it is, and now.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub fr: bool,
    /// The language was asked for with `?lang=`: links carry it on
    /// (there is no cookie to remember it).
    explicit: bool,
    path: String,
    /// The query without `lang`.
    query: Vec<(String, String)>,
    pub now_ms: i64,
}

impl Ctx {
    pub fn new(path: &str, query: Vec<(String, String)>, accept_language: Option<&str>) -> Ctx {
        let asked = query
            .iter()
            .rev()
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.as_str());
        let (fr, explicit) = match asked {
            Some("fr") => (true, true),
            Some("en") => (false, true),
            _ => (
                accept_language.and_then(prefers_french).unwrap_or(true),
                false,
            ),
        };
        Ctx {
            fr,
            explicit,
            path: path.to_owned(),
            query: query.into_iter().filter(|(k, _)| k != "lang").collect(),
            now_ms: crate::ingest::now_ms(),
        }
    }

    pub fn lang(&self) -> &'static str {
        if self.fr { "fr" } else { "en" }
    }

    /// The French or the English text.
    pub fn t<'a>(&self, fr: &'a str, en: &'a str) -> &'a str {
        if self.fr { fr } else { en }
    }

    /// A link to `path` (which may have a query) in the current language.
    pub fn href(&self, path: &str) -> String {
        if self.explicit {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}lang={}", self.lang())
        } else {
            path.to_owned()
        }
    }

    /// A hidden form field that keeps an explicit language across a GET
    /// form (empty when the browser's language is used).
    pub fn lang_field(&self) -> &'static str {
        match (self.explicit, self.fr) {
            (false, _) => "",
            (true, true) => "<input type=\"hidden\" name=\"lang\" value=\"fr\">",
            (true, false) => "<input type=\"hidden\" name=\"lang\" value=\"en\">",
        }
    }

    /// This page, with the query it was asked with (and its language).
    pub fn here(&self) -> String {
        self.href(&with_query(&self.path, &self.query))
    }

    /// This page in the other language.
    fn switch(&self) -> String {
        let mut q = self.query.clone();
        q.push(("lang".into(), self.t("en", "fr").into()));
        with_query(&self.path, &q)
    }
}

fn with_query(path: &str, q: &[(String, String)]) -> String {
    if q.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Whether an `Accept-Language` header prefers French to English
/// (`None`: it names neither). Ties keep the header's order.
pub fn prefers_french(header: &str) -> Option<bool> {
    let mut tags: Vec<(f32, &str)> = header
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            Some((q, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    tags.iter().filter(|(q, _)| *q > 0.0).find_map(|(_, tag)| {
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(true),
            "en" => Some(false),
            _ => None,
        }
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        // A malformed query is read as none: the page then says what it
        // could not use (filters) rather than refusing to render.
        let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let al = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Ok(Ctx::new(parts.uri.path(), query, al))
    }
}

/// Which entry of the navigation a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Fleet,
    Findings,
    Campaigns,
    None,
}

const CSS: &str = "*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:0}\
.skip{position:absolute;left:-999px}.skip:focus{left:.5rem;top:.5rem;background:#fff;padding:.3rem}\
header,main,footer{max-width:64rem;margin:0 auto;padding:0 1rem}\
header{display:flex;flex-wrap:wrap;gap:.2rem 1rem;align-items:baseline;border-bottom:2px solid #1b5e20;padding:.5rem 1rem}\
header nav ul{display:flex;flex-wrap:wrap;gap:.2rem 1rem;list-style:none;margin:0;padding:0}\
.brand{font-weight:700;color:#1b5e20;margin-right:auto}\
a{color:#0b4f9c}a:focus,button:focus,input:focus,select:focus,.wrap:focus{outline:3px solid #c45500;outline-offset:2px}\
a[aria-current]{font-weight:700;color:#1a1a1a}\
h1{font-size:1.5rem;margin:1rem 0 .3rem}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ccc}\
h3{font-size:1rem;margin:.2rem 0}\
.kpi{display:flex;flex-wrap:wrap;gap:.8rem;padding:0;list-style:none}\
.kpi li{flex:1 1 10rem;border:1px solid #bbb;border-radius:.4rem;padding:.5rem .7rem}\
.kpi strong{display:block;font-size:1.4rem;color:#1b5e20}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
td.n,th.n{text-align:right;white-space:nowrap}.wrap{overflow-x:auto}\
svg{width:100%;height:auto;max-height:14rem}\
.note,figcaption,footer{color:#444;font-size:.9rem}footer{margin-top:2rem;border-top:1px solid #ccc;padding:.5rem 1rem}\
.card{border:1px solid #bbb;border-radius:.4rem;padding:.5rem .8rem;margin:.7rem 0}\
.card dl{display:grid;grid-template-columns:minmax(6rem,auto) 1fr;gap:0 .8rem;margin:.3rem 0}\
dt{color:#444}dd{margin:0;overflow-wrap:anywhere}\
form.inline{display:inline-flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:.2rem .6rem .2rem 0}\
form.grid{display:grid;grid-template-columns:minmax(0,1fr);gap:.5rem;max-width:32rem}label{font-weight:600}\
input,select,button{font:inherit;padding:.3rem .5rem;min-height:2.2rem;max-width:100%}\
button{background:#1b5e20;color:#fff;border:1px solid #1b5e20;border-radius:.3rem;cursor:pointer}\
button.alt{background:#fff;color:#1b5e20}\
.status{background:#e8f5e9;border-left:4px solid #1b5e20;padding:.4rem .8rem}\
.error{background:#fdecea;border-left:4px solid #b00020;padding:.4rem .8rem}\
.on{color:#1b5e20;font-weight:600}.off{color:#6b6b6b}";

/// The HTML page around `main`: head, skip link, navigation, language
/// switch, footer. No script, no font, no request elsewhere.
pub fn shell(ctx: &Ctx, title: &str, nav: Nav, main: &str) -> String {
    let item = |n: Nav, path: &str, fr: &str, en: &str| {
        format!(
            "<li><a href=\"{}\"{}>{}</a></li>",
            esc(&ctx.href(path)),
            if n == nav {
                " aria-current=\"page\""
            } else {
                ""
            },
            ctx.t(fr, en)
        )
    };
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — Sobre</title><style>{CSS}</style></head><body>\
         <a class=\"skip\" href=\"#main\">{skip}</a>\
         <header><span class=\"brand\">Sobre</span><nav aria-label=\"{navl}\"><ul>{a}{b}{c}</ul></nav>\
         <a href=\"{sw}\" hreflang=\"{ol}\" lang=\"{ol}\">{swl}</a></header>\
         <main id=\"main\">{main}</main>\
         <footer>{foot} · <a href=\"{api}\">{apil}</a></footer></body></html>",
        lang = ctx.lang(),
        title = esc(title),
        skip = ctx.t("Aller au contenu", "Skip to content"),
        navl = ctx.t("Console", "Console"),
        a = item(Nav::Fleet, "/", "Parc", "Fleet"),
        b = item(Nav::Findings, "/findings", "Constats", "Findings"),
        c = item(Nav::Campaigns, "/campaigns", "Campagnes", "Campaigns"),
        sw = esc(&ctx.switch()),
        ol = ctx.t("en", "fr"),
        swl = ctx.t("English", "Français"),
        foot = ctx.t(
            "Sobre, télémétrie de sobriété numérique · heures en UTC",
            "Sobre, sustainability telemetry · times in UTC"
        ),
        api = esc(&ctx.href("/api")),
        apil = ctx.t("l'API", "the API"),
    )
}

/// A page as a response, with headers that keep it to itself: no
/// script, styles inline only, forms to this origin only, no framing.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, axum::response::Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A complete page, status 200.
pub fn page(ctx: &Ctx, title: &str, nav: Nav, main: &str) -> Response {
    respond(StatusCode::OK, shell(ctx, title, nav, main))
}

/// A table wrapped so that it scrolls by itself on a narrow screen (and
/// can be scrolled from the keyboard), with a caption.
pub fn table(id: &str, caption: &str, head: &[(&str, bool)], rows: &str) -> String {
    let mut o = format!(
        "<div class=\"wrap\" tabindex=\"0\" role=\"region\" aria-labelledby=\"{id}\"><table>\
         <caption id=\"{id}\">{}</caption><thead><tr>",
        esc(caption)
    );
    for (h, numeric) in head {
        o.push_str(&format!(
            "<th scope=\"col\"{}>{}</th>",
            if *numeric { " class=\"n\"" } else { "" },
            esc(h)
        ));
    }
    o.push_str("</tr></thead><tbody>");
    o.push_str(rows);
    o.push_str("</tbody></table></div>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accept_language_picks_the_preferred_of_french_and_english() {
        assert_eq!(prefers_french("fr-FR,fr;q=0.9,en;q=0.8"), Some(true));
        assert_eq!(prefers_french("en-GB,en;q=0.9,fr;q=0.8"), Some(false));
        assert_eq!(prefers_french("de;q=1, en;q=0.5, fr;q=0.7"), Some(true));
        assert_eq!(prefers_french("de, *;q=0.1"), None);
        assert_eq!(prefers_french("fr;q=0, en"), Some(false));
        assert_eq!(prefers_french("EN-us"), Some(false));
    }

    #[test]
    fn french_by_default_english_when_asked_and_links_keep_the_choice() {
        let c = Ctx::new("/findings", vec![], None);
        assert!(c.fr);
        assert_eq!(c.href("/campaigns"), "/campaigns");
        let c = Ctx::new("/findings", vec![], Some("en-US,en"));
        assert!(!c.fr);
        assert_eq!(
            c.href("/campaigns"),
            "/campaigns",
            "the browser says it again"
        );
        assert_eq!(c.switch(), "/findings?lang=fr");
        let c = Ctx::new(
            "/findings",
            q(&[("kind", "bloat"), ("lang", "en"), ("host", "a b")]),
            Some("fr"),
        );
        assert!(!c.fr);
        assert_eq!(c.href("/machines/x?y=1"), "/machines/x?y=1&lang=en");
        assert_eq!(c.here(), "/findings?kind=bloat&host=a%20b&lang=en");
        assert_eq!(c.switch(), "/findings?kind=bloat&host=a%20b&lang=fr");
    }

    #[test]
    fn the_shell_is_one_light_page_in_the_right_language() {
        let c = Ctx::new("/campaigns", q(&[("lang", "en")]), None);
        let html = shell(&c, "A <b>", Nav::Campaigns, "<p>x</p>");
        assert!(html.starts_with("<!doctype html><html lang=\"en\">"));
        assert!(html.contains("<title>A &lt;b&gt; — Sobre</title>"));
        assert!(html.contains("href=\"/campaigns?lang=en\" aria-current=\"page\""));
        assert!(html.contains("href=\"/campaigns?lang=fr\" hreflang=\"fr\""));
        assert!(!html.contains("<script"));
        assert!(html.len() < 8_000, "{} bytes", html.len());
    }
}
